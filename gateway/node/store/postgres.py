"""The node's store on PostgreSQL: :class:`PostgresStore`, chosen by ``store.url`` (decision 0094).

It implements :class:`gateway.node.store.Store` with the **same code** as the SQLite store: the
same commands and their handlers (:mod:`.writes`, the audit log's), the same queries
(:mod:`.sqlite`), the same group commit (:class:`~.engine.GroupCommit`: one writer thread, one
transaction per group, a savepoint per job, fail closed). What differs is the connection under
them: :class:`PgConnection` gives the writer (and the audit log's jobs) the small part of the
``sqlite3.Connection`` interface they use, on a psycopg 3 connection, and rewrites each statement
from SQLite's dialect once (:func:`translate`, cached). Reads that need no transaction run on a
``psycopg_pool`` connection pool, committed data only, like SQLite's read connection.

An error of the database itself (the connection lost, the server restarted) while the writer
begins or commits a group is not a job's error: the store **fails closed** (every waiting and
later call raises :class:`LocalError`, ``/readyz`` says not ready) until the node restarts. No
caller was told its write is durable, so nothing that was acknowledged is lost.

The schema is versioned and migrated by ``zvg node migrate`` (:mod:`gateway.node.pg_store`); a
store whose schema is not the version this code needs refuses to open.
"""

from __future__ import annotations

import functools
import re
import secrets
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from psycopg import pq
from psycopg.errors import DeadlockDetected, SerializationFailure
from psycopg_pool import ConnectionPool

from gateway.errors import LocalError
from gateway.node.store import pg_shared, rights, writes
from gateway.node.store.commands import (
    AppendAudit,
    AppendEvidence,
    InsertInbox,
    InsertOutbox,
    QueueReceipt,
    ReceiptSealed,
)
from gateway.node.store.engine import Handler, StoreUnavailableError
from gateway.node.store.rows import PendingPublish
from gateway.node.store.sqlite import SqliteStore
from gateway.node.store.writes import dt

C = TypeVar("C")

__all__ = [
    "PgConnection",
    "PostgresStore",
    "connect",
    "redact",
    "schema_version",
    "translate",
]

#: ``INSERT OR REPLACE`` of SQLite, per table: the conflict target and what to overwrite.
_UPSERT = {
    "meta": "(key) DO UPDATE SET value = EXCLUDED.value",
    "receipts_out": "(sender, message_id, status) DO UPDATE SET receipt_id = EXCLUDED.receipt_id",
    "peer_cosigned": "(peer) DO UPDATE SET size = EXCLUDED.size, updated_at = EXCLUDED.updated_at",
    "peer_heads": "(peer, nonce) DO UPDATE SET size = EXCLUDED.size,"
    " checkpoint = EXCLUDED.checkpoint, received_at = EXCLUDED.received_at",
    "witness_heads": "(origin) DO UPDATE SET size = EXCLUDED.size, root = EXCLUDED.root,"
    " checkpoint = EXCLUDED.checkpoint, cosigned_at = EXCLUDED.cosigned_at",
}

_INSERT_OR = re.compile(r"^\s*INSERT OR (IGNORE|REPLACE) INTO (\w+)", re.IGNORECASE)
_JSON_MAX = re.compile(r"max\(json_extract\((\w+), '\$\.([\w.]+)'\)\)")
_JSON = re.compile(r"json_extract\((\w+), '\$\.([\w.]+)'\)")
_MIN2 = re.compile(r"\bmin\(([\w.]+), \?\)")
_JSON_EACH = re.compile(r"json_each\((\w+), '\$\.([\w.]+)'\)")
_SQLITE_TABLE = re.compile(r"FROM sqlite_master WHERE type='table' AND name=")


def _path(dotted: str) -> str:
    return "{" + dotted.replace(".", ",") + "}"


