"""``POST /v1/inbox/{id}/ack`` and ``/reject``: the adapter settles a delivered message (in
process). Settling is idempotent, queues one signed receipt for the sender, and takes the
message out of the inbox; what was never delivered is ``404``.

Replaces, e2e on RabbitMQ → here:

- test_node_flow.py::test_referral_is_delivered_acked_and_receipted (the second ack)
  → test_an_ack_is_204_and_again_changes_nothing
- test_api_guide.py, the ack and reject blocks
  → test_a_reject_with_a_reason_shows_rejected_at_the_sender_and_keeps_the_reason_here
"""

from __future__ import annotations

import json
import logging

import pytest

from gateway.core import jose, note
from tests.unit.node._inproc import GEM, ApiNode, InProcFederation, request_from_example
from tests.unit.node.conftest import BOTH_STORES

pytestmark = BOTH_STORES  # each test runs on SQLite and on PostgreSQL

UNKNOWN = "01a2b3c4-0000-7000-8000-000000000000"


async def _delivered(inproc: InProcFederation) -> tuple[ApiNode, ApiNode, str]:
    pol = await inproc.start("politie")
    gem = await inproc.start("gemeente")
    message_id = await pol.send(request_from_example("case.referral"))
    assert [i["message_id"] for i in await gem.inbox(wait=30)] == [message_id]
    return pol, gem, message_id


def _receipts_sent(gem: ApiNode, message_id: str) -> list[str]:
    records = gem.node.audit(operation="receipt.send", message_id=message_id)
    return [r["view"]["detail"]["status"] for r in records]


async def test_an_ack_is_204_and_again_changes_nothing(inproc: InProcFederation) -> None:
    _pol, gem, message_id = await _delivered(inproc)
    assert await gem.settle(message_id) == 204
    await inproc.wait_status("politie", message_id, "accepted")
    assert await gem.settle(message_id) == 204
    assert gem.node.audit_names(message_id).count("adapter.ack") == 1
    assert _receipts_sent(gem, message_id) == ["delivered", "accepted"]
    assert gem.node.store.read("SELECT count(*) FROM receipts_pending") == [(0,)]


async def test_an_acked_message_is_not_handed_out_again(inproc: InProcFederation) -> None:
    _pol, gem, message_id = await _delivered(inproc)
    assert await gem.settle(message_id) == 204
    assert await gem.inbox() == []


async def test_a_reject_with_a_reason_shows_rejected_at_the_sender_and_keeps_the_reason_here(
    inproc: InProcFederation,
) -> None:
    pol, gem, message_id = await _delivered(inproc)
    reject = {"reason": "not_responsible", "note": "wijkagent tasks go to team Noord"}
    assert await gem.settle(message_id, "reject", reject) == 204
    await inproc.wait_status("politie", message_id, "rejected")
    assert await pol.status(message_id) == [(GEM, "ZVH", "rejected", "adapter_rejected")]
    (record,) = gem.node.audit(operation="adapter.reject")
    assert record["personal"]["adapter_reason"] == "not_responsible"
    assert "not_responsible" not in json.dumps(record["view"])
    # The adapter's own reason never leaves this node.
    (receipt,) = pol.node.audit(operation="receipt.receive", message_id=message_id)[1:]
    assert "not_responsible" not in str(receipt)
    assert await gem.inbox() == []


async def test_the_reject_note_stays_in_the_nodes_own_audit_log(
    inproc: InProcFederation, caplog: pytest.LogCaptureFixture
) -> None:
    pol, gem, message_id = await _delivered(inproc)
    note = "wijkagent tasks go to team Noord"
    with caplog.at_level(logging.DEBUG):
        reject = {"reason": "not_responsible", "note": note}
        assert await gem.settle(message_id, "reject", reject) == 204
        await inproc.wait_status("politie", message_id, "rejected")
    (record,) = gem.node.audit(operation="adapter.reject")
    # Personal data of our own record: in its personal part, only a commitment in its view
    # (the view is what the rejected receipt's proof shows the sender).
    assert record["personal"]["note"] == note
    assert note not in json.dumps(record["view"])
    assert "note" in record["view"]["commitments"]
    # Nothing of it leaves the node or reaches a log line.
    assert note not in caplog.text
    store = pol.node.config.store_path
    for path in (store, store.with_name(store.name + "-wal")):
        assert not path.exists() or note.encode() not in path.read_bytes()


