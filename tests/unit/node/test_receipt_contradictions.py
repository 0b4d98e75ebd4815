"""Threat: a recipient contradicts its own signed statements and the contradiction vanishes.

A recipient that signs ``rejected`` after its signed ``accepted`` (or the other way round), or a
receipt about other content than the sender sent, makes two signed statements that cannot both
be true. Each is evidence: the sender keeps the later receipt verbatim in its audit log as a
``receipt.contradiction`` record that references the earlier signed statement, counts it, and
shows it to ``zvg audit query``; ``zvg audit verify`` checks the kept bytes. The recipient here is
a real node service with its own keys and audit log, made to sign what an honest node never
would; no broker is involved (tests/node_pair.py).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from gateway.audit.inspect import open_readonly, verify_log
from gateway.cli import cli
from gateway.core import jose
from gateway.core.decisions import Deliver
from gateway.core.envelope import verify_signed_claims
from gateway.node.store import PendingReceipt
from gateway.testing.federation import FederationFiles
from schemas.bodies import ReceiptBody
from tests import stores
from tests.node_pair import InProcessNode


def _sha(data: bytes) -> str:
    return jose.b64u_encode(hashlib.sha256(data).digest())


async def _accepted(pol: InProcessNode, zvh: InProcessNode) -> tuple[str, PendingReceipt]:
    """Politie refers a case; the ZVH stores it, its adapter accepts, and both signed receipts
    (delivered, accepted) reach politie. Returns the message id and the ZVH's 'accepted'."""
    message_id = await pol.send_example("case.referral")
    assert await pol.carry_to(zvh) == [Deliver()]
    await zvh.service.inbox.settle(message_id, accept=True)
    pending = await zvh.pending_receipts()
    assert [p.status for p in pending] == ["delivered", "accepted"]
    for p in pending:  # two single receipts (sealed together they would share one envelope)
        await zvh.seal_receipts([p])
    assert await pol.carry_to(zvh) == []
    assert await zvh.carry_to(pol) == [Deliver(), Deliver()]
    assert (await pol.service.outbound.status(message_id)).recipients[0].status == "accepted"
    return message_id, pending[1]


def _contradictions(node: InProcessNode) -> list[dict[str, Any]]:
    return node.audit(operation="receipt.contradiction")


def _stored_receipt(node: InProcessNode, message_id: str, status: str) -> bytes:
    with open_readonly(node.config.store_path) as db:
        (row,) = db.execute(
            "SELECT inner_jws FROM receipts_in WHERE message_id=? AND status=?",
            (message_id, status),
        ).fetchall()
    return bytes(row[0])


def _index_of(node: InProcessNode, name: str, message_id: str, status: str | None = None) -> int:
    """The index of the one ``name`` record about ``message_id`` (with that detail status)."""
    hits = node.audit(message_id=message_id, operation=name)
    hits = [h for h in hits if status is None or h["view"]["detail"].get("status") == status]
    assert len(hits) == 1, name
    return int(hits[0]["index"])


async def test_a_rejected_receipt_after_a_signed_accepted_is_kept_as_evidence(
    pair: tuple[InProcessNode, InProcessNode],
) -> None:
    pol, zvh = pair
    message_id, accepted = await _accepted(pol, zvh)
    # The ZVH now signs the opposite final statement about the same message.
    await zvh.seal_receipts([replace(accepted, status="rejected", reason="adapter_rejected")])
    assert await zvh.carry_to(pol) == [Deliver()]

    hits = _contradictions(pol)
    assert len(hits) == 1, (
        f"{len(hits)} receipt.contradiction records: the signed 'rejected' after 'accepted' "
        "left no trace"
    )
    (hit,) = hits
    view = hit["view"]
    assert (view["name"], view["status"], view["message_id"], view["peer"]) == (
        "receipt.contradiction",
        "error",
        message_id,
        zvh.org,
    )
    detail = view["detail"]
    assert (detail["kind"], detail["status"], detail["earlier_status"]) == (
        "status",
        "rejected",
        "accepted",
    )
    # The later receipt is kept verbatim: it verifies under the ZVH's key and says 'rejected'.
    later = hit["evidence"].encode("ascii")
    claims = verify_signed_claims(later, sender_keys=pol.service.directory.signing_key)
    assert isinstance(claims.body, ReceiptBody)
    assert (claims.sender.org, claims.body.status, claims.body.message_id) == (
        zvh.org,
        "rejected",
        message_id,
    )
    assert detail["evidence_sha256"] == _sha(later)
    assert detail["receipt_id"] == claims.message_id
    # The earlier signed statement is referenced by its stored digest and its audit record.
    assert detail["earlier_sha256"] == _sha(_stored_receipt(pol, message_id, "accepted"))
    assert detail["earlier_record"] == _index_of(pol, "receipt.receive", message_id, "accepted")
    # The first final statement stands; the contradiction is counted.
    assert (await pol.service.outbound.status(message_id)).recipients[0].status == "accepted"
    assert pol.metric("zvg.receipts.contradictions") == [({"kind": "status", "peer": zvh.org}, 1)]


