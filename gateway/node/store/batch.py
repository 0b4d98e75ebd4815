"""One group commit's transaction, for :class:`~.engine.GroupCommit`'s writer thread.

A group runs without savepoints (:func:`without_savepoints`: every job a commit of commands,
which may run again) or with a savepoint per job (:func:`with_savepoints`); either way its
transaction begins with the locks its jobs need first (``GroupCommit._begin``). A job the
database aborted as the victim of a conflict with another writer (PostgreSQL's deadlock
detection or a serialization failure, ``GroupCommit.CONFLICTS``) is run again in the next group,
a bounded number of times (:func:`split_conflicts`).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from gateway.errors import TransientError

__all__ = [
    "MAX_CONFLICT_RETRIES",
    "Begin",
    "Outcome",
    "Pending",
    "StoreUnavailableError",
    "settle_all",
    "settle_on_loop",
    "split_conflicts",
    "with_savepoints",
    "without_savepoints",
]

#: Times a commit the database aborted as a conflict's victim runs again before its caller gets
#: :class:`StoreUnavailableError`.
MAX_CONFLICT_RETRIES = 5


class StoreUnavailableError(TransientError):
    """The node's own store cannot be read or written just now (locked, its database server
    unreachable or restarting, closing): says nothing about what the caller wanted to write."""


@dataclass
class Pending:
    """A queued job and where its outcome goes: an event loop's future (``GroupCommit.run``,
    settled on that loop) or a thread's future (``GroupCommit.run_sync``, ``loop`` None)."""

    job: Callable[[sqlite3.Connection], Any]
    future: asyncio.Future[Any] | Future[Any]
    loop: asyncio.AbstractEventLoop | None = None
    #: The job may run again after a rollback (a commit of commands: its only effects are on the
    #: database and on state it makes afresh each run).
    rerunnable: bool = False
    #: The job needs the locks ``GroupCommit._begin`` takes before any other (a commit of a
    #: command of ``GroupCommit.LOCKS_FIRST``).
    locks_first: bool = False
    #: Times the job was run again after the database aborted it as a conflict's victim.
    conflicts: int = 0


#: (the pending job, whether it succeeded, its result or exception)
Outcome = tuple[Pending, bool, Any]
#: Begin a group's transaction: (connection, whether a job needs the locks first).
Begin = Callable[[sqlite3.Connection, bool], None]


def settle_all(results: list[Outcome]) -> None:
    """Hand every outcome to its caller: one wake-up per event loop for the whole group, not
    one per job; a thread's future directly. A future already done (its caller gave up)
    keeps its state."""
    by_loop: dict[asyncio.AbstractEventLoop, list[Outcome]] = {}
    for outcome in results:
        p, ok, value = outcome
        if p.loop is not None:
            by_loop.setdefault(p.loop, []).append(outcome)
        elif p.future.done():
            continue
        elif ok:
            p.future.set_result(value)
        else:
            p.future.set_exception(value)
    for loop, outcomes in by_loop.items():
        with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits
            loop.call_soon_threadsafe(settle_on_loop, outcomes)


def settle_on_loop(outcomes: list[Outcome]) -> None:
    """Settle event-loop futures, on their loop. A future its caller cancelled meanwhile keeps
    its cancellation (its job ran anyway: the caller gave up on the answer, not the write)."""
    for p, ok, value in outcomes:
        if p.future.done():
            continue
        if ok:
            p.future.set_result(value)
        else:
            p.future.set_exception(value)


def split_conflicts(
    results: list[Outcome], conflicts: tuple[type[BaseException], ...]
) -> tuple[list[Outcome], list[Pending]]:
    """(the outcomes to settle now, the jobs to run again first). A commit of commands the
    database aborted as a conflict's victim (its savepoint or transaction was rolled back:
    nothing of it was written) runs again, up to :data:`MAX_CONFLICT_RETRIES` times; any other
    job so aborted, or one out of tries, gets :class:`StoreUnavailableError`."""
    settle: list[Outcome] = []
    again: list[Pending] = []
    for p, ok, value in results:
        if ok or not isinstance(value, conflicts):
            settle.append((p, ok, value))
        elif p.rerunnable and p.conflicts < MAX_CONFLICT_RETRIES:
            p.conflicts += 1
            again.append(p)
        else:
            error = StoreUnavailableError(f"store commit failed ({type(value).__name__})")
            settle.append((p, False, error))
    return settle, again


def without_savepoints(
    db: sqlite3.Connection, batch: list[Pending], begin: Begin
) -> list[Outcome] | None:
    """Run ``batch`` in one transaction without savepoints and commit it. A failing job rolls
    the transaction back: alone, its error is its outcome (nothing was written); in a group
    (only of jobs that may run again), ``None``: the caller runs the group with savepoints.
    """
    begin(db, any(p.locks_first for p in batch))
    results: list[Outcome] = []
    for p in batch:
        try:
            results.append((p, True, p.job(db)))
        except Exception as exc:  # noqa: BLE001 - the job's error goes to its caller
            if db.in_transaction:
                db.execute("ROLLBACK")
            return [(p, False, exc)] if len(batch) == 1 else None
    db.execute("COMMIT")
    return results


def with_savepoints(db: sqlite3.Connection, batch: list[Pending], begin: Begin) -> list[Outcome]:
    """Run ``batch`` in one transaction, each job in its own savepoint (a failing job undoes
    only its own writes), and commit it."""
    results: list[Outcome] = []
    begin(db, any(p.locks_first for p in batch))
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
    return results
