"""Threat: a long-poll that misses the arrival it waits for.

``Inbox.waiting`` reads the inbox, finds it empty and then waits to be woken by the delivery
path. A message stored and announced between that read and the wait must still wake it, or the
adapter gets its message up to ``wait`` seconds late (60 s by default), and an event stream up to
its keep-alive interval late. No timing here: the store's read itself delivers the message before
it returns its (empty) answer, so the announcement always falls into that gap; the wait is so
long that only the hang guard could end it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.core.decisions import Deliver
from gateway.node import api
from gateway.node.store import InboxRow
from gateway.testing.federation import FederationFiles
from tests.node_pair import HANG_S, InProcessNode, open_node
from tests.unit.node._inproc import InProcFederation, request_from_example

#: Longer than the hang guard: a poll that has to sit out its wait fails the test.
FOREVER_S = 10 * HANG_S


async def _arrival_in_the_gap(
    pol: InProcessNode, gem: InProcessNode, monkeypatch: pytest.MonkeyPatch
) -> list[str]:
    """Make gem's next inbox read deliver politie's referral after reading, before answering;
    returns (after that read) the id of the delivered message."""
    take_inbox = gem.store.take_inbox
    arrived: list[str] = []

    async def read_then_deliver(limit: int, after: int = 0) -> list[InboxRow]:
        rows = await take_inbox(limit, after)
        if not rows and not arrived:
            arrived.append(await pol.send_example("case.referral"))
            assert await pol.carry_to(gem) == [Deliver()]
        return rows

    monkeypatch.setattr(gem.store, "take_inbox", read_then_deliver)
    return arrived


async def test_a_message_arriving_between_the_empty_read_and_the_wait_wakes_the_long_poll(
    tmp_path: Path, federation: FederationFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    pol = await open_node(federation, "politie", tmp_path / "pol")
    gem = await open_node(federation, "gemeente", tmp_path / "gem")
    try:
        arrived = await _arrival_in_the_gap(pol, gem, monkeypatch)
        items = await asyncio.wait_for(gem.service.inbox.waiting(limit=10, wait=FOREVER_S), HANG_S)
        assert [i.message_id for i in items] == arrived
    finally:
        await pol.close()
        await gem.close()


async def test_a_message_arriving_between_the_read_and_the_wait_wakes_the_event_stream(
    inproc: InProcFederation, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api, "SSE_KEEPALIVE_S", FOREVER_S)  # only a wakeup re-reads the inbox
    pol = await inproc.start("politie")
    gem = await inproc.start("gemeente")
    take_inbox = gem.node.store.take_inbox
    arrived: list[str] = []

    async def read_then_deliver(limit: int, after: int = 0) -> list[InboxRow]:
        rows = await take_inbox(limit, after)
        if not rows and not arrived:
            arrived.append(await pol.send(request_from_example("case.referral")))
            await inproc.wait_status("politie", arrived[0], "delivered")  # stored at gem
        return rows

    monkeypatch.setattr(gem.node.store, "take_inbox", read_then_deliver)
    headers = {"Authorization": f"Bearer {gem.token}"}
    async with gem.client.get("/v1/inbox/stream", headers=headers) as stream:
        assert stream.status == 200
        while True:
            line = await asyncio.wait_for(stream.content.readline(), HANG_S)
            if line.startswith(b"id: "):
                break
    assert line.decode().strip() == f"id: {arrived[0]}"
