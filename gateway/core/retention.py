"""Retention deadlines (docs/architecture.md §9.3): when a node may forget what it stores.

One frozen :class:`RetentionPolicy`, built once from the node's configured limits, computes a
deadline for each kind of stored item when the item is written or settled; the store then only
deletes ``WHERE deadline <= now``. No retention rule lives in SQL.

Rules enforced here:

- **Dedup memory** (``inbox.forget_after``): a received ``(sender, message id)`` is remembered
  while its envelope could still pass the time checks — its ``iat`` may lie up to the allowed
  clock skew after its arrival, and stays acceptable for the maximum age — so a replay is
  always recognised.
- **Inbox payload** (``inbox.purge_after``): the claims and the signed bytes of a message stay
  ``inbox_after_ack_days`` after the adapter acked or rejected it; the metadata stays for the
  dedup memory and the audit record for ever.
- **Outbox envelope** (``outbox.purge_after``): the sealed envelope stays
  ``outbox_after_final_days`` after every recipient reached a final status, or after the message
  expired, whichever comes first.
- **Idempotency keys**: kept ``idempotency_keep`` (7 days), far longer than any adapter retries
  a send, short enough that the table does not grow for ever.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from gateway.errors import LocalError

__all__ = ["IDEMPOTENCY_KEEP", "RetentionPolicy"]

#: How long an Idempotency-Key is remembered (the client SDK gives up retrying after minutes).
IDEMPOTENCY_KEEP: Final = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """The node's retention periods; each method gives the deadline of one stored item."""

    dedup_window: timedelta
    inbox_after_settle: timedelta
    outbox_after_final: timedelta
    idempotency_keep: timedelta = IDEMPOTENCY_KEEP

    def __post_init__(self) -> None:
        for name in (
            "dedup_window",
            "inbox_after_settle",
            "outbox_after_final",
            "idempotency_keep",
        ):
            if getattr(self, name) < timedelta(0):
                raise LocalError(f"retention: {name} must not be negative")

    @classmethod
    def of(
        cls,
        *,
        max_age_seconds: float,
        max_clock_skew_seconds: float,
        inbox_after_ack_days: float,
        outbox_after_final_days: float,
    ) -> RetentionPolicy:
        """The policy of a node's ``[limits]`` and ``[retention]`` settings."""
        return cls(
            dedup_window=timedelta(seconds=max_age_seconds + max_clock_skew_seconds),
            inbox_after_settle=timedelta(days=inbox_after_ack_days),
            outbox_after_final=timedelta(days=outbox_after_final_days),
        )

    def forget_after(self, received_at: datetime) -> datetime:
        """When the inbox may forget a ``(sender, message id)`` received at ``received_at``."""
        return received_at + self.dedup_window

    def inbox_purge_after(self, settled_at: datetime) -> datetime:
        """When the payload of a message the adapter settled at ``settled_at`` goes."""
        return settled_at + self.inbox_after_settle

    def outbox_purge_after(
        self, expires_at: datetime, final_at: datetime | None = None
    ) -> datetime:
        """When a sealed envelope goes: after its expiry or after the moment every recipient was
        final (``final_at``, once known), whichever is first."""
        deadline = expires_at + self.outbox_after_final
        if final_at is not None:
            deadline = min(deadline, final_at + self.outbox_after_final)
        return deadline

    def idempotency_forget_after(self, created_at: datetime) -> datetime:
        """When an Idempotency-Key remembered at ``created_at`` is forgotten."""
        return created_at + self.idempotency_keep
