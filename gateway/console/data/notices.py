"""The ``rights.notice`` messages this node sent (AVG art. 19) and who complied: each
recipient's status from its signed receipts (``accepted``: its partner system took the notice).

A notice is **open** while a recipient has not accepted it (still queued, sent, delivered — or
rejected or expired, which the privacy officer follows up outside the gateway). Read from the
node's outbox tables; nothing personal (the case reference is the case's pseudonym).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime

__all__ = ["NoticeRecipient", "SentNotice", "sent_notices"]


@dataclass(frozen=True)
class NoticeRecipient:
    org: str
    status: str
    updated_at: datetime


@dataclass(frozen=True)
class SentNotice:
    message_id: str
    created_at: datetime
    case_ref: str
    recipients: tuple[NoticeRecipient, ...]

    @property
    def open(self) -> bool:
        """True while a recipient has not accepted the notice."""
        return any(r.status != "accepted" for r in self.recipients)


def sent_notices(db: sqlite3.Connection, *, limit: int = 500) -> list[SentNotice]:
    """The newest ``limit`` notices this node sent, open ones first, newest first."""
    rows = db.execute(
        "SELECT o.message_id, o.created_at, o.case_ref, r.org, r.status, r.updated_at"
        " FROM outbox o JOIN outbox_recipients r USING (message_id)"
        " WHERE o.message_id IN (SELECT message_id FROM outbox WHERE message_type='rights.notice'"
        " ORDER BY created_at DESC LIMIT ?) ORDER BY o.created_at DESC, r.org",
        (limit,),
    ).fetchall()
    by_id: dict[str, tuple[float, str, list[NoticeRecipient]]] = {}
    for message_id, created, case_ref, org, status, updated in rows:
        entry = by_id.setdefault(message_id, (created, case_ref, []))
        entry[2].append(NoticeRecipient(org, status, datetime.fromtimestamp(updated, UTC)))
    notices = [
        SentNotice(mid, datetime.fromtimestamp(created, UTC), case_ref, tuple(recipients))
        for mid, (created, case_ref, recipients) in by_id.items()
    ]
    return sorted(notices, key=lambda n: (not n.open, -n.created_at.timestamp()))
