"""Outbound decisions (docs/architecture.md §9.1): the claims a node signs for an adapter's
request, and whether the policy lets them go.

:func:`assemble_claims` fills what the node adds to a :class:`~schemas.api.SendRequest` — the
message id, times, sender, trace, audit anchor, and the legal basis and processing activity the
node's configuration gives the purpose — and validates the result against the contract from
Python objects (no JSON written and read back). Every refusal is a :class:`ContractError`
that names the fields at fault (never their values), which the API renders as
``invalid-message``.

Rules enforced here:

- The sender role is the one the request names, which the organisation must hold; a request
  from an organisation with several roles must name one (``sender_role``).
- ``legal_basis`` and ``processing_activity`` come from the request, else from the node's
  defaults for the purpose; without either the message is refused (a message without a legal
  basis is not sent).
- ``created_at`` is ``now`` in whole UTC seconds; ``expires_at`` adds the request's
  ``expires_in_seconds`` or the node's default lifetime.
- Every contract rule of ``schemas.claims`` holds (the claims model validates).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from pydantic import TypeAdapter, ValidationError

from gateway.core.policy import Allowed, MessageFacts, PolicyDecision, evaluate
from gateway.errors import LocalError, RemoteError
from schemas._base import Wire
from schemas.api import FieldError, SendRequest, field_errors
from schemas.catalogue import Catalogue
from schemas.claims import SPEC_VERSION, ClaimsBase, LogAnchor, MessageClaims, Sender
from schemas.directory import DirectoryPayload

__all__ = [
    "Anchor",
    "ContractError",
    "Outbound",
    "PurposeDefaults",
    "SenderContext",
    "assemble_claims",
    "decide_outbound",
    "log_anchor",
    "validate_claims",
    "wire_time",
]


class PurposeDefaults(Protocol):
    """What the node's configuration says for one purpose (``[purposes.<code>]`` in node.toml)."""

    @property
    def legal_basis(self) -> Sequence[str]: ...
    @property
    def processing_activity(self) -> str: ...


class Anchor(Protocol):
    """The latest checkpoint of our audit log (its size and RFC 6962 root hash)."""

    @property
    def size(self) -> int: ...
    @property
    def root(self) -> bytes: ...


class ContractError(RemoteError):
    """The adapter's request cannot become a message: ``detail`` says why in one sentence,
    ``errors`` names each field at fault (field path and rule, never the value)."""

    def __init__(self, detail: str, errors: Sequence[FieldError]) -> None:
        super().__init__("invalid_claims", detail)
        self.errors: tuple[FieldError, ...] = tuple(errors)


@dataclass(frozen=True, slots=True)
class Outbound:
    """Claims the node may seal, with the policy's decision about them: built only together
    (:func:`decide_outbound`, :func:`gateway.core.receipts.receipt_claims`), so no path seals
    claims the policy never saw. Seal only when :attr:`allowed`."""

    claims: ClaimsBase
    decision: PolicyDecision

    @property
    def allowed(self) -> bool:
        return isinstance(self.decision, Allowed)


_CLAIMS: TypeAdapter[ClaimsBase] = TypeAdapter(MessageClaims)


def wire_time(t: datetime) -> datetime:
    """A claims time: ``t`` in UTC, whole seconds (so it equals the JOSE NumericDate)."""
    return t.astimezone(UTC).replace(microsecond=0)


def log_anchor(latest: Anchor | None) -> LogAnchor | None:
    """The ``log_anchor`` claim for our latest checkpoint (``None`` before the first one)."""
    if latest is None:
        return None
    return LogAnchor(size=latest.size, root=base64.b64encode(latest.root).decode("ascii"))


def _sender_role(request: SendRequest, roles: Sequence[str]) -> str:
    if request.sender_role is not None:
        if request.sender_role not in roles:
            raise ContractError(
                f"this organisation does not hold role {request.sender_role}",
                [FieldError(field="sender_role", message=f"must be one of {', '.join(roles)}")],
            )
        return request.sender_role
    if len(roles) == 1:
        return roles[0]
    raise ContractError(
        "this organisation acts in several roles: say which in sender_role",
        [FieldError(field="sender_role", message=f"required: one of {', '.join(roles)}")],
    )


