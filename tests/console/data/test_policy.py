"""The policy page: the enforced rules as a table, and "may this be shared?" answered by the
node's own policy evaluation."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gateway.console.data.policy import (
    PolicyQuestion,
    may_this_be_shared,
    policy_table,
)
from gateway.console.data.records import BadQuery
from gateway.core.policy import MessageFacts, evaluate
from gateway.testing.veenstad import LEGAL_BASES, ORGS, demo_payload
from schemas.catalogue import default_catalogue
from schemas.directory import Authority, AuthorityKey, DirectoryPayload, PublicJwk

OIN = {o.key: o.oin for o in ORGS}
GEM, POL, GGZ = OIN["gemeente"], OIN["politie"], OIN["ggz"]
CATALOGUE = default_catalogue()


@pytest.fixture(scope="module")
def directory() -> DirectoryPayload:
    jwk = PublicJwk(kty="OKP", crv="Ed25519", x="11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
    return demo_payload(
        version=3,
        issued_at=datetime(2026, 1, 1, tzinfo=UTC),
        expires=datetime(2027, 1, 1, tzinfo=UTC),
        authority=Authority(threshold=1, keys=(AuthorityKey(kid="a" * 43, name="a", jwk=jwk),)),
        keys={},
    )


def test_the_table_holds_every_rule_of_the_directory_by_purpose(
    directory: DirectoryPayload,
) -> None:
    table = policy_table(directory, CATALOGUE, legal_bases={"ZVH.AANMELDING": ("WGS",)})
    assert table.directory_version == 3
    assert sorted(r.rule_id for r in table.rows) == sorted(r.id for r in directory.policy.rules)
    assert [r.purpose for r in table.rows] == sorted(r.purpose for r in table.rows)
    row = next(r for r in table.rows if r.rule_id == "aanmelding-pol")
    assert row.sender == "roles POL"
    assert row.legal_basis == ("WGS",)
    assert row.purpose_name == next(
        p.name_nl for p in CATALOGUE.purposes if p.code == "ZVH.AANMELDING"
    )


@pytest.mark.parametrize(
    "question",
    [
        PolicyQuestion(
            "case.referral",
            "ZVH.AANMELDING",
            (POL, "POL"),
            ((GEM, "ZVH"),),
            frozenset({"ID_PSEUDO", "RISICO"}),
            frozenset(),
        ),
        PolicyQuestion(
            "case.referral",
            "ZVH.AANMELDING",
            (POL, "POL"),
            ((GEM, "ZVH"),),
            frozenset({"ID_PSEUDO", "GEZONDHEID"}),
            frozenset({"art9"}),
        ),
        PolicyQuestion(
            "info.request",
            "ZVH.BEKENDHEID",
            (GEM, "ZVH"),
            ((GGZ, "GGZ"), (POL, "POL")),
            frozenset({"ID_PSEUDO"}),
            frozenset(),
        ),
        PolicyQuestion(
            "risk.signal",
            "ZVH.RISICO",
            (GGZ, "GGZ"),
            ((GEM, "ZVH"),),
            frozenset({"ID_PSEUDO"}),
            frozenset({"emergency"}),
        ),
    ],
    ids=["allowed", "category-denied", "two-recipients", "emergency"],
)
def test_the_answer_is_the_nodes_own_policy_decision(
    directory: DirectoryPayload, question: PolicyQuestion
) -> None:
    answer = may_this_be_shared(directory, CATALOGUE, question)
    decision = evaluate(
        directory,
        MessageFacts(
            question.purpose,
            question.message_type,
            question.sender,
            question.recipients,
            question.data_categories,
            question.flags,
        ),
    )
    assert answer.allowed is decision.allowed
    assert answer.directory_version == 3
    assert answer.explanation
    if not decision.allowed:
        assert answer.reason == decision.reason
        assert answer.explanation == decision.explain({o.oin: o.name for o in ORGS})
    else:
        assert {r for _, r in answer.rules} == set(decision.rule_ids())


def test_a_denial_says_why_in_one_sentence(directory: DirectoryPayload) -> None:
    answer = may_this_be_shared(
        directory,
        CATALOGUE,
        PolicyQuestion(
            "case.referral",
            "ZVH.AANMELDING",
            (POL, "POL"),
            ((GEM, "ZVH"),),
            frozenset({"ID_PSEUDO", "GEZONDHEID"}),
            frozenset({"art9"}),
        ),
    )
    assert not answer.allowed
    assert answer.reason == "category_not_allowed"
    assert "GEZONDHEID" in answer.explanation
    assert "Politie" in answer.explanation  # organisations by name


@pytest.mark.parametrize(
    "question",
    [
        PolicyQuestion(
            "no.such", "ZVH.AANMELDING", (POL, "POL"), ((GEM, "ZVH"),), frozenset(), frozenset()
        ),
        PolicyQuestion(
            "case.referral", "ZVH.NOPE", (POL, "POL"), ((GEM, "ZVH"),), frozenset(), frozenset()
        ),
        PolicyQuestion(
            "case.referral",
            "ZVH.AANMELDING",
            (POL, "POL"),
            ((GEM, "ZVH"),),
            frozenset({"NOPE"}),
            frozenset(),
        ),
        PolicyQuestion(
            "case.referral",
            "ZVH.AANMELDING",
            (POL, "POL"),
            ((GEM, "ZVH"),),
            frozenset(),
            frozenset({"nope"}),
        ),
        PolicyQuestion(
            "case.referral", "ZVH.AANMELDING", (POL, "POL"), (), frozenset(), frozenset()
        ),
        PolicyQuestion(
            "case.referral",
            "ZVH.AANMELDING",
            (POL, "POL"),
            tuple((GEM, "ZVH") for _ in range(17)),
            frozenset(),
            frozenset(),
        ),
    ],
    ids=["type", "purpose", "category", "flag", "no-recipient", "too-many"],
)
def test_a_question_the_policy_cannot_be_asked_is_a_bad_query(
    directory: DirectoryPayload, question: PolicyQuestion
) -> None:
    with pytest.raises(BadQuery):
        may_this_be_shared(directory, CATALOGUE, question)


def test_demo_legal_bases_fill_the_table(directory: DirectoryPayload) -> None:
    table = policy_table(directory, CATALOGUE, legal_bases={"ZVH.RISICO": LEGAL_BASES["POL"]})
    assert {r.legal_basis for r in table.rows if r.purpose == "ZVH.RISICO"} == {("WPG_20", "WGS")}


def test_an_allowed_message_names_the_rule_per_recipient(directory: DirectoryPayload) -> None:
    answer = may_this_be_shared(
        directory,
        CATALOGUE,
        PolicyQuestion(
            "case.referral",
            "ZVH.AANMELDING",
            (POL, "POL"),
            ((GEM, "ZVH"),),
            frozenset({"ID_PSEUDO", "RISICO"}),
            frozenset(),
        ),
    )
    assert answer.allowed
    assert answer.rules == ((GEM, "aanmelding-pol"),)
    assert "aanmelding-pol" in answer.explanation
