"""What the node asks its store to remember, as values (docs/decisions/0083-store-commands.md).

The loops build commands and hand them to :meth:`Store.commit`, which applies them in order in
one transaction (group-committed with whatever else is waiting): the state, its audit records
and the receipt it calls for are durable together or not at all. Some commands are
*conditions*: when one does not hold (the inbox has the message already, the status may not
move, the Idempotency-Key was taken meanwhile, the evidence is kept already) nothing of the
commit is written and it reports ``applied=False``.

No SQL here: :mod:`gateway.node.store.writes` applies the node's commands to SQLite, and the
audit log (:mod:`gateway.audit.log`, :mod:`gateway.audit.witnessing`) applies its own; another
store implements the same commands.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from gateway.core.audit import Record
from gateway.core.delivery import InboundEvent, OutboundEvent
from gateway.core.receipts import ReceiptInfo
from gateway.core.witness import LogHead
from gateway.node.store.rows import InboxEntry, OutboxEntry, PendingReceipt

__all__ = [
    "EVIDENCE_REF",
    "AppendAudit",
    "AppendEvidence",
    "AuditRow",
    "Command",
    "Committed",
    "DateOutbox",
    "DropPendingReceipt",
    "ExtendRightsRequest",
    "FileRightsAnswer",
    "InsertInbox",
    "InsertOutbox",
    "KeepDeferral",
    "KeepDirectory",
    "KeepReceipt",
    "KeepRightsRequest",
    "KeepWitnessEvidence",
    "MarkReady",
    "QueueReceipt",
    "ReceiptSealed",
    "ReleaseDeferral",
    "RememberIdempotency",
    "SaveWitnessHead",
    "SetStatus",
    "SettleInbox",
]


@dataclass(frozen=True)
class Committed:
    """The outcome of :meth:`Store.commit`: whether every condition held (else nothing was
    written), and the audit indexes the commit's records got, in order."""

    applied: bool
    indexes: tuple[int, ...] = ()


# ---------------------------------------------------------------- outbound


@dataclass(frozen=True)
class InsertOutbox:
    """A sealed message (or receipt) in the outbox, every recipient ``queued``."""

    entry: OutboxEntry
    now: datetime


@dataclass(frozen=True)
class RememberIdempotency:
    """Condition: an adapter's Idempotency-Key, unless a concurrent request took it."""

    client: str
    key: str
    request: bytes  # SHA-256 of the request body
    message_id: str
    now: datetime


@dataclass(frozen=True)
class SetStatus:
    """Condition: ``event`` moves a recipient's delivery status (``gateway.core.delivery``:
    the outbound transition table decides; a pair not in it changes nothing)."""

    message_id: str
    org: str
    event: OutboundEvent
    reason: str | None
    now: datetime
    #: The envelope's deadline should this move make every recipient final (``None``: the one
    #: it has stays, as for an expiry: ``RetentionPolicy.outbox_purge_after``).
    final_purge_after: datetime | None = None


@dataclass(frozen=True)
class DateOutbox:
    """The envelope deadline of an outbox entry written before deadlines were stored."""

    message_id: str
    purge_after: datetime


@dataclass(frozen=True)
class KeepReceipt:
    """A recipient's signed receipt, kept as evidence (``zvg audit export``).

    A coalesced receipt is evidence for each of its entries: with ``shared`` (its reference,
    :data:`EVIDENCE_REF` and the base64url SHA-256 of ``inner_jws``) the bytes are kept once in
    ``receipt_evidence`` and each entry's row holds the reference."""

    message_id: str
    org: str
    status: str
    inner_jws: bytes
    now: datetime
    shared: bytes | None = None


#: Prefix of a reference to kept evidence (``KeepReceipt.shared``); a compact JWS never starts so.
EVIDENCE_REF = b"sha256:"


# ---------------------------------------------------------------- inbound


@dataclass(frozen=True)
class InsertInbox:
    """Condition: an inbound message, once per (sender, message id)."""

    entry: InboxEntry


@dataclass(frozen=True)
class SettleInbox:
    """Condition: the adapter's ack or reject moves a message in the inbox (the inbound
    transition table decides: only a ``delivered`` message moves, once). A ``purge_after`` not
    later than ``now`` drops the stored payload in the same commit."""

    sender: str
    message_id: str
    event: InboundEvent
    reason: str | None
    now: datetime
    purge_after: datetime


@dataclass(frozen=True)
class QueueReceipt:
    """A receipt to seal, proving ``proves``: an audit record appended by the same commit."""

    sender: str
    message_id: str
    status: str
    reason: str | None
    info: ReceiptInfo
    proves: Record
    now: datetime


