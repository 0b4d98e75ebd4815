"""A store outage at the recipient holds the delivery instead of requeueing it (decision 0115).

The broker counts every requeue of a quorum queue's message (RabbitMQ 3.10: also the return
when a channel closes) against the queue's ``x-delivery-limit`` and dead-letters the message
after the tenth. Found by the ten-minute chaos soak: a status update was delivered to processes
whose PostgreSQL store had failed closed; each delivery failed and was requeued, and after ten
it was dead-lettered, lost to the adapter. A failure of the node's own store says nothing about
the message: the inbound pipeline holds such a delivery and tries the store again.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from datetime import timedelta
from typing import Any

import pytest

from gateway.core.decisions import Deliver
from gateway.node.store import StoreFailedClosedError
from tests.node_pair import HANG_S
from tests.unit.node._inproc import InProcFederation, request_from_example


class _FailingReader:
    """The store's read connection, failing the inbox's dedupe read ``failures`` times (its
    database is unreachable, say, while PostgreSQL restarts)."""

    def __init__(self, real: Any, failures: int) -> None:
        self.real = real
        self.left = failures
        self.failed = 0

    def execute(self, sql: str, params: Any = ()) -> Any:
        if self.left and "FROM inbox WHERE sender=? AND message_id=?" in sql:
            self.left -= 1
            self.failed += 1
            raise sqlite3.OperationalError("unable to open database file")
        return self.real.execute(sql, params)

    def close(self) -> None:
        self.real.close()


async def test_a_store_outage_at_the_recipient_does_not_burn_the_delivery_limit(
    inproc: InProcFederation, caplog: pytest.LogCaptureFixture
) -> None:
    await inproc.start("gemeente")
    pol = await inproc.start("politie")
    gem = inproc.nodes["gemeente"].node
    reader = _FailingReader(gem.store._reader, failures=3)
    gem.store._reader = reader  # type: ignore[assignment]  # duck-typed: execute, close
    with caplog.at_level(logging.WARNING, logger="gateway.node"):
        message_id = await pol.send(request_from_example("case.referral"))
        await inproc.wait_status("politie", message_id, "delivered")
    assert reader.failed == 3  # the outage happened, and the delivery outlived it
    # Handled once, held while the store could not be read: never given back to the queue.
    assert inproc.broker.settled_at(gem.org) == [Deliver()]
    assert not inproc.broker.held[gem.org]
    assert [s.delivery.delivery_count for s in inproc.broker.settled] == [0] * len(
        inproc.broker.settled
    )
    assert gem.service.ctx.counters.get("held_for_store") == 3
    assert any("holding" in r.getMessage() for r in caplog.records)


async def test_a_store_that_failed_closed_holds_the_delivery_until_the_node_stops(
    inproc: InProcFederation, caplog: pytest.LogCaptureFixture
) -> None:
    gem_api = await inproc.start("gemeente")
    pol = await inproc.start("politie")
    gem = gem_api.node

    def broken(_db: sqlite3.Connection) -> None:  # e.g. the database connection was lost
        raise RuntimeError("a commit hook failed")

    gem.store.on_commit(broken)
    with caplog.at_level(logging.CRITICAL, logger="gateway.node"):
        assert (await gem_api.call("GET", "/readyz", token=None)).status == 503
    assert gem.store.failed_closed
    inbound = gem.service.inbound
    held = inbound.holding_changed.ticket()
    await pol.send(request_from_example("case.referral"))
    async with asyncio.timeout(HANG_S):
        await held.wait()
    # Held: neither settled (a requeue would count against the delivery limit) nor failed.
    assert inbound.holding == 1
    assert inproc.broker.errors == []
    assert inproc.broker.settled_at(gem.org) == []
    assert not inproc.broker.held[gem.org]


async def test_a_loop_that_stops_with_the_store_is_logged_once_not_as_an_unretrieved_exception(
    inproc: InProcFederation, caplog: pytest.LogCaptureFixture
) -> None:
    """Found in the chaos soak's logs: a node loop that ended because its store failed closed
    left its exception in the task, and asyncio logged "Task exception was never retrieved" with
    a traceback when the task was collected. The node now takes the exception when the task
    ends: one warning naming the loop (a store failure) and nothing left for asyncio."""
    pol = await inproc.start("politie", connect=False)
    ctx = pol.node.service.ctx
    ended = asyncio.Event()

    async def loop() -> None:
        try:
            raise StoreFailedClosedError("the store failed closed")
        finally:
            ended.set()

    with caplog.at_level(logging.INFO, logger="gateway.node"):
        ctx.spawn(loop(), "outbox")
        await ended.wait()
        await asyncio.sleep(0)  # the task's done callbacks run on the next turn
    lines = [r for r in caplog.records if "outbox" in r.getMessage()]
    assert [(r.levelno, r.exc_info) for r in lines] == [(logging.WARNING, None)], lines
    assert "store" in lines[0].getMessage()


async def test_an_expired_directory_at_the_recipient_does_not_burn_the_delivery_limit(
    inproc: InProcFederation,
) -> None:
    """The bug: while the recipient's trusted directory had expired (its administrators late in
    signing the next version), every delivery was given back to the queue after 30 s; each
    return counted against the queue's delivery limit (10), so after about five minutes the
    broker dead-lettered the organisation's messages: lost to its adapter. The delivery is now
    held, unacked, until the directory is valid again (or the node stops)."""
    now = [inproc.clock()]
    gem_api = await inproc.start("gemeente", clock=lambda: now[0])
    pol = await inproc.start("politie")
    gem = gem_api.node
    expires = gem.service.ctx.directory.payload.expires
    inbound = gem.service.inbound
    held = inbound.holding_changed.ticket()
    now[0] = expires + timedelta(minutes=1)  # the gemeente's directory has just expired
    message_id = await pol.send(request_from_example("case.referral"))
    async with asyncio.timeout(HANG_S):
        await held.wait()
    assert inbound.holding == 1
    assert inproc.broker.settled_at(gem.org) == []  # not given back
    assert await gem_api.inbox() == []  # not taken either: nothing stored, nothing recorded
    assert gem.audit() == []
    await inproc.wait_status("politie", message_id, "sent")  # no receipt meanwhile
    now[0] = inproc.clock()  # a valid directory again (the next version, say)
    await inproc.wait_status("politie", message_id, "delivered")
    assert inproc.broker.settled_at(gem.org) == [Deliver()]
    assert [s.delivery.delivery_count for s in inproc.broker.settled] == [0] * len(
        inproc.broker.settled
    )
