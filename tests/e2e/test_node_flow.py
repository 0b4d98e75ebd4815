"""End-to-end through real nodes and the real RabbitMQ: send, deliver, receipts, policy at both
ends, idempotency, dedupe."""

from __future__ import annotations

import pytest

from tests.e2e.harness import Fed, request_from_example

pytestmark = pytest.mark.broker


async def test_referral_is_delivered_acked_and_receipted(fed: Fed) -> None:
    await fed.start("politie")
    await fed.start("gemeente")
    pol, gem = fed.client("politie"), fed.client("gemeente")
    code, accepted = await pol.send(request_from_example("case.referral"))
    assert code == 202, accepted
    message_id = accepted["message_id"]
    await pol.wait_status(message_id, "delivered")
    items = await gem.inbox(wait=10)
    assert [i["message_id"] for i in items] == [message_id]
    item = items[0]
    assert item["sender"] == "00000001999000002000"
    assert item["recipient_roles"] == ["ZVH"]
    assert item["claims"]["body"]["referrer"]["function"] == "wijkagent"
    assert await gem.ack(message_id) == 204
    assert await gem.ack(message_id) == 204  # idempotent
    status = await pol.wait_status(message_id, "accepted")
    assert status["recipients"][0]["org"] == "00000001999000001000"
    assert await gem.inbox(wait=0) == []
