"""Strict JSON decoding for everything that crosses an organisation's boundary.

Python's ``json`` module accepts inputs other parsers treat differently, which lets a signer show
two parties two different documents under one signature. :func:`loads` refuses them:

- duplicate object keys (parsers disagree on which value wins);
- ``NaN``, ``Infinity`` and ``-Infinity`` (not JSON, RFC 8259 §6);
- bytes that are not UTF-8 (RFC 8259 §8.1), and a byte-order mark;
- nesting deeper than :data:`MAX_DEPTH`.

Every refusal is a ``ValueError`` whose message names the problem, never the content.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["MAX_DEPTH", "loads"]

#: Deepest nesting of arrays and objects accepted. Our deepest document (a message body) nests
#: about six levels; 32 leaves room while stopping stack-exhaustion inputs early.
MAX_DEPTH = 32


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError("duplicate key in JSON object")
        out[key] = value
    return out


def _constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _too_deep(value: Any, depth: int = 1) -> bool:
    """True when containers nest deeper than :data:`MAX_DEPTH` (leaves are not visited)."""
    if depth > MAX_DEPTH:
        return True
    children = value.values() if type(value) is dict else value
    return any(_too_deep(child, depth + 1) for child in children if type(child) in (dict, list))


def loads(data: bytes | str) -> Any:
    """Decode ``data`` as strict JSON (see module docstring). Raises ``ValueError``."""
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
        value = json.loads(text, object_pairs_hook=_pairs, parse_constant=_constant)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON (line {exc.lineno}, column {exc.colno})") from None
    except RecursionError:
        raise ValueError(f"JSON nests deeper than {MAX_DEPTH} levels") from None
    if type(value) in (dict, list) and _too_deep(value):
        raise ValueError(f"JSON nests deeper than {MAX_DEPTH} levels")
    return value
