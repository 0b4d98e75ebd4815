"""Backpressure: a full outbox refuses sends with ``429`` + ``Retry-After``; publishes in flight
are bounded by the publish window; nothing accepted is lost.

Threat: an adapter (or several) sending faster than the broker confirms grows the outbox — and
the node's memory, one task per pending publish — without bound, until the process dies with
everything it had accepted still to publish. The node answers ``429 outbox-full`` above
``limits.max_outbox_backlog`` unconfirmed publishes and never has more than
``broker.publish_window`` publishes running (docs/decisions/0049-outbox-backlog-answers-429.md).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest

from gateway.core.broker_topology import CONTENT_TYPE
from gateway.core.delivery import OutboundEvent
from gateway.node.problems import ApiError
from gateway.node.runner import Node
from gateway.node.store import SetStatus
from gateway.testing.federation import FederationFiles
from tests.e2e.harness import request_from_example
from tests.node_pair import InProcessNode, open_node
from tests.unit.node.conftest import TOKEN, StartNode

WINDOW = 3
LIMIT = 10


def _body(case: int) -> bytes:
    return json.dumps(
        request_from_example("case.referral", case_ref=f"Veenstad-2026-{case:04d}")
    ).encode()


class BlockingPublisher:
    """Stands in for the broker's publisher: every publish waits for ``gate``; counts how many
    run at once; ``all_done`` is set when ``expected`` publishes have returned."""

    def __init__(self, expected: int) -> None:
        self.gate = asyncio.Event()
        self.window_full = asyncio.Event()
        self.all_done = asyncio.Event()
        self.expected = expected
        self.running = 0
        self.most = 0
        self.published: list[str] = []

    @property
    def connected(self) -> bool:
        return True

    async def publish(
        self,
        routing: str,
        body: bytes,
        *,
        message_id: str,
        expiration: datetime,
        content_type: str = CONTENT_TYPE,
    ) -> None:
        del routing, body, expiration, content_type
        self.running += 1
        self.most = max(self.most, self.running)
        if self.running >= WINDOW:
            self.window_full.set()
        try:
            await self.gate.wait()
        finally:
            self.running -= 1
        self.published.append(message_id)
        if len(self.published) >= self.expected:
            self.all_done.set()


@pytest.fixture
async def pol(tmp_path: Path, federation: FederationFiles) -> AsyncIterator[InProcessNode]:
    node = await open_node(
        federation,
        "politie",
        tmp_path,
        limits__max_outbox_backlog=LIMIT,
        broker__publish_window=WINDOW,
    )
    try:
        yield node
    finally:
        await node.service.stop(grace=0)
        await node.close()


def _publishes(node: InProcessNode) -> list[asyncio.Task[None]]:
    return [t for t in node.service.ctx._tasks if t.get_name().startswith("publish ")]


async def test_publishes_in_flight_stay_within_the_window_and_a_full_outbox_refuses(
    pol: InProcessNode,
) -> None:
    service = pol.service
    fake = BlockingPublisher(expected=LIMIT)
    pol.broker.attach(fake)
    accepted = []
    for i in range(LIMIT):
        message_id, created = await service.outbound.send(
            _body(i), client="test", idempotency_key=f"k{i}"
        )
        assert created
        accepted.append(message_id)
    assert service.outbox.backlog == LIMIT

    # Full: a new message is refused before anything is stored ...
    with pytest.raises(ApiError) as refused:
        await service.outbound.send(_body(LIMIT), client="test", idempotency_key="one-too-many")
    assert (refused.value.status, refused.value.slug) == (429, "outbox-full")
    assert refused.value.retry_after == 1
    assert await pol.store.find_idempotent("test", "one-too-many") is None
    # ... while the repeat of an accepted request answers as before.
    assert await service.outbound.send(_body(0), client="test", idempotency_key="k0") == (
        accepted[0],
        False,
    )

    service.ctx.spawn(service.outbox.run(), "outbox")
    await fake.window_full.wait()
    # The loop started what the window allows and waits for a slot; the rest stays queued.
    assert (fake.running, len(_publishes(pol)), len(service.outbox._ready)) == (
        WINDOW,
        WINDOW,
        LIMIT - WINDOW,
    )

    fake.gate.set()
    await fake.all_done.wait()
    await asyncio.gather(*_publishes(pol))  # their status commits
    assert fake.most == WINDOW
    assert sorted(fake.published) == sorted(accepted), "every accepted message published once"
    assert service.outbox.backlog == 0
    assert (await pol.store.gauges(datetime.now(UTC)))["outbox_pending"] == 0
    for message_id in accepted:
        row = await pol.store.message(message_id)
        assert row is not None
        assert [r.status for r in row.recipients] == ["sent"]

    # Below the limit again: sends are accepted.
    _, created = await service.outbound.send(
        _body(LIMIT), client="test", idempotency_key="one-too-many"
    )
    assert created


async def test_the_backlog_is_recounted_from_the_store(pol: InProcessNode) -> None:
    service = pol.service
    for i in range(3):
        await service.outbound.send(_body(i), client="test")
    # A status moved outside the outbox loop (a receipt before the broker's confirm, the
    # retention job): the in-memory count missed it; the recount at the next scan corrects it.
    [pending, *_] = await pol.store.pending_publishes(10)
    now = datetime.now(UTC)
    receipt = OutboundEvent.RECEIPT_DELIVERED
    await pol.store.commit(SetStatus(pending.message_id, pending.org, receipt, None, now))
    assert service.outbox.backlog == 3
    await service.outbox.count_backlog()
    assert service.outbox.backlog == 2


async def _post(
    http: aiohttp.ClientSession, node: Node, case: int, key: str
) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of a ``POST /v1/messages`` with ``Idempotency-Key: key``."""
    async with http.post(
        f"http://{node.config.api.listen}/v1/messages",
        data=_body(case),
        headers={
            "Authorization": f"Bearer {TOKEN}",
            "Content-Type": "application/json",
            "Idempotency-Key": key,
        },
    ) as response:
        return response.status, dict(response.headers), await response.read()


async def test_the_api_answers_429_with_retry_after_also_after_a_restart(
    start_node: StartNode,
) -> None:
    # No broker: nothing is ever confirmed, so the outbox only fills.
    node = await start_node(limits={"max_outbox_backlog": 2})
    async with aiohttp.ClientSession() as http:
        for i in range(2):
            assert (await _post(http, node, i, f"k{i}"))[0] == 202
        status, headers, body = await _post(http, node, 2, "k2")
        assert (status, headers["Retry-After"]) == (429, "1")
        assert headers["Content-Type"].startswith("application/problem+json")
        problem = json.loads(body)
        assert (problem["type"].rsplit("/", 1)[1], problem["status"]) == ("outbox-full", 429)
        assert "2 publishes wait for the broker (limit 2)" in problem["detail"]
        status, headers, _ = await _post(http, node, 0, "k0")
        assert (status, headers.get("Idempotent-Replayed")) == (202, "true")

        # The count comes from the store at start: a restart does not reopen the door.
        await start_node.stop(node)
        node = await start_node()
        assert (await _post(http, node, 2, "k2"))[0] == 429