@dataclass(frozen=True)
class ReceiptSealed:
    """A sealed receipt envelope: into the outbox, remembered as answering each of its messages
    (one pending receipt, or several coalesced), off the queue."""

    pending: tuple[PendingReceipt, ...]
    entry: OutboxEntry
    now: datetime


@dataclass(frozen=True)
class DropPendingReceipt:
    """Forget a receipt that may not be sealed (the policy denies it, or the sender has no valid
    encryption key); commit it with the audit records that say so."""

    pending_id: int


# ---------------------------------------------------------------- node state


@dataclass(frozen=True)
class KeepDirectory:
    """The store's copy of the directory version the node trusts (``gateway.node.trust``)."""

    raw: bytes


@dataclass(frozen=True)
class MarkReady:
    """A write ``/readyz`` makes to see that the store takes writes."""

    now: datetime


# ---------------------------------------------------------------- inzageverzoeken


@dataclass(frozen=True)
class KeepRightsRequest:
    """An inzageverzoek the ZVH started (committed with its ``rights.request`` messages and
    records, docs/decisions/0116): the request and, in order, each organisation's entry as JSON
    (``status``, ``role``, ``request_message_id``, our own part's ``response``, ...). A request
    kept already stays as it is (the import of the old files may run twice)."""

    request_id: str
    case_ref: str
    received_on: str
    started_at: str
    identity_check: str
    extension: str | None
    organisations: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class FileRightsAnswer:
    """Condition: a partner's answer to the request message we sent it (``in_reply_to``) is
    filed with the request. Only that organisation's row changes (two answers filed at once do
    not touch each other's); an answer older than the one filed (``answered_at``, the
    ``created_at`` of its claims, then its message id, a UUIDv7) changes nothing."""

    request_id: str
    org: str
    request_message_id: str
    status: str
    response: str  # the answer's body as JSON
    response_message_id: str
    answered_at: datetime


@dataclass(frozen=True)
class ExtendRightsRequest:
    """Condition: the term of a request is extended, once (``extension``: JSON, reason and day)."""

    request_id: str
    extension: str


@dataclass(frozen=True)
class KeepDeferral:
    """What a partner needs to answer a request later (deferred, or its answer not sent): the
    deferral as JSON, keyed by the request message. Kept once."""

    request_message_id: str
    deferral: str


@dataclass(frozen=True)
class ReleaseDeferral:
    """Condition: a deferral is released, once (compare-and-set on ``released_on``), with the
    answer ``response_message_id`` sent in the same commit."""

    request_message_id: str
    released_on: str
    response_message_id: str


# ---------------------------------------------------------------- audit log


@dataclass(frozen=True)
class AuditRow:
    """One audit record as stored: built by ``AuditLog.append`` outside the writer thread."""

    record: Record
    leaf: bytes
    view: str
    personal: str
    salt: bytes
    purge_after: float


@dataclass(frozen=True)
class AppendAudit:
    """Audit records (``AuditLog.append`` builds this command)."""

    rows: tuple[AuditRow, ...]


@dataclass(frozen=True)
class AppendEvidence:
    """Condition: an audit record with a partner's signed bytes verbatim beside it, once per
    those bytes (``AuditLog.append_evidence`` builds this command)."""

    append: AppendAudit
    sha256: bytes
    evidence: bytes


@dataclass(frozen=True)
class SaveWitnessHead:
    """Condition: the head of a partner's log we cosigned moves from ``old`` to ``new``
    (compare-and-swap: two cosigning rounds may race)."""

    origin: str
    old: LogHead | None
    new: LogHead


@dataclass(frozen=True)
class KeepWitnessEvidence:
    """Why we refused to cosign a partner's checkpoint, with the evidence."""

    origin: str
    code: str
    evidence: str
    now: datetime


@dataclass(frozen=True)
class ShredForErasure:
    """An erasure (AVG art. 17, a ``rights.notice`` of kind ``erase``): drop the stored payloads
    of ``message_ids`` (outbox envelopes, inbox claims and signed bytes) and shred the personal
    parts, salts and kept evidence of the audit records ``indexes``; their leaf views stay
    (docs/decisions/0107-erasure-shreds-personal-parts-and-is-logged.md)."""

    indexes: tuple[int, ...]
    message_ids: tuple[str, ...]


Command = (
    InsertOutbox
    | RememberIdempotency
    | SetStatus
    | DateOutbox
    | KeepReceipt
    | InsertInbox
    | SettleInbox
    | QueueReceipt
    | ReceiptSealed
    | DropPendingReceipt
    | KeepDirectory
    | MarkReady
    | AppendAudit
    | AppendEvidence
    | SaveWitnessHead
    | KeepWitnessEvidence
    | ShredForErasure
    | KeepRightsRequest
    | FileRightsAnswer
    | ExtendRightsRequest
    | KeepDeferral
    | ReleaseDeferral
)
