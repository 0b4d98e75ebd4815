"""One negative test per contract rule: each refusal names the field it is about (issue 2 §6)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pydantic import ValidationError

from schemas.claims import parse_claims
from tests.unit.schemas.conftest import load_example

Mutation = Callable[[dict[str, Any]], None]
GEM = "00000001999000001000"
POL = "00000001999000002000"
GGZ = "00000001999000004000"
A_BSN = "999990020"  # test range, passes the 11-proef


def _set(path: str, value: Any) -> Mutation:
    def apply(d: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = d
        for p in parents:
            target = target[int(p)] if p.isdigit() else target[p]
        if last.isdigit():
            target[int(last)] = value
        else:
            target[last] = value

    return apply


def _del(path: str) -> Mutation:
    def apply(d: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = d
        for p in parents:
            target = target[int(p)] if p.isdigit() else target[p]
        del target[last]

    return apply


def _all(*ms: Mutation) -> Mutation:
    def apply(d: dict[str, Any]) -> None:
        for m in ms:
            m(d)

    return apply


def _add_category(code: str, **flags: bool) -> Mutation:
    def apply(d: dict[str, Any]) -> None:
        d["data_categories"].append(code)
        d["flags"].update(flags)

    return apply


def _remove_category(code: str) -> Mutation:
    def apply(d: dict[str, Any]) -> None:
        d["data_categories"].remove(code)

    return apply


CASES: list[tuple[str, str, Mutation, tuple[str | int, ...], str]] = [
    # --- flags agree with data categories
    (
        "art9-needs-flag",
        "info.response",
        _all(
            _set("purpose", "ZVH.INFORMATIE"),
            _set("body.disposition", "provided"),
            _add_category("GEZONDHEID"),
            _set("flags.professional_secrecy", True),
            _set("body.health", {"summary": "In care until November."}),
        ),
        ("flags", "art9"),
        "GEZONDHEID",
    ),
    (
        "art9-flag-without-category",
        "case.status",
        _set("flags.art9", True),
        ("flags", "art9"),
        "GEZONDHEID",
    ),
    ("art10-flag", "case.referral", _add_category("JUSTITIEEL"), ("flags", "art10"), "JUSTITIEEL"),
    (
        "police-flag-missing",
        "case.referral",
        _set("flags.police_data", False),
        ("flags", "police_data"),
        "POLITIE",
    ),
    (
        "minors-flag-missing",
        "case.referral",
        _set("flags.minors", False),
        ("flags", "minors"),
        "minor",
    ),
    (
        "emergency-outside-risico",
        "case.status",
        _set("flags.emergency", True),
        ("flags", "emergency"),
        "ZVH.AANMELDING",
    ),
    (
        "secrecy-needs-lifting-basis",
        "case.referral",
        _all(_set("flags.professional_secrecy", True), _set("legal_basis", ["WPG_20"])),
        ("legal_basis",),
        "beroepsgeheim",
    ),
    (
        "ggz-health-needs-secrecy-flag",
        "info.response",
        _all(
            _set("purpose", "ZVH.INFORMATIE"),
            _set("body.disposition", "provided"),
            _add_category("GEZONDHEID", art9=True),
            _set("body.health", {"summary": "In care until November."}),
        ),
        ("flags", "professional_secrecy"),
        "beroepsgeheim",
    ),
    # --- message type allowed for purpose
    (
        "type-not-for-purpose",
        "case.referral",
        _set("purpose", "ZVH.PLAN"),
        ("message_type",),
        "not allowed for purpose ZVH.PLAN",
    ),
    (
        "bekendheid-mode-needs-bekendheid-purpose",
        "info.request",
        _set("purpose", "ZVH.INFORMATIE"),
        ("body", "mode"),
        "ZVH.BEKENDHEID",
    ),
    (
        "content-answer-under-bekendheid",
        "info.response",
        _all(
            _set("body.disposition", "provided"),
            _set("body.note", "Known since 2024."),
            _add_category("VRIJE_TEKST"),
        ),
        ("body", "disposition"),
        "ZVH.BEKENDHEID",
    ),
    (
        "hit-answer-under-informatie",
        "info.response",
        _set("purpose", "ZVH.INFORMATIE"),
        ("body", "disposition"),
        "hit/no-hit",
    ),
    # --- identifying data only inside body, only in allowed categories
    ("bsn-in-case-ref", "case.status", _set("case_ref", A_BSN), ("case_ref",), "BSN"),
    (
        "bsn-in-processing-activity",
        "case.status",
        _set("processing_activity", f"https://register.example/p/{A_BSN}"),
        ("processing_activity",),
        "BSN",
    ),
    (
        "bsn-in-subject-ref",
        "case.status",
        _set("subjects.0.subject_ref", f"sub-{A_BSN}-x"),
        ("subjects", 0, "subject_ref"),
        "BSN",
    ),
    (
        "bsn-in-body-free-text",
        "case.referral",
        _set("body.reason", f"BSN {A_BSN} known."),
        ("body", "reason"),
        "BSN",
    ),
    (
        "identification-needs-id-direct",
        "info.request",
        _remove_category("ID_DIRECT"),
        ("body", "identification"),
        "ID_DIRECT",
    ),
    (
        "undeclared-category-in-body",
        "case.referral",
        _remove_category("RISICO"),
        ("body", "risk"),
        "RISICO",
    ),
    (
        "invalid-bsn",
        "info.request",
        _set("body.identification.bsn", "123456789"),
        ("body", "identification", "bsn"),
        "11-proef",
    ),
    (
        "identification-incomplete",
        "info.request",
        _all(_del("body.identification.bsn"), _del("body.identification.birth_date")),
        ("body", "identification", "bsn"),
        "surname and a birth_date",
    ),
    # --- free text is bounded and printable
    (
        "free-text-too-long",
        "case.referral",
        _set("body.reason", "x" * 2001),
        ("body", "reason"),
        "at most 2000",
    ),
    (
        "control-characters",
        "case.referral",
        _set("body.reason", "bell\x07"),
        ("body", "reason"),
        "pattern",
    ),
    (
        "short-text-single-line",
        "plan.task",
        _set("body.title", "two\nlines"),
        ("body", "title"),
        "pattern",
    ),
    # --- identifier shapes
    (
        "oin-20-digits",
        "case.status",
        _set("sender.org", "0000000199900000100"),
        ("sender", "org"),
        "pattern",
    ),
    (
        "message-id-uuid7",
        "case.status",
        _set("message_id", "3b241101-e2bb-4255-8caf-4136c566a962"),
        ("message_id",),
        "pattern",
    ),
    (
        "message-id-lower-case",
        "case.status",
        _set("message_id", "019CADD6-2E80-7000-8000-000000000000"),
        ("message_id",),
        "pattern",
    ),
    ("traceparent-shape", "case.status", _set("trace", "00-abc-def-01"), ("trace",), "pattern"),
    (
        "traceparent-zero-trace-id",
        "case.status",
        _set("trace", "00-" + "0" * 32 + "-00f067aa0ba902b7-01"),
        ("trace",),
        "traceparent",
    ),
    (
        "in-reply-to-uuid7",
        "info.response",
        _set("in_reply_to", "not-a-uuid"),
        ("in_reply_to",),
        "pattern",
    ),
    # --- times
    (
        "expires-before-created",
        "case.status",
        _set("expires_at", "2026-03-04T13:00:00Z"),
        ("expires_at",),
        "later than created_at",
    ),
    (
        "lifetime-bounded",
        "case.status",
        _set("expires_at", "2026-03-12T14:00:00Z"),
        ("expires_at",),
        "7 days",
    ),
    (
        "whole-seconds",
        "case.status",
        _set("created_at", "2026-03-04T14:00:00.5Z"),
        ("created_at",),
        "whole seconds",
    ),
    (
        "utc-only",
        "case.status",
        _set("created_at", "2026-03-04T15:00:00+01:00"),
        ("created_at",),
        "UTC",
    ),
    (
        "naive-time",
        "case.status",
        _set("created_at", "2026-03-04T14:00:00"),
        ("created_at",),
        "timezone",
    ),
    # --- parties
    (
        "duplicate-recipient",
        "info.request",
        _set("recipients", [{"org": GGZ, "role": "GGZ"}, {"org": GGZ, "role": "GGZ"}]),
        ("recipients", 1),
        "twice",
    ),
    (
        "sender-not-recipient",
        "case.status",
        _set("recipients", [{"org": GEM, "role": "ZVH"}]),
        ("recipients", 0),
        "sender",
    ),
    ("no-recipients", "case.status", _set("recipients", []), ("recipients",), "at least 1"),
    (
        "too-many-recipients",
        "case.status",
        _set("recipients", [{"org": f"{i:020d}", "role": "OTHER"} for i in range(1, 18)]),
        ("recipients",),
        "at most 16",
    ),
    # --- subjects
    (
        "duplicate-subject",
        "case.status",
        _set(
            "subjects",
            [{"subject_ref": "sub-7f3KqZ2mLw9xTa", "role": "betrokkene", "minor": False}] * 2,
        ),
        ("subjects", 1, "subject_ref"),
        "twice",
    ),
    (
        "subjects-need-id-pseudo",
        "case.status",
        _set("data_categories", []),
        ("data_categories",),
        "ID_PSEUDO",
    ),
    (
        "body-subject-must-be-listed",
        "case.referral",
        _all(
            _set(
                "subjects",
                [{"subject_ref": "sub-7f3KqZ2mLw9xTa", "role": "betrokkene", "minor": False}],
            ),
            _set("flags.minors", False),
        ),
        ("body", "household", 0, "subject_ref"),
        "not listed",
    ),
    (
        "body-minor-agrees-with-subjects",
        "case.referral",
        _set("body.household.0.minor", False),
        ("body", "household", 0, "minor"),
        "minor",
    ),
    # --- type-specific
    (
        "response-needs-in-reply-to",
        "info.response",
        _del("in_reply_to"),
        ("in_reply_to",),
        "names the message",
    ),
    (
        "receipt-has-no-categories",
        "receipt",
        _set("data_categories", ["ID_PSEUDO"]),
        ("data_categories",),
        "receipt",
    ),
    (
        "receipt-answers-its-message",
        "receipt",
        _set("in_reply_to", "019cadd6-2e80-7000-8000-000000000001"),
        ("in_reply_to",),
        "body.message_id",
    ),
    (
        "invitee-must-be-recipient",
        "meeting.invitation",
        _set("recipients", [{"org": POL, "role": "POL"}]),
        ("body", "invitees", 1),
        "not a recipient",
    ),
    # --- catalogue codes
    (
        "unknown-purpose",
        "case.status",
        _set("purpose", "ZVH.ONBEKEND"),
        ("purpose",),
        "unknown purpose",
    ),
    ("unknown-role", "case.status", _set("sender.role", "XX"), ("sender", "role"), "unknown role"),
    (
        "unknown-category",
        "case.status",
        _set("data_categories", ["ID_PSEUDO", "DNA"]),
        ("data_categories", 1),
        "unknown data category",
    ),
    (
        "unknown-legal-basis",
        "case.status",
        _set("legal_basis", ["BECAUSE"]),
        ("legal_basis", 0),
        "unknown legal basis",
    ),
    (
        "unknown-programme",
        "case.status",
        _set("programme", "NOPE"),
        ("programme",),
        "unknown programme",
    ),
    # --- closed, strict wire models
    ("extra-field", "case.status", _set("surprise", 1), ("surprise",), "Extra inputs"),
    (
        "extra-body-field",
        "case.status",
        _set("body.surprise", 1),
        ("body", "surprise"),
        "Extra inputs",
    ),
    (
        "strict-bool",
        "case.referral",
        _set("body.betrokkene_informed", "true"),
        ("body", "betrokkene_informed"),
        "boolean",
    ),
    (
        "strict-int",
        "meeting.invitation",
        _set("body.duration_minutes", "60"),
        ("body", "duration_minutes"),
        "integer",
    ),
    ("spec-version", "case.status", _set("spec", "zvg/2"), ("spec",), "zvg/1"),
    # --- rules inside bodies
    (
        "not-informed-needs-reason",
        "case.referral",
        _set("body.betrokkene_informed", False),
        ("body", "not_informed_reason"),
        "required",
    ),
    (
        "rejected-status-needs-reason",
        "case.status",
        _set("body.status", "rejected"),
        ("body", "reason_code"),
        "required",
    ),
    (
        "redirected-needs-target",
        "case.status",
        _all(_set("body.status", "redirected"), _set("body.reason_code", "handled_elsewhere")),
        ("body", "redirected_to"),
        "redirected",
    ),
    (
        "bekendheid-has-no-questions",
        "info.request",
        _set("body.questions", [{"category": "RISICO", "text": "Any risk?"}]),
        ("body", "questions"),
        "no content questions",
    ),
    (
        "bekendheid-asks-only-hit-and-contact",
        "info.request",
        _set("body.requested_categories", ["GEZONDHEID"]),
        ("body", "requested_categories"),
        "GEZONDHEID",
    ),
    (
        "inhoud-needs-questions",
        "info.request",
        _all(_set("purpose", "ZVH.INFORMATIE"), _set("body.mode", "inhoud")),
        ("body", "questions"),
        "at least one question",
    ),
    (
        "refusal-needs-reason",
        "info.response",
        _all(
            _set("body.disposition", "refused"),
            _set("body.involvement", []),
            _del("body.contact"),
            _remove_category("BETROKKENHEID"),
            _remove_category("CONTACT_PROF"),
        ),
        ("body", "reason_code"),
        "required",
    ),
    (
        "known-names-contact",
        "info.response",
        _all(_del("body.contact"), _remove_category("CONTACT_PROF")),
        ("body", "contact"),
        "contact person",
    ),
    (
        "not-known-is-empty",
        "info.response",
        _set("body.disposition", "not_known"),
        ("body", "involvement"),
        "must be empty",
    ),
    (
        "known-is-hit-only",
        "info.response",
        _set("body.risk", {"level": "high", "kinds": ["threats"]}),
        ("body", "risk"),
        "hit/no-hit",
    ),
    ("meeting-venue", "meeting.invitation", _del("body.venue"), ("body", "venue"), "required"),
    (
        "task-status-follows-action",
        "plan.task",
        _set("body.action", "complete"),
        ("body", "status"),
        "'done'",
    ),
    (
        "retention-category-once",
        "case.closure",
        _set("body.retention", [{"category": "PLAN", "retain_days": 1, "then": "delete"}] * 2),
        ("body", "retention", 1, "category"),
        "twice",
    ),
    (
        "retention-bounded",
        "case.closure",
        _set("body.retention", [{"category": "PLAN", "retain_days": 99999, "then": "delete"}]),
        ("body", "retention", 0, "retain_days"),
        "less than or equal",
    ),
    (
        "receipt-carries-its-proof",
        "receipt",
        _del("body.proof"),
        ("body", "single", "proof"),
        "Field required",
    ),
    (
        "rejected-receipt-needs-reason",
        "receipt",
        _set("body.status", "rejected"),
        ("body", "single", "reason"),
        "rejected",
    ),
]


@pytest.mark.parametrize(
    ("message_type", "mutate", "loc", "fragment"),
    [pytest.param(t, m, loc, frag, id=name) for name, t, m, loc, frag in CASES],
)
def test_rule_refuses_and_names_the_field(
    message_type: str, mutate: Mutation, loc: tuple[str | int, ...], fragment: str
) -> None:
    import json

    data = load_example(message_type)
    parse_claims(json.dumps(data))  # the unmutated example is valid
    mutate(data)
    with pytest.raises(ValidationError) as caught:
        parse_claims(json.dumps(data))
    errors = caught.value.errors(include_input=False)
    located = [e for e in errors if tuple(e["loc"][1:]) == loc]
    assert located, f"no error at {loc}: {errors}"
    assert any(fragment in e["msg"] for e in located), located


def test_error_text_never_echoes_input_values() -> None:
    import json

    data = load_example("case.referral")
    data["body"]["reason"] = f"BSN {A_BSN} and more"
    data["case_ref"] = A_BSN
    with pytest.raises(ValidationError) as caught:
        parse_claims(json.dumps(data))
    assert A_BSN not in str(caught.value)
    assert A_BSN not in repr(caught.value.errors(include_input=False))


def test_models_are_frozen() -> None:
    import json

    claims = parse_claims(json.dumps(load_example("case.status")))
    with pytest.raises(ValidationError):
        claims.case_ref = "other-case"  # type: ignore[misc]


@pytest.mark.parametrize(
    "text",
    [
        '{"spec": "zvg/2", "spec": "zvg/1"}',
        '{"spec": NaN}',
        b'\xef\xbb\xbf{"spec": "zvg/1"}',
        b'{"spec": "zvg/\xff"}',
        "[" * 40 + "]" * 40,
        '{"spec": ',
    ],
    ids=["duplicate-key", "nan", "bom", "not-utf8", "too-deep", "truncated"],
)
def test_ambiguous_or_broken_json_is_refused(text: str | bytes) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_claims(text)
    assert caught.value.errors()[0]["type"] == "zvg_json"


def test_duplicate_key_refused_even_when_last_value_is_valid() -> None:
    import json

    valid = json.dumps(load_example("case.status"))
    with pytest.raises(ValidationError, match="duplicate key"):
        parse_claims('{"spec": "zvg/2", ' + valid[1:])


def test_subjects_are_referenced_only_through_household_fields() -> None:
    """subject_refs_used looks only at body.household: keep every body that way."""
    import typing

    from schemas.bodies import BODY_TYPES
    from schemas.common import HouseholdMember

    def mentions_household(annotation: object) -> bool:
        if annotation is HouseholdMember:
            return True
        return any(mentions_household(a) for a in typing.get_args(annotation))

    for body in BODY_TYPES.values():
        for name, info in body.model_fields.items():
            if mentions_household(info.annotation):
                assert name == "household", f"{body.__name__}.{name}"


@pytest.mark.parametrize("escape", ["\\u00{:02x}", "\\u00{:02X}"], ids=["lower", "upper"])
def test_a_bsn_spelled_with_json_escapes_is_still_found(escape: str) -> None:
    """The fast pre-check counts digit runs in the raw JSON; ``\\u0031`` is a digit once
    decoded, so a BSN written with escaped digits must not slip past it."""
    import json

    data = load_example("case.referral")
    data["body"]["reason"] = "PLACEHOLDER"
    escaped = "".join(escape.format(ord(d)) for d in A_BSN)
    raw = json.dumps(data).replace("PLACEHOLDER", escaped)
    with pytest.raises(ValidationError) as caught:
        parse_claims(raw)
    assert [tuple(e["loc"][1:]) for e in caught.value.errors()] == [("body", "reason")]
