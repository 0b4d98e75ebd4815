"""Salted commitments and canonical leaf encoding.

Threats: personal data recoverable from a Merkle leaf after its body was deleted (brute force of
low-entropy values), commitments that link equal values across fields or records, and leaves
that two implementations encode differently (so a partner cannot recompute them).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core.commit import (
    COMMITMENT_SIZE,
    MAX_CANONICAL_DEPTH,
    MAX_SAFE_INTEGER,
    SALT_SIZE,
    JsonValue,
    canonical_json,
    commitment,
    record_leaf_hash,
    verify_commitment,
)
from gateway.core.merkle import leaf_hash
from gateway.errors import LocalError

SALT = bytes(range(SALT_SIZE))
OTHER_SALT = bytes(range(1, SALT_SIZE + 1))
PSEUDONYM = b"subj-7f3a9c"


# ---------------------------------------------------------------- commitments


def test_commitment_is_the_documented_hmac() -> None:
    expected = hmac.new(
        SALT, b"zvg-commitment/v1\x00data_subject_id\x00" + PSEUDONYM, hashlib.sha256
    ).digest()
    assert commitment(SALT, PSEUDONYM, field="data_subject_id") == expected
    assert len(expected) == COMMITMENT_SIZE


def test_commitment_depends_on_salt_field_and_value() -> None:
    base = commitment(SALT, PSEUDONYM, field="data_subject_id")
    assert commitment(OTHER_SALT, PSEUDONYM, field="data_subject_id") != base
    assert commitment(SALT, PSEUDONYM, field="case_ref") != base, "one salt, two fields: unlinkable"
    assert commitment(SALT, PSEUDONYM + b"0", field="data_subject_id") != base
    assert commitment(SALT, PSEUDONYM, field="data_subject_id") == base, "deterministic"


def test_field_and_value_cannot_be_shifted_into_each_other() -> None:
    # Fields have no NUL, so the NUL after the field always marks where the value starts.
    assert commitment(SALT, b"b", field="a") != commitment(SALT, b"", field="ab")
    assert commitment(SALT, b"\x00b", field="a") != commitment(SALT, b"b", field="a")


def test_commitment_verifies_only_the_committed_value() -> None:
    c = commitment(SALT, PSEUDONYM, field="data_subject_id")
    assert verify_commitment(SALT, PSEUDONYM, c, field="data_subject_id")
    assert not verify_commitment(SALT, b"subj-000000", c, field="data_subject_id")
    assert not verify_commitment(OTHER_SALT, PSEUDONYM, c, field="data_subject_id")
    assert not verify_commitment(SALT, PSEUDONYM, c[:-1], field="data_subject_id")


@pytest.mark.parametrize("salt", [b"", bytes(31), bytes(33), bytes(32) + b"\x00"])
def test_commitment_salt_must_be_exactly_32_bytes(salt: bytes) -> None:
    # Also closes HMAC's key-padding quirk: a key and the key plus zero bytes would collide.
    with pytest.raises(LocalError):
        commitment(salt, PSEUDONYM)


def test_commitment_refuses_nul_in_field_and_non_bytes() -> None:
    with pytest.raises(LocalError):
        commitment(SALT, PSEUDONYM, field="a\x00b")
    with pytest.raises(LocalError):
        commitment(SALT, "text")  # type: ignore[arg-type]


# ---------------------------------------------------------------- canonical JSON (RFC 8785 subset)


def test_rfc8785_key_order_example() -> None:
    # RFC 8785 §3.2.3: keys sort by UTF-16 code units; the emoji (a surrogate pair) sorts before
    # U+FB33 although its code point is larger.
    value: dict[str, JsonValue] = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001f600": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    expected = (
        '{"\\r":"Carriage Return","1":"One","\u0080":"Control",'
        '"\u00f6":"Latin Small Letter O With Diaeresis","\u20ac":"Euro Sign",'
        '"\U0001f600":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}'
    )
    assert canonical_json(value) == expected.encode("utf-8")


def test_string_escaping_matches_json_stringify() -> None:
    value = '"\\/\b\f\n\r\t\x00\x1f\x7f\u2028é'
    assert canonical_json(value) == '"\\"\\\\/\\b\\f\\n\\r\\t\\u0000\\u001f\x7f\u2028é"'.encode()


def test_layout_has_no_whitespace_and_literals_are_json() -> None:
    value: JsonValue = {"b": [1, -2, True, False, None, "x"], "a": {"z": 0, "y": []}}
    assert canonical_json(value) == b'{"a":{"y":[],"z":0},"b":[1,-2,true,false,null,"x"]}'
    assert canonical_json((1, 2)) == b"[1,2]"


@pytest.mark.parametrize(
    "value",
    [
        1.5,
        {"a": 1.0},
        MAX_SAFE_INTEGER + 1,
        -(MAX_SAFE_INTEGER + 1),
        {1: "non-string key"},
        b"bytes",
        {"a": {1, 2}},
        "\ud800",  # lone surrogate
    ],
)
def test_canonical_json_refuses_what_it_cannot_encode_exactly(value: object) -> None:
    with pytest.raises(LocalError):
        canonical_json(value)  # type: ignore[arg-type]


def test_canonical_json_depth_limit() -> None:
    deep: JsonValue = []
    for _ in range(MAX_CANONICAL_DEPTH):
        deep = [deep]
    assert canonical_json(deep).startswith(b"[[")
    with pytest.raises(LocalError):
        canonical_json([deep])


def test_record_leaf_hash_is_the_leaf_hash_of_the_canonical_bytes() -> None:
    record: dict[str, JsonValue] = {
        "name": "send case.referral",
        "zvh.message_id": "0190a1b2-0000-7000-8000-000000000001",
        "dpl.core.data_subject_id": commitment(SALT, PSEUDONYM, field="data_subject_id").hex(),
    }
    assert record_leaf_hash(record) == leaf_hash(canonical_json(record))
    assert record_leaf_hash(dict(reversed(record.items()))) == record_leaf_hash(record)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER)
    | st.text(st.characters(exclude_categories=["Cs"])),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(st.characters(exclude_categories=["Cs"])), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=100)
@given(value=json_values)
def test_canonical_json_is_json_and_a_fixed_point(value: JsonValue) -> None:
    encoded = canonical_json(value)
    decoded = json.loads(encoded)
    assert decoded == value
    assert canonical_json(decoded) == encoded


# The fast path of canonical_json (orjson, used when keys are ASCII and values plain)
# must give exactly the bytes of the RFC 8785 reference encoder.
_plain_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


def _assert_reference_bytes(value: Any) -> None:
    """canonical_json gives the slow path's bytes for ``value``, or refuses what it refuses."""
    from gateway.core import commit as c

    out: list[str] = []
    try:
        c._encode(value, out, 0)
        reference = "".join(out).encode("utf-8")
    except (LocalError, UnicodeEncodeError):
        with pytest.raises(LocalError):
            canonical_json(value)
        return
    assert canonical_json(value) == reference


