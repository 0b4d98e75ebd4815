"""Strict text codecs shared by the C2SP formats (private to gateway.core).

- Base64 is RFC 4648 §4 standard base64 with padding, decoded strictly and canonically:
  only the alphabet, correct padding, and re-encoding must give the same text (so one value has
  exactly one encoding; Python's default decoder silently skips invalid characters).
- Decimals are ASCII digits without leading zeros ("0" alone is zero), as the C2SP formats
  require for sizes, indexes and timestamps.
"""

from __future__ import annotations

import base64
import re

__all__ = ["MAX_DECIMAL_DIGITS", "b64decode_strict", "b64encode", "parse_decimal"]

MAX_DECIMAL_DIGITS = 19
"""Longest decimal we parse: 2**63 - 1, the largest size, index or timestamp, has 19 digits;
the bound keeps int() from ever parsing a huge string."""

_DECIMAL = re.compile(r"0|[1-9][0-9]*")


def b64decode_strict(text: str) -> bytes | None:
    """Decode canonical standard base64; None when ``text`` is anything else."""
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except ValueError:  # binascii.Error and UnicodeEncodeError are both ValueErrors
        return None
    if base64.b64encode(data).decode("ascii") != text:
        return None
    return data


def b64encode(data: bytes) -> str:
    """Standard base64 with padding, as text."""
    return base64.b64encode(data).decode("ascii")


def parse_decimal(text: str, maximum: int) -> int | None:
    """An ASCII decimal without leading zeros, at most ``maximum``; None otherwise."""
    if len(text) > MAX_DECIMAL_DIGITS or not _DECIMAL.fullmatch(text):
        return None
    value = int(text)
    return value if value <= maximum else None
