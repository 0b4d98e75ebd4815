"""The node's durable state: outbox, inbox, seen message ids, per-recipient delivery status.

:class:`SqliteStore` keeps everything in one SQLite file in WAL mode with ``synchronous=FULL``:
a transaction that returned has reached the disk, so the crash-safe orders of
docs/architecture.md §9 hold — a message is in the outbox before the API answers 202, an inbound
message is in the inbox before the broker ack.

All database work runs on one writer thread. Calls made at the same time are **group-committed**:
the thread runs every waiting job in one transaction (each job inside its own savepoint, so one
failing job does not undo the others) and commits once, so a burst of deliveries costs one fsync,
not one per message. Async callers await :meth:`SqliteStore.run`; jobs are plain functions of a
``sqlite3.Connection`` (``gateway.node.store`` holds them), which keeps the interface small
enough that a PostgreSQL store can implement the same :class:`Store` protocol.

Nothing here decides anything: the service (``gateway.node.service``) calls the core for every
decision and uses the store to remember the result.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

from gateway.errors import LocalError, TransientError
from gateway.node.datadir import private_dir, private_file

__all__ = [
    "FINAL_STATUSES",
    "RECEIPT_STATUSES",
    "STATUS_RANK",
    "FinalReceipt",
    "InboxRow",
    "OutboxEntry",
    "PendingPublish",
    "PendingReceipt",
    "RecipientRow",
    "SeenRow",
    "SqliteStore",
    "Store",
    "contradicts",
    "idempotency_job",
    "pending_receipt_job",
    "receipt_in_job",
    "store_directory_job",
    "stored_directory",
]

T = TypeVar("T")

#: Delivery statuses per recipient, in the only order they may move (receipts can arrive out of
#: order; a lower rank never overwrites a higher one). One exception: ``expired`` is what the
#: sender assumes when no answer came in time, and a recipient's signed receipt that arrives
#: later replaces it.
STATUS_RANK = {"queued": 0, "sent": 1, "delivered": 2, "accepted": 3, "rejected": 3, "expired": 3}
FINAL_STATUSES = frozenset(s for s, r in STATUS_RANK.items() if r == 3)
RECEIPT_STATUSES = frozenset({"delivered", "accepted", "rejected"})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    message_id    TEXT PRIMARY KEY,
    message_type  TEXT NOT NULL,
    purpose       TEXT NOT NULL,
    case_ref      TEXT NOT NULL,
    in_reply_to   TEXT,
    created_at    REAL NOT NULL,
    expires_at    REAL NOT NULL,
    digest        BLOB NOT NULL,
    envelope      BLOB,             -- the sealed JWE (ciphertext); purged after retention
    final_at      REAL,             -- when every recipient reached a final status
    purge_after   REAL
);
CREATE TABLE IF NOT EXISTS outbox_recipients (
    message_id  TEXT NOT NULL REFERENCES outbox(message_id),
    org         TEXT NOT NULL,
    roles       TEXT NOT NULL,      -- JSON list of the roles addressed at this org
    status      TEXT NOT NULL,
    reason      TEXT,
    updated_at  REAL NOT NULL,
    published   INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (message_id, org)
);
CREATE INDEX IF NOT EXISTS outbox_unpublished ON outbox_recipients (published, message_id)
    WHERE published = 0;
CREATE TABLE IF NOT EXISTS idempotency (
    client      TEXT NOT NULL,
    key         TEXT NOT NULL,
    request     BLOB NOT NULL,      -- SHA-256 of the request body
    message_id  TEXT NOT NULL,
    created_at  REAL NOT NULL,
    PRIMARY KEY (client, key)
);
CREATE TABLE IF NOT EXISTS inbox (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    sender        TEXT NOT NULL,
    message_id    TEXT NOT NULL,
    digest        BLOB NOT NULL,
    message_type  TEXT NOT NULL,
    roles         TEXT NOT NULL,    -- JSON list of our roles the message is addressed to
    received_at   REAL NOT NULL,
    expires_at    REAL NOT NULL,
    status        TEXT NOT NULL,    -- delivered | accepted | rejected | refused
    reason        TEXT,
    claims        BLOB,             -- verified claims JSON (with body); purged after retention
    inner_jws     BLOB,             -- the sender's signed bytes (non-repudiation); purged too
    handed_out    INTEGER NOT NULL DEFAULT 0,
    settled_at    REAL,
    purge_after   REAL,
    forget_after  REAL NOT NULL,    -- after this the (sender, message_id) row may go entirely
    UNIQUE (sender, message_id)
);
CREATE INDEX IF NOT EXISTS inbox_waiting ON inbox (status, seq) WHERE status = 'delivered';
CREATE TABLE IF NOT EXISTS receipts_in (
    message_id  TEXT NOT NULL,
    org         TEXT NOT NULL,
    status      TEXT NOT NULL,
    received_at REAL NOT NULL,
    inner_jws   BLOB NOT NULL,      -- the recipient's signed receipt (evidence)
    PRIMARY KEY (message_id, org, status)
);
CREATE TABLE IF NOT EXISTS receipts_pending (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    sender      TEXT NOT NULL,      -- who sent the message the receipt answers
    message_id  TEXT NOT NULL,
    status      TEXT NOT NULL,      -- delivered | accepted | rejected
    reason      TEXT,
    record_idx  INTEGER NOT NULL,   -- our audit record of the receipt (proved in the receipt)
    info        TEXT NOT NULL,      -- JSON: what the receipt repeats of the original's claims
    created_at  REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS receipts_out (
    sender      TEXT NOT NULL,      -- who sent the message the receipt answers
    message_id  TEXT NOT NULL,
    status      TEXT NOT NULL,
    receipt_id  TEXT NOT NULL,      -- the receipt's own message id (an outbox entry)
    PRIMARY KEY (sender, message_id, status)
);
"""


