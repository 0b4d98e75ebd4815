"""Identifier helpers: BSN 11-proef, UUIDv7, traceparent."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import ids


@pytest.mark.parametrize("bsn", ["999990019", "999990020", "111222333", "123456782"])
def test_valid_bsns(bsn: str) -> None:
    assert ids.is_bsn(bsn)
    assert ids.find_bsn(f"bsn: {bsn}.")


@pytest.mark.parametrize("value", ["999990018", "12345678", "1234567890", "000000000", "99999001a"])
def test_not_bsns(value: str) -> None:
    assert not ids.is_bsn(value)


def test_bsn_inside_longer_digit_runs_is_not_found() -> None:
    assert not ids.find_bsn("00000001999000001000")  # an OIN
    assert not ids.find_bsn("1999990019")


def test_opaque_identifiers_are_not_searched() -> None:
    # '123456782' passes the 11-proef but inside a UUID it is random hex, not a BSN.
    assert not ids.find_bsn("019cadd6-2e80-7000-8000-123456782000")
    assert ids.find_bsn("case 123456782")


@given(st.integers(min_value=0, max_value=2**48 - 1), st.binary(min_size=10, max_size=10))
def test_uuid7_is_rfc9562_version_7(ms: int, rand: bytes) -> None:
    text = ids.uuid7(ms, rand)
    parsed = uuid.UUID(text)
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122
    assert int(parsed.hex[:12], 16) == ms
    assert ids.is_uuid7(text)


def test_uuid7_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="range"):
        ids.uuid7(-1, bytes(10))
    with pytest.raises(ValueError, match="10 random bytes"):
        ids.uuid7(0, bytes(9))


def test_uuid7_sorts_by_time() -> None:
    assert ids.uuid7(1000, bytes(10)) < ids.uuid7(1001, bytes(10))


def test_traceparent() -> None:
    assert ids.is_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    assert not ids.is_traceparent("00-00000000000000000000000000000000-00f067aa0ba902b7-01")
    assert not ids.is_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01")
    assert not ids.is_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
