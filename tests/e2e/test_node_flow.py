"""End-to-end through real nodes and the real RabbitMQ: the client SDK's event stream from one
node to another. What one node does with a request (validation, problem+json, idempotency,
auditor rights, policy at both ends, receipts, dedupe, a case from referral to handover, the ops
endpoints, retention) is tested in process: ``tests/unit/node/test_api_*.py``."""

from __future__ import annotations

import asyncio

import pytest

from tests.e2e.harness import Fed, request_from_example

pytestmark = pytest.mark.broker


async def test_server_sent_events_push_the_inbox_to_the_client_sdk(fed: Fed) -> None:
    from zvg_client.client import NodeClient

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