@functools.lru_cache(maxsize=512)
def translate(sql: str) -> str:
    """One statement of the store's SQL (SQLite's dialect) in PostgreSQL's.

    The store's SQL uses a small, fixed part of SQLite: ``?`` placeholders, ``INSERT OR
    IGNORE``/``OR REPLACE``, ``json_extract`` and ``json_each`` on a record's leaf view, the
    two-argument ``min``, ``rowid``, ``WHERE 1`` and a table's presence in ``sqlite_master``.
    Anything else is written so that both engines read it the same (the store's tests run on
    both: ``tests/pg.py``)."""
    suffix = ""
    match = _INSERT_OR.match(sql)
    if match is not None:
        kind, table = match.group(1).upper(), match.group(2)
        if kind == "IGNORE":
            suffix = " ON CONFLICT DO NOTHING"
        elif table in _UPSERT:
            suffix = " ON CONFLICT " + _UPSERT[table]
        else:
            raise LocalError(f"no PostgreSQL upsert for table {table}")
        sql = f"INSERT INTO {table}" + sql[match.end() :]
    sql = sql.replace("%", "%%")
    sql = _JSON_MAX.sub(lambda m: f"max(({m[1]}::jsonb #>> '{_path(m[2])}')::numeric)", sql)
    sql = _JSON_EACH.sub(
        lambda m: f"jsonb_array_elements_text({m[1]}::jsonb #> '{_path(m[2])}') AS e(value)", sql
    )
    sql = _SQLITE_TABLE.sub(
        "FROM pg_tables WHERE schemaname = current_schema() AND tablename=", sql
    )
    sql = _JSON.sub(lambda m: f"({m[1]}::jsonb #>> '{_path(m[2])}')", sql)
    sql = _MIN2.sub(r"LEAST(\1, ?)", sql)
    sql = re.sub(r"\bORDER BY rowid\b", "ORDER BY seq", sql)
    sql = re.sub(r"\bWHERE 1 ", "WHERE TRUE ", sql)
    if sql.strip().upper() == "BEGIN IMMEDIATE":
        sql = "BEGIN"
    return sql.replace("?", "%s") + suffix


def redact(url: str) -> str:
    """``url`` without its password (for messages and logs)."""
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


class _Cursor:
    """The part of ``sqlite3.Cursor`` the store's code uses."""

    def __init__(self, cur: psycopg.Cursor[Any]) -> None:
        self._cur = cur

    @property
    def rowcount(self) -> int:
        return self._cur.rowcount

    def fetchone(self) -> Any:
        return self._cur.fetchone()

    def fetchall(self) -> list[Any]:
        return self._cur.fetchall()

    def __iter__(self) -> Iterator[Any]:
        return iter(self._cur.fetchall() if self._cur.description is not None else [])