async def test_an_accepted_receipt_after_a_signed_rejected_is_kept_as_evidence(
    pair: tuple[InProcessNode, InProcessNode],
) -> None:
    pol, zvh = pair
    message_id = await pol.send_example("case.referral")
    await pol.carry_to(zvh)
    await zvh.service.inbox.settle(message_id, accept=False, adapter_reason="not ours")
    pending = await zvh.pending_receipts()
    await zvh.seal_receipts(pending)
    await zvh.carry_to(pol)
    assert (await pol.service.outbound.status(message_id)).recipients[0].status == "rejected"
    await zvh.seal_receipts([replace(pending[1], status="accepted", reason=None)])
    await zvh.carry_to(pol)
    (hit,) = _contradictions(pol)
    detail = hit["view"]["detail"]
    assert (detail["status"], detail["earlier_status"]) == ("accepted", "rejected")


async def test_a_receipt_about_other_content_is_kept_as_evidence(
    pair: tuple[InProcessNode, InProcessNode],
) -> None:
    pol, zvh = pair
    message_id = await pol.send_example("case.referral")
    await pol.carry_to(zvh)
    (delivered,) = await zvh.pending_receipts()
    other = _sha(b"some other signed message")
    await zvh.seal_receipts([replace(delivered, info=replace(delivered.info, digest=other))])
    assert await zvh.carry_to(pol) == [Deliver()]

    hits = _contradictions(pol)
    assert len(hits) == 1, f"{len(hits)} records: a receipt naming other content left no trace"
    view = hits[0]["view"]
    detail = view["detail"]
    assert (detail["kind"], detail["status"], view["digest"]) == ("content", "delivered", other)
    # The earlier signed statement is our own message: its digest and our message.send record.
    sent = _index_of(pol, "message.send", message_id)
    with open_readonly(pol.config.store_path) as db:
        (digest,) = db.execute(
            "SELECT digest FROM outbox WHERE message_id=?", (message_id,)
        ).fetchone()
    assert (detail["earlier_sha256"], detail["earlier_record"]) == (
        jose.b64u_encode(bytes(digest)),
        sent,
    )
    assert _sha(hits[0]["evidence"].encode("ascii")) == detail["evidence_sha256"]
    # Nothing moved: the receipt is evidence, not a status.
    assert (await pol.service.outbound.status(message_id)).recipients[0].status == "sent"
    assert pol.metric("zvg.receipts.contradictions") == [({"kind": "content", "peer": zvh.org}, 1)]


async def test_the_same_contradicting_receipt_twice_is_kept_once(
    pair: tuple[InProcessNode, InProcessNode],
) -> None:
    """A recipient republishes its stored receipts when it sees a duplicate: same bytes again."""
    pol, zvh = pair
    message_id, accepted = await _accepted(pol, zvh)
    await zvh.seal_receipts([replace(accepted, status="rejected", reason="adapter_rejected")])
    (envelope,) = [
        p.envelope
        for p in await zvh.store.pending_publishes(100)
        if (p.message_id, p.org) not in zvh.carried
    ]
    for _ in range(3):
        assert await pol.service.inbound.on_delivery(zvh.delivery(envelope, pol)) == Deliver()
    assert len(_contradictions(pol)) == 1
    assert message_id


async def test_receipts_out_of_order_or_repeated_are_no_contradiction(
    pair: tuple[InProcessNode, InProcessNode],
) -> None:
    """Positive control: 'accepted' before 'delivered', and every receipt twice, is honest."""
    pol, zvh = pair
    message_id = await pol.send_example("case.referral")
    await pol.carry_to(zvh)
    await zvh.service.inbox.settle(message_id, accept=True)
    for p in await zvh.pending_receipts():  # two single receipts, not one coalesced
        await zvh.seal_receipts([p])
    envelopes = [p.envelope for p in await zvh.store.pending_publishes(100)]
    assert len(envelopes) == 2
    for envelope in [*reversed(envelopes), *envelopes]:
        assert await pol.service.inbound.on_delivery(zvh.delivery(envelope, pol)) == Deliver()
    assert (await pol.service.outbound.status(message_id)).recipients[0].status == "accepted"
    assert _contradictions(pol) == []
    assert pol.metric("zvg.receipts.contradictions") == []
    assert pol.service.counters.get("receipts_ignored", 0) == 0


