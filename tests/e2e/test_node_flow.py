"""End-to-end through real nodes and the real RabbitMQ: a case from referral to handover, the
ops endpoints against a real broker, and the client SDK's event stream. What one node does with
a request (validation, problem+json, idempotency, auditor rights, policy at both ends, receipts,
dedupe) is tested in process: ``tests/unit/node/test_api_*.py``."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.e2e.harness import Fed, request_from_example

pytestmark = pytest.mark.broker


GGZ = "00000001999000004000"


async def test_case_flow_from_referral_to_handover(fed: Fed) -> None:
    for key in ("politie", "gemeente", "ggz"):
        await fed.start(key)
    pol, gem, ggz = fed.client("politie"), fed.client("gemeente"), fed.client("ggz")

    async def exchange(
        sender: Any, receiver: Any, request: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        code, doc = await sender.send(request)
        assert code == 202, doc
        items = await receiver.inbox(wait=15)
        assert [i["message_id"] for i in items] == [doc["message_id"]]
        assert await receiver.ack(doc["message_id"]) == 204
        return doc["message_id"], items[0]

    referral_id, _ = await exchange(pol, gem, request_from_example("case.referral"))
    status_req = request_from_example(
        "case.status", in_reply_to=referral_id, correlation_id=referral_id
    )
    await exchange(gem, pol, status_req)
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
    for client, mid in (
        (pol, referral_id),
        (gem, question_id),
        (ggz, answer_id),
        (gem, handover_id),
    ):
        await client.wait_status(mid, "accepted")


async def test_ops_endpoints(fed: Fed) -> None:
    await fed.start("politie")
    client = fed.client("politie")
    assert (await client.request("GET", "/healthz"))[0] == 200
    code, ready = await client.request("GET", "/readyz")
    assert code == 200, ready
    assert ready["checks"]["broker"]["ok"]
    assert ready["checks"]["store"]["ok"]
    code, spec = await client.request("GET", "/v1/openapi.json")
    assert code == 200
    assert "/v1/messages" in spec["paths"]
    for _ in range(60):  # the gauges refresh every few seconds
        code, metrics = await client.request("GET", "/metrics")
        assert code == 200
        if "zvg_queue_depth" in metrics:
            break
        await asyncio.sleep(0.2)
    assert "zvg_outbox_pending" in metrics
    assert "zvg_queue_depth" in metrics


async def test_server_sent_events_push_the_inbox_to_the_client_sdk(fed: Fed) -> None:
    from adapters.client import NodeClient

    await fed.start("politie")
    await fed.start("gemeente")
    gem_files = fed.nodes["gemeente"]
    async with NodeClient(gem_files.url, gem_files.token) as client:
        stream = client.stream(reconnect=False)
        first = asyncio.ensure_future(stream.__anext__())
        await asyncio.sleep(0.5)  # the stream is open and idle
        code, doc = await fed.client("politie").send(request_from_example("case.referral"))
        assert code == 202
        item = await asyncio.wait_for(first, timeout=20)
        assert item.message_id == doc["message_id"]
        assert item.claims["message_type"] == "case.referral"
        await client.ack(item.message_id)
        await stream.aclose()
    await fed.client("politie").wait_status(doc["message_id"], "accepted")
