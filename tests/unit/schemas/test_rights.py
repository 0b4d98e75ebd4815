"""The contract of the inzageverzoek (``rights.request`` / ``rights.response``): the rules of
their bodies, and the BSN staying inside the encrypted body."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from schemas.claims import RightsRequest, RightsResponse, parse_claims
from tests.unit.schemas.conftest import EXAMPLES


def _example(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLES / f"rights.{name}.json").read_text("utf-8"))
    return data


def _locs(exc: ValidationError) -> list[tuple[str | int, ...]]:
    return [tuple(e["loc"]) for e in exc.errors(include_input=False)]


def _refused(data: dict[str, Any]) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        parse_claims(json.dumps(data))
    return info.value


def test_the_examples_parse_as_their_types() -> None:
    assert isinstance(parse_claims(json.dumps(_example("request"))), RightsRequest)
    assert isinstance(parse_claims(json.dumps(_example("response"))), RightsResponse)


def test_a_request_without_a_bsn_is_refused() -> None:
    data = _example("request")
    del data["body"]["identification"]["bsn"]
    assert any("bsn" in loc for loc in _locs(_refused(data)))


def test_the_bsn_outside_the_body_identification_is_refused() -> None:
    data = _example("request")
    data["case_ref"] = "inzage-999990019"
    assert any(loc[-1] == "case_ref" for loc in _locs(_refused(data)))


def test_a_request_must_declare_id_direct() -> None:
    data = _example("request")
    data["data_categories"] = []
    _refused(data)


def test_a_request_period_must_not_run_backwards() -> None:
    data = _example("request")
    data["body"]["period_from"] = "2026-03-01"
    data["body"]["period_to"] = "2026-02-01"
    assert any(loc[-1] == "period_to" for loc in _locs(_refused(data)))


def test_a_response_names_the_request_it_answers() -> None:
    data = _example("response")
    del data["in_reply_to"]
    assert any(loc[-1] == "in_reply_to" for loc in _locs(_refused(data)))


def test_a_deferred_response_needs_a_ground_and_lists_nothing() -> None:
    data = _example("response")
    data["body"]["status"] = "deferred"
    assert any(loc[-1] == "deferral" for loc in _locs(_refused(data)))
    data["body"]["deferral"] = {"ground": "WPG", "review_on": "2026-06-01"}
    assert any(loc[-1] == "exchanges" for loc in _locs(_refused(data)))
    data["body"]["exchanges"] = []
    data["data_categories"] = []
    claims = parse_claims(json.dumps(data))
    assert isinstance(claims, RightsResponse)
    assert claims.body.deferral is not None
    assert claims.body.deferral.ground == "WPG"


def test_an_answered_response_has_no_deferral() -> None:
    data = _example("response")
    data["body"]["deferral"] = {"ground": "AVG_23", "review_on": "2026-06-01"}
    assert any(loc[-1] == "deferral" for loc in _locs(_refused(data)))


def test_a_deferral_ground_outside_the_list_is_refused() -> None:
    data = _example("response")
    data["body"] = {
        "request_id": data["body"]["request_id"],
        "status": "deferred",
        "deferral": {"ground": "BECAUSE", "review_on": "2026-06-01"},
    }
    data["data_categories"] = []
    _refused(data)


def test_exchanges_must_be_declared_as_betrokkenheid() -> None:
    data = _example("response")
    data["data_categories"] = []
    assert any("exchanges" in loc for loc in _locs(_refused(data)))


def test_an_exchange_holds_no_employee_identity() -> None:
    """C-579/21: dates, purposes and recipients, never who at the organisation did it."""
    data = _example("response")
    data["body"]["exchanges"][0]["employee"] = "j.de.vries"
    assert any("employee" in loc for loc in _locs(_refused(data)))
