"""An erase notice (``rights.notice``, AVG art. 17/19) erases the node's own stored copy of the
person's data — payloads and the personal parts of audit records — and the audit log still
verifies: leaves, inclusion proofs, checkpoints and evidence bundles are untouched
(docs/decisions/0107-erasure-shreds-personal-parts-and-is-logged.md).

Threats: a person's data kept after an erasure; an erasure that breaks the log (or is
indistinguishable from tampering); a partner's notice that erases what *another* partner sent.
In process (tests/unit/node/_inproc.py); ``zvg audit verify`` reads SQLite stores only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from gateway.cli import cli
from tests.unit.node._inproc import GEM, ApiNode, InProcFederation, request_from_example
from tests.unit.node.conftest import BOTH_STORES

ANNA = "sub-7f3KqZ2mLw9xTa"  # the betrokkene of tests/examples/case.referral.json
BSN = "999990019"
PAYLOAD = "SELECT claims IS NOT NULL, inner_jws IS NOT NULL FROM inbox WHERE message_id=?"
ENVELOPE = "SELECT envelope IS NOT NULL FROM outbox WHERE message_id=?"
PERSONAL = "SELECT count(*) FROM audit_records WHERE message_id=? AND personal IS NOT NULL"


def notice(concerns: list[str], *, sender_role: str, kind: str = "erase") -> dict[str, Any]:
    request = request_from_example("rights.notice")
    request["sender_role"] = sender_role
    request["recipients"] = [{"org": GEM, "role": "ZVH"}]
    request["body"]["kind"] = kind
    request["body"]["concerns"] = concerns
    return request


async def _referral_accepted(inproc: InProcFederation) -> tuple[ApiNode, ApiNode, str]:
    pol = await inproc.start("politie")
    gem = await inproc.start("gemeente")
    message_id = await pol.send(request_from_example("case.referral"))
    assert [i["message_id"] for i in await gem.inbox(wait=30)] == [message_id]
    assert await gem.settle(message_id) == 204
    await inproc.wait_status("politie", message_id, "accepted")
    return pol, gem, message_id


def _verify(node: ApiNode) -> str:
    result = CliRunner().invoke(cli, ["audit", "verify", "--config", str(node.node.config.source)])
    # Exit 3: consistent, but no partner cosigned a checkpoint here (no witnessing in process).
    assert result.exit_code == 3, result.output
    return result.output


def _bundle_verifies(node: ApiNode, message_id: str, tmp: Path) -> None:
    out = tmp / f"{node.org}-{message_id}.bundle.json"
    config = str(node.node.config.source)
    runner = CliRunner()
    made = runner.invoke(
        cli, ["audit", "export", "--config", config, "--message", message_id, "--out", str(out)]
    )
    assert made.exit_code == 0, made.output
    bundle = json.loads(out.read_text("utf-8"))
    assert bundle["records"], "the records of the erased message are still proved"
    checked = runner.invoke(
        cli,
        [
            "audit",
            "verify-bundle",
            str(out),
            "--directory",
            str(node.node.config.directory.file),
        ],
    )
    assert checked.exit_code == 0, checked.output


async def test_an_erase_notice_erases_the_senders_and_the_recipients_copies_and_logs_verify(
    inproc: InProcFederation, tmp_path: Path
) -> None:
    pol, gem, referral = await _referral_accepted(inproc)
    assert gem.node.store.read(PAYLOAD, (referral,)) == [(1, 1)]
    assert pol.node.store.read(ENVELOPE, (referral,)) == [(1,)]

    notice_id = await pol.send(notice([referral], sender_role="POL"))
    assert [i["message_id"] for i in await gem.inbox(wait=30)] == [notice_id]
    assert await gem.settle(notice_id) == 204
    await inproc.wait_status("politie", notice_id, "accepted")

    # The recipient: the referral's payload and personal audit parts are gone; the notice
    # itself was handed to the adapter (and goes at the end of its retention).
    assert gem.node.store.read(PAYLOAD, (referral,)) == [(0, 0)]
    assert gem.node.store.read(PERSONAL, (referral,)) == [(0,)]
    # The records stored with the erasure name no one; only those of the notice's delivery to
    # the adapter, written after it, still name the person (until audit retention).
    left = gem.node.store.read(
        "SELECT DISTINCT r.message_id FROM audit_subjects s JOIN audit_records r"
        " ON r.idx = s.idx WHERE s.subject=?",
        (ANNA,),
    )
    assert left in ([], [(notice_id,)])
    erased = gem.node.audit(operation="rights.erase")
    assert len(erased) == 1
    assert erased[0]["view"]["detail"]["erased_messages"] == 1
    # The sender erased its own copy when it sent the notice; the notice still went out.
    assert pol.node.store.read(ENVELOPE, (referral,)) == [(0,)]
    assert pol.node.store.read(PERSONAL, (referral,)) == [(0,)]
    assert pol.node.audit(operation="rights.erase")

    for node in (pol, gem):
        await node.node.service.audit.checkpoint()
        _verify(node)
        _bundle_verifies(node, referral, tmp_path)

    # Nothing of the person is left in the sender's store file: not the pseudonym, not the
    # BSN (the notice's envelope is ciphertext). Closing checkpoints the WAL into the file.
    store_file = pol.node.config.store_path
    await inproc.close()
    raw = store_file.read_bytes()
    assert ANNA.encode() not in raw
    assert BSN.encode() not in raw


@BOTH_STORES
async def test_the_same_erasure_on_either_store(inproc: InProcFederation) -> None:
    pol, gem, referral = await _referral_accepted(inproc)
    notice_id = await pol.send(notice([referral], sender_role="POL"))
    assert [i["message_id"] for i in await gem.inbox(wait=30)] == [notice_id]
    for node, payload in ((gem, PAYLOAD), (pol, ENVELOPE)):
        assert all(v == 0 for v in node.node.store.read(payload, (referral,))[0])
        assert node.node.store.read(PERSONAL, (referral,)) == [(0,)]
        (erased,) = node.node.audit(operation="rights.erase")
        assert erased["view"]["detail"]["erased_messages"] == 1


@BOTH_STORES
async def test_a_notice_erases_only_what_its_sender_sent(inproc: InProcFederation) -> None:
    _pol, gem, referral = await _referral_accepted(inproc)
    ggz = await inproc.start("ggz")
    # GGZ names the police's referral: an attempt to erase another partner's message.
    notice_id = await ggz.send(notice([referral], sender_role="GGZ"))
    assert [i["message_id"] for i in await gem.inbox(wait=30)] == [notice_id]
    assert gem.node.store.read(PAYLOAD, (referral,)) == [(1, 1)]
    assert gem.node.store.read(PERSONAL, (referral,))[0][0] > 0
    # The notice is stored (and erased with it, in one transaction): nothing was erased.
    assert gem.node.audit(operation="rights.erase") == []


@BOTH_STORES
async def test_a_rectify_notice_erases_nothing(inproc: InProcFederation) -> None:
    pol, gem, referral = await _referral_accepted(inproc)
    notice_id = await pol.send(notice([referral], sender_role="POL", kind="rectify"))
    assert [i["message_id"] for i in await gem.inbox(wait=30)] == [notice_id]
    assert gem.node.store.read(PAYLOAD, (referral,)) == [(1, 1)]
    assert pol.node.store.read(ENVELOPE, (referral,)) == [(1,)]
    assert gem.node.audit(operation="rights.erase") == []


async def test_a_shredded_record_no_erase_record_lists_fails_verify(
    inproc: InProcFederation,
) -> None:
    _pol, gem, referral = await _referral_accepted(inproc)
    await gem.node.service.audit.checkpoint()
    await gem.node.store.run(
        lambda db: db.execute(
            "UPDATE audit_records SET personal=NULL, salt=NULL WHERE message_id=?", (referral,)
        )
    )
    result = CliRunner().invoke(cli, ["audit", "verify", "--config", str(gem.node.config.source)])
    assert result.exit_code == 1, result.output
    assert "erased before its retention period ended" in result.output
