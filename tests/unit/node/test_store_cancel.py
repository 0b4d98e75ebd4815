"""Threat: a caller that gives up on a store call stops the node's store for good.

``SqliteStore.run`` (``PostgresStore.run`` too: each test runs on both) hands a job to the one
writer thread and awaits its future. When the awaiting task is cancelled (a drain cancels in-flight
deliveries after its grace, a client task is cancelled), the future is cancelled too; the writer
then commits the job and sets the result of a cancelled future, which raises ``InvalidStateError``
and ends the writer thread. Every later write of the node waits for ever. Found by the in-process
API tests (test_api_*.py).

And the wider threat: anything unexpected in the writer thread (not in a job) ends it silently.
The store must fail closed and loudly instead (gateway/node/store/engine.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
from collections.abc import Callable

import pytest

from gateway.errors import LocalError
from gateway.node.store import SqliteStore
from tests.node_pair import HANG_S
from tests.pg import store

__all__ = ["store"]  # fixtures: each test runs on both stores


async def _cancel_a_queued_call(store: SqliteStore, job: Callable[[object], object]) -> None:
    """Hold the writer in a job, queue ``job``, cancel its caller, then let the writer go."""
    inside, gate = threading.Event(), threading.Event()

    def hold(_db: object) -> bool:
        inside.set()
        return gate.wait(HANG_S)

    try:
        blocker = asyncio.ensure_future(store.run(hold))
        await asyncio.to_thread(inside.wait, HANG_S)
        victim = asyncio.ensure_future(store.run(job))
        await asyncio.sleep(0)  # one turn: the victim's job is queued
        victim.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await victim
        await asyncio.sleep(0)  # one turn: the cancellation reaches the job's future
    finally:
        gate.set()
    assert await blocker


async def test_a_cancelled_store_call_leaves_the_writer_running(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    died = threading.Event()
    monkeypatch.setattr(threading, "excepthook", lambda _args: died.set())
    try:
        await _cancel_a_queued_call(store, lambda _db: None)
        follower = asyncio.ensure_future(store.run(lambda _db: 3))
        dead = asyncio.ensure_future(asyncio.to_thread(died.wait, HANG_S))
        await asyncio.wait({follower, dead}, return_when=asyncio.FIRST_COMPLETED)
        assert not died.is_set(), "the store's writer thread died"
        assert await follower == 3
    finally:
        died.set()


async def test_a_job_cancelled_before_the_writer_takes_it_is_not_run(store: SqliteStore) -> None:
    ran: list[str] = []
    await _cancel_a_queued_call(store, lambda _db: ran.append("victim"))
    await store.run(lambda _db: ran.append("follower"))
    assert ran == ["follower"]


async def test_an_unexpected_writer_error_fails_the_store_closed_and_loudly(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    died = threading.Event()
    monkeypatch.setattr(threading, "excepthook", lambda _args: died.set())
    broken = True

    def hook(_db: sqlite3.Connection) -> None:  # e.g. the audit tree's catch-up finds a gap
        if broken:
            raise RuntimeError("a commit hook failed")

    store.on_commit(hook)
    with caplog.at_level(logging.CRITICAL, logger="gateway.node"), pytest.raises(LocalError):
        await asyncio.wait_for(store.run(lambda _db: 1), HANG_S)
    assert any(
        r.levelno == logging.CRITICAL and "RuntimeError" in r.getMessage() for r in caplog.records
    )
    broken = False
    # Failed closed: later calls fail at once (they do not hang), until a restart.
    with pytest.raises(LocalError, match="restart the node"):
        await asyncio.wait_for(store.run(lambda _db: 2), HANG_S)
    with pytest.raises(LocalError, match="restart the node"):
        store.run_sync(lambda _db: 3)
    assert not died.is_set(), "the writer thread ended with an unhandled exception"