async def test_the_adapters_reject_reason_is_not_in_the_receipt_the_sender_keeps(
    inproc: InProcFederation,
) -> None:
    pol, gem, message_id = await _delivered(inproc)
    assert await gem.settle(message_id, "reject", {"reason": "unknown_subject"}) == 204
    await inproc.wait_status("politie", message_id, "rejected")
    (row,) = pol.node.store.read(
        "SELECT inner_jws FROM receipts_in WHERE message_id=? AND status='rejected'",
        (message_id,),
    )
    claims = json.loads(jose.b64u_decode(bytes(row[0]).split(b".")[1]))
    proof = note.parse_tlog_proof(claims["body"]["proof"].encode("utf-8"))
    assert proof.extra is not None
    assert b"unknown_subject" not in proof.extra


@pytest.mark.parametrize(
    ("note", "field_rule"),
    [("x" * 201, "200 characters"), ("call about 999990020 first", "BSN")],
)
async def test_a_reject_note_over_the_contracts_bound_or_with_a_bsn_is_refused(
    inproc: InProcFederation, note: str, field_rule: str
) -> None:
    _pol, gem, message_id = await _delivered(inproc)
    body = {"reason": "other", "note": note}
    answer = await gem.call("POST", f"/v1/inbox/{message_id}/reject", body=body)
    (error,) = answer.problem("invalid-message")["errors"]
    assert error["field"] == "note"
    assert field_rule in error["message"]
    assert note not in answer.body.decode()
    assert gem.node.audit(operation="adapter.reject") == []


async def test_a_reject_after_an_ack_changes_nothing(inproc: InProcFederation) -> None:
    pol, gem, message_id = await _delivered(inproc)
    assert await gem.settle(message_id) == 204
    assert await gem.settle(message_id, "reject", {"reason": "duplicate"}) == 204
    await inproc.wait_status("politie", message_id, "accepted")
    assert gem.node.audit(operation="adapter.reject") == []
    assert _receipts_sent(gem, message_id) == ["delivered", "accepted"]
    assert await pol.status(message_id) == [(GEM, "ZVH", "accepted", None)]


@pytest.mark.parametrize("verb", ["ack", "reject"])
async def test_settling_a_message_that_is_not_in_the_inbox_is_a_404(
    inproc: InProcFederation, verb: str
) -> None:
    gem = await inproc.start("gemeente", connect=False)
    body = {"reason": "other"} if verb == "reject" else None
    answer = await gem.call("POST", f"/v1/inbox/{UNKNOWN}/{verb}", body=body)
    assert UNKNOWN in answer.problem("not-found")["detail"]
    assert gem.node.audit() == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"reason": "because"}, "reason"),
        ({"reason": "other", "note": "x" * 201}, "note"),
        ({}, "reason"),
    ],
    ids=["unknown-reason", "note-too-long", "no-reason"],
)
async def test_a_reject_that_breaks_the_contract_is_a_422_naming_the_field(
    inproc: InProcFederation, body: dict[str, str], field: str
) -> None:
    _pol, gem, message_id = await _delivered(inproc)
    answer = await gem.call("POST", f"/v1/inbox/{message_id}/reject", body=body)
    problem = answer.problem("invalid-message")
    assert [e["field"] for e in problem["errors"]] == [field]
    assert [i["message_id"] for i in await gem.inbox()] == [message_id], "still waiting"


@pytest.mark.parametrize("raw", [b"not json", b'{"reason": "other", "reason": "duplicate"}'])
async def test_a_reject_body_that_is_not_acceptable_json_is_a_400(
    inproc: InProcFederation, raw: bytes
) -> None:
    gem = await inproc.start("gemeente", connect=False)
    answer = await gem.call("POST", f"/v1/inbox/{UNKNOWN}/reject", raw=raw)
    assert "not acceptable JSON" in answer.problem("invalid-request")["detail"]
