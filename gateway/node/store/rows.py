"""What the node stores and reads back: outbox and inbox entries, statuses, pending receipts.

Plain values; the SQL that keeps them is in :mod:`gateway.node.store.sqlite` and
:mod:`gateway.node.store.writes`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from gateway.core.receipts import ReceiptInfo

__all__ = [
    "NODE_HANDLED_TYPES",
    "FinalReceipt",
    "InboxEntry",
    "InboxMessage",
    "InboxRow",
    "MessageRow",
    "OutboxEntry",
    "PendingPublish",
    "PendingReceipt",
    "RecipientRow",
    "SeenRow",
    "SentQuery",
]


#: Message types the node handles itself (the inzageverzoek, gateway.node.rights): kept in the
#: inbox like every message, never handed to an adapter (docs/decisions/0116).
NODE_HANDLED_TYPES: tuple[str, ...] = ("rights.request", "rights.response")


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
    #: When the envelope may go (``RetentionPolicy.outbox_purge_after``); earlier once final.
    purge_after: datetime
    #: The send's trace id (not stored: a publish handed over at once joins it).
    trace_id: str = ""


@dataclass(frozen=True)
class PendingPublish:
    message_id: str
    org: str
    envelope: bytes
    expires_at: datetime
    message_type: str = ""
    purpose: str = ""
    case_ref: str = ""
    #: The send's trace id when handed over at once; empty when re-read from the store (the
    #: publisher then reads it from the ``message.send`` record).
    trace_id: str = ""


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
class SentQuery:
    """Which messages this node sent to read (:meth:`gateway.node.store.Store.messages`): one by
    id, or a page newest first, filtered. ``before`` is the keyset of the last message of the
    previous page, ``(created_at, message_id)``; every filter is exact, times are
    ``since <= created_at < until``."""

    message_id: str | None = None
    status: str | None = None  # a message matches when any recipient has this status
    case_ref: str | None = None
    purpose: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    before: tuple[datetime, str] | None = None
    not_type: str | None = None  # leave this message type out (the list leaves receipts out)
    limit: int = 1


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
class InboxMessage:
    """An inbox message as settling needs it (``claims`` is ``None`` once purged)."""

    sender: str
    status: str  # delivered | accepted | rejected | refused
    digest: bytes
    roles: tuple[str, ...]
    claims: bytes | None
    message_type: str = ""


@dataclass(frozen=True)
class PendingReceipt:
    """A receipt to seal: which message it answers, its status, and our audit record to prove."""

    id: int
    sender: str
    message_id: str
    status: str
    reason: str | None
    record_idx: int
    info: ReceiptInfo


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
