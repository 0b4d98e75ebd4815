"""schemas.strictjson: its fast paths (compact JSON through orjson, shared decoder, bracket count
before the depth walk, the dict-length duplicate check) accept and refuse exactly what the plain
implementation does.

Threat: a fast path that lets through a duplicate key, a NaN or a too-deep document, which a
signer could use to show two parties two different documents under one signature.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import strictjson
from schemas.strictjson import MAX_DEPTH


def _reference_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError("duplicate key in JSON object")
        out[key] = value
    return out


def _reference_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _reference_too_deep(value: Any, depth: int = 1) -> bool:
    if depth > MAX_DEPTH:
        return True
    children = value.values() if type(value) is dict else value
    return any(
        _reference_too_deep(child, depth + 1) for child in children if type(child) in (dict, list)
    )


def reference_loads(data: bytes | str) -> Any:
    """strictjson.loads as first written (one json.loads per call, recursive depth walk)."""
    if isinstance(data, bytes):
        if data.startswith(b"\xef\xbb\xbf"):
            raise ValueError("JSON must not start with a byte-order mark")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("JSON is not valid UTF-8") from None
    else:
        text = data
    try:
        value = json.loads(
            text, object_pairs_hook=_reference_pairs, parse_constant=_reference_constant
        )
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON (line {exc.lineno}, column {exc.colno})") from None
    except RecursionError:
        raise ValueError(f"JSON nests deeper than {MAX_DEPTH} levels") from None
    if type(value) in (dict, list) and _reference_too_deep(value):
        raise ValueError(f"JSON nests deeper than {MAX_DEPTH} levels")
    return value


def outcome(loads: Any, data: bytes | str) -> tuple[str, Any]:
    try:
        return "ok", loads(data)
    except ValueError as exc:
        return "refused", str(exc)


def assert_same(data: bytes | str) -> None:
    assert outcome(strictjson.loads, data) == outcome(reference_loads, data)


def nested(depth: int, *, padding: str = "") -> str:
    """``depth`` nested containers (objects and arrays alternating), with ``padding`` brackets
    inside a string so the bracket count overstates the depth."""
    text = json.dumps(padding)
    for i in range(depth):
        text = f'{{"k": {text}}}' if i % 2 else f"[{text}]"
    return text


@pytest.mark.parametrize("depth", [1, MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1, 3 * MAX_DEPTH])
@pytest.mark.parametrize("padding", ["", "[{" * MAX_DEPTH])
def test_depth_limit_is_exact_on_both_paths(depth: int, padding: str) -> None:
    # Without padding the bracket count decides (depth <= MAX_DEPTH); with it the walk runs.
    text = nested(depth, padding=padding)
    if depth > MAX_DEPTH:
        with pytest.raises(ValueError, match="nests deeper"):
            strictjson.loads(text)
    else:
        assert strictjson.loads(text) is not None
    assert_same(text)
    assert_same(text.encode("utf-8"))


def test_wide_shallow_document_takes_the_walk_and_passes() -> None:
    text = json.dumps({"a": [[{"b": []}] for _ in range(MAX_DEPTH)]})
    assert text.count("[") + text.count("{") > MAX_DEPTH
    assert strictjson.loads(text)["a"][0] == [{"b": []}]


@pytest.mark.parametrize(
    "text",
    [
        '{"a": 1, "a": 1}',
        '{"a": 1, "b": {"c": 2, "c": 3}}',
        '[{"x": [{"y": 1, "z": 2, "y": 1}]}]',
        '{"\\u0061": 1, "a": 2}',  # the same key, once escaped
    ],
)
def test_duplicate_keys_are_refused_at_any_depth(text: str) -> None:
    with pytest.raises(ValueError, match="duplicate key"):
        strictjson.loads(text)
    assert_same(text)


@pytest.mark.parametrize(
    "data",
    [
        "\ufeff{}",  # BOM in a str: json.loads refuses it, so must the shared decoder
        b"\xef\xbb\xbf{}",
        '{"a": NaN}',
        "[Infinity]",
        "[-Infinity]",
        "{} x",
        "",
        b'"\xff"',
        '{"a": "\\ud800"}',  # a lone surrogate escape is valid JSON text
    ],
)
def test_edge_inputs_match_the_reference(data: bytes | str) -> None:
    assert_same(data)


def test_bytearray_still_goes_through_json_loads() -> None:
    data = bytearray('{"a": [1, 2]}'.encode("utf-16"))
    assert strictjson.loads(data) == {"a": [1, 2]}  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="duplicate key"):
        strictjson.loads(bytearray(b'{"a": 1, "a": 2}'))  # type: ignore[arg-type]


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=6),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children, max_size=3)
    ),
    max_leaves=40,
)


@settings(max_examples=100)
@given(value=_json, deep=st.integers(0, 2 * MAX_DEPTH), dup=st.booleans(), compact=st.booleans())
def test_loads_agrees_with_the_reference(value: Any, deep: int, dup: bool, compact: bool) -> None:
    # Compact text without ASCII escapes is what the orjson fast path takes; a lone surrogate in
    # it gives bytes that are not UTF-8 (refused by both).
    if compact:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    else:
        text = json.dumps(value)
    for _ in range(deep):
        text = f"[{text}]"
    if dup:
        text = ('{"d":0,"d":' if compact else '{"d": 0, "d": ') + text + "}"
    assert_same(text)
    assert_same(text.encode("utf-8", "surrogatepass"))


@pytest.mark.parametrize(
    "data",
    [
        b'{"a":1,"a":2}',
        b'{"a":{"b":1,"b":1}}',
        b'[{"x":[{"y":1,"z":2,"y":1}]}]',
        b'{"a":NaN}',
        b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1),
        b"[" * MAX_DEPTH + b"]" * MAX_DEPTH,
        b'{"n":123456789012345678901234567890}',
        b'{"a":"\xc3\xa9"}',
    ],
)
def test_compact_inputs_match_the_reference(data: bytes) -> None:
    """Compact bytes (the fast path's shape): duplicates, NaN, depth and big integers still
    decided exactly as by the strict decoder."""
    assert_same(data)
