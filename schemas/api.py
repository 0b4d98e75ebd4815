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

import hashlib
import json
import re
from datetime import datetime
from typing import Annotated, Any, Literal, Union

from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    create_model,
)

from schemas import ids, limits
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
from schemas.bodies import BODY_TYPES
from schemas.catalogue import Catalogue, MessageType
from schemas.claims import Flags, Subject
from schemas.common import OrgRef
from schemas.reasons import RejectReason

__all__ = [
    "ACTOR_HEADERS",
    "TYPED_SEND_REQUESTS",
    "AdapterRejectReason",
    "DeliveryStatus",
    "FieldError",
    "InboxItem",
    "InboxPage",
    "MessagePage",
    "MessageStatus",
    "Problem",
    "RecipientStatus",
    "RejectRequest",
    "SendAccepted",
    "SendRequest",
    "field_errors",
    "parse_send_request",
    "request_fingerprint",
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


class _TypedSendRequest(SendRequest):
    """Base of the per-type send requests below. Their two own fields come from the body table,
    so they have no attribute docstrings to read; with the reading on, pydantic searches the
    source of every frame of the call stack for each class built by ``create_model`` (about
    0.3 s of CPU of a node's start-up: ``benchmarks/startup.py``)."""

    model_config = ConfigDict(use_attribute_docstrings=False)


def _camel(message_type: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"[._]", message_type))


#: Message type → the :class:`SendRequest` of that type, its ``body`` typed as the type's body
#: model (named ``SendRequestCaseReferral`` and so on, as the OpenAPI document and client
#: generators show them), so :func:`parse_send_request` validates the body from the request's
#: JSON in one pass (strict JSON mode: dates as strings, lists as tuples) and the claims take the
#: body model as it is.
TYPED_SEND_REQUESTS: dict[str, type[SendRequest]] = {
    message_type: create_model(
        f"SendRequest{_camel(message_type)}",
        __base__=_TypedSendRequest,
        __doc__=f"A {message_type} message to send (its body typed).",
        message_type=(Literal[message_type], ...),  # type: ignore[arg-type]  # a tag from the table
        body=(body_model, ...),
    )
    for message_type, body_model in BODY_TYPES.items()
}

_TYPED_REQUESTS: TypeAdapter[SendRequest] = TypeAdapter(
    Annotated[  # type: ignore[arg-type]  # a union built at run time from the body table
        Union[tuple(TYPED_SEND_REQUESTS.values())],  # noqa: UP007 - a union of a computed tuple
        Field(discriminator="message_type"),
    ]
)


def parse_send_request(raw: bytes | str, *, catalogue: Catalogue | None = None) -> SendRequest:
    """Validate a ``POST /v1/messages`` body: a :class:`SendRequest` whose ``body`` is the typed
    body model of its ``message_type`` (not a ``dict``). Raises ``pydantic.ValidationError``
    located at each broken field, as ``SendRequest.model_validate_json`` does (an unknown or
    missing ``message_type`` is reported at ``message_type``, never by echoing the value)."""
    context = {"catalogue": catalogue} if catalogue is not None else None
    try:
        return _TYPED_REQUESTS.validate_json(raw, context=context)
    except ValidationError as exc:
        if not any(e["type"].startswith("union_tag_") for e in exc.errors()):
            raise
    # The tag itself is wrong: the plain model names the field (and every other broken one).
    return SendRequest.model_validate_json(raw, context=context)


def request_fingerprint(request: SendRequest) -> bytes:
    """SHA-256 of the parsed request in one canonical form (sorted keys, no whitespace, defaults
    filled in): what an ``Idempotency-Key`` is bound to. The same JSON pretty-printed, with its
    keys in another order or a default spelled out is the same request."""
    canonical = json.dumps(
        request.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode()).digest()


def field_errors(error: ValidationError, prefix: tuple[str | int, ...] = ()) -> list[FieldError]:
    """Field-named errors without input values (a ValidationError from the contract models)."""
    out = []
    for e in error.errors(include_input=False, include_url=False):
        loc = [*prefix, *e["loc"]]
        # The discriminated union adds the message type as the first location: drop it.
        if loc and isinstance(loc[0], str) and "." in loc[0] and loc[0][0].islower():
            loc = loc[1:]
        out.append(FieldError(field=".".join(str(p) for p in loc) or "(body)", message=e["msg"]))
    return out


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
    next_cursor: str | None = None
    """Pass as ``cursor`` for the messages after these; ``null`` when the page is not full."""


class MessagePage(Wire):
    """``GET /v1/messages``: messages this node sent, newest first."""

    items: tuple[MessageStatus, ...]
    next_cursor: str | None = None
    """Pass as ``cursor`` (with the same filters) for the next page; ``null`` on the last."""


def _no_bsn(note: str) -> str:
    if ids.find_bsn(note):
        raise ValueError("looks like a BSN (nine digits passing the 11-proef); leave it out")
    return note


class RejectRequest(Wire):
    """``POST /v1/inbox/{id}/reject``: why the adapter refuses the message."""

    reason: AdapterRejectReason
    note: Annotated[str, Field(max_length=200), AfterValidator(_no_bsn)] | None = None
    """For our own audit record only, as personal data (a salted commitment in the leaf, the
    text purged with the record's other personal data); never sent to the sender."""


class FieldError(Wire):
    """One invalid field of a request: where, and which rule (never the value)."""

    field: str
    message: str


class Problem(Wire):
    """RFC 9457 problem details. ``type`` is stable: ``/problems/<slug>``, a page on the node."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: tuple[FieldError, ...] = ()
    decision: dict[str, Any] | None = None
    """For policy denials: reason code, purpose, recipient, category or flag, rule, version."""
