"""A checkpoint asked for after a record is committed covers that record.

The bug (seen once in a full run: the console's evidence export answered 409 "not covered by a
checkpoint yet" right after the test had seen the record and asked for a checkpoint): the log's
in-memory tree takes a commit's leaves in a hook on the store's writer thread, after the
``COMMIT``; a reader sees the record from the ``COMMIT`` on, and ``checkpoint()`` signed the tree
as it was, without the record the caller had just seen.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit.log import AUDIT_SCHEMA
from gateway.core.audit import new_record
from gateway.node.store import SqliteStore
from tests.audit_logs import open_log

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(tmp_path / "n.db", schemas=(AUDIT_SCHEMA,))
    yield s
    await s.close()


async def test_a_checkpoint_covers_a_record_a_reader_already_sees(store: SqliteStore) -> None:
    armed, in_hook, release = threading.Event(), threading.Event(), threading.Event()

    def slow_hook(_db: sqlite3.Connection) -> None:  # runs before the log's own hook
        if armed.is_set() and not release.is_set():
            in_hook.set()
            release.wait()

    store.on_commit(slow_hook)
    log = await open_log(store, key=Ed25519PrivateKey.generate())
    record = new_record(name="message.send", status="ok", start_time=NOW, end_time=NOW)
    armed.set()
    appending = asyncio.create_task(store.commit(log.append([record], NOW)))
    await asyncio.to_thread(in_hook.wait)  # committed; the log's hook has not run yet
    assert store.read("SELECT count(*) FROM audit_records") == [(1,)]
    checkpointing = asyncio.create_task(log.checkpoint())
    await asyncio.sleep(0)  # the checkpoint task runs up to its first wait
    release.set()
    await appending
    checkpoint = await checkpointing
    assert checkpoint is not None
    assert checkpoint.size == 1
