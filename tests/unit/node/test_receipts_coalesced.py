"""Coalesced receipts between two nodes in process (docs/decisions/0006-coalesced-receipts.md).

The receipt loop seals what is pending when it runs; these tests hand it a burst (as load does)
or a single receipt, and carry the envelopes by hand, so what they check never depends on timing.
"""

from __future__ import annotations

import base64
import json
import shutil
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from gateway.cli import cli
from gateway.core import jose
from gateway.core.decisions import Deliver
from gateway.core.receipts import RECEIPT_BATCH_BYTES
from gateway.node.receipts import proof_budget
from gateway.node.store import EVIDENCE_REF
from gateway.testing.federation import FederationFiles
from schemas import limits
from tests.console.evidence.test_evidence_verifiers import run_js
from tests.node_pair import InProcessNode
from tests.unit.node.test_receipt_refusals import _Directory


def _claims_of(jws: bytes) -> dict[str, Any]:
    """The signed claims inside a compact JWS (its payload; the signature verified on arrival)."""
    payload = jws.split(b".")[1]
    loaded: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + b"=" * (-len(payload) % 4))
    )
    return loaded


def _kept(node: InProcessNode) -> list[tuple[str, str, bytes]]:
    rows = node.store.read("SELECT message_id, status, inner_jws FROM receipts_in ORDER BY rowid")
    return [(str(m), str(s), bytes(j)) for m, s, j in rows]


async def _burst(pol: InProcessNode, gem: InProcessNode, n: int) -> list[str]:
    """Politie sends ``n`` referrals (each its own case); gem stores them all before its
    receipt loop runs."""
    ids = [await pol.send_example("case.referral") for _ in range(n)]
    assert await pol.carry_to(gem) == [Deliver()] * n
    return ids


async def test_a_burst_is_acknowledged_by_fewer_envelopes_and_every_message_is_delivered(
    pair: tuple[InProcessNode, InProcessNode],
) -> None:
    pol, gem = pair
    n = limits.MAX_RECEIPT_ENTRIES + 3  # more than one envelope holds
    ids = await _burst(pol, gem, n)
    await gem.seal_receipts()
    envelopes = await gem.store.pending_publishes(1000)
    assert len(envelopes) == 2 < n
    # One receipt.send record per message (per-message evidence), naming its envelope.
    sent = gem.audit(operation="receipt.send")
    assert sorted(r["view"]["message_id"] for r in sent) == sorted(ids)
    assert len({r["view"]["detail"]["receipt_id"] for r in sent}) == 2
    assert await gem.carry_to(pol) == [Deliver(), Deliver()]
    for message_id in ids:
        assert (await pol.service.outbound.status(message_id)).recipients[0].status == "delivered"
    # Every entry's proof verified: a receipt.receive record per message, none ignored.
    received = pol.audit(operation="receipt.receive")
    assert sorted(r["view"]["message_id"] for r in received) == sorted(ids)
    assert {r["view"]["status"] for r in received} == {"ok"}
    assert pol.service.counters.get("receipts_ignored", 0) == 0
    # The sender's records name each message's own case, not the envelope's.
    cases = {r["view"]["message_id"]: r["personal"]["case_ref"] for r in received}
    sent_cases = {
        m: (await pol.store.message(m)).case_ref  # type: ignore[union-attr]  # sent above
        for m in ids
    }
    assert cases == sent_cases
    # Each envelope's signed bytes are kept once; each message's row refers to them.
    kept = _kept(pol)
    assert len(kept) == n
    assert all(jws.startswith(EVIDENCE_REF) for _m, _s, jws in kept)
    assert pol.store.read("SELECT count(*) FROM receipt_evidence")[0][0] == 2


