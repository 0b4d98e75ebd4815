"""Purpose binding, table-driven: the demo policy matrix, allowed and denied for every purpose."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from gateway.core.policy import Allowed, Denied, MessageFacts, evaluate
from gateway.testing.veenstad import ORGS, demo_payload
from schemas.catalogue import default_catalogue
from schemas.claims import parse_claims
from schemas.directory import Authority, AuthorityKey, DirectoryPayload, Policy, PublicJwk
from tests.unit.schemas.conftest import load_example

OIN = {o.key: o.oin for o in ORGS}
GEM, POL, OM, GGZ, VT = (OIN[k] for k in ("gemeente", "politie", "om", "ggz", "veiligthuis"))
OUTSIDER = "00000001999000009000"


def _authority() -> Authority:
    jwk = PublicJwk(kty="OKP", crv="Ed25519", x="11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
    return Authority(threshold=1, keys=(AuthorityKey(kid="a" * 43, name="admin", jwk=jwk),))


@pytest.fixture(scope="module")
def directory() -> DirectoryPayload:
    return demo_payload(
        version=3,
        issued_at=datetime(2026, 1, 1, tzinfo=UTC),
        expires=datetime(2027, 1, 1, tzinfo=UTC),
        authority=_authority(),
        keys={},
    )


def facts(
    purpose: str,
    mtype: str,
    sender: tuple[str, str],
    recipients: list[tuple[str, str]],
    categories: set[str],
    flags: set[str] | None = None,
) -> MessageFacts:
    return MessageFacts(
        purpose, mtype, sender, tuple(recipients), frozenset(categories), frozenset(flags or ())
    )


# (name, facts, expected: rule id when allowed, or (reason, category/flag) when denied)
MATRIX: list[tuple[str, MessageFacts, str | tuple[str, str | None]]] = [
    # ZVH.AANMELDING
    (
        "pol-refers",
        facts(
            "ZVH.AANMELDING",
            "case.referral",
            (POL, "POL"),
            [(GEM, "ZVH")],
            {"ID_PSEUDO", "ID_DIRECT", "POLITIE", "RISICO"},
            {"minors"},
        ),
        "aanmelding-pol",
    ),
    (
        "pol-refers-justice-data",
        facts(
            "ZVH.AANMELDING",
            "case.referral",
            (POL, "POL"),
            [(GEM, "ZVH")],
            {"ID_PSEUDO", "JUSTITIEEL"},
        ),
        ("category_not_allowed", "JUSTITIEEL"),
    ),
    # ZVH.BEKENDHEID
    (
        "ggz-answers-hit",
        facts(
            "ZVH.BEKENDHEID",
            "info.response",
            (GGZ, "GGZ"),
            [(GEM, "ZVH")],
            {"ID_PSEUDO", "BETROKKENHEID", "CONTACT_PROF"},
        ),
        "bekendheid-antwoord",
    ),
    (
        "ggz-adds-diagnosis",
        facts(
            "ZVH.BEKENDHEID",
            "info.response",
            (GGZ, "GGZ"),
            [(GEM, "ZVH")],
            {"ID_PSEUDO", "CONTACT_PROF", "GEZONDHEID"},
            {"professional_secrecy"},
        ),
        ("category_not_allowed", "GEZONDHEID"),
    ),
    (
        "zvh-asks-ggz-with-identity",
        facts(
            "ZVH.BEKENDHEID",
            "info.request",
            (GEM, "ZVH"),
            [(GGZ, "GGZ"), (VT, "VT"), (OM, "OM")],
            {"ID_PSEUDO", "ID_DIRECT"},
        ),
        "bekendheid-vraag",
    ),
    (
        "zvh-asks-pol-with-identity",
        facts(
            "ZVH.BEKENDHEID",
            "info.request",
            (GEM, "ZVH"),
            [(POL, "POL")],
            {"ID_PSEUDO", "ID_DIRECT"},
        ),
        ("category_not_allowed", "ID_DIRECT"),
    ),
    # ZVH.INFORMATIE
    (
        "ggz-shares-health",
        facts(
            "ZVH.INFORMATIE",
            "info.response",
            (GGZ, "GGZ"),
            [(GEM, "ZVH")],
            {"ID_PSEUDO", "GEZONDHEID", "RISICO"},
            {"professional_secrecy"},
        ),
        "informatie-ggz",
    ),
    (
        "om-shares-health",
        facts(
            "ZVH.INFORMATIE",
            "info.response",
            (OM, "OM"),
            [(GEM, "ZVH")],
            {"ID_PSEUDO", "GEZONDHEID"},
        ),
        ("category_not_allowed", "GEZONDHEID"),
    ),
    (
        "ggz-sends-to-pol",
        facts("ZVH.INFORMATIE", "info.response", (GGZ, "GGZ"), [(POL, "POL")], {"ID_PSEUDO"}),
        ("no_rule", None),
    ),
    # ZVH.CASUSOVERLEG
    (
        "zvh-invites",
        facts(
            "ZVH.CASUSOVERLEG",
            "meeting.invitation",
            (GEM, "ZVH"),
            [(POL, "POL"), (GGZ, "GGZ"), (GEM, "GEM")],
            {"ID_PSEUDO", "CONTACT_PROF", "VRIJE_TEKST"},
        ),
        "casusoverleg",
    ),
    (
        "pol-invites",
        facts(
            "ZVH.CASUSOVERLEG", "meeting.invitation", (POL, "POL"), [(GEM, "ZVH")], {"ID_PSEUDO"}
        ),
        ("no_rule", None),
    ),
    # ZVH.PLAN
    (
        "zvh-assigns-task",
        facts(
            "ZVH.PLAN",
            "plan.task",
            (GEM, "ZVH"),
            [(GGZ, "GGZ")],
            {"ID_PSEUDO", "PLAN", "CONTACT_PROF"},
        ),
        "plan-taak",
    ),
    (
        "task-with-risk",
        facts(
            "ZVH.PLAN", "plan.task", (GEM, "ZVH"), [(GGZ, "GGZ")], {"ID_PSEUDO", "PLAN", "RISICO"}
        ),
        ("category_not_allowed", "RISICO"),
    ),
    # ZVH.RISICO
    (
        "pol-signals-emergency",
        facts(
            "ZVH.RISICO",
            "risk.signal",
            (POL, "POL"),
            [(GEM, "ZVH"), (GGZ, "GGZ"), (GEM, "GEM")],
            {"ID_PSEUDO", "ID_DIRECT", "POLITIE", "RISICO"},
            {"emergency"},
        ),
        "risico-pol",
    ),
    (
        "pol-signals-om",
        facts(
            "ZVH.RISICO",
            "risk.signal",
            (POL, "POL"),
            [(GEM, "ZVH"), (OM, "OM")],
            {"ID_PSEUDO", "RISICO"},
            {"emergency"},
        ),
        ("no_rule", None),
    ),
    (
        "zvh-tells-pol-identity",
        facts(
            "ZVH.RISICO",
            "risk.signal",
            (GEM, "ZVH"),
            [(POL, "POL")],
            {"ID_PSEUDO", "ID_DIRECT", "RISICO"},
            {"emergency"},
        ),
        "risico-naar-pol",
    ),
    # ZVH.OVERDRACHT
    (
        "handover-to-wijkteam",
        facts(
            "ZVH.OVERDRACHT",
            "case.handover",
            (GEM, "ZVH"),
            [(GEM, "GEM")],
            {"ID_PSEUDO", "ID_DIRECT", "PLAN", "RISICO"},
        ),
        "overdracht",
    ),
    (
        "handover-to-pol",
        facts(
            "ZVH.OVERDRACHT", "case.handover", (GEM, "ZVH"), [(POL, "POL")], {"ID_PSEUDO", "PLAN"}
        ),
        ("no_rule", None),
    ),
    (
        "handover-emergency",
        facts(
            "ZVH.OVERDRACHT",
            "case.handover",
            (GEM, "ZVH"),
            [(GEM, "GEM")],
            {"ID_PSEUDO", "PLAN"},
            {"emergency"},
        ),
        ("flag_not_allowed", "emergency"),
    ),
    # ZVH.AFSLUITING
    (
        "closure-to-all",
        facts(
            "ZVH.AFSLUITING",
            "case.closure",
            (GEM, "ZVH"),
            [(POL, "POL"), (OM, "OM"), (GGZ, "GGZ"), (VT, "VT"), (GEM, "GEM")],
            {"ID_PSEUDO", "VRIJE_TEKST"},
        ),
        "afsluiting",
    ),
    (
        "closure-by-partner",
        facts("ZVH.AFSLUITING", "case.closure", (GGZ, "GGZ"), [(GEM, "ZVH")], {"ID_PSEUDO"}),
        ("no_rule", None),
    ),
    # ZVH.VERANTWOORDING
    (
        "rights-request",
        facts(
            "ZVH.VERANTWOORDING",
            "info.request",
            (GEM, "ZVH"),
            [(VT, "VT")],
            {"ID_PSEUDO", "ID_DIRECT", "VRIJE_TEKST"},
        ),
        "verantwoording-vraag",
    ),
    (
        "rights-answer-with-health",
        facts(
            "ZVH.VERANTWOORDING",
            "info.response",
            (GGZ, "GGZ"),
            [(GEM, "ZVH")],
            {"ID_PSEUDO", "GEZONDHEID"},
        ),
        ("category_not_allowed", "GEZONDHEID"),
    ),
    # parties
    (
        "outsider-sender",
        facts("ZVH.AANMELDING", "case.referral", (OUTSIDER, "POL"), [(GEM, "ZVH")], {"ID_PSEUDO"}),
        ("unknown_sender", None),
    ),
    (
        "role-not-held",
        facts("ZVH.AANMELDING", "case.referral", (GGZ, "POL"), [(GEM, "ZVH")], {"ID_PSEUDO"}),
        ("sender_role", None),
    ),
    (
        "outsider-recipient",
        facts("ZVH.AANMELDING", "case.status", (GEM, "ZVH"), [(OUTSIDER, "POL")], {"ID_PSEUDO"}),
        ("unknown_recipient", None),
    ),
    (
        "recipient-role-not-held",
        facts("ZVH.AANMELDING", "case.status", (GEM, "ZVH"), [(POL, "GGZ")], {"ID_PSEUDO"}),
        ("recipient_role", None),
    ),
    # receipts
    ("receipt", facts("ZVH.BEKENDHEID", "receipt", (GGZ, "GGZ"), [(GEM, "ZVH")], set()), "receipt"),
    (
        "receipt-with-data",
        facts("ZVH.BEKENDHEID", "receipt", (GGZ, "GGZ"), [(GEM, "ZVH")], {"ID_PSEUDO"}),
        ("category_not_allowed", "ID_PSEUDO"),
    ),
]


@pytest.mark.parametrize(("f", "expected"), [pytest.param(f, e, id=n) for n, f, e in MATRIX])
def test_policy_matrix(directory: DirectoryPayload, f: MessageFacts, expected: object) -> None:
    decision = evaluate(directory, f)
    if isinstance(expected, str):
        assert isinstance(decision, Allowed), decision
        assert decision.rule_ids() == (expected,)
        assert decision.directory_version == 3
        assert [p for p, _ in decision.rules] == list(f.recipients)
    else:
        assert isinstance(decision, Denied), decision
        assert isinstance(expected, tuple)
        reason, what = expected
        assert decision.reason == reason
        assert what in (decision.category, decision.flag)


def test_every_purpose_has_an_allowed_and_a_denied_case(directory: DirectoryPayload) -> None:
    allowed: set[str] = set()
    denied: set[str] = set()
    for _name, f, _expected in MATRIX:
        (allowed if evaluate(directory, f).allowed else denied).add(f.purpose)
    purposes = set(default_catalogue().purpose_by_code)
    assert allowed == purposes
    assert denied == purposes


def test_denial_explains_purpose_recipient_and_category(directory: DirectoryPayload) -> None:
    names = {o.oin: o.name for o in ORGS}
    f = {n: f for n, f, _ in MATRIX}["ggz-adds-diagnosis"]
    decision = evaluate(directory, f)
    assert isinstance(decision, Denied)
    text = decision.explain(names)
    for part in (
        "ZVH.BEKENDHEID",
        "GEZONDHEID",
        "ZVH (Gemeente Veenstad",
        "GGZ (GGZ Veenland)",
        "bekendheid-antwoord",
        "directory v3",
    ):
        assert part in text, text


def test_one_disallowed_recipient_denies_the_whole_message(directory: DirectoryPayload) -> None:
    f = facts(
        "ZVH.BEKENDHEID",
        "info.request",
        (GEM, "ZVH"),
        [(GGZ, "GGZ"), (POL, "POL")],
        {"ID_PSEUDO", "ID_DIRECT"},
    )
    decision = evaluate(directory, f)
    assert isinstance(decision, Denied)
    assert decision.recipient == (POL, "POL")


def test_no_rules_denies_everything(directory: DirectoryPayload) -> None:
    empty = directory.model_copy(update={"policy": Policy(rules=())})
    for _name, f, _expected in MATRIX:
        assert not evaluate(empty, f).allowed


def test_every_example_message_is_allowed_by_the_demo_policy(directory: DirectoryPayload) -> None:
    from pathlib import Path

    for path in sorted(Path(__file__).resolve().parents[2].joinpath("examples").glob("*.json")):
        claims = parse_claims(json.dumps(load_example(path.stem)))
        decision = evaluate(directory, MessageFacts.of(claims))
        assert decision.allowed, (path.stem, decision)
