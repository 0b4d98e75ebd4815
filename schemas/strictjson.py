"""Strict JSON decoding for everything that crosses an organisation's boundary.

Python's ``json`` module accepts inputs other parsers treat differently, which lets a signer show
two parties two different documents under one signature. :func:`loads` refuses them:

- duplicate object keys (parsers disagree on which value wins);
- ``NaN``, ``Infinity`` and ``-Infinity`` (not JSON, RFC 8259 §6);
- bytes that are not UTF-8 (RFC 8259 §8.1), and a byte-order mark;
- nesting deeper than :data:`MAX_DEPTH`.

Every refusal is a ``ValueError`` whose message names the problem, never the content.

Fast path (:func:`compact_loads`): bytes that :mod:`orjson` parses and serialises back to exactly
the same bytes — compact JSON, as every document zv-gateway writes (claims, envelopes, headers) —
are taken as parsed. Such text cannot hold a duplicate member name (the re-serialisation writes
each name of an object once, so the text would be longer), ``NaN``/``Infinity`` (``orjson``
refuses them) or an integer ``orjson`` cannot represent exactly, and ``orjson`` refuses invalid
UTF-8 and a byte-order mark. Anything else, valid or not, is decided by the strict decoder.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

__all__ = ["MAX_DEPTH", "compact_loads", "loads"]

#: Deepest nesting of arrays and objects accepted. Our deepest document (a message body) nests
#: about six levels; 32 leaves room while stopping stack-exhaustion inputs early.
MAX_DEPTH = 32


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """The object hook: a dict, unless a key repeats (the dict then has fewer entries than
    there were pairs, which is exactly the case of a repeated key)."""
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError("duplicate key in JSON object")
    return out


def _constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


#: One decoder for every call (``json.loads`` with keyword arguments builds a new decoder, and
#: a new C scanner, per call). The C scanner keeps no state between calls that matters: its key
#: memo only interns key strings, and the json module shares its own default decoder likewise.
_DECODER = json.JSONDecoder(object_pairs_hook=_pairs, parse_constant=_constant)


def _too_deep(value: Any) -> bool:
    """True when containers nest deeper than :data:`MAX_DEPTH` (leaves are not visited).

    Walks one nesting level at a time, without recursion: ``level`` holds the containers at
    depth ``depth`` (the top-level container has depth 1)."""
    level = [value]
    depth = 1
    while level:
        if depth > MAX_DEPTH:
            return True
        level = [
            child
            for container in level
            for child in (container.values() if type(container) is dict else container)
            if type(child) is dict or type(child) is list
        ]
        depth += 1
    return False


def _may_be_too_deep(text: str) -> bool:
    """False when ``text`` cannot nest deeper than :data:`MAX_DEPTH`: every container opens
    with a ``[`` or ``{``, so the nesting depth is at most the number of those characters (ones
    inside strings only make the bound looser). Two C-speed counts instead of a walk, which is
    all most documents need."""
    return text.count("[") + text.count("{") > MAX_DEPTH


def _decode(text: str) -> Any:
    """``json.loads(text, object_pairs_hook=_pairs, parse_constant=_constant)``, with the shared
    decoder for a plain ``str`` (the same checks: a leading BOM is refused as json.loads does)."""
    if type(text) is not str:  # e.g. a bytearray: json.loads detects its encoding
        return json.loads(text, object_pairs_hook=_pairs, parse_constant=_constant)
    if text.startswith("\ufeff"):
        raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
    return _DECODER.decode(text)


def compact_loads(data: bytes) -> Any | None:
    """The value of ``data`` when it is compact JSON that :mod:`orjson` writes back byte for byte
    (see module docstring), else ``None`` (then only the strict decoder can decide). The nesting
    depth is not checked here."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return value if orjson.dumps(value) == data else None


def loads(data: bytes | str) -> Any:
    """Decode ``data`` as strict JSON (see module docstring). Raises ``ValueError``."""
    if type(data) is bytes:
        fast = compact_loads(data)
        if fast is not None:
            if data.count(b"[") + data.count(b"{") > MAX_DEPTH and _too_deep(fast):
                raise ValueError(f"JSON nests deeper than {MAX_DEPTH} levels")
            return fast
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
        value = _decode(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON (line {exc.lineno}, column {exc.colno})") from None
    except RecursionError:
        raise ValueError(f"JSON nests deeper than {MAX_DEPTH} levels") from None
    if (
        type(value) in (dict, list)
        and (type(text) is not str or _may_be_too_deep(text))
        and _too_deep(value)
    ):
        raise ValueError(f"JSON nests deeper than {MAX_DEPTH} levels")
    return value
