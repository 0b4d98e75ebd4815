"""The node's local HTTP API (``/v1``) as models: what an adapter sends and gets back.

An adapter sends a :class:`SendRequest` (the message without what the node fills in: ids, times,
sender, trace and the sender's audit anchor); the node assembles the claims, validates them with
:func:`schemas.claims.parse_claims` (so every contract rule and its field-named error applies),
checks the policy, stores the message in its outbox and answers :class:`SendAccepted`. Errors are
:class:`Problem` documents (RFC 9457 ``application/problem+json``) with a stable ``type``.

The acting employee travels in headers (``ZVG-Actor``, ``ZVG-Actor-Role``, ``ZVG-Responsible``)
so reads of the inbox are attributed too; the node logs them as separate access records.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field

from schemas import limits
from schemas._base import (
    CaseRef,
    CategoryCode,
    LegalBasisCode,
    Oin,
    ProgrammeCode,
    PurposeCode,
    TraceParent,
    Uuid7,
    Wire,
)
from schemas.catalogue import MessageType
from schemas.claims import Flags, Subject
from schemas.common import OrgRef
from schemas.reasons import RejectReason

__all__ = [
    "ACTOR_HEADERS",
    "AdapterRejectReason",
    "DeliveryStatus",
    "FieldError",
    "InboxItem",
    "InboxPage",
    "MessageStatus",
    "Problem",
    "RecipientStatus",
    "RejectRequest",
    "SendAccepted",
    "SendRequest",
]

#: Headers naming the acting employee (NEN 7513 access records): pseudonymous id, role, and the
#: responsible user when someone acts on another's behalf.
ACTOR_HEADERS = ("ZVG-Actor", "ZVG-Actor-Role", "ZVG-Responsible")

DeliveryStatus = Literal["queued", "sent", "delivered", "accepted", "rejected", "expired"]

#: Why an adapter refuses a delivered message (sent back to the sender as ``adapter_rejected``).
AdapterRejectReason = Literal[
    "unknown_subject",  # the partner's system cannot place the person
    "not_responsible",  # wrong organisation or team for this message
    "duplicate",  # the partner's system already has this information
    "invalid_content",  # the content cannot be processed by the partner's system
    "other",
]


class SendRequest(Wire):
    """``POST /v1/messages``: a message to send. The node fills ``message_id``, ``created_at``,
    ``expires_at`` (from ``expires_in_seconds`` or its default), ``sender``, ``trace`` (continuing
    ``traceparent`` when given) and ``log_anchor``; ``legal_basis`` and ``processing_activity``
    default to the node's configuration for the purpose."""

    message_type: MessageType
    purpose: PurposeCode
    recipients: Annotated[tuple[OrgRef, ...], Field(min_length=1, max_length=limits.MAX_RECIPIENTS)]
    case_ref: CaseRef
    data_categories: Annotated[tuple[CategoryCode, ...], Field(max_length=32)]
    flags: Flags = Flags()
    subjects: Annotated[tuple[Subject, ...], Field(max_length=limits.MAX_SUBJECTS)] = ()
    body: dict[str, Any]
    sender_role: str | None = None
    """The role to send in, when the organisation holds several (e.g. ZVH or GEM)."""
    programme: ProgrammeCode | None = None
    legal_basis: Annotated[tuple[LegalBasisCode, ...], Field(min_length=1, max_length=8)] | None = (
        None
    )
    processing_activity: str | None = None
    in_reply_to: Uuid7 | None = None
    correlation_id: Uuid7 | None = None
    expires_in_seconds: Annotated[int, Field(ge=60, le=7 * 24 * 3600)] | None = None
    traceparent: TraceParent | None = None


class SendAccepted(Wire):
    """``202`` answer to a send: the message is durably in the outbox."""

    message_id: Uuid7
    status_url: str


class RecipientStatus(Wire):
    """Where a message stands for one recipient."""

    org: Oin
    role: str
    status: DeliveryStatus
    reason: RejectReason | None = None
    updated_at: datetime


class MessageStatus(Wire):
    """``GET /v1/messages/{id}``: the message's metadata and status per recipient (no content)."""

    message_id: Uuid7
    message_type: MessageType
    purpose: str
    case_ref: CaseRef
    created_at: datetime
    expires_at: datetime
    recipients: tuple[RecipientStatus, ...]


class InboxItem(Wire):
    """A delivered message waiting for the adapter: the verified claims, body included."""

    message_id: Uuid7
    sender: Oin
    recipient_roles: tuple[str, ...]
    """The roles of this organisation the message is addressed to (e.g. ZVH and GEM)."""
    received_at: datetime
    redelivered: bool
    claims: dict[str, Any]


class InboxPage(Wire):
    """``GET /v1/inbox``: the oldest unacknowledged messages."""

    items: tuple[InboxItem, ...]


class RejectRequest(Wire):
    """``POST /v1/inbox/{id}/reject``: why the adapter refuses the message."""

    reason: AdapterRejectReason
    note: Annotated[str, Field(max_length=200)] | None = None
    """For our own audit record only; never sent to the sender."""


class FieldError(Wire):
    """One invalid field of a request: where, and which rule (never the value)."""

    field: str
    message: str


class Problem(Wire):
    """RFC 9457 problem details. ``type`` is stable (``https://zv-gateway.example/problems/…``)."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: tuple[FieldError, ...] = ()
    decision: dict[str, Any] | None = None
    """For policy denials: reason code, purpose, recipient, category or flag, rule, version."""
