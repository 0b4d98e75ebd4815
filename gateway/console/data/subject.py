"""A BSN typed into the console, turned into this organisation's subject pseudonym.

The adapters send subjects as ``"sub-" + base64url(HMAC-SHA-256(key, "bsn" ‖ 0 ‖ bsn ‖ counter))``
under the organisation's pseudonym key (the first counter value whose result holds no BSN-shaped
digit run); the audit log keeps only those pseudonyms. :func:`subject_pseudonym` computes the same
value from a typed BSN so an officer can search by it. The BSN is checked (nine digits, the
elfproef), used for the HMAC and dropped: it is never returned, stored, logged, or put in an
exception message.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from gateway.errors import LocalError
from schemas import ids

__all__ = ["MIN_KEY_BYTES", "NotABsn", "looks_like_bsn", "subject_pseudonym"]

MIN_KEY_BYTES = 32
"""The shortest pseudonym key accepted: 256 bits, as the adapters require of the same key."""


class NotABsn(ValueError):  # noqa: N818 - an answer to the form, not a fault
    """The typed value is not a valid BSN (the message never repeats it)."""


def looks_like_bsn(text: str) -> bool:
    """True when ``text`` (spaces and dots ignored) is nine digits: the console treats it as a
    BSN to pseudonymise, never as a pseudonym to search for."""
    digits = text.replace(" ", "").replace(".", "")
    return len(digits) == 9 and digits.isdigit()


def subject_pseudonym(key: bytes, typed: str) -> str:
    """The pseudonym the adapters give the BSN ``typed`` under ``key``.

    Raises :class:`NotABsn` when ``typed`` is not nine digits passing the elfproef, and
    :class:`LocalError` when the key is shorter than :data:`MIN_KEY_BYTES`."""
    if len(key) < MIN_KEY_BYTES:
        raise LocalError(f"pseudonym key shorter than {MIN_KEY_BYTES} bytes")
    digits = typed.replace(" ", "").replace(".", "")
    if len(digits) != 9 or not digits.isdigit() or not ids.is_bsn(digits):
        raise NotABsn("not a valid BSN (nine digits passing the elfproef)")
    for counter in range(256):
        msg = b"bsn\x00" + digits.encode("ascii") + bytes([counter])
        digest = hmac.new(key, msg, hashlib.sha256).digest()
        ref = "sub-" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
        if not ids.find_bsn(ref[:29]) and not ids.find_bsn(ref):
            return ref
    raise AssertionError("unreachable: 256 digests all held a BSN-shaped run")
