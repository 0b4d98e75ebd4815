"""Building blocks for envelope tests and vectors: seeded randomness, fixed keys, and a forger.

The forger builds envelopes that :func:`gateway.core.envelope.seal` never would — wrong headers,
wrong digests, foreign signatures, mismatched routing — but with *valid* encryption, so a test
reaches exactly the rule it means to break. It uses the envelope module's own private building
blocks (signing and encryption), so only the deliberate deviation differs from a real seal.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from gateway.core import envelope as env
from gateway.core import jose
from gateway.core.keys import DecryptionKey, EncryptionPublicKey, KeyRing, SigningKey, Suite
from schemas.claims import ClaimsBase, claims_to_json, parse_claims

EXAMPLES = Path(__file__).resolve().parent / "examples"

#: Marker for :func:`forge` ``header_changes``: remove this parameter.
DELETE = object()


class SeededRand:
    """A deterministic ``rand(n)``: SHA-256 in counter mode over a seed (tests only)."""

    def __init__(self, seed: str) -> None:
        self._seed = seed.encode("utf-8")
        self._counter = 0
        self._buffer = b""

    def __call__(self, n: int) -> bytes:
        while len(self._buffer) < n:
            block = self._seed + self._counter.to_bytes(8, "big")
            self._buffer += hashlib.sha256(block).digest()
            self._counter += 1
        out, self._buffer = self._buffer[:n], self._buffer[n:]
        return out


def signing_key(suite: Suite, name: str) -> SigningKey:
    """A fixed signing key of ``suite``, the same on every run (named for readability)."""
    return SigningKey.derive(suite, SeededRand(f"signing/{suite.value}/{name}"))


def decryption_key(suite: Suite, name: str) -> DecryptionKey:
    """A fixed decryption key of ``suite``, the same on every run."""
    return DecryptionKey.derive(suite, SeededRand(f"encryption/{suite.value}/{name}"))


def example_claims(name: str = "case.referral") -> ClaimsBase:
    """The lead's example claims for one message type (tests/examples/<name>.json)."""
    return parse_claims((EXAMPLES / f"{name}.json").read_bytes())


def example_names() -> list[str]:
    """The message types that have an example."""
    return sorted(p.stem for p in EXAMPLES.glob("*.json"))


def just_after(claims: ClaimsBase, seconds: int = 60) -> datetime:
    """A ``now`` inside the claims' time window."""
    return claims.created_at + timedelta(seconds=seconds)


def never_seen(_sender: str, _mid: str) -> bool:
    """A replay check for a receiver that has accepted nothing yet."""
    return False


def b64json(value: Mapping[str, Any]) -> str:
    """base64url of compact JSON (a protected header)."""
    return jose.b64u_encode(jose.json_dumps(value))


def unb64json(text: str) -> dict[str, Any]:
    """The JSON object behind a base64url segment (no strictness: this is for tests)."""
    loaded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    return loaded


def forge(
    claims: ClaimsBase | bytes,
    signer: SigningKey,
    recipients: Sequence[EncryptionPublicKey],
    rand: Callable[[int], bytes],
    *,
    header_changes: Mapping[str, Any] | None = None,
    jws_header: Mapping[str, Any] | None = None,
    inner: bytes | None = None,
    signature_key: SigningKey | None = None,
) -> dict[str, Any]:
    """A validly encrypted envelope (as a JSON object) with deliberate deviations.

    ``claims`` may be raw payload bytes. ``header_changes`` edits the protected header before
    encryption (``DELETE`` removes a parameter); ``jws_header`` replaces the inner JWS header;
    ``signature_key`` signs with another key than the one ``jws_header``/``signer`` names;
    ``inner`` replaces the whole plaintext (the digest still commits to it unless
    ``header_changes`` overrides ``zvg_dig``).
    """
    payload = claims if isinstance(claims, bytes) else claims_to_json(claims)
    if inner is None:
        header = jws_header or {
            "alg": signer.suite.signature_alg,
            "kid": signer.kid,
            "typ": env.MESSAGE_TYP,
        }
        inner = env._sign_jws(payload, signature_key or signer, header)
    base = parse_claims(payload) if isinstance(claims, bytes) else claims
    protected = env.routing_header(base, inner)
    for name, value in (header_changes or {}).items():
        if value is DELETE:
            protected.pop(name, None)
        else:
            protected[name] = value
    return env._encrypt(protected, inner, recipients, rand)


def dumps(obj: Mapping[str, Any]) -> bytes:
    """Envelope bytes as sent (compact JSON)."""
    return jose.json_dumps(obj)


@dataclass
class Party:
    """A test sender or receiver: its org, signing key and key ring."""

    org: str
    signer: SigningKey
    decryption: DecryptionKey

    @property
    def ring(self) -> KeyRing:
        return KeyRing([self.decryption])
