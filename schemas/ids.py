"""Identifier shapes of the contract, and the helpers that make or recognise them.

- OIN: the 20-digit Dutch government organisation identifier (Logius, Stelsel van OIN).
- Message ids: RFC 9562 UUIDv7, lower-case text. :func:`uuid7` builds one from a clock reading
  and random bytes the caller supplies (the pure core never reads a clock or a random source).
- W3C Trace Context ``traceparent`` (version 00, non-zero trace and span ids).
- BSN: nine digits passing the 11-proef. The contract never allows a BSN-shaped value outside
  ``body.identification.bsn``; :func:`find_bsn` finds such values in any text.
"""

from __future__ import annotations

import re
from operator import mul

__all__ = [
    "BSN_FIELD",
    "NOT_PERSONAL_BODY_FIELDS",
    "bsn_runs",
    "find_bsn",
    "is_bsn",
    "is_traceparent",
    "is_uuid7",
    "uuid7",
]

#: The one field in which a BSN may appear (inside ``body``, category ``ID_DIRECT``).
BSN_FIELD = "bsn"

#: Body fields that hold proofs and checkpoints (base64 hashes), never personal data.
NOT_PERSONAL_BODY_FIELDS = frozenset({"proof", "checkpoint"})

# Values that are opaque identifiers or digests by shape (UUID, traceparent, OIN, SHA-256 in
# base64 or base64url). Random hex and base64 contain nine-digit runs that pass the 11-proef by
# chance (about one message in two hundred), so the BSN scan does not look inside them.
_OPAQUE = re.compile(
    r"^(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
    r"|00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}"
    r"|[0-9]{20}"
    r"|[A-Za-z0-9_-]{43}|[A-Za-z0-9+/]{43}=)$"
)

_UUID7 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")
# Runs of digits; a BSN candidate is a run of exactly nine (an OIN is 20 digits and is not a
# BSN). Matching whole runs is twice as fast as a look-around pattern for exactly nine.
_DIGIT_RUNS = re.compile(r"[0-9]{9,}")
#: 11-proef weights of the nine digits.
_BSN_WEIGHTS = (9, 8, 7, 6, 5, 4, 3, 2, -1)


def is_bsn(digits: str) -> bool:
    """True when ``digits`` is nine digits that pass the 11-proef (and are not all zero)."""
    if len(digits) != 9 or not digits.isascii() or not digits.isdigit() or digits == "0" * 9:
        return False
    total: int = sum(map(mul, _BSN_WEIGHTS, map(int, digits)))
    return total % 11 == 0


def find_bsn(text: str) -> bool:
    """True when ``text`` contains a BSN-shaped value (nine digits passing the 11-proef).

    Opaque identifiers and digests (UUIDs, traceparents, OINs, SHA-256 in base64) are not
    searched: they are not personal data, and random hex hides BSN-shaped runs by chance.
    """
    if _OPAQUE.match(text):
        return False
    return any(len(r) == 9 and is_bsn(r) for r in _DIGIT_RUNS.findall(text))


def bsn_runs(text: str | bytes) -> list[str]:
    """Every nine-digit run in ``text`` that passes the 11-proef, in order (a fast pre-check over
    raw JSON: where these runs all sit in fields allowed to hold them, the precise per-field scan
    can be skipped).

    A run is a maximal run of ASCII digits, as :func:`find_bsn` counts them. Bytes that are not
    UTF-8 count as non-digits (they would decode to U+FFFD; every ASCII byte decodes to itself).
    """
    data = text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass")
    return [r for r in _nine_digit_runs(data) if is_bsn(r)]


#: Byte translation table: ASCII digits become ``1``, every other byte a space.
_DIGIT_MASK = bytes(0x31 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_NINE_DIGITS = b"1" * 9


def _nine_digit_runs(data: bytes) -> list[str]:
    """The maximal runs of exactly nine ASCII digits in ``data``, in order.

    The same runs as ``[r for r in _DIGIT_RUNS.findall(data) if len(r) == 9]`` for the decoded
    text (multi-byte UTF-8 sequences hold no ASCII bytes), found with C-speed ``translate`` and
    ``find`` calls that skip straight to the next run of at least nine digits, instead of the
    regex engine trying every digit position of a JSON document full of short numbers."""
    mask = data.translate(_DIGIT_MASK)
    runs: list[str] = []
    start = mask.find(_NINE_DIGITS)
    while start != -1:
        end = mask.find(b" ", start)
        if end == -1:
            end = len(mask)
        if end - start == 9:
            runs.append(data[start:end].decode("ascii"))
        start = mask.find(_NINE_DIGITS, end)
    return runs


def is_uuid7(value: str) -> bool:
    """True for a lower-case RFC 9562 version-7, variant-10 UUID in its 36-character text form."""
    return bool(_UUID7.match(value))


def is_traceparent(value: str) -> bool:
    """True for a W3C ``traceparent`` of version 00 with non-zero trace id and parent id."""
    m = _TRACEPARENT.match(value)
    return m is not None and m.group(1) != "0" * 32 and m.group(2) != "0" * 16


def uuid7(unix_ms: int, rand: bytes) -> str:
    """Build a UUIDv7 (RFC 9562 §5.7) from a millisecond timestamp and at least 10 random bytes.

    The caller supplies the clock reading and the randomness, so this stays pure and testable.
    Raises ``ValueError`` for a negative or too-large timestamp or too few random bytes.
    """
    if not 0 <= unix_ms < 1 << 48:
        raise ValueError("unix_ms out of range for UUIDv7")
    if len(rand) < 10:
        raise ValueError("uuid7 needs 10 random bytes")
    rand_a = int.from_bytes(rand[:2], "big") & 0x0FFF
    rand_b = int.from_bytes(rand[2:10], "big") & ((1 << 62) - 1)
    value = (unix_ms << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