class PgConnection:
    """The part of ``sqlite3.Connection`` the store's jobs use, on a psycopg connection in
    autocommit mode (the group commit writes ``BEGIN``/``SAVEPOINT``/``COMMIT`` itself)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    @property
    def in_transaction(self) -> bool:
        return self._conn.info.transaction_status != pq.TransactionStatus.IDLE

    def execute(self, sql: str, params: Sequence[Any] = ()) -> _Cursor:
        return _Cursor(self._conn.execute(translate(sql), tuple(params)))

    def executemany(self, sql: str, seq: Iterable[Sequence[Any]]) -> _Cursor:
        cur = self._conn.cursor()
        rows = [tuple(p) for p in seq]
        if rows:
            cur.executemany(translate(sql), rows)
        return _Cursor(cur)

    def close(self) -> None:
        self._conn.close()


class _Pool:
    """The read side: committed data through a connection pool (``SqliteStore.read``)."""

    def __init__(self, url: str, size: int) -> None:
        self._pool = ConnectionPool(
            url, min_size=1, max_size=size, kwargs={"autocommit": True}, open=True
        )

    def execute(self, sql: str, params: Sequence[Any] = ()) -> _Cursor:
        with self._pool.connection() as conn:
            rows = conn.execute(translate(sql), tuple(params)).fetchall()
        return _Rows(rows)  # type: ignore[return-value]  # duck-typed: fetchall only

    def close(self) -> None:
        self._pool.close()


class _Rows:
    def __init__(self, rows: list[Any]) -> None:
        self._rows = rows

    def fetchall(self) -> list[Any]:
        return self._rows


def connect(url: str) -> psycopg.Connection[Any]:
    """A connection in autocommit mode; :class:`LocalError` in one line (``store.url`` named,
    no password) when the server does not take it."""
    try:
        return psycopg.connect(url, autocommit=True)
    except psycopg.Error as exc:
        raise LocalError(
            f"store.url: cannot connect to {redact(url)} ({type(exc).__name__})"
        ) from None


class PostgresStore(SqliteStore):
    """The node's durable state in a PostgreSQL database (module docstring).

    ``version`` is the schema version this code needs (:mod:`gateway.node.pg_store`); the
    store refuses to open a database at another one. Several processes may share the database
    (:mod:`.pg_shared`; the lead and the wake-ups: :mod:`.pg_lead`)."""

    #: Other processes may write the same database (gateway.audit.log catches up before signing).
    shared = True
    #: An audit append: its group takes the sequencer first (:mod:`.pg_shared`).
    LOCKS_FIRST = (AppendAudit, AppendEvidence)
    #: PostgreSQL aborted the job to break a deadlock, or as a serialization failure.
    CONFLICTS = (DeadlockDetected, SerializationFailure)

    def __init__(
        self,
        url: str,
        *,
        version: int,
        pool_size: int = 4,
        claim_s: float = pg_shared.CLAIM_S,
    ) -> None:
        # GroupCommit.__init__ opens an SQLite file: this sets up the same writer state on a
        # PostgreSQL connection (tests/unit/node/test_pg_store.py checks no attribute is missed).
        self.path = Path(redact(url))
        self.url = url
        self._queue = []
        self._cond = threading.Condition()
        self._idle = False
        self._closing = False
        self._failed = False
        self._hooks = []
        self._handlers = {}
        #: Who claims outbox entries in this process (pg_shared.claiming): random per process.
        self.holder = secrets.token_hex(8)
        #: How long its claims last (``store.claim_seconds``).
        self.claim_s = claim_s
        conn = connect(url)
        found = schema_version(conn)
        if found != version:
            conn.close()
            raise LocalError(
                f"{redact(url)}: the store's schema is at version {found}, this node needs"
                f" {version}; run: zvg node migrate"
            )
        try:
            self._reader = _Pool(url, pool_size)  # type: ignore[assignment]  # read(): execute
        except BaseException:
            conn.close()
            raise
        self._db = PgConnection(conn)  # type: ignore[assignment]  # the sqlite3 subset used
        self._thread = threading.Thread(target=self._loop, name="zvg-store", daemon=True)
        self._thread.start()
        writes.register(self)
        rights.register(self)
        self.rights = rights.RightsRows(self.read)

    def _begin(self, db: sqlite3.Connection, locks_first: bool) -> None:
        super()._begin(db, locks_first)
        if locks_first:
            pg_shared.lock_sequencer(db)

    def read(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            return super().read(sql, params)
        except psycopg.Error as exc:
            raise StoreUnavailableError(f"store read failed ({exc.__class__.__name__})") from None

    def on_command(self, kind: type[C], handler: Handler[C]) -> None:
        """The handler of ``kind``, with what several processes on one database need around
        it (:mod:`.pg_shared`): the audit sequencer, outbox claims, change notifications."""
        if kind in (AppendAudit, AppendEvidence):
            handler = pg_shared.sequenced(handler)
        elif kind in (InsertOutbox, ReceiptSealed):
            handler = pg_shared.claiming(handler, self.holder, self.claim_s)
        elif kind is InsertInbox:
            handler = pg_shared.notifying(handler, "inbox")
        elif kind is QueueReceipt:
            handler = pg_shared.notifying(handler, "receipt")
        super().on_command(kind, handler)

    async def pending_publishes(
        self, limit: int, older_than: datetime | None = None
    ) -> list[PendingPublish]:
        """Claim unconfirmed envelopes nobody else holds (``FOR UPDATE SKIP LOCKED``), oldest
        first: the scan of :class:`SqliteStore`, for several processes (:mod:`.pg_shared`)."""
        cutoff = older_than.timestamp() if older_than is not None else float("inf")
        params = (self.holder, self.claim_s, cutoff, self.holder, limit)

        def job(db: sqlite3.Connection) -> list[tuple[Any, ...]]:
            return db.execute(pg_shared.CLAIM_SQL, params).fetchall()

        rows = sorted(await self.run(job), key=lambda r: (r[7], r[0], r[1]))
        return [
            PendingPublish(m, org, bytes(env), dt(exp), t, p, c)
            for m, org, env, exp, t, p, c, _created in rows
        ]


def schema_version(conn: psycopg.Connection[Any]) -> int:
    """The highest migration applied to the database (0: none)."""
    row = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    if row is None or not row[0]:
        return 0
    got = conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()
    return int(got[0]) if got is not None else 0
