"""The catalogue is data: versioned, validated on load, and extendable without code changes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from schemas.catalogue import (
    DEFAULT_CATALOGUE_PATH,
    MESSAGE_TYPES,
    default_catalogue,
    load_catalogue,
)
from schemas.claims import parse_claims
from tests.unit.schemas.conftest import load_example

DESIGN_PURPOSES = {
    "ZVH.AANMELDING",
    "ZVH.BEKENDHEID",
    "ZVH.INFORMATIE",
    "ZVH.CASUSOVERLEG",
    "ZVH.PLAN",
    "ZVH.RISICO",
    "ZVH.OVERDRACHT",
    "ZVH.AFSLUITING",
    "ZVH.VERANTWOORDING",
}
DESIGN_CATEGORIES = {
    "ID_PSEUDO",
    "ID_DIRECT",
    "CONTACT_PROF",
    "BETROKKENHEID",
    "LEEFGEBIEDEN",
    "SYSTEEM",
    "GEZONDHEID",
    "JUSTITIEEL",
    "POLITIE",
    "RISICO",
    "PLAN",
    "VRIJE_TEKST",
}
DESIGN_ROLES = {"ZVH", "GEM", "POL", "OM", "RECL", "GI", "RVDK", "VT", "GGZ", "WC", "OTHER"}


def _raw() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DEFAULT_CATALOGUE_PATH.read_text("utf-8"))
    return data


def test_default_catalogue_covers_design() -> None:
    cat = default_catalogue()
    assert set(cat.purpose_by_code) == DESIGN_PURPOSES
    assert set(cat.category_by_code) == DESIGN_CATEGORIES
    assert set(cat.role_by_code) == DESIGN_ROLES
    assert {"WGS", "WPG_20", "WJSG_39F", "AVG_6_1_E", "CONSENT"} <= set(cat.legal_basis_by_code)
    assert cat.version == "1.1.0"
    every_type = {t for p in cat.purposes for t in p.message_types}
    assert every_type == set(MESSAGE_TYPES)


def test_every_entry_has_dutch_name_and_english_description() -> None:
    cat = default_catalogue()
    for kind in (cat.purposes, cat.roles, cat.data_categories, cat.legal_bases, cat.programmes):
        for entry in kind:
            assert entry.name_nl.strip(), entry.code
            assert entry.description_en.strip(), entry.code


def test_special_categories_imply_flags() -> None:
    cats = default_catalogue().category_by_code
    assert cats["GEZONDHEID"].implies_flag == "art9"
    assert cats["JUSTITIEEL"].implies_flag == "art10"
    assert cats["POLITIE"].implies_flag == "police_data"
    assert cats["ID_DIRECT"].identifying


def test_new_purpose_loads_without_code_change(tmp_path: Path) -> None:
    raw = _raw()
    raw["version"] = "1.1.0"
    raw["purposes"].append(
        {
            "code": "ZVH.NAZORG",
            "name_nl": "Nazorg",
            "description_en": "Aftercare following closure.",
            "message_types": ["case.status", "receipt"],
            "data_categories": ["ID_PSEUDO"],
            "emergency": False,
        }
    )
    path = tmp_path / "catalogue.json"
    path.write_text(json.dumps(raw), "utf-8")
    cat = load_catalogue(path)
    msg = load_example("case.status")
    msg["purpose"] = "ZVH.NAZORG"
    with pytest.raises(ValidationError, match="unknown purpose"):
        parse_claims(json.dumps(msg))  # the default catalogue does not know it
    assert parse_claims(json.dumps(msg), catalogue=cat).purpose == "ZVH.NAZORG"


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda r: r["roles"].append(dict(r["roles"][0])), "duplicate codes"),
        (lambda r: r["purposes"][0]["data_categories"].append("DNA"), "unknown"),
        (lambda r: r["purposes"][0]["message_types"].remove("receipt"), "receipt"),
        (lambda r: r["purposes"][0]["message_types"].append("case.gossip"), "message_types"),
        (lambda r: r.update(version="one"), "version"),
        (lambda r: r["roles"][0].pop("name_nl"), "name_nl"),
        (lambda r: r["data_categories"][0].update(implies_flag="art99"), "implies_flag"),
    ],
    ids=[
        "duplicate",
        "unknown-category",
        "no-receipt",
        "unknown-type",
        "version",
        "no-name",
        "bad-flag",
    ],
)
def test_broken_catalogue_is_refused(tmp_path: Path, change: Any, fragment: str) -> None:
    raw = _raw()
    change(raw)
    path = tmp_path / "catalogue.json"
    path.write_text(json.dumps(raw), "utf-8")
    with pytest.raises(ValidationError, match=fragment):
        load_catalogue(path)
