"""Interop set-up: the same keys and claims for zv-gateway, joserfc and jwcrypto."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from gateway.core.keys import DecryptionKey, KeyRing, SigningKey, StaticSenderKeys, Suite
from schemas.claims import ClaimsBase
from tests.envelope_forge import decryption_key, example_claims, signing_key


@dataclass(frozen=True)
class Parties:
    """A sender and ``n`` recipients of one suite, with the claims they exchange."""

    suite: Suite
    claims: ClaimsBase
    sender: SigningKey
    recipients: tuple[DecryptionKey, ...]

    def lookup(self) -> StaticSenderKeys:
        return StaticSenderKeys({self.claims.sender.org: [self.sender.public]})

    def ring(self, i: int) -> KeyRing:
        return KeyRing([self.recipients[i]])


@pytest.fixture(params=list(Suite), ids=lambda s: s.value)
def suite(request: pytest.FixtureRequest) -> Suite:
    assert isinstance(request.param, Suite)
    return request.param


@pytest.fixture(params=[1, 3], ids=lambda n: f"{n}-recipient")
def parties(request: pytest.FixtureRequest, suite: Suite) -> Parties:
    n = request.param
    assert isinstance(n, int)
    return Parties(
        suite=suite,
        claims=example_claims("meeting.invitation"),
        sender=signing_key(suite, "interop-sender"),
        recipients=tuple(decryption_key(suite, f"interop-{i}") for i in range(n)),
    )


@pytest.fixture
def mixed() -> Parties:
    """One P-256 sender and recipients of both suites in one envelope."""
    return Parties(
        suite=Suite.P256,
        claims=example_claims("meeting.invitation"),
        sender=signing_key(Suite.P256, "interop-sender"),
        recipients=(
            decryption_key(Suite.P256, "interop-mixed-0"),
            decryption_key(Suite.CURVE25519, "interop-mixed-1"),
        ),
    )
