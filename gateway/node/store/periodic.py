"""The store's periodic jobs — the metrics gauges, the expiry of unanswered messages and the
retention purge — and the indexes they seek through.

A node's history only grows (an outbox row stays after its envelope is purged, an inbox row
until its ``forget_after``), and these jobs run in the writer's transaction every few seconds,
so each must reach exactly the rows that are open or due: every statement here goes through an
index, most of them partial ones that hold only open or due rows (a plan test,
``tests/unit/node/test_store_periodic_plans.py``, reads SQLite's plan of each). The indexes cost
a few index writes per message; a full scan would cost the whole history on every run, with
every ``POST`` and broker ack waiting behind it (docs/decisions/0122).
"""

from __future__ import annotations

import contextlib
import sqlite3
from datetime import datetime

from gateway.core.delivery import OutboundEvent
from gateway.core.retention import IDEMPOTENCY_KEEP
from gateway.node.store.writes import move_status, ts

__all__ = ["PERIODIC_INDEXES", "expire_outbox", "gauges", "purge"]

#: Created with the store's schema (SQLite) and by migration 4 (PostgreSQL). Each partial index
#: holds only the rows one job looks for; its ``WHERE`` is the job's own condition, word for word
#: (SQLite uses a partial index only for a query that states its condition).
PERIODIC_INDEXES = """
CREATE INDEX IF NOT EXISTS outbox_queued ON outbox_recipients (message_id)
    WHERE status = 'queued';
CREATE INDEX IF NOT EXISTS outbox_sent ON outbox_recipients (updated_at)
    WHERE status = 'sent';
CREATE INDEX IF NOT EXISTS outbox_purge ON outbox (purge_after) WHERE envelope IS NOT NULL;
CREATE INDEX IF NOT EXISTS inbox_purge ON inbox (purge_after) WHERE claims IS NOT NULL;
CREATE INDEX IF NOT EXISTS inbox_forget ON inbox (forget_after)
    WHERE claims IS NULL AND status != 'delivered';
CREATE INDEX IF NOT EXISTS idempotency_created ON idempotency (created_at);
"""


def gauges(db: sqlite3.Connection, now: datetime) -> dict[str, float]:
    """Counts for the metrics gauges (``Store.gauges``)."""
    t = ts(now)
    pending, oldest = db.execute(
        "SELECT count(*), min(o.created_at) FROM outbox_recipients r JOIN outbox o"
        " USING (message_id) WHERE r.status = 'queued'"
    ).fetchone()
    (waiting,) = db.execute("SELECT count(*) FROM inbox WHERE status = 'delivered'").fetchone()
    awaited, since = db.execute(
        "SELECT count(*), min(updated_at) FROM outbox_recipients WHERE status = 'sent'"
    ).fetchone()
    counts = {
        "outbox_pending": float(pending),
        "outbox_age": max(0.0, t - oldest) if oldest is not None else 0.0,
        "inbox_waiting": float(waiting),
        "receipts_awaited": float(awaited),
        "receipts_awaited_age": max(0.0, t - since) if since is not None else 0.0,
    }
    with contextlib.suppress(sqlite3.OperationalError):  # no audit schema in this store
        (conflicts,) = db.execute("SELECT count(*) FROM witness_evidence").fetchone()
        counts["witness_conflicts"] = float(conflicts)
    return counts


#: The expired recipients still ``queued``, then those ``sent``: one statement per partial index
#: (SQLite cannot use a partial index for ``status IN (...)``).
_EXPIRED = (
    (
        "SELECT r.message_id, r.org FROM outbox_recipients r JOIN outbox o USING (message_id)"
        " WHERE r.status = 'queued' AND o.expires_at <= ? AND o.message_type != 'receipt'"
    ),
    (
        "SELECT r.message_id, r.org FROM outbox_recipients r JOIN outbox o USING (message_id)"
        " WHERE r.status = 'sent' AND o.expires_at <= ? AND o.message_type != 'receipt'"
    ),
)


def expire_outbox(db: sqlite3.Connection, now: datetime) -> list[tuple[str, str]]:
    """Mark every recipient still queued or sent after the message expired; return them."""
    rows = [row for sql in _EXPIRED for row in db.execute(sql, (ts(now),)).fetchall()]
    for message_id, org in rows:
        move_status(db, message_id, org, OutboundEvent.EXPIRED, None, now)
    return [(str(m), str(o)) for m, o in rows]


def purge(db: sqlite3.Connection, now: datetime) -> tuple[int, int, int]:
    """Delete what is past its deadline (every deadline was written with the item, by the
    node's ``RetentionPolicy``); keep the metadata status and audit need.

    Returns (inbox payloads purged, outbox envelopes purged, inbox rows forgotten)."""
    t = ts(now)
    inbox = db.execute(
        "UPDATE inbox SET claims=NULL, inner_jws=NULL WHERE purge_after <= ?"
        " AND claims IS NOT NULL",
        (t,),
    ).rowcount
    outbox = db.execute(
        "UPDATE outbox SET envelope=NULL WHERE envelope IS NOT NULL AND purge_after <= ?", (t,)
    ).rowcount
    forgotten = db.execute(
        "DELETE FROM inbox WHERE forget_after <= ? AND claims IS NULL AND status != 'delivered'",
        (t,),
    ).rowcount
    # An Idempotency-Key only has to outlive an adapter's retries.
    db.execute(
        "DELETE FROM idempotency WHERE created_at <= ?", (t - IDEMPOTENCY_KEEP.total_seconds(),)
    )
    return inbox, outbox, forgotten
