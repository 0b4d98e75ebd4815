"""Typed audit records (gateway/core/audit.py MessageFields, message_record, policy_record,
access_record): the stored record is byte-identical to the one the node built from a
``dict[str, Any]`` bag of the same claims, so the audit log and its vectors do not change."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.core.audit import (
    Actor,
    MessageFields,
    Record,
    access_record,
    leaf_of,
    message_record,
    new_record,
    policy_record,
    split,
)
from gateway.core.commit import canonical_json
from gateway.core.policy import Allowed, Denied
from gateway.errors import LocalError
from schemas.claims import ClaimsBase
from tests.envelope_forge import example_claims, example_names

AT = datetime(2026, 3, 2, 9, 15, 1, 123456, tzinfo=UTC)
SALT = bytes(range(32))
DIGEST = "Yq3n9bXK0mS2v8Q6t1fR4wZpL7cJ5hD0eA9uG3kN2oI"


def _bag(claims: ClaimsBase, trace_id: str | None, span_id: str | None) -> dict[str, Any]:
    """The node's former ``_claims_fields`` (gateway/node/service.py), kept here as the oracle."""
    return {
        "trace_id": trace_id if trace_id is not None else claims.trace.split("-")[1],
        "span_id": span_id if span_id is not None else claims.trace.split("-")[2],
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


def _stored(record: Record) -> tuple[bytes, bytes]:
    view, personal = split(record, SALT)
    return canonical_json(view), canonical_json(personal)


ids = st.text(alphabet="0123456789abcdef", min_size=16, max_size=16)


@pytest.mark.parametrize("name", example_names())
@given(span=st.none() | ids)
def test_a_message_record_is_the_record_of_the_old_bag(name: str, span: str | None) -> None:
    claims = example_claims(name)
    trace = None if span is None else span * 2
    fields = MessageFields.of(claims, trace_id=trace, span_id=span)
    bag = _bag(claims, trace, span)
    typed = message_record("message.send", fields.with_digest(DIGEST, "kid-1"), at=AT)
    old = new_record(
        name="message.send",
        status="ok",
        start_time=AT,
        end_time=AT,
        **{**bag, "digest": DIGEST, "key_id": "kid-1"},
    )
    assert typed == old
    assert _stored(typed) == _stored(old)
    assert leaf_of(split(typed, SALT)[0]) == leaf_of(split(old, SALT)[0])


def test_receive_fields_name_the_foreign_operation() -> None:
    claims = example_claims("case.referral")
    fields = MessageFields.of(claims, trace_id="a" * 32, span_id="b" * 16)
    received = message_record(
        "message.refuse",
        fields.with_foreign_operation(claims).with_digest(DIGEST),
        at=AT,
        status="denied",
        start_time=AT - timedelta(seconds=1),
        reason="policy_denied",
    )
    _, trace, span, _ = claims.trace.split("-")
    old = new_record(
        name="message.refuse",
        status="denied",
        start_time=AT - timedelta(seconds=1),
        end_time=AT,
        reason="policy_denied",
        foreign_operation={"trace_id": trace, "span_id": span, "org": claims.sender.org},
        digest=DIGEST,
        **_bag(claims, "a" * 32, "b" * 16),
    )
    assert _stored(received) == _stored(old)


def test_policy_records_allow_and_deny() -> None:
    claims = example_claims("case.referral")
    fields = MessageFields.of(claims)
    bag = _bag(claims, None, None)
    party = (claims.recipients[0].org, claims.recipients[0].role)
    allowed = Allowed(4, ((party, "r1"), (party, "r2"), (party, "r1")))
    assert _stored(policy_record(allowed, fields, at=AT)) == _stored(
        new_record(
            name="policy.decision",
            status="ok",
            start_time=AT,
            end_time=AT,
            policy_version=4,
            policy_rule="r1,r2",
            policy_decision="allow",
            **bag,
        )
    )
    denied = Denied(
        4,
        "category_not_allowed",
        claims.purpose,
        claims.message_type,
        (claims.sender.org, claims.sender.role),
        party,
        "POLITIE",
        None,
        "r1",
    )
    assert _stored(policy_record(denied, fields, at=AT)) == _stored(
        new_record(
            name="policy.decision",
            status="denied",
            start_time=AT,
            end_time=AT,
            policy_version=4,
            policy_rule="r1",
            policy_decision="deny",
            reason="category_not_allowed",
            detail={"category": "POLITIE", "recipient": party[0]},
            **bag,
        )
    )


def test_access_records_with_and_without_a_message() -> None:
    claims = example_claims("case.status")
    actor = Actor("emp-123", role="casemanager")
    fields = MessageFields.of(claims, trace_id="c" * 32, span_id="d" * 16)
    assert access_record(actor, at=AT, fields=fields) == new_record(
        name="access",
        status="ok",
        start_time=AT,
        end_time=AT,
        actor=actor,
        trace_id="c" * 32,
        span_id="d" * 16,
        message_id=claims.message_id,
        case_ref=claims.case_ref,
    )
    assert access_record(actor, at=AT) == new_record(
        name="access", status="ok", start_time=AT, end_time=AT, actor=actor
    )


def test_typed_records_keep_the_guards() -> None:
    fields = MessageFields.of(example_claims("case.status"))
    with pytest.raises(LocalError, match="unknown audit operation"):
        message_record("message.sned", fields, at=AT)
    with pytest.raises(LocalError, match="detail"):
        message_record("adapter.reject", fields, at=AT, detail={"adapter_reason": "111222333"})
