"""Receiving through the node's API: the long-poll inbox and the event stream (in process).

At least once, until the adapter acks: items come oldest first, at most ``limit``; an item
handed out before is marked ``redelivered``; a long-poll answers when the first message arrives.

Replaces, e2e on RabbitMQ → here:

- test_node_flow.py::test_server_sent_events_push_the_inbox_to_the_client_sdk
  → test_the_client_sdk_streams_the_inbox_and_acks,
  test_the_event_stream_sends_waiting_messages_then_each_new_one
- test_api_guide.py, the long-poll and stream blocks
  → test_a_long_poll_answers_when_a_message_arrives, test_an_item_holds_the_verified_claims
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Any

import pytest
from aiohttp import ClientResponse

from gateway.node.store import InboxRow
from tests.unit.node._inproc import POL, InProcFederation, request_from_example
from tests.unit.node.conftest import BOTH_STORES
from zvg_client.client import NodeClient

pytestmark = BOTH_STORES  # each test runs on SQLite and on PostgreSQL


async def test_a_long_poll_answers_when_a_message_arrives(inproc: InProcFederation) -> None:
    pol = await inproc.start("politie")
    gem = await inproc.start("gemeente")
    store = gem.node.store
    looked = asyncio.Event()
    read = store.take_inbox

    async def take_inbox(limit: int, after: int = 0, *, for_node: bool = False) -> list[InboxRow]:
        rows = await read(limit, after, for_node=for_node)
        if not rows and not for_node:
            looked.set()  # the poll found nothing and waits
        return rows

    store.take_inbox = take_inbox  # type: ignore[method-assign]  # observe, then call through
    poll = asyncio.ensure_future(gem.inbox(wait=60))
    await looked.wait()
    assert not poll.done()
    message_id = await pol.send(request_from_example("case.referral"))
    assert [i["message_id"] for i in await poll] == [message_id]


async def test_a_poll_without_wait_answers_at_once_with_nothing(
    inproc: InProcFederation,
) -> None:
    gem = await inproc.start("gemeente")
    assert (await gem.call("GET", "/v1/inbox")).json() == {"items": [], "next_cursor": None}
    assert await gem.inbox(wait=0) == []


async def test_an_item_holds_the_verified_claims(inproc: InProcFederation) -> None:
    pol = await inproc.start("politie")
    gem = await inproc.start("gemeente")
    request = request_from_example("case.referral")
    message_id = await pol.send(request)
    (item,) = await gem.inbox(wait=30)
    assert set(item) == {
        "message_id",
        "sender",
        "recipient_roles",
        "received_at",
        "redelivered",
        "claims",
    }
    assert (item["sender"], item["recipient_roles"], item["redelivered"]) == (POL, ["ZVH"], False)
    assert datetime.fromisoformat(item["received_at"]) == inproc.clock()
    claims = item["claims"]
    for name in ("message_type", "purpose", "case_ref", "recipients", "subjects", "body"):
        assert claims[name] == request[name], name
    assert (claims["message_id"], claims["sender"]["org"], claims["sender"]["role"]) == (
        message_id,
        POL,
        "POL",
    )
    # Handing it out is logged once, not once per poll.
    await gem.inbox()
    assert gem.node.audit_names(message_id).count("message.deliver") == 1


async def test_items_come_oldest_first_and_at_most_limit(inproc: InProcFederation) -> None:
    pol = await inproc.start("politie")
    gem = await inproc.start("gemeente")
    sent = []
    for _ in range(3):
        sent.append(await pol.send(request_from_example("case.referral")))
        await inproc.wait_status("politie", sent[-1], "delivered")
    assert [i["message_id"] for i in await gem.inbox(limit=2)] == sent[:2]
    assert [i["message_id"] for i in await gem.inbox(limit=100)] == sent


async def test_an_item_not_acked_is_handed_out_again_marked_redelivered(
    inproc: InProcFederation,
) -> None:
    pol = await inproc.start("politie")
    gem = await inproc.start("gemeente")
    message_id = await pol.send(request_from_example("case.referral"))
    assert [(i["message_id"], i["redelivered"]) for i in await gem.inbox(wait=30)] == [
        (message_id, False)
    ]
    assert [(i["message_id"], i["redelivered"]) for i in await gem.inbox()] == [(message_id, True)]


@pytest.mark.parametrize(
    "query", ["wait=61", "wait=-1", "limit=0", "limit=101", "wait=1.5", "limit=", "wait=²"]
)
async def test_a_wait_or_limit_out_of_range_is_a_400(inproc: InProcFederation, query: str) -> None:
    gem = await inproc.start("gemeente", connect=False)
    answer = await gem.call("GET", f"/v1/inbox?{query}")
    name = query.partition("=")[0]
    assert (
        f"query parameter {name} must be an integer" in answer.problem("invalid-request")["detail"]
    )


async def _next_event(stream: ClientResponse) -> tuple[str, dict[str, Any]]:
    """The next ``message`` event of an event stream: (id, item); keepalives skipped."""
    lines: list[str] = []
    while True:
        line = (await stream.content.readline()).decode().rstrip("\n")
        if line.startswith(":"):  # a keepalive comment
            continue
        if not line and lines:
            break
        if line:
            lines.append(line)
    fields = dict(ln.split(": ", 1) for ln in lines)
    assert fields["event"] == "message", lines
    return fields["id"], json.loads(fields["data"])


async def test_the_event_stream_sends_waiting_messages_then_each_new_one(
    inproc: InProcFederation,
) -> None:
    pol = await inproc.start("politie")
    gem = await inproc.start("gemeente")
    waiting = await pol.send(request_from_example("case.referral"))
    await inproc.wait_status("politie", waiting, "delivered")
    headers = {"Authorization": f"Bearer {gem.token}"}
    async with gem.client.get("/v1/inbox/stream", headers=headers) as stream:
        assert stream.status == 200
        assert stream.headers["Content-Type"] == "text/event-stream"
        assert stream.headers["Cache-Control"] == "no-store"

        event_id, item = await _next_event(stream)
        assert (event_id, item["message_id"]) == (waiting, waiting)
        fresh = await pol.send(request_from_example("case.referral"))
        event_id, item = await _next_event(stream)
        assert (event_id, item["message_id"], item["sender"]) == (fresh, fresh, POL)


async def test_an_actor_on_the_event_stream_is_recorded_once_per_message_shown(
    inproc: InProcFederation,
) -> None:
    pol = await inproc.start("politie")
    gem = await inproc.start("gemeente")
    message_id = await pol.send(request_from_example("case.referral"))
    await inproc.wait_status("politie", message_id, "delivered")
    headers = {"Authorization": f"Bearer {gem.token}", "ZVG-Actor": "emp-4711"}
    async with gem.client.get("/v1/inbox/stream", headers=headers) as stream:
        assert (await _next_event(stream))[0] == message_id
        fresh = await pol.send(request_from_example("case.referral"))
        assert (await _next_event(stream))[0] == fresh
    access = gem.node.audit(operation="access")
    assert [(r["view"]["message_id"], r["personal"]["actor"]["id"]) for r in access] == [
        (message_id, "emp-4711"),
        (fresh, "emp-4711"),
    ]


async def test_the_client_sdk_streams_the_inbox_and_acks(inproc: InProcFederation) -> None:
    pol = await inproc.start("politie")
    gem = await inproc.start("gemeente")
    async with NodeClient(f"http://{gem.client.host}:{gem.client.port}", gem.token) as client:
        stream = client.stream(reconnect=False)
        first = asyncio.ensure_future(stream.__anext__())
        message_id = await pol.send(request_from_example("case.referral"))
        item = await first
        assert (item.message_id, item.claims["message_type"]) == (message_id, "case.referral")
        await client.ack(item.message_id)
        await stream.aclose()
    await inproc.wait_status("politie", message_id, "accepted")
