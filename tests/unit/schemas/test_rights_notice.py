"""``rights.notice`` (AVG art. 19): its contract rules, each error naming its field."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from schemas.claims import RightsNotice, parse_claims
from schemas.common import categories_used
from tests.unit.schemas.conftest import load_example


def _refused_at(data: dict[str, Any], loc: tuple[str | int, ...], fragment: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_claims(json.dumps(data))
    errors = caught.value.errors(include_input=False)
    located = [e for e in errors if tuple(e["loc"][1:]) == loc]
    assert located, f"no error at {loc}: {errors}"
    assert any(fragment in e["msg"] for e in located), located


def test_the_example_is_a_notice_under_verantwoording() -> None:
    claims = parse_claims(json.dumps(load_example("rights.notice")))
    assert isinstance(claims, RightsNotice)
    assert claims.purpose == "ZVH.VERANTWOORDING"
    assert claims.body.kind == "erase"


def test_a_notice_names_the_person_it_is_about() -> None:
    data = load_example("rights.notice")
    data["subjects"] = []
    data["data_categories"] = ["ID_DIRECT"]
    _refused_at(data, ("subjects",), "names the person")


@pytest.mark.parametrize("field", ["concerns", "categories"])
def test_a_notice_concerns_at_least_one_message_and_category(field: str) -> None:
    data = load_example("rights.notice")
    data["body"][field] = []
    _refused_at(data, ("body", field), "at least 1")


@pytest.mark.parametrize("field", ["concerns", "categories"])
def test_a_notice_names_no_value_twice(field: str) -> None:
    data = load_example("rights.notice")
    data["body"][field] = [data["body"][field][0]] * 2
    _refused_at(data, ("body", field), "twice")


def test_the_bsn_travels_only_in_the_identification_and_declares_id_direct() -> None:
    data = load_example("rights.notice")
    data["data_categories"] = ["ID_PSEUDO"]
    with pytest.raises(ValidationError):
        parse_claims(json.dumps(data))
    claims = parse_claims(json.dumps(load_example("rights.notice")))
    assert "ID_DIRECT" in categories_used(claims.body)


def test_a_notice_carries_no_data_only_category_codes() -> None:
    data = load_example("rights.notice")
    data["body"]["categories"] = ["Diagnose: psychose"]
    with pytest.raises(ValidationError):
        parse_claims(json.dumps(data))
    data = load_example("rights.notice")
    data["body"]["note"] = "corrected diagnosis"
    _refused_at(data, ("body", "note"), "Extra inputs")


def test_an_unknown_kind_is_refused() -> None:
    data = load_example("rights.notice")
    data["body"]["kind"] = "forget"
    with pytest.raises(ValidationError):
        parse_claims(json.dumps(data))