async def test_one_message_alone_gets_a_plain_receipt_at_once(
    pair: tuple[InProcessNode, InProcessNode],
) -> None:
    pol, gem = pair
    (message_id,) = await _burst(pol, gem, 1)
    await gem.seal_receipts()
    assert await gem.carry_to(pol) == [Deliver()]
    assert (await pol.service.outbound.status(message_id)).recipients[0].status == "delivered"
    ((mid, status, jws),) = _kept(pol)
    assert (mid, status) == (message_id, "delivered")
    body = _claims_of(jws)["body"]  # the receipt kept verbatim, in the single shape
    assert "entries" not in body
    assert body["message_id"] == message_id


async def test_delivered_and_accepted_of_one_message_share_an_envelope_and_both_apply(
    pair: tuple[InProcessNode, InProcessNode],
) -> None:
    pol, gem = pair
    (message_id,) = await _burst(pol, gem, 1)
    await gem.service.inbox.settle(message_id, accept=True)
    await gem.seal_receipts()
    assert await gem.carry_to(pol) == [Deliver()]
    assert (await pol.service.outbound.status(message_id)).recipients[0].status == "accepted"
    assert [r["view"]["detail"]["status"] for r in pol.audit(operation="receipt.receive")] == [
        "delivered",
        "accepted",
    ]


async def test_a_contradicting_entry_is_kept_as_evidence_while_the_others_apply(
    pair: tuple[InProcessNode, InProcessNode],
) -> None:
    pol, gem = pair
    ids = await _burst(pol, gem, 3)
    pending = await gem.pending_receipts()
    other = jose.b64u_encode(b"\x09" * 32)
    pending[1] = replace(pending[1], info=replace(pending[1].info, digest=other))
    await gem.seal_receipts(pending)
    assert await gem.carry_to(pol) == [Deliver()]
    statuses = [(await pol.service.outbound.status(m)).recipients[0].status for m in ids]
    assert statuses == ["delivered", "sent", "delivered"]
    (hit,) = pol.audit(operation="receipt.contradiction")
    assert hit["view"]["message_id"] == ids[1]
    assert hit["view"]["detail"]["kind"] == "content"
    assert "evidence" in hit  # the signed envelope, kept verbatim
    assert len(pol.audit(operation="receipt.receive")) == 2


async def test_a_batch_the_policy_denies_is_refused_per_message_as_a_single_one_is(
    pair: tuple[InProcessNode, InProcessNode], monkeypatch: pytest.MonkeyPatch
) -> None:
    pol, gem = pair
    ids = await _burst(pol, gem, 3)
    monkeypatch.setattr(
        gem.service.ctx, "directory", _Directory(gem.service.directory, rules=False)
    )
    await gem.seal_receipts()
    assert await gem.pending_receipts() == []
    assert gem.audit(operation="receipt.send") == []
    assert await gem.carry_to(pol) == []
    refused = gem.audit(operation="message.refuse")
    assert sorted(r["view"]["message_id"] for r in refused) == sorted(ids)
    assert {(r["view"]["status"], r["view"]["reason"]) for r in refused} == {
        ("denied", "policy_denied")
    }
    decisions = gem.audit(operation="policy.decision")
    assert sorted(r["view"]["message_id"] for r in decisions[-3:]) == sorted(ids)