@dataclass(frozen=True, slots=True)
class SenderContext:
    """What a node puts into every message it sends: its organisation, node id and the roles the
    directory gives it, its per-purpose defaults and default lifetime (``[purposes]``,
    ``limits.default_ttl_seconds``), and the catalogue the claims are validated against."""

    org: str
    node_id: str
    roles: tuple[str, ...]
    purpose_defaults: Mapping[str, PurposeDefaults]
    default_ttl_seconds: int
    catalogue: Catalogue


def assemble_claims(
    request: SendRequest,
    sender: SenderContext,
    *,
    now: datetime,
    message_id: str,
    trace: str,
    log_anchor: LogAnchor | None,
) -> ClaimsBase:
    """The validated claims for ``request`` sent by ``sender.org`` (module docstring).

    ``request`` comes from :func:`schemas.api.parse_send_request` (its ``body`` is the typed body
    model); ``message_id`` is a fresh UUIDv7 and ``trace`` the W3C traceparent of the send.
    Raises :class:`ContractError` naming the fields at fault, and :class:`LocalError` when
    ``request.body`` is a ``dict`` (a request not built by ``parse_send_request``: its body was
    never validated)."""
    body: object = request.body  # typed ``dict`` on SendRequest; a body model here
    if not isinstance(body, Wire):
        raise LocalError("assemble_claims needs a request from parse_send_request (typed body)")
    role = _sender_role(request, sender.roles)
    defaults = sender.purpose_defaults.get(request.purpose)
    legal_basis = request.legal_basis or (tuple(defaults.legal_basis) if defaults else None)
    activity = request.processing_activity or (defaults.processing_activity if defaults else None)
    missing = [
        FieldError(field=name, message=f"required: the node has no default for purpose {p}")
        for name, value, p in (
            ("legal_basis", legal_basis, request.purpose),
            ("processing_activity", activity, request.purpose),
        )
        if not value
    ]
    if missing:
        raise ContractError("legal basis and processing activity are needed", missing)
    created = wire_time(now)
    ttl = request.expires_in_seconds or sender.default_ttl_seconds
    values: dict[str, Any] = {
        "spec": SPEC_VERSION,
        "message_id": message_id,
        "message_type": request.message_type,
        "created_at": created,
        "expires_at": created + timedelta(seconds=ttl),
        "sender": Sender(org=sender.org, node=sender.node_id, role=role),
        "recipients": request.recipients,
        "case_ref": request.case_ref,
        "purpose": request.purpose,
        "legal_basis": legal_basis,
        "processing_activity": activity,
        "data_categories": request.data_categories,
        "flags": request.flags,
        "subjects": request.subjects,
        "trace": trace,
        "body": body,
    }
    for name in ("programme", "in_reply_to", "correlation_id"):
        value = getattr(request, name)
        if value is not None:
            values[name] = value
    if log_anchor is not None:
        values["log_anchor"] = log_anchor
    return validate_claims(values, catalogue=sender.catalogue)


def decide_outbound(
    request: SendRequest,
    sender: SenderContext,
    *,
    directory: DirectoryPayload,
    now: datetime,
    message_id: str,
    trace: str,
    log_anchor: LogAnchor | None,
) -> Outbound:
    """The claims :func:`assemble_claims` makes of ``request`` and the policy's decision about
    them under ``directory`` (``gateway.core.policy.evaluate``). Raises as
    :func:`assemble_claims`; a denial is a value (``Outbound.decision`` is ``Denied``): the node
    audits it before it refuses."""
    claims = assemble_claims(
        request, sender, now=now, message_id=message_id, trace=trace, log_anchor=log_anchor
    )
    return Outbound(claims, evaluate(directory, MessageFacts.of(claims)))


def validate_claims(values: Mapping[str, Any], *, catalogue: Catalogue) -> ClaimsBase:
    """Claims from Python values (models, tuples, aware datetimes) with every contract rule.
    Raises :class:`ContractError` naming the fields at fault."""
    try:
        return _CLAIMS.validate_python(dict(values), context={"catalogue": catalogue})
    except ValidationError as exc:
        raise ContractError("the message breaks the contract", field_errors(exc)) from None
