"""Claims assembly for an outbound request (gateway/core/outbound.py): the same claims the
contract parser makes from the same message, and every refusal names its field."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core.directory import TrustedDirectory
from gateway.core.outbound import (
    ContractError,
    SenderContext,
    assemble_claims,
    decide_outbound,
    log_anchor,
    wire_time,
)
from gateway.core.policy import Denied
from gateway.errors import LocalError
from schemas.api import SendRequest, parse_send_request
from schemas.catalogue import default_catalogue
from schemas.claims import LogAnchor, claims_to_json, parse_claims
from schemas.directory import DirectoryPayload, PartySelector, PolicyRule
from tests.directories import member, signed_directory

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NODE_FILLS = ("spec", "message_id", "created_at", "expires_at", "sender", "trace", "log_anchor")
CATALOGUE = default_catalogue()


@dataclass(frozen=True)
class Defaults:
    legal_basis: tuple[str, ...]
    processing_activity: str


@dataclass(frozen=True)
class Checkpoint:
    size: int
    root: bytes


def _example(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((EXAMPLES / f"{name}.json").read_text("utf-8"))
    return loaded


def _request(claims: dict[str, Any], **changes: Any) -> bytes:
    request = {k: v for k, v in claims.items() if k not in NODE_FILLS}
    request["sender_role"] = claims["sender"]["role"]
    request.update(changes)
    return json.dumps(request).encode()


def _assemble(claims: dict[str, Any], request: SendRequest, **overrides: Any) -> Any:
    created = datetime.fromisoformat(claims["created_at"])
    expires = datetime.fromisoformat(claims["expires_at"])
    anchor = claims.get("log_anchor")
    context: dict[str, Any] = {
        "org": claims["sender"]["org"],
        "node_id": claims["sender"]["node"],
        "roles": (claims["sender"]["role"], "OTHER"),
        "purpose_defaults": {},
        "default_ttl_seconds": int((expires - created).total_seconds()),
        "catalogue": CATALOGUE,
    }
    kwargs: dict[str, Any] = {
        "now": created + timedelta(microseconds=999_999),  # whole seconds: the fraction goes
        "message_id": claims["message_id"],
        "trace": claims["trace"],
        "log_anchor": None if anchor is None else LogAnchor(**anchor),
    }
    for name, value in overrides.items():
        (context if name in context else kwargs)[name] = value
    return assemble_claims(request, SenderContext(**context), **kwargs)


# A coalesced receipt (receipt-batch) is sealed by a node's receipt loop, never sent by an adapter:
# the API's request bodies are the single-message ones (schemas.bodies.BODY_TYPES).
@pytest.mark.parametrize(
    "name", sorted(p.stem for p in EXAMPLES.glob("*.json") if p.stem != "receipt-batch")
)
def test_assembled_claims_equal_the_parsed_message(name: str) -> None:
    claims = _example(name)
    request = parse_send_request(_request(claims), catalogue=CATALOGUE)
    assembled = _assemble(claims, request)
    expected = parse_claims(json.dumps(claims).encode(), catalogue=CATALOGUE)
    assert assembled == expected
    assert claims_to_json(assembled) == claims_to_json(expected)


def test_defaults_of_the_purpose_fill_legal_basis_and_activity() -> None:
    claims = _example("case.referral")
    raw = json.loads(_request(claims))
    del raw["legal_basis"], raw["processing_activity"]
    request = parse_send_request(json.dumps(raw), catalogue=CATALOGUE)
    defaults = {claims["purpose"]: Defaults(tuple(claims["legal_basis"]), "urn:zvg:default")}
    assembled = _assemble(claims, request, purpose_defaults=defaults)
    assert assembled.legal_basis == tuple(claims["legal_basis"])
    assert assembled.processing_activity == "urn:zvg:default"
    with pytest.raises(ContractError) as caught:
        _assemble(claims, request)
    assert [e.field for e in caught.value.errors] == ["legal_basis", "processing_activity"]
    assert caught.value.reason == "invalid_claims"


def test_the_sender_role_must_be_held_and_named_when_there_are_several() -> None:
    claims = _example("case.referral")
    request = parse_send_request(_request(claims), catalogue=CATALOGUE)
    with pytest.raises(ContractError, match="does not hold role") as caught:
        _assemble(claims, request, roles=("OTHER",))
    assert [e.field for e in caught.value.errors] == ["sender_role"]
    raw = json.loads(_request(claims))
    del raw["sender_role"]
    unnamed = parse_send_request(json.dumps(raw), catalogue=CATALOGUE)
    with pytest.raises(ContractError, match="several roles"):
        _assemble(claims, unnamed)
    only = _assemble(claims, unnamed, roles=(claims["sender"]["role"],))
    assert only.sender.role == claims["sender"]["role"]


def test_a_contract_rule_is_refused_with_its_field_and_without_the_value() -> None:
    claims = _example("case.referral")
    request = parse_send_request(_request(claims), catalogue=CATALOGUE)
    with pytest.raises(ContractError) as caught:
        _assemble(claims, request, default_ttl_seconds=60 * 86400)
    assert [e.field for e in caught.value.errors] == ["expires_at"]
    assert claims["message_id"] not in str(caught.value.errors)


def test_a_request_with_an_unvalidated_body_is_a_programming_error() -> None:
    claims = _example("case.referral")
    plain = SendRequest.model_validate_json(_request(claims), context={"catalogue": CATALOGUE})
    with pytest.raises(LocalError, match="parse_send_request"):
        _assemble(claims, plain)


def test_an_unknown_message_type_is_named_not_echoed() -> None:
    claims = _example("case.referral")
    raw = _request(claims, message_type="no.such-type-123")
    with pytest.raises(ValueError, match="message_type") as caught:
        parse_send_request(raw, catalogue=CATALOGUE)
    assert "no.such-type-123" not in str(caught.value)


@settings(max_examples=50)
@given(
    st.datetimes(
        min_value=datetime(2000, 1, 1),  # noqa: DTZ001 - hypothesis wants naive bounds
        max_value=datetime(2200, 1, 1),  # noqa: DTZ001 - hypothesis wants naive bounds
        timezones=st.just(UTC),
    ),
    st.integers(min_value=60, max_value=7 * 86400),
)
def test_times_are_whole_utc_seconds_and_expiry_adds_the_lifetime(now: datetime, ttl: int) -> None:
    claims = _example("case.status")
    request = parse_send_request(_request(claims), catalogue=CATALOGUE)
    assembled = _assemble(claims, request, now=now, default_ttl_seconds=ttl)
    assert assembled.created_at == wire_time(now) == now.replace(microsecond=0)
    assert assembled.expires_at - assembled.created_at == timedelta(seconds=ttl)


def test_log_anchor_is_size_and_base64_root() -> None:
    assert log_anchor(None) is None
    anchor = log_anchor(Checkpoint(7, bytes(range(32))))
    assert anchor == LogAnchor(size=7, root="AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")


def _payload(*, rules: bool) -> DirectoryPayload:
    claims = _example("case.referral")
    rule = PolicyRule(
        id="pol-to-zvh",
        description="referrals",
        purpose=claims["purpose"],
        sender=PartySelector(roles=(claims["sender"]["role"],)),
        recipient=PartySelector(roles=tuple(r["role"] for r in claims["recipients"])),
        message_types=("case.referral",),
        data_categories=tuple(claims["data_categories"]),
        flags=("minors",),
    )
    members = [member(claims["sender"]["org"], "u-pol", roles=(claims["sender"]["role"],))]
    members += [
        member(r["org"], f"u-{i}", roles=(r["role"],)) for i, r in enumerate(claims["recipients"])
    ]
    raw = signed_directory(members=members, rules=[rule] if rules else [])
    return TrustedDirectory.first(raw, now=datetime.now(UTC), catalogue=CATALOGUE).payload


def test_decide_outbound_gives_the_claims_with_the_policy_decision() -> None:
    claims = _example("case.referral")
    request = parse_send_request(_request(claims), catalogue=CATALOGUE)
    sender = SenderContext(
        org=claims["sender"]["org"],
        node_id=claims["sender"]["node"],
        roles=(claims["sender"]["role"],),
        purpose_defaults={},
        default_ttl_seconds=3 * 86400,
        catalogue=CATALOGUE,
    )
    when = {
        "now": datetime.fromisoformat(claims["created_at"]),
        "message_id": claims["message_id"],
        "trace": claims["trace"],
        "log_anchor": None,
    }
    allowed = decide_outbound(request, sender, directory=_payload(rules=True), **when)
    denied = decide_outbound(request, sender, directory=_payload(rules=False), **when)
    assert allowed.allowed
    assert allowed.claims == denied.claims == assemble_claims(request, sender, **when)
    assert not denied.allowed
    assert isinstance(denied.decision, Denied)
    assert denied.decision.reason == "no_rule"


def test_a_bsn_outside_identification_is_refused_from_python_values_too() -> None:
    claims = _example("case.referral")
    assert claims["body"]["identification"]["bsn"]  # allowed where it is
    raw = json.loads(_request(claims))
    raw["body"]["reason"] = "see 999990020"  # a BSN-shaped number (test range) in free text
    request = parse_send_request(json.dumps(raw), catalogue=CATALOGUE)
    with pytest.raises(ContractError) as caught:
        _assemble(claims, request)
    assert [e.field for e in caught.value.errors] == ["body.reason"]
    assert "999990020" not in str(caught.value.errors)
