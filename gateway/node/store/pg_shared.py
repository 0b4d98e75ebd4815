"""Several node processes of one organisation on one PostgreSQL database (decision 0109).

The command handlers are the SQLite store's (decision 0094); what several writers on one
database need besides is added around them by :class:`~.postgres.PostgresStore.on_command`:

- **One audit sequencer.** An audit append takes ``pg_advisory_xact_lock`` (:data:`SEQUENCER`)
  before it reads the next index: the lock is held until the group's transaction commits, so the
  appends of all processes are serialised, their indexes are one gap-free sequence and the Merkle
  tree stays one tree. The lock is per schema (``hashtext(current_schema())``): one database may
  hold several nodes' stores. The group commit is kept: a group takes the lock once, held for
  one commit. **It is the first lock of its transaction**: a group with an append takes it right
  after ``BEGIN`` (``PostgresStore._begin``), before any row lock of its jobs. Taken by the
  append itself, later in the group, it closed a cycle with another process (found by the chaos
  soak: ``DeadlockDetected``): a's ack held an inbox row and waited for the sequencer, which b
  held for an append earlier in its group while b's ack of the same message waited for that
  row.
- **The outbox claimed.** Fresh entries are claimed by the process that wrote them (its
  publisher has them already); the periodic scan claims what is unclaimed or whose claim ran out
  (:data:`CLAIM_SQL`, ``FOR UPDATE SKIP LOCKED``), so each publish is done by one process while
  that process lives; a claim lasts :data:`CLAIM_S` by the database's clock.
- **Changes announced.** An inbox entry and a receipt to seal are announced with ``pg_notify``
  on :data:`CHANNEL` when their transaction commits, so the long-polls, event streams and the
  receipt loop of every process wake (:mod:`.pg_lead` listens).

The inbox needs nothing more: ``UNIQUE (sender, message_id)`` with ``ON CONFLICT DO NOTHING``
makes the second of two concurrent inserts of one message wait for the first and write nothing.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from gateway.node.store.engine import CommitState, Handler

__all__ = [
    "CHANNEL",
    "CLAIM_S",
    "CLAIM_SQL",
    "LEADER",
    "SEQUENCER",
    "claiming",
    "lock_sequencer",
    "notifying",
    "sequenced",
]

#: ``pg_advisory_xact_lock(SEQUENCER, hashtext(current_schema()))``: the audit sequencer.
SEQUENCER = 0x7A76_6702
#: ``pg_try_advisory_lock(LEADER, hashtext(current_schema()))``: the checkpoint leader (pg_lead).
LEADER = 0x7A76_6703
#: The ``LISTEN``/``NOTIFY`` channel; the payload is ``<schema>:<what changed>``.
CHANNEL = "zvg_changes"
#: Seconds an outbox claim lasts by default (``store.claim_seconds``): a process that died
#: leaves its unconfirmed publishes to the others after this.
CLAIM_S = 30.0

#: The outbox scan of a shared store: (holder, lease s, created before, holder, limit). The
#: claims run by the database's clock: the processes' clocks may differ.
CLAIM_SQL = (
    "UPDATE outbox_recipients r SET claimed_by = ?,"
    " claimed_until = extract(epoch FROM clock_timestamp()) + ?"
    " FROM outbox o WHERE o.message_id = r.message_id AND (r.message_id, r.org) IN ("
    " SELECT c.message_id, c.org FROM outbox_recipients c JOIN outbox co"
    " ON co.message_id = c.message_id WHERE c.published = 0 AND c.status = 'queued'"
    " AND co.envelope IS NOT NULL AND co.created_at < ?"
    " AND (c.claimed_until IS NULL OR c.claimed_by = ?"
    " OR c.claimed_until < extract(epoch FROM clock_timestamp()))"
    " ORDER BY co.created_at LIMIT ? FOR UPDATE OF c SKIP LOCKED)"
    " RETURNING r.message_id, r.org, o.envelope, o.expires_at, o.message_type, o.purpose,"
    " o.case_ref, o.created_at"
)

#: Migration 2 of the PostgreSQL schema (gateway.node.pg_store).
MIGRATION_2 = """
ALTER TABLE outbox_recipients ADD COLUMN IF NOT EXISTS claimed_by TEXT;
ALTER TABLE outbox_recipients ADD COLUMN IF NOT EXISTS claimed_until DOUBLE PRECISION;
"""


def lock_sequencer(db: sqlite3.Connection) -> None:
    """Take the sequencer's transaction-level lock (at once if this transaction holds it)."""
    db.execute("SELECT pg_advisory_xact_lock(?, hashtext(current_schema()))", (SEQUENCER,))


def sequenced(handler: Handler[Any]) -> Handler[Any]:
    """``handler`` (an audit append) under the sequencer's transaction-level lock, which the
    group took first (module docstring; taken again here, at once, it also covers a job that
    did not say so). The lock is its own statement: under READ COMMITTED the next statement's
    snapshot, which reads the highest index, then sees every append committed before the lock
    was granted."""

    def apply(db: sqlite3.Connection, command: Any, state: CommitState) -> bool:
        lock_sequencer(db)
        return handler(db, command, state)

    return apply


def notifying(handler: Handler[Any], what: str) -> Handler[Any]:
    """``handler``, announcing ``what`` changed to every process when its commit lands."""
    payload = ":" + what

    def apply(db: sqlite3.Connection, command: Any, state: CommitState) -> bool:
        applied = handler(db, command, state)
        if applied:
            db.execute("SELECT pg_notify(?, current_schema() || ?)", (CHANNEL, payload))
        return applied

    return apply


def claiming(handler: Handler[Any], holder: str, claim_s: float = CLAIM_S) -> Handler[Any]:
    """``handler`` (an outbox insert: a sent message, a sealed receipt), claiming the entry for
    ``holder``, whose publisher has it already (``Outbox.hand_over``): no other process's scan
    publishes it while it lives."""

    def apply(db: sqlite3.Connection, command: Any, state: CommitState) -> bool:
        applied = handler(db, command, state)
        db.execute(
            "UPDATE outbox_recipients SET claimed_by = ?,"
            " claimed_until = extract(epoch FROM clock_timestamp()) + ? WHERE message_id = ?",
            (holder, claim_s, command.entry.message_id),
        )
        return applied

    return apply
