"""The audit fields the node's loops write about a message, a policy decision or a receipt.

Never a message body: the fields are the metadata docs/architecture.md lists for audit records.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opentelemetry.trace import Span

from gateway.core import jose
from gateway.core.audit import Actor, Record
from gateway.core.policy import Allowed, Denied
from gateway.node.context import NodeContext
from schemas.claims import ClaimsBase

__all__ = ["access_record", "b64", "claims_fields", "policy_record", "receipt_info"]


def b64(digest: bytes) -> str:
    return jose.b64u_encode(digest)


def claims_fields(claims: ClaimsBase, span: Span | None = None) -> dict[str, Any]:
    """Audit fields of a message (never its body)."""
    ctx = span.get_span_context() if span is not None else None
    return {
        "trace_id": f"{ctx.trace_id:032x}" if ctx else claims.trace.split("-")[1],
        "span_id": f"{ctx.span_id:016x}" if ctx else claims.trace.split("-")[2],
        "processing_activity_id": claims.processing_activity,
        "message_id": claims.message_id,
        "message_type": claims.message_type,
        "purpose": claims.purpose,
        "legal_basis": claims.legal_basis,
        "sender": claims.sender.org,
        "recipients": claims.recipient_orgs(),
        "data_categories": claims.data_categories,
        "flags": tuple(k for k, v in claims.flags.model_dump().items() if v),
        "case_ref": claims.case_ref,
        "data_subjects": tuple(s.subject_ref for s in claims.subjects),
    }


def policy_record(ctx: NodeContext, decision: Allowed | Denied, fields: dict[str, Any]) -> Record:
    """The ``policy.decision`` record of an outbound or inbound policy check."""
    if isinstance(decision, Allowed):
        return ctx.record(
            "policy.decision",
            policy_version=decision.directory_version,
            policy_rule=",".join(decision.rule_ids()),
            policy_decision="allow",
            **fields,
        )
    return ctx.record(
        "policy.decision",
        "denied",
        policy_version=decision.directory_version,
        policy_rule=decision.rule_id,
        policy_decision="deny",
        reason=decision.reason,
        detail={
            k: v
            for k, v in (
                ("category", decision.category),
                ("flag", decision.flag),
                ("recipient", decision.recipient[0] if decision.recipient else None),
            )
            if v
        },
        **fields,
    )


def access_record(ctx: NodeContext, actor: Actor, fields: dict[str, Any]) -> Record:
    """The ``access`` record of an actor who made the node act on a message (NEN 7513)."""
    return ctx.record(
        "access",
        actor=actor,
        trace_id=fields.get("trace_id"),
        span_id=fields.get("span_id"),
        message_id=fields.get("message_id"),
        case_ref=fields.get("case_ref"),
    )


def receipt_info(claims: ClaimsBase, roles: Sequence[str], digest: bytes) -> dict[str, Any]:
    """What a receipt repeats of the message it answers (no body, no subjects)."""
    return {
        "purpose": claims.purpose,
        "legal_basis": list(claims.legal_basis),
        "case_ref": claims.case_ref,
        "sender_role": claims.sender.role,
        "our_role": roles[0],
        "correlation_id": claims.correlation_id or claims.message_id,
        "trace_id": claims.trace.split("-")[1],
        "digest": b64(digest),
    }
