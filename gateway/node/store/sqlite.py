"""The node's store on SQLite: :class:`SqliteStore` implements :class:`gateway.node.store.Store`.

Writes are commands (:mod:`gateway.node.store.commands`) applied by :mod:`gateway.node.store.writes`
in the group commit of :class:`~gateway.node.store.engine.GroupCommit`; reads that need no
transaction run on the read connection (committed data only). Nothing here decides anything: the
loops call the core for every decision and use the store to remember the result.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from pathlib import Path

from gateway.core.receipts import ReceiptInfo
from gateway.node.store import periodic, rights, writes
from gateway.node.store.engine import GroupCommit
from gateway.node.store.rows import (
    NODE_HANDLED_TYPES,
    FinalReceipt,
    InboxMessage,
    InboxRow,
    MessageRow,
    PendingPublish,
    PendingReceipt,
    RecipientRow,
    SeenRow,
    SentQuery,
)
from gateway.node.store.writes import dt, ts

__all__ = ["SqliteStore"]

#: ``(?,?)``: the placeholders of the types the node handles itself.
_NODE_HANDLED = "(" + ",".join("?" * len(NODE_HANDLED_TYPES)) + ")"
_FOR_ADAPTERS = f"""SELECT seq, sender, message_id, roles, received_at, handed_out, claims
    FROM inbox WHERE status='delivered' AND seq > ? AND message_type NOT IN {_NODE_HANDLED}
    ORDER BY seq LIMIT ?"""  # noqa: S608 - only placeholders
_FOR_THE_NODE = f"""SELECT seq, sender, message_id, roles, received_at, handed_out, claims
    FROM inbox WHERE status='delivered' AND seq > ? AND message_type IN {_NODE_HANDLED}
    AND claims IS NOT NULL ORDER BY seq LIMIT ?"""  # noqa: S608 - only placeholders


class SqliteStore(GroupCommit):
    """The node's durable state in one SQLite file (module docstring)."""

    #: Whether other processes may write the same store (an SQLite file: never, decision 0081).
    shared = False

    def __init__(self, path: Path, *, schemas: tuple[str, ...] = ()) -> None:
        super().__init__(
            path, schemas=(writes.SCHEMA, periodic.PERIODIC_INDEXES, rights.SCHEMA, *schemas)
        )
        writes.register(self)
        rights.register(self)
        #: The inzageverzoeken kept (decision 0116).
        self.rights = rights.RightsRows(self.read)

    async def find_idempotent(self, client: str, key: str) -> tuple[bytes, str] | None:
        rows = self.read(
            "SELECT request, message_id FROM idempotency WHERE client=? AND key=?", (client, key)
        )
        return None if not rows else (bytes(rows[0][0]), str(rows[0][1]))

    async def pending_publishes(
        self, limit: int, older_than: datetime | None = None
    ) -> list[PendingPublish]:
        """Envelopes not yet confirmed by the broker (created before ``older_than``, if given:
        fresh ones are handed to the publisher directly and need no re-reading)."""
        cutoff = ts(older_than) if older_than is not None else float("inf")
        rows = self.read(
            "SELECT r.message_id, r.org, o.envelope, o.expires_at, o.message_type, o.purpose,"
            " o.case_ref FROM outbox_recipients r JOIN outbox o USING (message_id)"
            " WHERE r.published = 0 AND r.status = 'queued' AND o.envelope IS NOT NULL"
            " AND o.created_at < ? ORDER BY o.created_at LIMIT ?",
            (cutoff, limit),
        )
        return [
            PendingPublish(m, org, bytes(env), dt(exp), t, p, c)
            for m, org, env, exp, t, p, c in rows
        ]

    async def message(self, message_id: str) -> MessageRow | None:
        """The message ``message_id`` this node sent (a shorthand of :meth:`messages`)."""
        rows = await self.messages(SentQuery(message_id=message_id))
        return rows[0] if rows else None

    async def messages(self, query: SentQuery) -> list[MessageRow]:
        """Messages this node sent, newest first (``query``: :class:`SentQuery`)."""
        where: list[str] = []
        args: list[str | float] = []
        for column, value in (
            ("message_id", query.message_id),
            ("case_ref", query.case_ref),
            ("purpose", query.purpose),
        ):
            if value is not None:
                where.append(f"o.{column} = ?")
                args.append(value)
        if query.not_type is not None:
            where.append("o.message_type != ?")
            args.append(query.not_type)
        if query.status is not None:
            where.append(
                "EXISTS (SELECT 1 FROM outbox_recipients s"
                " WHERE s.message_id = o.message_id AND s.status = ?)"
            )
            args.append(query.status)
        if query.since is not None:
            where.append("o.created_at >= ?")
            args.append(ts(query.since))
        if query.until is not None:
            where.append("o.created_at < ?")
            args.append(ts(query.until))
        if query.before is not None:
            where.append("(o.created_at, o.message_id) < (?, ?)")
            args += [ts(query.before[0]), query.before[1]]
        # Only the fixed conditions above are joined in; every value is a placeholder.
        condition = " AND ".join(where) or "1"
        sql = (
            "SELECT o.message_id, o.message_type, o.purpose, o.case_ref, o.created_at,"  # noqa: S608 - see above
            f" o.expires_at, o.digest FROM outbox o WHERE {condition}"
            " ORDER BY o.created_at DESC, o.message_id DESC LIMIT ?"
        )
        rows = self.read(sql, (*args, query.limit))
        recipients: dict[str, list[RecipientRow]] = {str(r[0]): [] for r in rows}
        if recipients:
            marks = ",".join("?" * len(recipients))
            sql = (
                "SELECT message_id, org, roles, status, reason, updated_at"  # noqa: S608 - placeholders only
                f" FROM outbox_recipients WHERE message_id IN ({marks}) ORDER BY rowid"
            )
            for m, o, r, s, reason, u in self.read(sql, tuple(recipients)):
                recipients[m].append(RecipientRow(o, tuple(json.loads(r)), s, reason, dt(u)))
        return [
            MessageRow(m, t, p, c, dt(cr), dt(ex), bytes(d), tuple(recipients[m]))
            for m, t, p, c, cr, ex, d in rows
        ]

    async def final_receipt(self, message_id: str, org: str) -> FinalReceipt | None:
        """The final status a recipient's signed receipt gave a message we sent, with that
        receipt; ``None`` while the recipient has given none (or only ``delivered``)."""
        rows = self.read(
            "SELECT r.status, r.reason, coalesce(e.inner_jws, i.inner_jws)"
            " FROM outbox_recipients r LEFT JOIN receipts_in i"
            " ON i.message_id = r.message_id AND i.org = r.org AND i.status = r.status"
            " LEFT JOIN receipt_evidence e ON e.ref = i.inner_jws"
            " WHERE r.message_id=? AND r.org=? AND r.status IN ('accepted','rejected')",
            (message_id, org),
        )
        if not rows:
            return None
        status, reason, jws = rows[0]
        return FinalReceipt(str(status), reason, None if jws is None else bytes(jws))

    async def seen(self, sender: str, message_id: str) -> SeenRow | None:
        rows = self.read(
            "SELECT digest, status, message_type FROM inbox WHERE sender=? AND message_id=?",
            (sender, message_id),
        )
        return None if not rows else SeenRow(bytes(rows[0][0]), str(rows[0][1]), str(rows[0][2]))

    async def take_inbox(
        self, limit: int, after: int = 0, *, for_node: bool = False
    ) -> list[InboxRow]:
        """The oldest delivered, unsettled messages for the adapters (after inbox position
        ``after``: a cursor); counts each hand-out (redelivery flag). Never one of the types the
        node handles itself (:data:`NODE_HANDLED_TYPES`), even while it waits for the node.

        ``for_node``: only those, not counted as handed out — the ones the node's handling has
        not settled yet, after a crash or a failure (gateway.node.rights.RightsDesk.resume)."""

        def job(db: sqlite3.Connection) -> list[InboxRow]:
            sql = _FOR_THE_NODE if for_node else _FOR_ADAPTERS
            rows = db.execute(sql, (after, *NODE_HANDLED_TYPES, limit)).fetchall()
            if not for_node:
                db.executemany(
                    "UPDATE inbox SET handed_out = handed_out + 1 WHERE seq=?",
                    [(r[0],) for r in rows],
                )
            return [
                InboxRow(seq, snd, mid, tuple(json.loads(roles)), dt(rec), int(h), bytes(c))
                for seq, snd, mid, roles, rec, h, c in rows
            ]

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
            return [PendingPublish(m, sender, bytes(env), dt(exp)) for m, env, exp in rows]

        return await self.run(job)

    async def gauges(self, now: datetime) -> dict[str, float]:
        """Counts for the metrics gauges: unconfirmed outbox entries and the age of the oldest,
        inbox messages waiting for the adapter, published messages without a receipt yet and
        the age of the oldest, witness conflicts kept as evidence (when the audit schema is
        there)."""

        return await self.run(lambda db: periodic.gauges(db, now))

    async def take_pending_receipts(self, limit: int) -> list[PendingReceipt]:
        """The oldest receipts waiting to be sealed (they stay until a ``ReceiptSealed``)."""

        def job(db: sqlite3.Connection) -> list[PendingReceipt]:
            return [
                PendingReceipt(
                    int(i), s, m, st, r, int(idx), ReceiptInfo.from_json(json.loads(info))
                )
                for i, s, m, st, r, idx, info in db.execute(
                    "SELECT id, sender, message_id, status, reason, record_idx, info"
                    " FROM receipts_pending ORDER BY id LIMIT ?",
                    (limit,),
                )
            ]

        return await self.run(job)

    async def inbox_message(self, message_id: str) -> InboxMessage | None:
        """The inbox's message ``message_id`` (the first, should two senders have used it)."""
        rows = self.read(
            "SELECT sender, status, digest, roles, claims, message_type FROM inbox"
            " WHERE message_id=? ORDER BY seq LIMIT 1",
            (message_id,),
        )
        if not rows:
            return None
        sender, status, digest, roles, claims, message_type = rows[0]
        return InboxMessage(
            str(sender),
            str(status),
            bytes(digest),
            tuple(json.loads(roles)),
            None if claims is None else bytes(claims),
            str(message_type),
        )

    async def undated_outbox(self) -> list[tuple[str, datetime, datetime | None]]:
        """Outbox entries with an envelope but no deadline (written by a version that stored
        none): (message id, expiry, when every recipient was final)."""
        rows = self.read(
            "SELECT message_id, expires_at, final_at FROM outbox"
            " WHERE purge_after IS NULL AND envelope IS NOT NULL"
        )
        return [(str(m), dt(e), None if f is None else dt(f)) for m, e, f in rows]

    async def expire_outbox(self, now: datetime) -> list[tuple[str, str]]:
        """Mark every recipient still queued or sent after the message expired; return them."""
        return await self.run(lambda db: periodic.expire_outbox(db, now))

    async def purge(self, now: datetime) -> tuple[int, int, int]:
        """Delete payloads past retention; keep the metadata status and audit need.

        Returns (inbox payloads purged, outbox envelopes purged, inbox rows forgotten)."""
        return await self.run(lambda db: periodic.purge(db, now))