def _ts(value: datetime) -> float:
    return value.timestamp()


def _dt(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


@dataclass(frozen=True)
class OutboxEntry:
    """A sealed outbound message (an application message or a receipt)."""

    message_id: str
    message_type: str
    purpose: str
    case_ref: str
    in_reply_to: str | None
    created_at: datetime
    expires_at: datetime
    digest: bytes
    envelope: bytes
    recipients: tuple[tuple[str, tuple[str, ...]], ...]  # (org, roles addressed there)


@dataclass(frozen=True)
class PendingPublish:
    message_id: str
    org: str
    envelope: bytes
    expires_at: datetime
    message_type: str = ""
    purpose: str = ""
    case_ref: str = ""


@dataclass(frozen=True)
class RecipientRow:
    org: str
    roles: tuple[str, ...]
    status: str
    reason: str | None
    updated_at: datetime


@dataclass(frozen=True)
class MessageRow:
    message_id: str
    message_type: str
    purpose: str
    case_ref: str
    created_at: datetime
    expires_at: datetime
    digest: bytes
    recipients: tuple[RecipientRow, ...]


@dataclass(frozen=True)
class SeenRow:
    """What the inbox remembers of a ``(sender, message_id)``, for dedupe and replay checks."""

    digest: bytes
    status: str
    message_type: str


@dataclass(frozen=True)
class InboxRow:
    seq: int
    sender: str
    message_id: str
    roles: tuple[str, ...]
    received_at: datetime
    handed_out: int
    claims: bytes


@dataclass(frozen=True)
class PendingReceipt:
    """A receipt to seal: which message it answers, its status, and our audit record to prove."""

    id: int
    sender: str
    message_id: str
    status: str
    reason: str | None
    record_idx: int
    info: dict[str, Any]


@dataclass(frozen=True)
class InboxEntry:
    """A verified inbound message to store (or, with ``claims=None``, one refused by policy)."""

    sender: str
    message_id: str
    digest: bytes
    message_type: str
    roles: tuple[str, ...]
    received_at: datetime
    expires_at: datetime
    forget_after: datetime
    status: str  # delivered | refused
    reason: str | None
    claims: bytes | None
    inner_jws: bytes | None


@dataclass(frozen=True)
class FinalReceipt:
    """A recipient's final status for a message, from its signed receipt, and that receipt."""

    status: str  # accepted | rejected
    reason: str | None
    inner_jws: bytes | None  # the signed receipt kept in receipts_in (None if not kept)


Job = Callable[[sqlite3.Connection], T]
CommitHook = Callable[[sqlite3.Connection], None]


class Store(Protocol):
    """What the node needs from its durable state. :class:`SqliteStore` is the implementation;
    a PostgreSQL store implements the same methods (each one transaction)."""

    async def add_outbox(
        self, entry: OutboxEntry, now: datetime, extra: Job[Any] | None = None
    ) -> None: ...
    async def find_idempotent(self, client: str, key: str) -> tuple[bytes, str] | None: ...
    async def remember_idempotent(
        self, client: str, key: str, request: bytes, message_id: str, now: datetime
    ) -> None: ...
    async def pending_publishes(
        self, limit: int, older_than: datetime | None = None
    ) -> list[PendingPublish]: ...
    async def outbox_backlog(self) -> int: ...
    async def set_status(
        self,
        message_id: str,
        org: str,
        status: str,
        reason: str | None,
        now: datetime,
        extra: Job[Any] | None = None,
    ) -> bool: ...
    async def message(self, message_id: str) -> MessageRow | None: ...
    async def final_receipt(self, message_id: str, org: str) -> FinalReceipt | None: ...
    async def expire_outbox(self, now: datetime) -> list[tuple[str, str]]: ...
    async def seen(self, sender: str, message_id: str) -> SeenRow | None: ...
    async def add_inbox(self, entry: InboxEntry, extra: Job[Any] | None = None) -> bool: ...
    async def inbox_waiting(self, limit: int) -> list[InboxRow]: ...
    async def settle_inbox(
        self,
        message_id: str,
        status: str,
        reason: str | None,
        now: datetime,
        purge_after: datetime,
        extra: Callable[[sqlite3.Connection, str], None] | None = None,
    ) -> str | None: ...
    async def receipt_envelopes(self, sender: str, message_id: str) -> list[PendingPublish]: ...
    async def take_pending_receipts(self, limit: int) -> list[PendingReceipt]: ...
    async def gauges(self, now: datetime) -> dict[str, float]: ...
    async def complete_receipts(
        self,
        sealed: Sequence[tuple[PendingReceipt, OutboxEntry]],
        now: datetime,
        extra: Job[Any] | None = None,
    ) -> None: ...
    async def drop_pending_receipt(self, pending_id: int) -> None: ...
    async def purge(self, now: datetime, outbox_after_s: float) -> tuple[int, int, int]: ...
    async def run(self, job: Job[T]) -> T: ...
    async def close(self) -> None: ...


@dataclass
class _Pending:
    job: Job[Any]
    future: Future[Any]


#: Seconds an Idempotency-Key is remembered: far longer than any adapter retries a send
#: (the client SDK gives up after minutes), short enough that the table does not grow for ever.
IDEMPOTENCY_KEEP_S = 7 * 86400

#: Jobs one group commit may take. Bounds the latency one transaction adds to the first job.
MAX_GROUP = 256


class SqliteStore:
    """SQLite (WAL, ``synchronous=FULL``) with one writer thread and group commit."""

    def __init__(self, path: Path, *, schemas: tuple[str, ...] = ()) -> None:
        self.path = path
        self._queue: list[_Pending] = []
        self._cond = threading.Condition()
        self._closing = False
        self._hooks: list[CommitHook] = []
        private_dir(path.parent)
        private_file(path)  # before SQLite opens it: its -wal and -shm get this file's mode
        for sidecar in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            if sidecar.exists():
                private_file(sidecar)  # left with the umask's mode by an older version
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.execute("PRAGMA busy_timeout=5000")
            for script in (_SCHEMA, *schemas):
                self._db.executescript(script)
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise LocalError(f"{path}: cannot open the store ({exc})") from None
        # Reads that need no transaction run on a second connection in the caller's thread:
        # WAL readers see committed data without waiting for the writer's fsyncs.
        self._reader = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._reader.execute("PRAGMA query_only=ON")
        self._thread = threading.Thread(target=self._loop, name="zvg-store", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ machinery

    def on_commit(self, hook: CommitHook) -> None:
        """Call ``hook(db)`` on the writer thread after every successful commit."""
        self._hooks.append(hook)

    async def run(self, job: Job[T]) -> T:
        """Run ``job(db)`` in a transaction (group-committed with concurrent jobs)."""
        future: Future[T] = Future()
        with self._cond:
            if self._closing:
                raise TransientError("the store is closing")
            self._queue.append(_Pending(job, future))
            self._cond.notify()
        return await asyncio.wrap_future(future)

    def read(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run a read-only query on the read connection (committed data only)."""
        try:
            return self._reader.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise TransientError(f"store read failed ({exc.__class__.__name__})") from None

    def run_sync(self, job: Job[T]) -> T:
        """Run ``job`` from a thread that is not the event loop (CLI tools, tests)."""
        future: Future[T] = Future()
        with self._cond:
            self._queue.append(_Pending(job, future))
            self._cond.notify()
        return future.result()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue and self._closing:
                    return
                batch, self._queue = self._queue[:MAX_GROUP], self._queue[MAX_GROUP:]
            self._commit_group(batch)

    def _commit_group(self, batch: list[_Pending]) -> None:
        db = self._db
        results: list[tuple[_Pending, bool, Any]] = []
        try:
            db.execute("BEGIN IMMEDIATE")
            for i, p in enumerate(batch):
                db.execute(f"SAVEPOINT j{i}")
                try:
                    value = p.job(db)
                except Exception as exc:  # noqa: BLE001 - the job's error goes to its caller
                    db.execute(f"ROLLBACK TO j{i}")
                    db.execute(f"RELEASE j{i}")
                    results.append((p, False, exc))
                else:
                    db.execute(f"RELEASE j{i}")
                    results.append((p, True, value))
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            error = TransientError(f"store commit failed ({exc.__class__.__name__})")
            for p in batch:
                p.future.set_exception(error)
            return
        for hook in self._hooks:
            hook(db)
        for p, ok, value in results:
            if ok:
                p.future.set_result(value)
            else:
                p.future.set_exception(value)

    async def close(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify()
        await asyncio.to_thread(self._thread.join)
        self._db.close()
        self._reader.close()

    # ------------------------------------------------------------------ outbox

    async def add_outbox(
        self, entry: OutboxEntry, now: datetime, extra: Job[Any] | None = None
    ) -> None:
        def job(db: sqlite3.Connection) -> None:
            _insert_outbox(db, entry, now)
            if extra is not None:
                extra(db)

        await self.run(job)

    async def find_idempotent(self, client: str, key: str) -> tuple[bytes, str] | None:
        rows = self.read(
            "SELECT request, message_id FROM idempotency WHERE client=? AND key=?", (client, key)
        )
        return None if not rows else (bytes(rows[0][0]), str(rows[0][1]))

    async def remember_idempotent(
        self, client: str, key: str, request: bytes, message_id: str, now: datetime
    ) -> None:
        await self.run(idempotency_job(client, key, request, message_id, now))

    async def pending_publishes(
        self, limit: int, older_than: datetime | None = None
    ) -> list[PendingPublish]:
        """Envelopes not yet confirmed by the broker (created before ``older_than``, if given:
        fresh ones are handed to the publisher directly and need no re-reading)."""
        cutoff = _ts(older_than) if older_than is not None else float("inf")
        rows = self.read(
            "SELECT r.message_id, r.org, o.envelope, o.expires_at, o.message_type, o.purpose,"
            " o.case_ref FROM outbox_recipients r JOIN outbox o USING (message_id)"
            " WHERE r.published = 0 AND r.status = 'queued' AND o.envelope IS NOT NULL"
            " AND o.created_at < ? ORDER BY o.created_at LIMIT ?",
            (cutoff, limit),
        )
        return [
            PendingPublish(m, org, bytes(env), _dt(exp), t, p, c)
            for m, org, env, exp, t, p, c in rows
        ]

    async def outbox_backlog(self) -> int:
        """Publishes (one per message and recipient organisation, receipts included) not yet
        confirmed by the broker: recipients still ``queued`` (``published = 0``; every status
        move sets it), counted on the ``outbox_unpublished`` index."""
        return int(self.read("SELECT count(*) FROM outbox_recipients WHERE published = 0")[0][0])

    async def set_status(
        self,
        message_id: str,
        org: str,
        status: str,
        reason: str | None,
        now: datetime,
        extra: Job[Any] | None = None,
    ) -> bool:
        """Move a recipient's status forward (never back). True when it changed."""

        def job(db: sqlite3.Connection) -> bool:
            changed = _set_status(db, message_id, org, status, reason, now)
            if changed and extra is not None:
                extra(db)
            return changed

        return await self.run(job)

    async def message(self, message_id: str) -> MessageRow | None:
        rows = self.read(
            "SELECT message_type, purpose, case_ref, created_at, expires_at, digest FROM outbox"
            " WHERE message_id=?",
            (message_id,),
        )
        if not rows:
            return None
        row = rows[0]
        recipients = tuple(
            RecipientRow(o, tuple(json.loads(r)), s, reason, _dt(u))
            for o, r, s, reason, u in self.read(
                "SELECT org, roles, status, reason, updated_at FROM outbox_recipients"
                " WHERE message_id=? ORDER BY rowid",
                (message_id,),
            )
        )
        return MessageRow(
            message_id, row[0], row[1], row[2], _dt(row[3]), _dt(row[4]), bytes(row[5]), recipients
        )

    async def final_receipt(self, message_id: str, org: str) -> FinalReceipt | None:
        """The final status a recipient's signed receipt gave a message we sent, with that
        receipt; ``None`` while the recipient has given none (or only ``delivered``)."""
        rows = self.read(
            "SELECT r.status, r.reason, i.inner_jws FROM outbox_recipients r"
            " LEFT JOIN receipts_in i"
            " ON i.message_id = r.message_id AND i.org = r.org AND i.status = r.status"
            " WHERE r.message_id=? AND r.org=? AND r.status IN ('accepted','rejected')",
            (message_id, org),
        )
        if not rows:
            return None
        status, reason, jws = rows[0]
        return FinalReceipt(str(status), reason, None if jws is None else bytes(jws))

    async def expire_outbox(self, now: datetime) -> list[tuple[str, str]]:
        """Mark every recipient still queued or sent after the message expired; return them."""

        def job(db: sqlite3.Connection) -> list[tuple[str, str]]:
            rows = db.execute(
                "SELECT r.message_id, r.org FROM outbox_recipients r JOIN outbox o"
                " USING (message_id) WHERE o.expires_at <= ? AND r.status IN ('queued','sent')"
                " AND o.message_type != 'receipt'",
                (_ts(now),),
            ).fetchall()
            for message_id, org in rows:
                _set_status(db, message_id, org, "expired", None, now)
            return [(str(m), str(o)) for m, o in rows]

        return await self.run(job)

    # ------------------------------------------------------------------ inbox

    async def seen(self, sender: str, message_id: str) -> SeenRow | None:
        rows = self.read(
            "SELECT digest, status, message_type FROM inbox WHERE sender=? AND message_id=?",
            (sender, message_id),
        )
        return None if not rows else SeenRow(bytes(rows[0][0]), str(rows[0][1]), str(rows[0][2]))

    async def add_inbox(self, entry: InboxEntry, extra: Job[Any] | None = None) -> bool:
        """Store an inbound message once (with ``extra``: its audit records and pending receipt,
        in the same transaction). False, and nothing written, if it was there already."""

        def job(db: sqlite3.Connection) -> bool:
            try:
                db.execute(
                    "INSERT INTO inbox (sender, message_id, digest, message_type, roles,"
                    " received_at, expires_at, status, reason, claims, inner_jws, forget_after)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        entry.sender,
                        entry.message_id,
                        entry.digest,
                        entry.message_type,
                        json.dumps(list(entry.roles)),
                        _ts(entry.received_at),
                        _ts(entry.expires_at),
                        entry.status,
                        entry.reason,
                        entry.claims,
                        entry.inner_jws,
                        _ts(entry.forget_after),
                    ),
                )
            except sqlite3.IntegrityError:
                return False
            if extra is not None:
                extra(db)
            return True

        return await self.run(job)

    async def inbox_waiting(self, limit: int) -> list[InboxRow]:
        """The oldest delivered, unsettled messages; counts each hand-out (redelivery flag)."""

        def job(db: sqlite3.Connection) -> list[InboxRow]:
            rows = db.execute(
                "SELECT seq, sender, message_id, roles, received_at, handed_out, claims FROM inbox"
                " WHERE status='delivered' ORDER BY seq LIMIT ?",
                (limit,),
            ).fetchall()
            db.executemany(
                "UPDATE inbox SET handed_out = handed_out + 1 WHERE seq=?", [(r[0],) for r in rows]
            )
            return [
                InboxRow(seq, snd, mid, tuple(json.loads(roles)), _dt(rec), int(h), bytes(c))
                for seq, snd, mid, roles, rec, h, c in rows
            ]

        return await self.run(job)

    async def settle_inbox(
        self,
        message_id: str,
        status: str,
        reason: str | None,
        now: datetime,
        purge_after: datetime,
        extra: Callable[[sqlite3.Connection, str], None] | None = None,
    ) -> str | None:
        """Ack (``accepted``) or reject a delivered message. Returns its sender, or ``None`` when
        no such message is waiting. Settling twice is harmless: the second call changes nothing
        and returns the sender."""

        def job(db: sqlite3.Connection) -> str | None:
            row = db.execute(
                "SELECT sender, status FROM inbox WHERE message_id=? ORDER BY seq LIMIT 1",
                (message_id,),
            ).fetchone()
            if row is None or row[1] == "refused":
                return None
            sender = str(row[0])
            if row[1] != "delivered":
                return sender
            db.execute(
                "UPDATE inbox SET status=?, reason=?, settled_at=?, purge_after=?"
                " WHERE sender=? AND message_id=?",
                (status, reason, _ts(now), _ts(purge_after), sender, message_id),
            )
            if extra is not None:
                extra(db, sender)
            return sender

        return await self.run(job)

    async def receipt_envelopes(self, sender: str, message_id: str) -> list[PendingPublish]:
        """The receipts already sealed for a message (to answer a duplicate with them)."""

        def job(db: sqlite3.Connection) -> list[PendingPublish]:
            rows = db.execute(
                "SELECT o.message_id, o.envelope, o.expires_at FROM receipts_out r JOIN outbox o"
                " ON o.message_id = r.receipt_id WHERE r.sender=? AND r.message_id=?"
                " AND o.envelope IS NOT NULL ORDER BY o.created_at",
                (sender, message_id),
            ).fetchall()
            return [PendingPublish(m, sender, bytes(env), _dt(exp)) for m, env, exp in rows]

        return await self.run(job)

    async def gauges(self, now: datetime) -> dict[str, float]:
        """Counts for the metrics gauges: unconfirmed outbox entries and the age of the oldest,
        inbox messages waiting for the adapter."""

        def job(db: sqlite3.Connection) -> dict[str, float]:
            pending, oldest = db.execute(
                "SELECT count(*), min(o.created_at) FROM outbox_recipients r JOIN outbox o"
                " USING (message_id) WHERE r.status = 'queued'"
            ).fetchone()
            waiting = db.execute("SELECT count(*) FROM inbox WHERE status='delivered'").fetchone()[
                0
            ]
            age = max(0.0, _ts(now) - oldest) if oldest is not None else 0.0
            return {
                "outbox_pending": float(pending),
                "outbox_age": age,
                "inbox_waiting": float(waiting),
            }

        return await self.run(job)

    # ------------------------------------------------------------------ receipts to seal

    async def take_pending_receipts(self, limit: int) -> list[PendingReceipt]:
        """The oldest receipts waiting to be sealed (they stay until :meth:`complete_receipts`)."""

        def job(db: sqlite3.Connection) -> list[PendingReceipt]:
            return [
                PendingReceipt(int(i), s, m, st, r, int(idx), json.loads(info))
                for i, s, m, st, r, idx, info in db.execute(
                    "SELECT id, sender, message_id, status, reason, record_idx, info"
                    " FROM receipts_pending ORDER BY id LIMIT ?",
                    (limit,),
                )
            ]

        return await self.run(job)

    async def complete_receipts(
        self,
        sealed: Sequence[tuple[PendingReceipt, OutboxEntry]],
        now: datetime,
        extra: Job[Any] | None = None,
    ) -> None:
        """Put sealed receipts in the outbox and drop them from the pending list, atomically."""

        def job(db: sqlite3.Connection) -> None:
            for pending, entry in sealed:
                _insert_outbox(db, entry, now)
                db.execute(
                    "INSERT OR REPLACE INTO receipts_out (sender, message_id, status, receipt_id)"
                    " VALUES (?,?,?,?)",
                    (pending.sender, pending.message_id, pending.status, entry.message_id),
                )
                db.execute("DELETE FROM receipts_pending WHERE id=?", (pending.id,))
            if extra is not None:
                extra(db)

        await self.run(job)

    async def drop_pending_receipt(self, pending_id: int) -> None:
        """Forget a receipt that cannot be sealed (the sender has no valid encryption key)."""

        def job(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM receipts_pending WHERE id=?", (pending_id,))

        await self.run(job)

    # ------------------------------------------------------------------ retention

    async def purge(self, now: datetime, outbox_after_s: float) -> tuple[int, int, int]:
        """Delete payloads past retention; keep the metadata status and audit need.

        Returns (inbox payloads purged, outbox envelopes purged, inbox rows forgotten)."""

        def job(db: sqlite3.Connection) -> tuple[int, int, int]:
            t = _ts(now)
            inbox = db.execute(
                "UPDATE inbox SET claims=NULL, inner_jws=NULL WHERE purge_after <= ?"
                " AND claims IS NOT NULL",
                (t,),
            ).rowcount
            outbox = db.execute(
                "UPDATE outbox SET envelope=NULL WHERE envelope IS NOT NULL AND"
                " ((final_at IS NOT NULL AND final_at + ? <= ?) OR expires_at + ? <= ?)",
                (outbox_after_s, t, outbox_after_s, t),
            ).rowcount
            forgotten = db.execute(
                "DELETE FROM inbox WHERE forget_after <= ? AND claims IS NULL"
                " AND status != 'delivered'",
                (t,),
            ).rowcount
            # An Idempotency-Key only has to outlive an adapter's retries.
            db.execute("DELETE FROM idempotency WHERE created_at + ? <= ?", (IDEMPOTENCY_KEEP_S, t))
            return inbox, outbox, forgotten

        return await self.run(job)


def _insert_outbox(db: sqlite3.Connection, entry: OutboxEntry, now: datetime) -> None:
    db.execute(
        "INSERT INTO outbox (message_id, message_type, purpose, case_ref, in_reply_to,"
        " created_at, expires_at, digest, envelope) VALUES (?,?,?,?,?,?,?,?,?)",
        (
            entry.message_id,
            entry.message_type,
            entry.purpose,
            entry.case_ref,
            entry.in_reply_to,
            _ts(entry.created_at),
            _ts(entry.expires_at),
            entry.digest,
            entry.envelope,
        ),
    )
    db.executemany(
        "INSERT INTO outbox_recipients (message_id, org, roles, status, updated_at)"
        " VALUES (?,?,?,'queued',?)",
        [
            (entry.message_id, org, json.dumps(list(roles)), _ts(now))
            for org, roles in entry.recipients
        ],
    )


def receipt_in_job(
    message_id: str, org: str, status: str, inner_jws: bytes, now: datetime
) -> Job[None]:
    """A job that keeps a recipient's signed receipt (evidence for ``zvg audit export``)."""

    def job(db: sqlite3.Connection) -> None:
        db.execute(
            "INSERT OR IGNORE INTO receipts_in (message_id, org, status, received_at, inner_jws)"
            " VALUES (?,?,?,?,?)",
            (message_id, org, status, _ts(now), inner_jws),
        )

    return job


def pending_receipt_job(
    sender: str,
    message_id: str,
    status: str,
    reason: str | None,
    record_idx: int,
    info: dict[str, Any],
    now: datetime,
) -> Job[None]:
    """A job that queues a receipt to seal (run it in the transaction that stored the state)."""

    def job(db: sqlite3.Connection) -> None:
        db.execute(
            "INSERT INTO receipts_pending (sender, message_id, status, reason, record_idx, info,"
            " created_at) VALUES (?,?,?,?,?,?,?)",
            (sender, message_id, status, reason, record_idx, json.dumps(info), _ts(now)),
        )

    return job


def idempotency_job(
    client: str, key: str, request: bytes, message_id: str, now: datetime
) -> Job[None]:
    def job(db: sqlite3.Connection) -> None:
        db.execute(
            "INSERT INTO idempotency (client, key, request, message_id, created_at)"
            " VALUES (?,?,?,?,?)",
            (client, key, request, message_id, _ts(now)),
        )

    return job


def _may_move(current: str, status: str) -> bool:
    """Up the ranking only; ``expired`` (our guess when no answer came) only replaces ``queued``
    or ``sent``, and yields to a recipient's signed receipt (docs/decisions/0045)."""
    if status == "expired":
        return current in ("queued", "sent")
    if current == "expired":
        return status in RECEIPT_STATUSES
    return STATUS_RANK[status] > STATUS_RANK[current]


def contradicts(earlier: str, later: str) -> bool:
    """True when a recipient's later signed status cannot be true beside its earlier final one:
    ``accepted`` and ``rejected`` for the same message (docs/decisions/0043). A repeated status,
    or ``delivered`` arriving after a final one (receipts overtake each other), is no
    contradiction."""
    final = ("accepted", "rejected")
    return earlier in final and later in final and earlier != later


def _set_status(
    db: sqlite3.Connection,
    message_id: str,
    org: str,
    status: str,
    reason: str | None,
    now: datetime,
) -> bool:
    rank = STATUS_RANK[status]
    row = db.execute(
        "SELECT status FROM outbox_recipients WHERE message_id=? AND org=?", (message_id, org)
    ).fetchone()
    if row is None or not _may_move(str(row[0]), status):
        return False
    db.execute(
        "UPDATE outbox_recipients SET status=?, reason=?, updated_at=?,"
        " published = CASE WHEN ? >= 1 THEN 1 ELSE published END WHERE message_id=? AND org=?",
        (status, reason, _ts(now), rank, message_id, org),
    )
    if rank == 3:
        still_open = db.execute(
            "SELECT count(*) FROM outbox_recipients WHERE message_id=? AND status NOT IN"
            " ('accepted','rejected','expired')",
            (message_id,),
        ).fetchone()[0]
        if still_open == 0:
            db.execute("UPDATE outbox SET final_at=? WHERE message_id=?", (_ts(now), message_id))
    return True


# ---------------------------------------------------------------- trusted directory

#: ``meta`` key of the copy of the directory version the node trusts (gateway.node.trust).
_TRUSTED_DIRECTORY = "trusted_directory"


def stored_directory(db: sqlite3.Connection) -> bytes | None:
    """The store's copy of the directory version the node trusts, if it holds one."""
    row = db.execute("SELECT value FROM meta WHERE key=?", (_TRUSTED_DIRECTORY,)).fetchone()
    return None if row is None else str(row[0]).encode("utf-8")


def store_directory_job(raw: bytes) -> Job[None]:
    """A job that keeps ``raw`` (a signed directory: JSON, so UTF-8) as the trusted version."""
    text = raw.decode("utf-8")

    def job(db: sqlite3.Connection) -> None:
        db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (_TRUSTED_DIRECTORY, text))

    return job
