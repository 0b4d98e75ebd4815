"""Every committed example is valid, round-trips, and validates against the exported JSON Schema."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from schemas.catalogue import MESSAGE_TYPES
from schemas.claims import CLAIMS_TYPES, claims_to_json, parse_claims
from schemas.export import JSON_DIR, check
from tests.unit.schemas.conftest import EXAMPLES

EXAMPLE_FILES = sorted(EXAMPLES.glob("*.json"))


def test_every_message_type_has_an_example() -> None:
    types = {json.loads(p.read_text("utf-8"))["message_type"] for p in EXAMPLE_FILES}
    assert types == set(MESSAGE_TYPES)
    assert set(CLAIMS_TYPES) == set(MESSAGE_TYPES)


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.stem)
def test_example_is_valid_and_round_trips(path: Path) -> None:
    claims = parse_claims(path.read_bytes())
    assert type(claims) is CLAIMS_TYPES[claims.message_type]
    again = parse_claims(claims_to_json(claims))
    assert again == claims
    assert claims_to_json(again) == claims_to_json(claims)
    assert claims_to_json(claims) == claims.model_dump_json(exclude_none=True).encode("utf-8")


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.stem)
def test_example_validates_against_json_schema(path: Path) -> None:
    data = json.loads(path.read_text("utf-8"))
    schema = json.loads((JSON_DIR / f"{data['message_type']}.schema.json").read_text("utf-8"))
    jsonschema.Draft202012Validator(schema).validate(data)
    union = json.loads((JSON_DIR / "claims.schema.json").read_text("utf-8"))
    jsonschema.Draft202012Validator(union).validate(data)


def test_json_schema_rejects_what_the_models_reject() -> None:
    data = json.loads((EXAMPLES / "case.referral.json").read_text("utf-8"))
    data["body"]["surprise"] = 1
    schema = json.loads((JSON_DIR / "case.referral.schema.json").read_text("utf-8"))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema).validate(data)


def test_committed_json_schemas_are_up_to_date() -> None:
    assert check() == [], "run: zvg schemas export"


def test_json_schema_marks_the_category_of_personal_fields() -> None:
    schema = json.loads((JSON_DIR / "info.response.schema.json").read_text("utf-8"))
    props = schema["$defs"]["InfoResponseBody"]["properties"]
    assert props["health"]["x-zvg-category"] == "GEZONDHEID"
    assert props["contact"]["x-zvg-category"] == "CONTACT_PROF"
    assert "x-zvg-category" not in props["disposition"]
