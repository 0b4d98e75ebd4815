"""The SQLite engine under the node's store: one writer thread, group commit, commands.

:class:`GroupCommit` keeps one SQLite file in WAL mode with ``synchronous=FULL``: a transaction
that returned has reached the disk, so the crash-safe orders of docs/architecture.md §9 hold — a
message is in the outbox before the API answers 202, an inbound message is in the inbox before
the broker ack.

All database work runs on one writer thread. Calls made at the same time are **group-committed**
(docs/decisions/0041-store-group-commit.md): the thread runs every waiting job in one transaction
and commits once, so a burst of deliveries costs one fsync, not one per message. One failing job
does not undo the others: a group of commits of commands (:meth:`GroupCommit.commit`, jobs that may
run again) runs without savepoints and, only when one of its jobs fails, is rolled back and run
again with each job in its own savepoint; a group with any other job runs with savepoints from the
start; a job alone needs none. A :meth:`GroupCommit.commit` of commands
(:mod:`gateway.node.store.commands`) is one such job; each command type has a handler
(:meth:`GroupCommit.on_command`) that holds its SQL.

On a database that other processes write too (PostgreSQL), a group whose jobs need certain
locks before any other takes them right after ``BEGIN`` (:attr:`GroupCommit.LOCKS_FIRST`), and
a commit of commands the database aborted as the victim of a conflict (a deadlock) runs again in
the next group, a bounded number of times (:mod:`.batch`).

A job whose caller gave up (its task was cancelled) before the writer took it is never run; one
the writer took already is committed, and its result is dropped (results reach an event loop
with one wake-up per group commit). An unexpected error in the
writer itself (not in a job: the job's error goes to its caller) **fails the store closed**: the
error is logged at CRITICAL, every waiting and later call raises :class:`LocalError`, and
``/readyz`` reports the store not ready, until the node restarts and reads the file afresh. The
writer's connection or the audit tree's catch-up may then not match the file, and a node must
not write on top of a state it does not know.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

from gateway.core.audit import Record
from gateway.errors import LocalError
from gateway.node.datadir import private_dir, private_file
from gateway.node.store.batch import (
    Pending,
    StoreUnavailableError,
    settle_all,
    split_conflicts,
    with_savepoints,
    without_savepoints,
)
from gateway.node.store.commands import Command, Committed

__all__ = [
    "MAX_GROUP",
    "CommitHook",
    "CommitState",
    "GroupCommit",
    "Handler",
    "Job",
    "StoreFailedClosedError",
    "StoreUnavailableError",
]

log = logging.getLogger("gateway.node")

T = TypeVar("T")
C = TypeVar("C")


class StoreFailedClosedError(LocalError):
    """The store stopped after an unexpected error in its writer (module docstring): every call
    fails until the process restarts."""


Job = Callable[[sqlite3.Connection], T]
CommitHook = Callable[[sqlite3.Connection], None]


class CommitState:
    """What the commands of one commit share: the audit indexes their records got."""

    def __init__(self) -> None:
        self.indexes: list[int] = []
        self._by_record: dict[int, int] = {}

    def appended(self, records: list[Record], indexes: list[int]) -> None:
        self.indexes += indexes
        self._by_record.update(
            (id(record), index) for record, index in zip(records, indexes, strict=True)
        )

    def index_of(self, record: Record) -> int:
        """The index of ``record``, appended earlier in this commit."""
        try:
            return self._by_record[id(record)]
        except KeyError:
            raise LocalError("a receipt must prove a record of its own commit") from None


Handler = Callable[[sqlite3.Connection, C, CommitState], bool]


class _NotApplied(Exception):  # noqa: N818 - a signal inside the writer thread, not an error
    """A condition of a commit did not hold: roll its savepoint back."""


def _failed_closed() -> StoreFailedClosedError:
    return StoreFailedClosedError("the store stopped after an internal error; restart the node")


#: Jobs one group commit may take. Bounds the latency one transaction adds to the first job.
MAX_GROUP = 256


class GroupCommit:
    """SQLite (WAL, ``synchronous=FULL``) with one writer thread and group commit."""

    #: Commands whose transaction takes :meth:`_begin`'s locks before any other (none on
    #: SQLite: its writer lock is the whole database's, taken by ``BEGIN IMMEDIATE``).
    LOCKS_FIRST: tuple[type[Any], ...] = ()
    #: Errors with which the database aborts a job as the victim of a conflict with another
    #: writer (a deadlock, a serialization failure): the job runs again (:mod:`.batch`). None on
    #: SQLite, whose one writer lock admits no such cycle.
    CONFLICTS: tuple[type[BaseException], ...] = ()

    def __init__(self, path: Path, *, schemas: tuple[str, ...] = ()) -> None:
        self.path = path
        self._queue: list[Pending] = []
        self._cond = threading.Condition()
        #: The writer waits for work (under ``_cond``): only then does a new job notify it.
        self._idle = False
        self._closing = False
        #: Set when the writer stopped after an unexpected error (module docstring).
        self._failed = False
        self._hooks: list[CommitHook] = []
        self._handlers: dict[type[Any], Handler[Any]] = {}
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
            for script in schemas:
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

    @property
    def failed_closed(self) -> bool:
        """Whether the writer stopped (module docstring): ``/healthz`` then fails, so a liveness
        probe or service manager restarts the process."""
        return self._failed

    def on_commit(self, hook: CommitHook) -> None:
        """Call ``hook(db)`` on the writer thread after every successful commit."""
        self._hooks.append(hook)

    def on_command(self, kind: type[C], handler: Handler[C]) -> None:
        """Apply commands of type ``kind`` with ``handler`` (:meth:`commit`)."""
        self._handlers[kind] = handler

    async def commit(self, *commands: Command) -> Committed:
        """Apply ``commands`` in order, in one transaction group-committed with whatever else
        is waiting. When a condition does not hold, nothing of them is written."""
        handlers = [(self._handler(c), c) for c in commands]

        def job(db: sqlite3.Connection) -> Committed:
            state = CommitState()
            for handler, command in handlers:
                if not handler(db, command, state):
                    raise _NotApplied
            return Committed(True, tuple(state.indexes))

        try:
            locks_first = any(isinstance(c, self.LOCKS_FIRST) for c in commands)
            return await self._submit(job, rerunnable=True, locks_first=locks_first)
        except _NotApplied:
            return Committed(False)

    def _begin(self, db: sqlite3.Connection, locks_first: bool) -> None:  # noqa: ARG002 - a hook
        """Begin a group's transaction; with ``locks_first`` (a job of the group needs them),
        take the locks that commands of :attr:`LOCKS_FIRST` need before any other."""
        db.execute("BEGIN IMMEDIATE")

    def _handler(self, command: Command) -> Handler[Any]:
        handler = self._handlers.get(type(command))
        if handler is None:
            raise LocalError(f"this store cannot apply {type(command).__name__}")
        return handler

    async def run(self, job: Job[T]) -> T:
        """Run ``job(db)`` in a transaction (group-committed with concurrent jobs)."""
        return await self._submit(job, rerunnable=False)

    async def _submit(self, job: Job[T], *, rerunnable: bool, locks_first: bool = False) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        with self._cond:
            if self._failed:
                raise _failed_closed()
            if self._closing:
                raise StoreUnavailableError("the store is closing")
            self._queue.append(Pending(job, future, loop, rerunnable, locks_first))
            if self._idle:
                self._cond.notify()
        return await future

    def read(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run a read-only query on the read connection (committed data only)."""
        try:
            return self._reader.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreUnavailableError(f"store read failed ({exc.__class__.__name__})") from None

    def run_sync(self, job: Job[T]) -> T:
        """Run ``job`` from a thread that is not the event loop (CLI tools, tests)."""
        future: Future[T] = Future()
        with self._cond:
            if self._failed:
                raise _failed_closed()
            if self._closing:
                raise StoreUnavailableError("the store is closing")
            self._queue.append(Pending(job, future))
            if self._idle:
                self._cond.notify()
        return future.result()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._idle = True
                    self._cond.wait()
                    self._idle = False
                if not self._queue and self._closing:
                    return
                batch, self._queue = self._queue[:MAX_GROUP], self._queue[MAX_GROUP:]
            # A job whose caller gave up before the writer took it is not run (a cancellation
            # after this point leaves the job committed and its result dropped: _settle_all).
            live = [p for p in batch if not p.future.cancelled()]
            try:
                self._commit_group(live)
            except BaseException as exc:  # noqa: BLE001 - the writer must never die silently
                self._fail_closed(live, exc)
                return

    def _fail_closed(self, live: list[Pending], exc: BaseException) -> None:
        """Stop the store after an unexpected error in the writer (module docstring)."""
        log.critical(
            "the store's writer stopped after an unexpected %s; every store call fails until "
            "the node restarts",
            type(exc).__name__,
            exc_info=exc,
        )
        error = _failed_closed()
        with self._cond:
            self._failed = True
            waiting, self._queue = self._queue, []
        settle_all([(p, False, error) for p in [*live, *waiting]])

    def _commit_group(self, batch: list[Pending]) -> None:
        db = self._db
        committed = True
        try:
            if len(batch) == 1 or all(p.rerunnable for p in batch):
                results = without_savepoints(db, batch, self._begin)
                if results is None:  # a job of the group failed and undid the group: again,
                    results = with_savepoints(db, batch, self._begin)  # a savepoint per job
                elif len(batch) == 1 and not results[0][1]:
                    committed = False
            else:
                results = with_savepoints(db, batch, self._begin)
        except sqlite3.Error as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            error = StoreUnavailableError(f"store commit failed ({exc.__class__.__name__})")
            results = [(p, False, error) for p in batch]
        else:
            if committed:
                for hook in self._hooks:
                    hook(db)
        settle, again = split_conflicts(results, self.CONFLICTS)
        if again:
            log.info("running %d commit(s) again after a write conflict", len(again))
            with self._cond:
                self._queue[:0] = again
        settle_all(settle)

    async def close(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify()
        await asyncio.to_thread(self._thread.join)
        self._db.close()
        self._reader.close()
