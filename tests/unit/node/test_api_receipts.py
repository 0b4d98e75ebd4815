"""Signed receipts move the sender's status: ``delivered`` when the recipient's node stored the
message, ``accepted`` or ``rejected`` when its adapter settled it (in process).

Contradicting receipts (a signed ``rejected`` after a signed ``accepted``, a receipt about other
content) are kept as evidence: tests/unit/node/test_receipt_contradictions.py.

Replaces, e2e on RabbitMQ → here:

- test_node_flow.py::test_referral_is_delivered_acked_and_receipted
  → test_a_referral_is_delivered_then_accepted_by_signed_receipts
- test_node_flow.py::test_a_redelivered_envelope_reaches_the_adapter_once
  → test_a_redelivered_envelope_reaches_the_adapter_once_and_its_receipts_are_sent_again
- test_node_flow.py::test_case_flow_from_referral_to_handover
  → test_a_case_flows_from_referral_to_handover
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from gateway.core.decisions import Deliver
from tests.unit.node._inproc import GEM, GGZ, POL, ApiNode, InProcFederation, request_from_example
from tests.unit.node.conftest import BOTH_STORES

pytestmark = BOTH_STORES  # each test runs on SQLite and on PostgreSQL


def _receipts_in(node: ApiNode, message_id: str) -> list[str]:
    rows = node.node.store.read(
        "SELECT status FROM receipts_in WHERE message_id=? ORDER BY status", (message_id,)
    )
    return [str(r[0]) for r in rows]


async def test_a_referral_is_delivered_then_accepted_by_signed_receipts(
    inproc: InProcFederation,
) -> None:
    pol = await inproc.start("politie")
    gem = await inproc.start("gemeente")
    request = request_from_example("case.referral")
    message_id = await pol.send(request)
    await inproc.wait_status("politie", message_id, "delivered")
    assert await pol.status(message_id) == [(GEM, "ZVH", "delivered", None)]
    (item,) = await gem.inbox()
    assert (item["message_id"], item["sender"], item["recipient_roles"]) == (
        message_id,
        POL,
        ["ZVH"],
    )
    assert item["claims"]["body"] == request["body"]
    assert await gem.settle(message_id) == 204
    await inproc.wait_status("politie", message_id, "accepted")
    assert await gem.inbox() == []
    # The sender keeps both signed receipts and logs each; the recipient logs what it sent.
    assert _receipts_in(pol, message_id) == ["accepted", "delivered"]
    assert [r["view"]["detail"]["status"] for r in pol.node.audit(operation="receipt.receive")] == [
        "delivered",
        "accepted",
    ]
    assert [r["view"]["detail"]["status"] for r in gem.node.audit(operation="receipt.send")] == [
        "delivered",
        "accepted",
    ]


async def test_a_rejected_message_shows_rejected_with_reason_adapter_rejected(
    inproc: InProcFederation,
) -> None:
    pol = await inproc.start("politie")
    gem = await inproc.start("gemeente")
    message_id = await pol.send(request_from_example("case.referral"))
    assert [i["message_id"] for i in await gem.inbox(wait=30)] == [message_id]
    assert await gem.settle(message_id, "reject", {"reason": "not_responsible"}) == 204
    await inproc.wait_status("politie", message_id, "rejected")
    assert await pol.status(message_id) == [(GEM, "ZVH", "rejected", "adapter_rejected")]


async def test_a_redelivered_envelope_reaches_the_adapter_once_and_its_receipts_are_sent_again(
    inproc: InProcFederation,
) -> None:
    pol = await inproc.start("politie")
    gem = await inproc.start("gemeente")
    message_id = await pol.send(request_from_example("case.referral"))
    await inproc.wait_status("politie", message_id, "delivered")
    receipts = sum(p.recipient == POL for p in inproc.broker.published)
    # The broker hands the exact envelope over once more (a redelivery, or a replay).
    first = next(s.delivery for s in inproc.broker.settled if s.delivery.message_id == message_id)
    inproc.broker.route(GEM, first, inproc.clock() + timedelta(hours=1))

    async def handled_twice() -> bool:
        return [s.delivery.message_id for s in inproc.broker.settled].count(message_id) == 2

    await inproc.broker.until(handled_twice, "the envelope was handled again")
    assert inproc.broker.settled_at(GEM) == [Deliver(), Deliver()]
    assert gem.node.service.counters.get("duplicates") == 1
    assert [i["message_id"] for i in await gem.inbox()] == [message_id]
    # Its sender may have missed the receipt: the node publishes what it sent again.
    assert sum(p.recipient == POL for p in inproc.broker.published) == 2 * receipts


async def test_a_receipt_that_arrives_after_expiry_still_counts(inproc: InProcFederation) -> None:
    pol = await inproc.start("politie")
    gem = await inproc.start("gemeente")
    inproc.broker.pause(POL)  # the receipts wait in the police queue
    message_id = await pol.send(request_from_example("case.referral", expires_in_seconds=60))
    assert [i["message_id"] for i in await gem.inbox(wait=30)] == [message_id]
    await inproc.wait_status("politie", message_id, "sent")
    inproc.clock.move(minutes=2)
    assert await pol.node.service.retention.purge_once() == (1, 0, 0, 0)
    assert await pol.status(message_id) == [(GEM, "ZVH", "expired", None)]
    inproc.broker.resume(POL)
    await inproc.wait_status("politie", message_id, "delivered")
    assert "message.expire" in pol.node.audit_names(message_id)


async def test_a_case_flows_from_referral_to_handover(inproc: InProcFederation) -> None:
    pol = await inproc.start("politie")
    gem = await inproc.start("gemeente")
    ggz = await inproc.start("ggz")

    async def exchange(
        sender: ApiNode, receiver: ApiNode, request: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        message_id = await sender.send(request)
        items = await receiver.inbox(wait=30)
        assert [i["message_id"] for i in items] == [message_id]
        assert await receiver.settle(message_id) == 204
        return message_id, items[0]

    referral_id, _ = await exchange(pol, gem, request_from_example("case.referral"))
    status = request_from_example(
        "case.status", in_reply_to=referral_id, correlation_id=referral_id
    )
    await exchange(gem, pol, status)
    question = request_from_example(
        "info.request", correlation_id=referral_id, recipients=[{"org": GGZ, "role": "GGZ"}]
    )
    question_id, asked = await exchange(gem, ggz, question)
    assert asked["claims"]["body"]["mode"] == "bekendheid"
    answer = request_from_example(
        "info.response", in_reply_to=question_id, correlation_id=referral_id
    )
    answer_id, answered = await exchange(ggz, gem, answer)
    assert answered["claims"]["body"]["disposition"] == "known"
    handover_id, handed = await exchange(
        gem, gem, request_from_example("case.handover", correlation_id=referral_id)
    )
    assert handed["recipient_roles"] == ["GEM"]
    for key, message_id in (
        ("politie", referral_id),
        ("gemeente", question_id),
        ("ggz", answer_id),
        ("gemeente", handover_id),
    ):
        await inproc.wait_status(key, message_id, "accepted")
