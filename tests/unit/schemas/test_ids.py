"""Identifier helpers: BSN 11-proef, UUIDv7, traceparent."""

from __future__ import annotations

import re
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


def _reference_is_bsn(digits: str) -> bool:
    if len(digits) != 9 or not digits.isascii() or not digits.isdigit() or digits == "0" * 9:
        return False
    weights = (9, 8, 7, 6, 5, 4, 3, 2, -1)
    return sum(w * int(d) for w, d in zip(weights, digits, strict=True)) % 11 == 0


def _reference_bsn_runs(text: str | bytes) -> list[str]:
    """bsn_runs as first written: one regex pass over the decoded text."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    runs = re.findall(r"[0-9]{9,}", text)
    return [r for r in runs if len(r) == 9 and _reference_is_bsn(r)]


@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=12))
def test_is_bsn_matches_the_reference(text: str) -> None:
    assert ids.is_bsn(text) == _reference_is_bsn(text)


@given(st.integers(0, 10**9 - 1))
def test_is_bsn_matches_the_reference_on_nine_digits(n: int) -> None:
    assert ids.is_bsn(f"{n:09d}") == _reference_is_bsn(f"{n:09d}")


# Text made of the pieces that matter to the run search: digit runs of every length around
# nine (some passing the 11-proef), separators, non-ASCII digits, multi-byte characters.
_run_text = st.lists(
    st.sampled_from(["999990019", "123456782", "99999001", "0", "7", "٣", "é", "\ud800", " ", "-"])
    | st.text(alphabet="0123456789", max_size=12)
    | st.text(max_size=3),
    max_size=12,
).map("".join)


@given(_run_text)
def test_bsn_runs_match_the_regex_reference(text: str) -> None:
    assert ids.bsn_runs(text) == _reference_bsn_runs(text)
    data = text.encode("utf-8", "surrogatepass")
    assert ids.bsn_runs(data) == _reference_bsn_runs(data)


@given(st.binary(max_size=40), st.sampled_from([b"", b"999990019", b"123456782"]))
def test_bsn_runs_on_bytes_that_are_not_utf8(noise: bytes, run: bytes) -> None:
    data = noise[:20] + run + noise[20:]
    assert ids.bsn_runs(data) == _reference_bsn_runs(data)


@pytest.mark.parametrize(
    ("text", "runs"),
    [
        ("999990019", ["999990019"]),
        ("x999990019", ["999990019"]),
        ("a 999990019 b 123456782 c", ["999990019", "123456782"]),
        ("1999990019 99999001", []),  # ten and eight digits
        ("999990019\xff", ["999990019"]),
        ("999990018", []),  # fails the 11-proef
    ],
)
def test_bsn_runs_examples(text: str, runs: list[str]) -> None:
    assert ids.bsn_runs(text) == runs
    assert ids.bsn_runs(text.encode("utf-8")) == runs
    assert ids.bsn_runs(b"\xff" + text.encode("utf-8") + b"\xfe") == runs


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