@given(_plain_json)
def test_fast_path_gives_the_reference_bytes(value: Any) -> None:
    _assert_reference_bytes(value)


def _reference_plain(value: object, depth: int = 0) -> bool:
    """The first, recursive ``_plain``: the iterative one must agree with it on every value."""
    kind = type(value)
    if kind is str:
        try:
            value.encode("utf-8")  # type: ignore[attr-defined]
        except UnicodeEncodeError:
            return False
        return True
    if value is None or kind is bool:
        return True
    if kind is int:
        return -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER  # type: ignore[operator]
    if depth >= MAX_CANONICAL_DEPTH:
        return False
    if kind is dict:
        for key, child in value.items():  # type: ignore[attr-defined]
            if type(key) is not str or not key.isascii() or not _reference_plain(child, depth + 1):
                return False
        return True
    if kind is list or kind is tuple:
        return all(_reference_plain(child, depth + 1) for child in value)  # type: ignore[attr-defined]
    return False


class _Str(str):
    pass


class _Int(int):
    pass


# Anything the walk must tell apart: floats, unsafe integers, lone surrogates, non-ASCII and
# non-string keys, subclasses, bytes, sets, tuples.
_any_leaf = (
    st.none()
    | st.booleans()
    | st.integers(-(2**60), 2**60)
    | st.sampled_from([MAX_SAFE_INTEGER, -MAX_SAFE_INTEGER, MAX_SAFE_INTEGER + 1, 1.0, 0.5])
    | st.text(max_size=4)
    | st.sampled_from(["\ud800", "é", _Str("x"), _Int(3), b"x", frozenset({1})])
)
_any_value = st.recursive(
    _any_leaf,
    lambda children: (
        st.lists(children, max_size=4)
        | st.lists(children, max_size=3).map(tuple)
        | st.dictionaries(
            st.text(max_size=3) | st.sampled_from([1, None, _Str("k"), "\u00e9", "\ud800"]),
            children,
            max_size=4,
        )
    ),
    max_leaves=25,
)


@settings(max_examples=100)
@given(value=_any_value, depth=st.integers(0, MAX_CANONICAL_DEPTH + 2))
def test_plain_agrees_with_the_recursive_reference(value: Any, depth: int) -> None:
    from gateway.core import commit as c

    for _ in range(depth):
        value = [value] if depth % 2 else {"k": value}
    assert c._plain(value) == _reference_plain(value)


def test_plain_depth_bound_is_exact() -> None:
    from gateway.core import commit as c

    deep: Any = 1
    for _ in range(MAX_CANONICAL_DEPTH):
        deep = [deep]
    assert c._plain(deep)  # containers at depths 0..31
    assert not c._plain([deep])
    assert not c._plain({"k": [deep]})


def test_shared_containers_do_not_blow_up() -> None:
    # 2**40 paths through 40 shared lists: the walk stops at the depth bound on the first one.
    value: Any = []
    for _ in range(40):
        value = [value, value]
    with pytest.raises(LocalError):
        canonical_json(value)


@settings(max_examples=100)
@given(value=_any_value)
def test_canonical_json_equals_the_reference_encoder_on_any_value(value: Any) -> None:
    _assert_reference_bytes(value)
