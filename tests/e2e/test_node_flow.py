"""End-to-end through real nodes and the real RabbitMQ: the ops endpoints against a real broker,
and the client SDK's event stream from one node to another. What one node does with a request
(validation, problem+json, idempotency, auditor rights, policy at both ends, receipts, dedupe,
a case from referral to handover) is tested in process: ``tests/unit/node/test_api_*.py``."""

from __future__ import annotations

import asyncio

import pytest

from tests.e2e.harness import Fed, request_from_example

pytestmark = pytest.mark.broker


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
