"""What the node stores and reads back: outbox and inbox entries, statuses, pending receipts.

Plain values; the SQL that keeps them is in :mod:`gateway.node.store.sqlite` and
:mod:`gateway.node.store.writes`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

__all__ = [
    "FINAL_STATUSES",
    "RECEIPT_STATUSES",
    "STATUS_RANK",
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
    "contradicts",
    "may_move",
]

#: Delivery statuses per recipient, in the only order they may move (receipts can arrive out of
#: order; a lower rank never overwrites a higher one). One exception: ``expired`` is what the
#: sender assumes when no answer came in time, and a recipient's signed receipt that arrives
#: later replaces it.
STATUS_RANK = {"queued": 0, "sent": 1, "delivered": 2, "accepted": 3, "rejected": 3, "expired": 3}
FINAL_STATUSES = frozenset(s for s, r in STATUS_RANK.items() if r == 3)
RECEIPT_STATUSES = frozenset({"delivered", "accepted", "rejected"})


def may_move(current: str, status: str) -> bool:
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
class InboxMessage:
    """An inbox message as settling needs it (``claims`` is ``None`` once purged)."""

    sender: str
    status: str  # delivered | accepted | rejected | refused
    digest: bytes
    roles: tuple[str, ...]
    claims: bytes | None


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
