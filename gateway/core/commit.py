"""Salted commitments and canonical leaf encoding for audit records.

An audit record's *leaf* (what the Merkle tree commits to) must stay verifiable after the
record's personal fields are deleted at the end of retention. So personal fields never enter the
leaf in the clear: the leaf holds a salted commitment to each, and the record body plus its
salt are stored beside the leaf. Deleting body and salt leaves an opaque commitment behind; the
leaf, the tree and every proof stay valid ("crypto-shredding"). See docs/decisions/0050.

Rules enforced:

- :func:`commitment` is ``HMAC-SHA-256(key=salt, msg="zvg-commitment/v1" 0x00 field 0x00
  value)`` (RFC 2104 with SHA-256) over a salt of exactly :data:`SALT_SIZE` bytes. Hiding:
  HMAC is a PRF under a uniformly random secret key, so the commitment reveals nothing about
  the value while the salt is secret (and nothing at all once the salt is deleted) — this holds
  in the standard model, not only for an idealised hash. Binding: with fixed-length keys an HMAC
  collision is a SHA-256 collision. The fixed salt length also removes HMAC's one quirk
  (a key and the same key with trailing zero bytes give the same MAC). The field name in the
  message keeps commitments to different fields of one record (one salt) distinct.
- :func:`canonical_json` is RFC 8785 (JCS) restricted to what we need, so a partner can
  recompute a leaf with any JCS library: object keys sorted by their UTF-16 code units, no
  whitespace, UTF-8, strings escaped as ECMAScript ``JSON.stringify`` does. Floats are rejected
  (their JCS form needs ECMAScript number formatting; audit records have no use for them), as
  are integers outside the IEEE-754 exact range (:data:`MAX_SAFE_INTEGER`), non-string keys,
  strings that are not valid Unicode (lone surrogates), and nesting deeper than
  :data:`MAX_CANONICAL_DEPTH`.

Pure: the salt comes in as an argument (the shell draws it from ``os.urandom``).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from json.encoder import encode_basestring
from typing import Any, TypeAlias

import orjson

from gateway.core.merkle import leaf_hash
from gateway.errors import LocalError

__all__ = [
    "COMMITMENT_DOMAIN",
    "COMMITMENT_SIZE",
    "MAX_CANONICAL_DEPTH",
    "MAX_SAFE_INTEGER",
    "SALT_SIZE",
    "JsonValue",
    "canonical_json",
    "commitment",
    "record_leaf_hash",
    "verify_commitment",
]

SALT_SIZE = 32
"""Bytes of salt per commitment: 256 bits, so guessing the salt is as hard as breaking SHA-256
and a low-entropy value (a pseudonym, a date of birth) cannot be brute-forced from the leaf."""

COMMITMENT_SIZE = 32
"""Bytes in a commitment (one HMAC-SHA-256 output)."""

COMMITMENT_DOMAIN = b"zvg-commitment/v1"
"""Domain-separation label: no other HMAC we compute with a salt can collide with these."""

MAX_CANONICAL_DEPTH = 32
"""Deepest nesting of arrays/objects :func:`canonical_json` encodes: audit records are two or
three levels deep; the bound keeps a malformed record from exhausting the Python stack."""

MAX_SAFE_INTEGER = 2**53 - 1
"""Largest integer magnitude encoded: JCS numbers are IEEE-754 doubles, exact up to 2**53 - 1."""

JsonValue: TypeAlias = "bool | int | str | Sequence[JsonValue] | Mapping[str, JsonValue] | None"
"""What :func:`canonical_json` accepts; floats are deliberately absent."""


def commitment(salt: bytes, value: bytes, *, field: str = "") -> bytes:
    """Return the 32-byte salted commitment to ``value`` (see the module docstring).

    ``field`` names what is committed (e.g. ``"data_subject_id"``) so that one salt per record
    can serve all its fields without equal values in two fields giving equal commitments.
    Raises :class:`LocalError` when the salt is not exactly :data:`SALT_SIZE` bytes or the field
    name contains a NUL character (it would make the message ambiguous).
    """
    if not isinstance(salt, bytes) or len(salt) != SALT_SIZE:
        raise LocalError(f"commitment salt must be exactly {SALT_SIZE} bytes")
    if not isinstance(value, bytes):
        raise LocalError("commitment value must be bytes")
    if "\x00" in field:
        raise LocalError("commitment field name must not contain NUL")
    message = COMMITMENT_DOMAIN + b"\x00" + field.encode("utf-8") + b"\x00" + value
    return hmac.new(salt, message, hashlib.sha256).digest()


def verify_commitment(salt: bytes, value: bytes, expected: bytes, *, field: str = "") -> bool:
    """Return True iff ``expected`` is the commitment to ``value`` under ``salt`` and ``field``.

    Compares in constant time. False (never an exception) for a malformed ``expected``; the
    salt and field rules of :func:`commitment` still raise :class:`LocalError`.
    """
    actual = commitment(salt, value, field=field)
    return isinstance(expected, bytes) and hmac.compare_digest(actual, expected)


def canonical_json(value: JsonValue) -> bytes:
    """Encode ``value`` as canonical JSON (RFC 8785 subset, see module docstring) in UTF-8.

    The same value always gives the same bytes, on any machine and in any JCS implementation.
    Raises :class:`LocalError` for floats, out-of-range integers, non-string keys, invalid
    Unicode, unsupported types (bytes must be encoded by the caller, e.g. as base64) and
    nesting deeper than :data:`MAX_CANONICAL_DEPTH`.
    """
    if _plain(value):
        # Fast path, same bytes: with only ASCII keys, code-point order is UTF-16 order (and
        # orjson's key order), and orjson escapes strings exactly as _string does (compact,
        # UTF-8, only the characters JSON requires escaped, lower-case \u00xx).
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    out: list[str] = []
    _encode(value, out, 0)
    try:
        return "".join(out).encode("utf-8")
    except UnicodeEncodeError:
        raise LocalError("canonical JSON: string is not valid Unicode") from None


def _plain(value: object) -> bool:
    """True when ``value`` needs none of the slow path's checks: ASCII keys, valid Unicode,
    safe integers, no floats, bounded depth. Exact types only (subclasses take the slow path).

    A container at depth :data:`MAX_CANONICAL_DEPTH` (the top is depth 0) is not plain. The
    walk is depth-first with an explicit stack, checking the leaves of each container in one
    loop (most of a value is leaves); it reaches the depth bound along the first deep path, so a
    value that shares containers many times over costs no more than before.
    """
    kind = type(value)
    if kind is not dict and kind is not list and kind is not tuple:
        return _plain_leaf(value)
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        container, depth = stack.pop()
        if depth >= MAX_CANONICAL_DEPTH:
            return False
        if type(container) is dict:
            for key in container:
                if type(key) is not str or not key.isascii():
                    return False
            children = container.values()
        else:
            children = container
        for child in children:  # the checks of _plain_leaf, inline
            kind = type(child)
            if kind is str:
                if not child.isascii() and not _valid_unicode(child):
                    return False
            elif kind is int:
                if not -MAX_SAFE_INTEGER <= child <= MAX_SAFE_INTEGER:
                    return False
            elif kind is dict or kind is list or kind is tuple:
                stack.append((child, depth + 1))
            elif child is not None and kind is not bool:
                return False
    return True


def _plain_leaf(value: object) -> bool:
    """:func:`_plain` of anything but a dict, list or tuple."""
    kind = type(value)
    if kind is str:
        return value.isascii() or _valid_unicode(value)  # type: ignore[attr-defined, arg-type]
    if value is None or kind is bool:
        return True
    if kind is int:
        return -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER  # type: ignore[operator]
    return False


def _valid_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def record_leaf_hash(record: Mapping[str, JsonValue]) -> bytes:
    """Return the Merkle leaf hash of an audit record leaf: ``leaf_hash(canonical_json(record))``.

    ``record`` is the leaf view of a record (commitments instead of personal fields); building
    that view is the record schema's job.
    """
    return leaf_hash(canonical_json(record))


# The standard library's string encoder (ensure_ascii=False flavour, C-accelerated) escapes
# exactly what ECMAScript JSON.stringify does: '"', '\\', the two-character forms \b \f \n \r
# \t, and other C0 controls as \u00XX with lowercase hex; everything else is literal
# (tests/unit/core/test_commit.py pins it).
_string = encode_basestring


def _utf16_key(key: str) -> bytes:
    # RFC 8785 §3.2.3: sort by UTF-16 code units (differs from code-point order above U+FFFF).
    return key.encode("utf-16-be", "surrogatepass")


def _encode(value: object, out: list[str], depth: int) -> None:
    if depth > MAX_CANONICAL_DEPTH:
        raise LocalError(f"canonical JSON: nested deeper than {MAX_CANONICAL_DEPTH}")
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise LocalError("canonical JSON: integer outside the exact IEEE-754 range")
        out.append(str(int(value)))
    elif isinstance(value, float):
        raise LocalError("canonical JSON: floats are not allowed in audit leaves")
    elif isinstance(value, str):
        out.append(_string(value))
    elif isinstance(value, Mapping):
        keys = list(value.keys())
        if not all(isinstance(k, str) for k in keys):
            raise LocalError("canonical JSON: object keys must be strings")
        out.append("{")
        for i, key in enumerate(sorted(keys, key=_utf16_key)):
            if i:
                out.append(",")
            out.append(_string(key))
            out.append(":")
            _encode(value[key], out, depth + 1)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _encode(item, out, depth + 1)
        out.append("]")
    else:
        raise LocalError(f"canonical JSON: cannot encode {type(value).__name__}")