async def test_receipt_entries_one_sends_every_receipt_alone(
    pair: tuple[InProcessNode, InProcessNode], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``limits.receipt_entries = 1``: for a partner on a release that cannot read coalesced
    receipts."""
    pol, gem = pair
    ctx = gem.service.ctx
    config = ctx.config.model_copy(
        update={"limits": ctx.config.limits.model_copy(update={"receipt_entries": 1})}
    )
    monkeypatch.setattr(ctx, "config", config)
    await _burst(pol, gem, 3)
    await gem.seal_receipts()
    assert await gem.carry_to(pol) == [Deliver()] * 3
    assert all(not jws.startswith(EVIDENCE_REF) for _m, _s, jws in _kept(pol))


async def test_an_evidence_bundle_of_a_coalesced_receipt_verifies_offline(
    pair: tuple[InProcessNode, InProcessNode], federation: FederationFiles, tmp_path: Path
) -> None:
    pol, gem = pair
    ids = await _burst(pol, gem, 3)
    await gem.seal_receipts()
    await gem.carry_to(pol)
    await pol.service.audit.checkpoint()
    bundle = tmp_path / "bundle.json"
    runner = CliRunner()
    config = str(pol.config.source)
    exported = runner.invoke(
        cli, ["audit", "export", "--config", config, "--message", ids[1], "--out", str(bundle)]
    )
    assert exported.exit_code == 0, exported.output
    doc = json.loads(bundle.read_text())
    (receipt,) = doc["receipts"]
    assert len(_claims_of(receipt["inner_jws"].encode())["body"]["entries"]) == 3
    directory = str(federation.directory)
    checked = runner.invoke(cli, ["audit", "verify-bundle", str(bundle), "--directory", directory])
    assert checked.exit_code == 0, checked.output
    assert f"receipt delivered for {ids[1]} signed by {gem.org}" in checked.output
    # The same envelope offered as the receipt of a message it does not name is refused.
    doc["receipts"][0]["message_id"] = other = ids[1][:-1] + ("0" if ids[1][-1] != "0" else "1")
    forged_bundle = tmp_path / "forged.json"
    forged_bundle.write_text(json.dumps(doc))
    forged = runner.invoke(
        cli, ["audit", "verify-bundle", str(forged_bundle), "--directory", directory]
    )
    assert forged.exit_code == 1
    assert f"receipt for {other}: it says something else" in forged.output
    # The browser's verifier (docs/evidence-bundle.md §4.6) reads coalesced receipts the same way.
    if shutil.which("node") is not None:  # without Node.js, tests/console/evidence says why
        js = run_js(federation.directory, datetime.now(UTC), [bundle, forged_bundle])
        assert js["bundle.json"]["ok"] is True, js
        assert (
            f"receipt delivered for {ids[1]} signed by {gem.org}"
            in (js["bundle.json"]["report"]["lines"])
        )
        assert js["forged.json"]["reason"] == "receipt_mismatch", js


async def test_a_smaller_envelope_limit_makes_smaller_batches_that_all_seal(
    pair: tuple[InProcessNode, InProcessNode], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``limits.max_envelope_bytes`` bounds the proofs one envelope carries (proof_budget), so
    a burst never makes an envelope the node cannot seal (the loop would retry it forever)."""
    pol, gem = pair
    ctx = gem.service.ctx
    small = 48 * 1024
    monkeypatch.setattr(
        ctx, "envelope_limits", replace(ctx.envelope_limits, max_envelope_bytes=small)
    )
    assert proof_budget(small) == 8 * 1024
    assert proof_budget(256 * 1024) == RECEIPT_BATCH_BYTES
    ids = await _burst(pol, gem, 12)
    await gem.seal_receipts()
    envelopes = await gem.store.pending_publishes(1000)
    assert 1 < len(envelopes) < 12
    assert all(len(e.envelope) <= small for e in envelopes)
    assert await gem.carry_to(pol) == [Deliver()] * len(envelopes)
    for message_id in ids:
        assert (await pol.service.outbound.status(message_id)).recipients[0].status == "delivered"


async def test_a_batch_the_senders_policy_denies_is_ignored_and_counted_per_entry(
    pair: tuple[InProcessNode, InProcessNode], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sender's side of a denial: as a single receipt the policy denies, every entry is
    ignored and counted, and no status moves."""
    pol, gem = pair
    ids = await _burst(pol, gem, 3)
    await gem.seal_receipts()
    monkeypatch.setattr(
        pol.service.ctx, "directory", _Directory(pol.service.directory, rules=False)
    )
    assert await gem.carry_to(pol) == [Deliver()]
    assert pol.service.counters.get("receipts_ignored", 0) == 3
    assert pol.audit(operation="receipt.receive") == []
    for message_id in ids:
        assert (await pol.service.outbound.status(message_id)).recipients[0].status == "sent"
