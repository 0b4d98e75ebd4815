"""An adapter's send request becomes the claims of a message (``Outbound.send``).

Validation against the API contract, the sender role, the purpose's defaults (legal basis,
processing activity), identifiers, times and the trace context; the result is checked against
the wire contract like any claims (docs/architecture.md).
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from opentelemetry.trace import Span
from pydantic import ValidationError

from gateway.node.context import NodeContext
from gateway.node.problems import ApiError, field_errors
from schemas import ids, strictjson
from schemas.api import FieldError, SendRequest
from schemas.catalogue import Catalogue
from schemas.claims import SPEC_VERSION, ClaimsBase, parse_claims

__all__ = ["assemble", "parse_request", "wire_time"]


def wire_time(t: datetime) -> str:
    """A claims time: UTC, whole seconds, ``Z`` (``2026-03-02T09:15:00Z``)."""
    return t.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def _fe(field: str, message: str) -> FieldError:
    return FieldError(field=field, message=message)


def parse_request(body: bytes, catalogue: Catalogue) -> SendRequest:
    """The adapter's request body, checked against the API contract (raises :class:`ApiError`)."""
    try:
        strictjson.loads(body)
    except ValueError as exc:
        raise ApiError("invalid-request", f"the body is not acceptable JSON: {exc}") from None
    try:
        return SendRequest.model_validate_json(body, context={"catalogue": catalogue})
    except ValidationError as exc:
        raise ApiError(
            "invalid-message", "the request breaks the API contract", errors=field_errors(exc)
        ) from None


def assemble(ctx: NodeContext, req: SendRequest, now: datetime, span: Span) -> ClaimsBase:
    """The claims of the message ``req`` asks for, sent by this node at ``now``."""
    roles = ctx.roles
    created = now.replace(microsecond=0)
    if req.sender_role is not None:
        if req.sender_role not in roles:
            raise ApiError(
                "invalid-message",
                f"this organisation does not hold role {req.sender_role}",
                errors=[_fe("sender_role", f"must be one of {', '.join(roles)}")],
            )
        role = req.sender_role
    elif len(roles) == 1:
        role = roles[0]
    else:
        raise ApiError(
            "invalid-message",
            "this organisation acts in several roles: say which in sender_role",
            errors=[_fe("sender_role", f"required: one of {', '.join(roles)}")],
        )
    defaults = ctx.config.purposes.get(req.purpose)
    legal_basis = req.legal_basis or (defaults.legal_basis if defaults else None)
    activity = req.processing_activity or (defaults.processing_activity if defaults else None)
    missing = [
        _fe(name, f"required: the node has no default for purpose {req.purpose}")
        for name, value in (("legal_basis", legal_basis), ("processing_activity", activity))
        if not value
    ]
    if missing:
        raise ApiError(
            "invalid-message", "legal basis and processing activity are needed", errors=missing
        )
    sc = span.get_span_context()
    ttl = req.expires_in_seconds or ctx.config.limits.default_ttl_seconds
    doc: dict[str, Any] = {
        "spec": SPEC_VERSION,
        "message_id": ids.uuid7(int(now.timestamp() * 1000), ctx.rand(10)),
        "message_type": req.message_type,
        "created_at": wire_time(created),
        "expires_at": wire_time(created + timedelta(seconds=ttl)),
        "sender": {"org": ctx.org, "node": ctx.config.node.node_id, "role": role},
        "recipients": [r.model_dump() for r in req.recipients],
        "case_ref": req.case_ref,
        "purpose": req.purpose,
        "legal_basis": list(legal_basis or ()),
        "processing_activity": activity,
        "data_categories": list(req.data_categories),
        "flags": req.flags.model_dump(),
        "subjects": [s.model_dump() for s in req.subjects],
        "trace": f"00-{sc.trace_id:032x}-{sc.span_id:016x}-01",
        "body": req.body,
    }
    for name in ("programme", "in_reply_to", "correlation_id"):
        if getattr(req, name) is not None:
            doc[name] = getattr(req, name)
    latest = ctx.audit.latest
    if latest is not None:
        doc["log_anchor"] = {
            "size": latest.size,
            "root": base64.b64encode(latest.root).decode("ascii"),
        }
    try:
        return parse_claims(
            json.dumps(doc, ensure_ascii=False).encode("utf-8"), catalogue=ctx.catalogue
        )
    except ValidationError as exc:
        raise ApiError(
            "invalid-message", "the message breaks the contract", errors=field_errors(exc)
        ) from None
