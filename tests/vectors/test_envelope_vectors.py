"""The committed envelope vectors (tests/vectors/envelope/*.json) behave exactly as they state,
cover both suites and every refusal reason of the envelope, and are what the script generates."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.vectors.envelope_vectors import DIRECTORY, EXPECTED_DETAIL, build_vectors, check, render

FILES = sorted(DIRECTORY.glob("*.json"))
ENVELOPE_REASONS = {
    "malformed",
    "unsupported",
    "too_large",
    "not_for_us",
    "undecryptable",
    "bad_signature",
    "unknown_sender",
    "invalid_claims",
    "expired",
    "replayed",
}


def _load(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return doc


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_vector_behaves_as_it_states(path: Path) -> None:
    doc = _load(path)
    assert {
        "description",
        "now",
        "recipient_private_jwk",
        "sender_public_jwk",
        "envelope",
    } <= doc.keys()
    assert ("claims" in doc) != ("error" in doc)
    assert isinstance(doc["envelope"], dict)
    assert check(doc, EXPECTED_DETAIL.get(path.stem)) is None


def test_vectors_cover_both_suites_and_every_reason() -> None:
    docs = [_load(p) for p in FILES]
    assert len(docs) >= 24
    successes = [d for d in docs if "claims" in d]
    assert {d["suite"] for d in successes} >= {"p256", "curve25519", "mixed"}
    assert {d["suite"] for d in docs if "error" in d} >= {"p256", "curve25519"}
    assert {d["error"] for d in docs if "error" in d} == ENVELOPE_REASONS
    assert all(
        d["error"] == "unsupported" or d["error"] in ENVELOPE_REASONS for d in docs if "error" in d
    )
    assert all(p.stem in EXPECTED_DETAIL for p, d in zip(FILES, docs, strict=True) if "error" in d)


def test_committed_vectors_are_exactly_what_the_script_generates() -> None:
    generated = build_vectors()
    assert {p.stem for p in FILES} == set(generated)
    for path in FILES:
        assert path.read_text(encoding="utf-8") == render(generated[path.stem]), path.name
