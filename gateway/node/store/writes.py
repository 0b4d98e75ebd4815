"""The SQL of the node's own commands and maintenance (the audit log's is in ``gateway.audit``).

Each ``apply_*`` applies one command of :mod:`gateway.node.store.commands` inside the commit's
transaction and returns False when a condition does not hold (the commit then writes nothing).
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime

from gateway.core.delivery import OutboundEvent, all_final, inbound_move, outbound_move
from gateway.node.store.commands import (
    DateOutbox,
    DropPendingReceipt,
    InsertInbox,
    InsertOutbox,
    KeepDirectory,
    KeepReceipt,
    MarkReady,
    QueueReceipt,
    ReceiptSealed,
    RememberIdempotency,
    SetStatus,
    SettleInbox,
)
from gateway.node.store.engine import CommitState, GroupCommit
from gateway.node.store.rows import OutboxEntry

__all__ = ["SCHEMA", "register", "stored_directory"]


#: ``meta`` key of the copy of the directory version the node trusts (gateway.node.trust).
_TRUSTED_DIRECTORY = "trusted_directory"

SCHEMA = """
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
CREATE INDEX IF NOT EXISTS outbox_created ON outbox (created_at, message_id);
CREATE INDEX IF NOT EXISTS outbox_case ON outbox (case_ref, created_at);
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
    inner_jws   BLOB NOT NULL,      -- the recipient's signed receipt (evidence), or a
                                    -- reference into receipt_evidence (a coalesced receipt)
    PRIMARY KEY (message_id, org, status)
);
CREATE TABLE IF NOT EXISTS receipt_evidence (
    ref         BLOB PRIMARY KEY,   -- 'sha256:' + base64url SHA-256 of inner_jws
    inner_jws   BLOB NOT NULL       -- a coalesced receipt, kept once for all its entries
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


def ts(value: datetime) -> float:
    return value.timestamp()


def dt(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


def register(store: GroupCommit) -> None:
    """Teach ``store`` the node's commands."""
    store.on_command(InsertOutbox, _insert_outbox)
    store.on_command(RememberIdempotency, _remember_idempotency)
    store.on_command(SetStatus, _set_status)
    store.on_command(DateOutbox, _date_outbox)
    store.on_command(KeepReceipt, _keep_receipt)
    store.on_command(InsertInbox, _insert_inbox)
    store.on_command(SettleInbox, _settle_inbox)
    store.on_command(QueueReceipt, _queue_receipt)
    store.on_command(ReceiptSealed, _receipt_sealed)
    store.on_command(DropPendingReceipt, _drop_pending_receipt)
    store.on_command(KeepDirectory, _keep_directory)
    store.on_command(MarkReady, _mark_ready)


def _insert_outbox(db: sqlite3.Connection, c: InsertOutbox, _state: CommitState) -> bool:
    _outbox_row(db, c.entry, c.now)
    return True


def _outbox_row(db: sqlite3.Connection, entry: OutboxEntry, now: datetime) -> None:
    db.execute(
        "INSERT INTO outbox (message_id, message_type, purpose, case_ref, in_reply_to,"
        " created_at, expires_at, digest, envelope, purge_after) VALUES (?,?,?,?,?,?,?,?,?,?)",
        (
            entry.message_id,
            entry.message_type,
            entry.purpose,
            entry.case_ref,
            entry.in_reply_to,
            ts(entry.created_at),
            ts(entry.expires_at),
            entry.digest,
            entry.envelope,
            ts(entry.purge_after),
        ),
    )
    db.executemany(
        "INSERT INTO outbox_recipients (message_id, org, roles, status, updated_at)"
        " VALUES (?,?,?,'queued',?)",
        [
            (entry.message_id, org, json.dumps(list(roles)), ts(now))
            for org, roles in entry.recipients
        ],
    )


def _remember_idempotency(
    db: sqlite3.Connection, c: RememberIdempotency, _state: CommitState
) -> bool:
    return (
        db.execute(
            "INSERT OR IGNORE INTO idempotency (client, key, request, message_id, created_at)"
            " VALUES (?,?,?,?,?)",
            (c.client, c.key, c.request, c.message_id, ts(c.now)),
        ).rowcount
        == 1
    )


def _set_status(db: sqlite3.Connection, c: SetStatus, _state: CommitState) -> bool:
    return move_status(db, c.message_id, c.org, c.event, c.reason, c.now, c.final_purge_after)


def move_status(
    db: sqlite3.Connection,
    message_id: str,
    org: str,
    event: OutboundEvent,
    reason: str | None,
    now: datetime,
    final_purge_after: datetime | None = None,
) -> bool:
    """Move a recipient's status as the outbound transition table says; False when it stays.
    When every recipient is final, the message's ``final_at`` is set, and its envelope's deadline
    moves to ``final_purge_after`` if that is earlier."""
    # The message's row locked first (a no-op write): else two processes (decision 0109) moving
    # two recipients at once each read the other's old status, and neither sets final_at. The
    # write below holds only if the status is still what was read; else read again.
    db.execute("UPDATE outbox SET final_at=final_at WHERE message_id=?", (message_id,))
    while True:
        statuses = dict(
            db.execute(
                "SELECT org, status FROM outbox_recipients WHERE message_id=?", (message_id,)
            )
        )
        current = statuses.get(org)
        new = None if current is None else outbound_move(str(current), event)
        if new is None:
            return False
        moved = db.execute(
            "UPDATE outbox_recipients SET status=?, reason=?, updated_at=?, published=1"
            " WHERE message_id=? AND org=? AND status=?",
            (str(new), reason, ts(now), message_id, org, str(current)),
        ).rowcount
        if moved:
            break
    statuses[org] = str(new)
    if all_final(list(statuses.values())):
        db.execute("UPDATE outbox SET final_at=? WHERE message_id=?", (ts(now), message_id))
        if final_purge_after is not None:
            db.execute(
                "UPDATE outbox SET purge_after=min(purge_after, ?) WHERE message_id=?",
                (ts(final_purge_after), message_id),
            )
    return True


def _date_outbox(db: sqlite3.Connection, c: DateOutbox, _state: CommitState) -> bool:
    db.execute(
        "UPDATE outbox SET purge_after=? WHERE message_id=? AND purge_after IS NULL",
        (ts(c.purge_after), c.message_id),
    )
    return True


def _keep_receipt(db: sqlite3.Connection, c: KeepReceipt, _state: CommitState) -> bool:
    kept = c.inner_jws
    if c.shared is not None:
        db.execute(
            "INSERT OR IGNORE INTO receipt_evidence (ref, inner_jws) VALUES (?,?)",
            (c.shared, c.inner_jws),
        )
        kept = c.shared
    db.execute(
        "INSERT OR IGNORE INTO receipts_in (message_id, org, status, received_at, inner_jws)"
        " VALUES (?,?,?,?,?)",
        (c.message_id, c.org, c.status, ts(c.now), kept),
    )
    return True


def _insert_inbox(db: sqlite3.Connection, c: InsertInbox, _state: CommitState) -> bool:
    entry = c.entry
    return (
        db.execute(
            "INSERT OR IGNORE INTO inbox (sender, message_id, digest, message_type, roles,"
            " received_at, expires_at, status, reason, claims, inner_jws, forget_after)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                entry.sender,
                entry.message_id,
                entry.digest,
                entry.message_type,
                json.dumps(list(entry.roles)),
                ts(entry.received_at),
                ts(entry.expires_at),
                entry.status,
                entry.reason,
                entry.claims,
                entry.inner_jws,
                ts(entry.forget_after),
            ),
        ).rowcount
        == 1
    )


def _settle_inbox(db: sqlite3.Connection, c: SettleInbox, _state: CommitState) -> bool:
    row = db.execute(
        "SELECT status FROM inbox WHERE sender=? AND message_id=?", (c.sender, c.message_id)
    ).fetchone()
    new = None if row is None else inbound_move(str(row[0]), c.event)
    if new is None:
        return False
    now = c.purge_after <= c.now  # due at once (an inzageverzoek's BSN): not kept till a purge
    db.execute(
        "UPDATE inbox SET status=?, reason=?, settled_at=?, purge_after=?, claims=CASE WHEN ?"
        " THEN NULL ELSE claims END, inner_jws=CASE WHEN ? THEN NULL ELSE inner_jws END"
        " WHERE sender=? AND message_id=?",
        (str(new), c.reason, ts(c.now), ts(c.purge_after), now, now, c.sender, c.message_id),
    )
    return True


def _queue_receipt(db: sqlite3.Connection, c: QueueReceipt, state: CommitState) -> bool:
    db.execute(
        "INSERT INTO receipts_pending (sender, message_id, status, reason, record_idx, info,"
        " created_at) VALUES (?,?,?,?,?,?,?)",
        (
            c.sender,
            c.message_id,
            c.status,
            c.reason,
            state.index_of(c.proves),
            json.dumps(c.info.to_json()),
            ts(c.now),
        ),
    )
    return True


def _receipt_sealed(db: sqlite3.Connection, c: ReceiptSealed, _state: CommitState) -> bool:
    _outbox_row(db, c.entry, c.now)
    db.executemany(
        "INSERT OR REPLACE INTO receipts_out (sender, message_id, status, receipt_id)"
        " VALUES (?,?,?,?)",
        [(p.sender, p.message_id, p.status, c.entry.message_id) for p in c.pending],
    )
    db.executemany("DELETE FROM receipts_pending WHERE id=?", [(p.id,) for p in c.pending])
    return True


def _drop_pending_receipt(
    db: sqlite3.Connection, c: DropPendingReceipt, _state: CommitState
) -> bool:
    db.execute("DELETE FROM receipts_pending WHERE id=?", (c.pending_id,))
    return True


def _keep_directory(db: sqlite3.Connection, c: KeepDirectory, _state: CommitState) -> bool:
    db.execute(
        "INSERT OR REPLACE INTO meta VALUES (?, ?)", (_TRUSTED_DIRECTORY, c.raw.decode("utf-8"))
    )
    return True


def _mark_ready(db: sqlite3.Connection, c: MarkReady, _state: CommitState) -> bool:
    db.execute("INSERT OR REPLACE INTO meta VALUES ('ready', ?)", (c.now.isoformat(),))
    return True


def stored_directory(db: sqlite3.Connection) -> bytes | None:
    """The store's copy of the directory version the node trusts, if it holds one."""
    row = db.execute("SELECT value FROM meta WHERE key=?", (_TRUSTED_DIRECTORY,)).fetchone()
    return None if row is None else str(row[0]).encode("utf-8")
