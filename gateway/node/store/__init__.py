"""The node's durable state: outbox, inbox, seen message ids, per-recipient delivery status, the
inzageverzoeken (:mod:`.rights`).

The loops of the node use exactly the :class:`Store` protocol: writes are commands, values
(:mod:`.commands`), applied together in one transaction by :meth:`Store.commit`; reads return
rows (:mod:`.rows`). :class:`~.sqlite.SqliteStore` implements it on SQLite with group commit
(:mod:`.engine`, docs/decisions/0041-store-group-commit.md); all the node's SQL is in this
package (:mod:`.writes`, :mod:`.sqlite`, :mod:`.rights`), the audit log's in :mod:`gateway.audit`.
:class:`~.postgres.PostgresStore` runs the same commands and queries on PostgreSQL
(docs/decisions/0094-postgresql-store-on-the-same-commands.md).
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from gateway.node.store.commands import (
    EVIDENCE_REF,
    AppendAudit,
    AppendEvidence,
    AuditRow,
    Command,
    Committed,
    DateOutbox,
    DropPendingReceipt,
    ExtendRightsRequest,
    FileRightsAnswer,
    InsertInbox,
    InsertOutbox,
    KeepDeferral,
    KeepDirectory,
    KeepReceipt,
    KeepRightsRequest,
    KeepWitnessEvidence,
    MarkReady,
    QueueReceipt,
    ReceiptSealed,
    ReleaseDeferral,
    RememberIdempotency,
    SaveWitnessHead,
    SetStatus,
    SettleInbox,
    ShredForErasure,
)
from gateway.node.store.engine import StoreFailedClosedError, StoreUnavailableError
from gateway.node.store.rights import RightsRows
from gateway.node.store.rows import (
    NODE_HANDLED_TYPES,
    FinalReceipt,
    InboxEntry,
    InboxMessage,
    InboxRow,
    MessageRow,
    OutboxEntry,
    PendingPublish,
    PendingReceipt,
    RecipientRow,
    SeenRow,
    SentQuery,
)
from gateway.node.store.sqlite import SqliteStore

__all__ = [
    "EVIDENCE_REF",
    "NODE_HANDLED_TYPES",
    "AppendAudit",
    "AppendEvidence",
    "AuditRow",
    "Command",
    "Committed",
    "DateOutbox",
    "DropPendingReceipt",
    "ExtendRightsRequest",
    "FileRightsAnswer",
    "FinalReceipt",
    "InboxEntry",
    "InboxMessage",
    "InboxRow",
    "InsertInbox",
    "InsertOutbox",
    "KeepDeferral",
    "KeepDirectory",
    "KeepReceipt",
    "KeepRightsRequest",
    "KeepWitnessEvidence",
    "MarkReady",
    "MessageRow",
    "OutboxEntry",
    "PendingPublish",
    "PendingReceipt",
    "QueueReceipt",
    "ReceiptSealed",
    "RecipientRow",
    "ReleaseDeferral",
    "RememberIdempotency",
    "RightsRows",
    "SaveWitnessHead",
    "SeenRow",
    "SentQuery",
    "SetStatus",
    "SettleInbox",
    "ShredForErasure",
    "SqliteStore",
    "Store",
    "StoreFailedClosedError",
    "StoreUnavailableError",
]


class Store(Protocol):
    """What the node's loops need from its durable state, and nothing more."""

    #: The inzageverzoeken (:mod:`.rights`): read in the caller's thread, committed data only.
    rights: RightsRows

    async def commit(self, *commands: Command) -> Committed:
        """Apply ``commands`` in order in one transaction; nothing when a condition fails."""
        ...

    # outbound
    async def find_idempotent(self, client: str, key: str) -> tuple[bytes, str] | None: ...
    async def pending_publishes(
        self, limit: int, older_than: datetime | None = None
    ) -> list[PendingPublish]: ...
    async def messages(self, query: SentQuery) -> list[MessageRow]:
        """Messages this node sent: one by id, or a filtered page, newest first."""
        ...

    async def final_receipt(self, message_id: str, org: str) -> FinalReceipt | None: ...

    # inbound and the inbox
    async def seen(self, sender: str, message_id: str) -> SeenRow | None: ...
    async def take_inbox(
        self, limit: int, after: int = 0, *, for_node: bool = False
    ) -> list[InboxRow]:
        """Delivered messages for the adapters, or (``for_node``) those the node handles."""
        ...

    async def inbox_message(self, message_id: str) -> InboxMessage | None: ...

    # receipts
    async def receipt_envelopes(self, sender: str, message_id: str) -> list[PendingPublish]: ...
    async def take_pending_receipts(self, limit: int) -> list[PendingReceipt]: ...

    # retention and gauges
    async def undated_outbox(self) -> list[tuple[str, datetime, datetime | None]]: ...
    async def expire_outbox(self, now: datetime) -> list[tuple[str, str]]: ...
    async def purge(self, now: datetime) -> tuple[int, int, int]: ...
    async def gauges(self, now: datetime) -> dict[str, float]: ...

    async def close(self) -> None: ...
