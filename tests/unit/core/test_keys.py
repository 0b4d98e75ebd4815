"""Key suites, key ids and key rings: a key is exactly one thing, named by its thumbprint."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gateway.core import jose
from gateway.core.keys import (
    DecryptionKey,
    EncryptionPublicKey,
    KeyRing,
    SigningKey,
    SigningPublicKey,
    StaticSenderKeys,
    Suite,
)
from gateway.errors import LocalError, RemoteError
from tests.envelope_forge import SeededRand, decryption_key, signing_key

NOW = datetime(2026, 3, 2, 9, 15, tzinfo=UTC)


@pytest.mark.parametrize("suite", list(Suite))
def test_suites_name_their_algorithms(suite: Suite) -> None:
    sk = signing_key(suite, "a")
    dk = decryption_key(suite, "a")
    assert sk.suite is suite
    assert dk.suite is suite
    assert sk.public.alg == {"p256": "ES256", "curve25519": "Ed25519"}[suite.value]
    assert sk.public.jwk()["crv"] == suite.signature_crv
    assert dk.public.jwk()["crv"] == suite.agreement_crv
    assert dk.public.jwk()["alg"] == "ECDH-ES+A256KW"


@pytest.mark.parametrize("suite", list(Suite))
def test_kid_is_the_rfc7638_thumbprint(suite: Suite) -> None:
    sk = signing_key(suite, "a")
    dk = decryption_key(suite, "a")
    assert sk.kid == jose.thumbprint(sk.private.public_key())
    assert dk.kid == jose.thumbprint(dk.private.public_key())


@pytest.mark.parametrize("suite", list(Suite))
def test_public_keys_round_trip_through_their_jwk(suite: Suite) -> None:
    sk = signing_key(suite, "a")
    dk = decryption_key(suite, "a")
    assert SigningPublicKey.from_jwk(sk.public.jwk()) == sk.public
    assert EncryptionPublicKey.from_jwk(dk.public.jwk()) == dk.public


def test_jwk_with_a_kid_that_is_not_its_thumbprint_is_refused() -> None:
    jwk = {**signing_key(Suite.P256, "a").public.jwk(), "kid": "chosen-by-attacker"}
    with pytest.raises(RemoteError) as caught:
        SigningPublicKey.from_jwk(jwk)
    assert caught.value.reason == "malformed"


@pytest.mark.parametrize(
    ("change", "reason"),
    [({"use": "enc"}, "unsupported"), ({"alg": "ES384"}, "unsupported")],
)
def test_signing_jwk_with_the_wrong_use_or_alg_is_refused(
    change: dict[str, str], reason: str
) -> None:
    jwk = {**signing_key(Suite.P256, "a").public.jwk(), **change}
    with pytest.raises(RemoteError) as caught:
        SigningPublicKey.from_jwk(jwk)
    assert caught.value.reason == reason


def test_a_key_agreement_curve_cannot_sign() -> None:
    jwk = jose.public_jwk(jose.derive_x25519(SeededRand("x")).public_key())
    with pytest.raises(RemoteError) as caught:
        SigningPublicKey.from_jwk(jwk)
    assert caught.value.reason == "unsupported"


def test_a_signature_curve_cannot_be_an_encryption_key() -> None:
    jwk = jose.public_jwk(jose.derive_ed25519(SeededRand("e")).public_key())
    with pytest.raises(RemoteError) as caught:
        EncryptionPublicKey.from_jwk(jwk)
    assert caught.value.reason == "unsupported"


def test_p384_keys_are_outside_both_suites() -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.derive_private_key(12345, ec.SECP384R1())
    with pytest.raises(LocalError):
        SigningKey.from_key(key)
    with pytest.raises(LocalError):
        DecryptionKey.from_key(key)


def test_repr_never_shows_private_key_material() -> None:
    sk = signing_key(Suite.CURVE25519, "a")
    dk = decryption_key(Suite.P256, "a")
    d_sig = jose.private_jwk(sk.private)["d"]
    d_enc = jose.private_jwk(dk.private)["d"]
    assert d_sig not in repr(sk)
    assert sk.kid in repr(sk)
    assert d_enc not in repr(dk)
    assert "private" not in repr(dk).replace("_private", "")


def test_an_empty_key_ring_is_refused() -> None:
    with pytest.raises(LocalError):
        KeyRing([])


def test_a_key_ring_holds_decryption_keys_only() -> None:
    with pytest.raises(LocalError):
        KeyRing([signing_key(Suite.P256, "a")])  # type: ignore[list-item]


def test_key_ring_finds_keys_by_kid_newest_first() -> None:
    new, old = decryption_key(Suite.P256, "new"), decryption_key(Suite.CURVE25519, "old")
    ring = KeyRing([new, old, new])
    assert len(ring) == 2
    assert ring.current is new
    assert ring.kids == (new.kid, old.kid)
    assert ring.get(old.kid) is old
    assert ring.get("unknown") is None
    assert list(ring) == [new, old]


def test_static_sender_keys_are_per_org() -> None:
    key = signing_key(Suite.P256, "a").public
    lookup = StaticSenderKeys({"00000001999000002000": [key]})
    assert lookup("00000001999000002000", key.kid, NOW) is key
    assert lookup("00000001999000001000", key.kid, NOW) is None
    assert lookup("00000001999000002000", "other", NOW) is None
    anyone = StaticSenderKeys(any_org=[key])
    assert anyone("00000001999000001000", key.kid, NOW) is key


def test_derived_keys_are_reproducible_from_the_same_randomness() -> None:
    for suite in Suite:
        assert (
            SigningKey.derive(suite, SeededRand("s")).kid
            == SigningKey.derive(suite, SeededRand("s")).kid
        )
        assert (
            DecryptionKey.derive(suite, SeededRand("s")).kid
            != DecryptionKey.derive(suite, SeededRand("t")).kid
        )


def test_one_p256_key_as_signing_and_as_encryption_key_gives_two_unequal_keys() -> None:
    """Same curve, same thumbprint: still two things (docs/envelope.md §1: uses kept apart)."""
    private = jose.derive_p256(SeededRand("both"))
    signing, encryption = SigningKey.from_key(private), DecryptionKey.from_key(private)
    assert signing.kid == encryption.kid
    assert signing.public != encryption.public
    assert encryption.public != signing.public
    assert hash(signing.public) != hash(encryption.public)
    assert len({signing.public, encryption.public}) == 2
    assert signing.public == SigningPublicKey.from_jwk(signing.public.jwk())
    assert hash(signing.public) == hash(SigningPublicKey.from_jwk(signing.public.jwk()))
    assert signing.public.jwk()["use"] == "sig"
    assert encryption.public.jwk()["use"] == "enc"


def test_signing_and_encryption_keys_are_unrelated_types() -> None:
    """Checked by mypy as much as here: with ``warn_unused_ignores`` (``--strict``), each ignore
    below fails the type check the day one key type is accepted where the other is expected."""
    sk, dk = signing_key(Suite.P256, "a"), decryption_key(Suite.P256, "a")

    def seal_to(key: EncryptionPublicKey) -> str:
        return key.kid

    def verify_with(key: SigningPublicKey) -> str:
        return key.kid

    assert seal_to(sk.public) == sk.kid  # type: ignore[arg-type]
    assert verify_with(dk.public) == dk.kid  # type: ignore[arg-type]
