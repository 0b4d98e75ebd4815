"""docs/threat-model.md is checked: every threat names a control and tests that exist.

The threat model is only worth something while the tests it cites are real. This module reads the
document's tables, resolves every cited test id (``tests/<file>.py::<name>`` or
``tests/<file>.py::<Class>::<name>``) against the test files' syntax trees, and fails when an id
names a file or a test that does not exist, when a threat cites no test, or when one of the threats
every node must answer for is missing.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "threat-model.md"

TEST_ID = re.compile(r"`(tests/[\w/]+\.py)::([\w:]+)(?:\[[^\]`]*\])?`")

# The threats and trust boundaries the model must cover (each a lower-case phrase that must appear
# in the first column of its table).
REQUIRED_THREATS = (
    "hostile member",
    "local user",
    "disk writer",
    "broker admin",
    "replay",
    "rollback",
    "flood",
    "slow client",
    "forged receipt",
    "fork",
    "key compromise",
    "insider officer",
)
REQUIRED_BOUNDARIES = (
    "partner system ↔ node api",
    "node ↔ broker",
    "node ↔ node",
    "node host disk",
    "directory authorities",
    "audit log and its witnesses",
    "operators",
)


def _table(heading: str) -> list[list[str]]:
    """The rows (cells, header and rule removed) of the first table under ``## heading``."""
    text = DOC.read_text(encoding="utf-8")
    start = text.find(f"\n## {heading}\n")
    assert start >= 0, f"docs/threat-model.md has no '## {heading}' section"
    rows: list[list[str]] = []
    in_table = False
    for line in text[start:].splitlines()[2:]:
        if line.startswith("## "):
            break
        if line.startswith("|"):
            in_table = True
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif in_table:
            break
    assert len(rows) > 2, f"the '{heading}' section has no table rows"
    return rows[2:]


@cache
def _defined(path: str) -> frozenset[str]:
    """Every test id defined in ``path``: ``name`` for functions, ``Class::name`` for methods."""
    tree = ast.parse((ROOT / path).read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            names.update(
                f"{node.name}::{item.name}"
                for item in node.body
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
            )
    return frozenset(names)


def _cited(cell: str) -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in TEST_ID.finditer(cell)]


def test_the_threat_model_exists_with_threats_and_boundaries() -> None:
    threats = " ".join(row[0].lower() for row in _table("Threats"))
    missing = [name for name in REQUIRED_THREATS if name not in threats]
    assert not missing, f"threats missing from docs/threat-model.md: {missing}"
    boundaries = " ".join(row[0].lower() for row in _table("Trust boundaries"))
    missing = [name for name in REQUIRED_BOUNDARIES if name not in boundaries]
    assert not missing, f"trust boundaries missing from docs/threat-model.md: {missing}"


def test_every_threat_has_a_control_and_cites_tests() -> None:
    for row in _table("Threats"):
        assert len(row) >= 4, f"row {row[0]!r} needs threat | boundary | control | tests"
        assert row[2], f"threat {row[0]!r} names no control"
        assert _cited(row[-1]), f"threat {row[0]!r} cites no test id"


def _all_ids() -> list[tuple[str, str]]:
    if not DOC.is_file():  # test_the_threat_model_exists_with_threats_and_boundaries fails then
        return []
    return sorted(set(_cited(DOC.read_text(encoding="utf-8"))))


@pytest.mark.parametrize(("path", "name"), _all_ids(), ids=str)
def test_every_cited_test_id_exists(path: str, name: str) -> None:
    assert (ROOT / path).is_file(), f"docs/threat-model.md cites {path}, which does not exist"
    assert name in _defined(path), f"docs/threat-model.md cites {path}::{name}, not defined there"


def test_a_missing_test_id_is_caught() -> None:
    """The check itself can fail: an id that names no test is not in the defined set."""
    assert "test_that_does_not_exist" not in _defined("tests/unit/test_threat_model.py")
    assert "test_every_cited_test_id_exists" in _defined("tests/unit/test_threat_model.py")
