"""A stand-in for the envelope module's header peek (issue 3), for transport tests.

The real node passes the envelope module's function that reads the sender org from the JWE's
protected header. Here an "envelope" is ``{"sender": <oin>, "n": <int>}`` as JSON bytes.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from gateway.errors import RemoteError


def fake_envelope(sender: str, n: int = 0, *, pad_to: int = 0) -> bytes:
    """A stand-in envelope from ``sender``; ``pad_to`` pads it to exactly that many bytes."""
    body = json.dumps({"sender": sender, "n": n, "pad": ""}).encode()
    if pad_to > len(body):
        body = json.dumps({"sender": sender, "n": n, "pad": "x" * (pad_to - len(body))}).encode()
    return body


def sender_of(body: bytes) -> str:
    """Read the sender org; raises :class:`RemoteError` ``malformed`` when it cannot."""
    try:
        sender = json.loads(body)["sender"]
    except (ValueError, KeyError, TypeError):
        raise RemoteError("malformed", "not a test envelope") from None
    if not isinstance(sender, str):
        raise RemoteError("malformed", "sender is not a string")
    return sender


def soon(seconds: float = 300) -> datetime:
    """An envelope ``exp`` ``seconds`` from now."""
    return datetime.now(UTC) + timedelta(seconds=seconds)