async def test_audit_query_shows_contradictions_and_verify_checks_the_kept_receipt(
    pair: tuple[InProcessNode, InProcessNode],
) -> None:
    pol, zvh = pair
    message_id, accepted = await _accepted(pol, zvh)
    await zvh.seal_receipts([replace(accepted, status="rejected", reason="adapter_rejected")])
    await zvh.carry_to(pol)
    config = str(pol.config.source)
    runner = CliRunner()

    shown = runner.invoke(cli, ["audit", "query", "--config", config, "--message", message_id])
    assert shown.exit_code == 0, shown.output
    (line,) = [ln for ln in shown.output.splitlines() if "receipt.contradiction" in ln]
    assert zvh.org in line
    assert "rejected after accepted" in line

    as_json = runner.invoke(
        cli,
        ["audit", "query", "--config", config, "--operation", "receipt.contradiction", "--json"],
    )
    (hit,) = [json.loads(ln) for ln in as_json.output.splitlines()]
    assert _sha(hit["evidence"].encode("ascii")) == hit["view"]["detail"]["evidence_sha256"]

    checked = runner.invoke(cli, ["audit", "verify", "--config", config])
    # 3: every check passed, but no partner has cosigned yet (this pair has no witnessing).
    assert checked.exit_code == 3, checked.output
    assert "1 kept receipt(s) match their records" in checked.output

    # A changed byte in the kept receipt is found, naming the record.
    with stores.connect(pol.config.store_path) as db:
        db.execute("UPDATE audit_evidence SET evidence = evidence || 'x'")
    tampered = runner.invoke(cli, ["audit", "verify", "--config", config])
    assert tampered.exit_code == 1
    assert f"record {hit['index']}: its kept evidence does not match" in tampered.output
    # So is a deleted one, while the record's personal part is still there.
    with stores.connect(pol.config.store_path) as db:
        db.execute("DELETE FROM audit_evidence")
    deleted = runner.invoke(cli, ["audit", "verify", "--config", config])
    assert deleted.exit_code == 1
    assert f"record {hit['index']}: its kept evidence is missing" in deleted.output


async def test_an_evidence_bundle_carries_the_contradiction_and_verifies_offline(
    pair: tuple[InProcessNode, InProcessNode], federation: FederationFiles, tmp_path: Path
) -> None:
    pol, zvh = pair
    message_id, accepted = await _accepted(pol, zvh)
    await zvh.seal_receipts([replace(accepted, status="rejected", reason="adapter_rejected")])
    await zvh.carry_to(pol)
    await pol.service.audit.checkpoint()
    bundle = tmp_path / "bundle.json"
    runner = CliRunner()
    exported = runner.invoke(
        cli,
        [
            "audit",
            "export",
            "--config",
            str(pol.config.source),
            "--message",
            message_id,
            "--out",
            str(bundle),
        ],
    )
    assert exported.exit_code == 0, exported.output
    assert "1 contradicting receipt(s)" in exported.output
    checked = runner.invoke(
        cli, ["audit", "verify-bundle", str(bundle), "--directory", str(federation.directory)]
    )
    assert checked.exit_code == 0, checked.output
    assert f"receipt rejected for {message_id} signed by {zvh.org} contradicts its accepted" in (
        checked.output
    )
    # Swapping the kept bytes for the honest 'accepted' receipt is noticed.
    doc = json.loads(bundle.read_text())
    doc["contradictions"][0]["inner_jws"] = _stored_receipt(pol, message_id, "accepted").decode()
    bundle.write_text(json.dumps(doc))
    forged = runner.invoke(
        cli, ["audit", "verify-bundle", str(bundle), "--directory", str(federation.directory)]
    )
    assert forged.exit_code == 1
    assert "no proved record names these bytes" in forged.output


async def test_the_kept_receipt_goes_with_the_personal_part_at_the_end_of_retention(
    pair: tuple[InProcessNode, InProcessNode],
) -> None:
    """A kept receipt holds the case reference: it is shredded with the record's personal part,
    while the record (and the digest it names) stays and verifies."""
    pol, zvh = pair
    _message_id, accepted = await _accepted(pol, zvh)
    await zvh.seal_receipts([replace(accepted, status="rejected", reason="adapter_rejected")])
    await zvh.carry_to(pol)
    (hit,) = _contradictions(pol)
    assert "evidence" in hit
    later = datetime.now(UTC) + timedelta(days=pol.config.retention.audit_personal_days + 1)
    assert await pol.service.audit.shred(later) > 0
    (hit,) = _contradictions(pol)
    assert "evidence" not in hit
    assert hit["personal"] is None
    assert hit["view"]["detail"]["evidence_sha256"]
    # Verified as of the time the shredding ran (on the real clock it would be an early erasure).
    with open_readonly(pol.config.store_path) as db:
        report = verify_log(
            db,
            directory=pol.service.directory,
            org=pol.org,
            now=later,
            personal_retention=timedelta(days=pol.config.retention.audit_personal_days),
        )
    assert report.shredded > 0
    assert report.evidence == 0


async def test_an_ignored_receipt_is_counted_by_its_coarse_reason_not_its_detail(
    pair: tuple[InProcessNode, InProcessNode],
) -> None:
    """The metric's label was the error's free-text detail (which can name organisations and
    grows without bound); it is the coarse reason (docs/decisions/0087)."""
    pol, zvh = pair
    message_id, accepted = await _accepted(pol, zvh)
    never_sent = message_id[:-4] + ("0000" if message_id[-4:] != "0000" else "1111")
    await zvh.seal_receipts([replace(accepted, message_id=never_sent)])
    assert await zvh.carry_to(pol) == [Deliver()]
    assert pol.service.counters.get("receipts_ignored", 0) == 1
    assert pol.metric("zvg.receipts.ignored") == [({"reason": "invalid_claims"}, 1)]
