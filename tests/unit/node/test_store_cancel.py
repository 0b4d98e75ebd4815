"""Threat: a caller that gives up on a store call stops the node's store for good.

``SqliteStore.run`` hands a job to the one writer thread and awaits its future. When the
awaiting task is cancelled (a drain cancels in-flight deliveries after its grace, a client task
is cancelled), the future is cancelled too; the writer still commits the job. It used to set the
result of the cancelled future, which raised ``InvalidStateError`` and ended the writer thread,
so every later write of the node waited for ever (found by the in-process API tests). Now the
writer settles the futures on their event loop and leaves a cancelled one cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from pathlib import Path

import pytest

from gateway.node.store import SqliteStore
from tests.node_pair import HANG_S


async def test_a_cancelled_store_call_leaves_the_writer_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    died = threading.Event()
    monkeypatch.setattr(threading, "excepthook", lambda _args: died.set())
    store = SqliteStore(tmp_path / "node.db")
    inside, gate = threading.Event(), threading.Event()
    try:
        # Hold the writer in a job, queue a second job, cancel its caller, let the writer go.

        def hold(_db: object) -> bool:
            inside.set()
            return gate.wait(HANG_S)

        blocker = asyncio.ensure_future(store.run(hold))
        await asyncio.to_thread(inside.wait, HANG_S)
        victim = asyncio.ensure_future(store.run(lambda _db: None))
        await asyncio.sleep(0)  # one turn: the victim's job is queued
        victim.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await victim
        await asyncio.sleep(0)  # one turn: the cancellation reaches the job's future
        gate.set()
        assert await blocker
        follower = asyncio.ensure_future(store.run(lambda _db: 3))
        dead = asyncio.ensure_future(asyncio.to_thread(died.wait, HANG_S))
        await asyncio.wait({follower, dead}, return_when=asyncio.FIRST_COMPLETED)
        assert not died.is_set(), "the store's writer thread died"
        assert await follower == 3
    finally:
        gate.set()
        died.set()
        await store.close()
