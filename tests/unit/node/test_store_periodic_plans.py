"""The store's periodic jobs seek what is open or due; they never read the whole history.

Bug: the metrics gauges (every 5 s, and again at every outbox scan), the expiry of unanswered
messages and the retention purge counted and searched ``outbox_recipients``, ``outbox``, ``inbox``
and ``idempotency`` by full table scans, in the writer's transaction: a node's history only grows
(an outbox row stays after its envelope is purged), so on a node a few months old every gauge
refresh held every commit — every ``POST``, every broker ack — behind a scan of all of it. These
tests read SQLite's plan of every statement those jobs run: each reaches its rows through an index
(a partial index holds only the open or due rows). PostgreSQL gets the same indexes
(``gateway.node.pg_store.MIGRATIONS``): checked by name below.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.node.pg_store import MIGRATIONS
from gateway.node.store import SqliteStore
from gateway.node.store.periodic import PERIODIC_INDEXES

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

#: Tables that grow with every message a node sends or receives.
HISTORY = ("outbox", "outbox_recipients", "inbox", "idempotency")


async def _statements(store: SqliteStore, job: Callable[[], Awaitable[object]]) -> list[str]:
    """The SQL statements (values filled in) ``job`` runs on the store's writer connection."""
    seen: list[str] = []
    store._db.set_trace_callback(seen.append)
    try:
        await job()
    finally:
        store._db.set_trace_callback(None)
    return [s for s in seen if s.lstrip().upper().startswith(("SELECT", "UPDATE", "DELETE"))]


def _full_scans(db: sqlite3.Connection, sql: str) -> list[str]:
    """The plan lines of ``sql`` that read a history table row by row: a ``SCAN`` of the table
    itself or of an index that is not partial."""
    partial = {
        name
        for name, text in db.execute("SELECT name, sql FROM sqlite_master WHERE type='index'")
        if text and " WHERE " in text.upper()
    }
    bad = []
    for *_, detail in db.execute("EXPLAIN QUERY PLAN " + sql):
        match = re.match(r"SCAN (\w+)(?: AS \w+)?(?: USING (?:COVERING )?INDEX (\w+))?", detail)
        if match is None:
            continue
        table, index = match.groups()
        aliases = {"o": "outbox", "r": "outbox_recipients", "c": "outbox_recipients"}
        if aliases.get(table, table) in HISTORY and index not in partial:
            bad.append(detail)
    return bad


@pytest.mark.parametrize("job", ["gauges", "expire_outbox", "purge"])
async def test_a_periodic_job_reads_no_history_table_row_by_row(tmp_path: Path, job: str) -> None:
    store = SqliteStore(tmp_path / "node.db")
    try:
        statements = await _statements(store, lambda: getattr(store, job)(NOW))
        assert statements, "the job ran no statement: the trace missed it"
        scans = {sql: _full_scans(store._db, sql) for sql in statements}
        assert {sql: lines for sql, lines in scans.items() if lines} == {}
    finally:
        await store.close()


def test_postgresql_stores_get_the_same_indexes_in_a_migration() -> None:
    names = re.findall(r"CREATE INDEX IF NOT EXISTS (\w+)", PERIODIC_INDEXES)
    assert len(names) >= 5
    ddl = "\n".join(script for _, script in MIGRATIONS)
    for name in names:
        assert f"CREATE INDEX IF NOT EXISTS {name}" in ddl
