"""seal, open_envelope, peek_header: what a good envelope is and what opening it proves."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import timedelta

import pytest

from gateway.core import jose
from gateway.core.envelope import (
    DEFAULT_LIMITS,
    MAX_RECIPIENTS,
    EnvelopeHeader,
    EnvelopeLimits,
    VerifiedMessage,
    open_envelope,
    peek_header,
    seal,
)
from gateway.core.keys import KeyRing, StaticSenderKeys, Suite
from gateway.errors import LocalError, RemoteError
from schemas.claims import claims_to_json
from tests.envelope_forge import (
    SeededRand,
    decryption_key,
    example_claims,
    example_names,
    just_after,
    never_seen,
    signing_key,
    unb64json,
)

CLAIMS = example_claims("case.referral")
NOW = just_after(CLAIMS)
SENDER = CLAIMS.sender.org


def _lookup(suite: Suite) -> StaticSenderKeys:
    return StaticSenderKeys({SENDER: [signing_key(suite, "sender").public]})


def _seal(suite: Suite, n: int = 1, seed: str = "r") -> bytes:
    return seal(
        CLAIMS,
        signing_key=signing_key(suite, "sender"),
        recipients=[decryption_key(suite, f"rcpt{i}").public for i in range(n)],
        rand=SeededRand(seed),
    ).raw


@pytest.mark.parametrize("suite", list(Suite))
@pytest.mark.parametrize("n", [1, 3])
def test_every_recipient_opens_and_gets_the_signed_claims(suite: Suite, n: int) -> None:
    raw = _seal(suite, n)
    for i in range(n):
        own = decryption_key(suite, f"rcpt{i}")
        message = open_envelope(
            raw, keyring=KeyRing([own]), sender_keys=_lookup(suite), now=NOW, is_replay=never_seen
        )
        assert message.claims == CLAIMS
        assert message.recipient_kid == own.kid
        assert message.sender_kid == signing_key(suite, "sender").kid
        assert message.digest == hashlib.sha256(message.inner_jws).digest()
        assert message.header.message_id == CLAIMS.message_id


def test_recipients_of_different_suites_share_one_envelope() -> None:
    p256, x25519 = decryption_key(Suite.P256, "a"), decryption_key(Suite.CURVE25519, "b")
    raw = seal(
        CLAIMS,
        signing_key=signing_key(Suite.CURVE25519, "sender"),
        recipients=[p256.public, x25519.public],
        rand=SeededRand("mixed"),
    ).raw
    for own in (p256, x25519):
        message = open_envelope(
            raw,
            keyring=KeyRing([own]),
            sender_keys=_lookup(Suite.CURVE25519),
            now=NOW,
            is_replay=never_seen,
        )
        assert message.recipient_kid == own.kid


@pytest.mark.parametrize("name", example_names())
def test_every_message_type_round_trips(name: str) -> None:
    claims = example_claims(name)
    sender = signing_key(Suite.P256, "sender")
    own = decryption_key(Suite.P256, "rcpt")
    raw = seal(claims, signing_key=sender, recipients=[own.public], rand=SeededRand(name)).raw
    message = open_envelope(
        raw,
        keyring=KeyRing([own]),
        sender_keys=StaticSenderKeys({claims.sender.org: [sender.public]}),
        now=just_after(claims),
        is_replay=never_seen,
    )
    assert message.claims == claims


def test_inner_jws_is_the_exact_signed_claims() -> None:
    own = decryption_key(Suite.P256, "rcpt0")
    message = open_envelope(
        _seal(Suite.P256),
        keyring=KeyRing([own]),
        sender_keys=_lookup(Suite.P256),
        now=NOW,
        is_replay=never_seen,
    )
    header_b64, payload_b64, signature_b64 = message.inner_jws.split(b".")
    assert jose.b64u_decode(payload_b64) == claims_to_json(CLAIMS)
    assert unb64json(header_b64.decode()) == {
        "alg": "ES256",
        "kid": signing_key(Suite.P256, "sender").kid,
        "typ": "zvg-message+jws",
    }
    assert len(jose.b64u_decode(signature_b64)) == 64


@pytest.mark.parametrize("suite", list(Suite))
def test_envelope_has_exactly_the_profile_headers(suite: Suite) -> None:
    obj = json.loads(_seal(suite, 3))
    assert list(obj) == ["protected", "recipients", "iv", "ciphertext", "tag"]
    protected = unb64json(obj["protected"])
    assert list(protected) == [
        "typ",
        "enc",
        "zvg_mid",
        "zvg_snd",
        "zvg_rcp",
        "iat",
        "exp",
        "zvg_dig",
    ]
    assert protected["typ"] == "zvg-envelope+jwe"
    assert protected["enc"] == "A256GCM"
    assert protected["zvg_mid"] == CLAIMS.message_id
    assert protected["zvg_snd"] == SENDER
    assert protected["zvg_rcp"] == list(CLAIMS.recipient_orgs())
    assert protected["iat"] == int(CLAIMS.created_at.timestamp())
    assert protected["exp"] == int(CLAIMS.expires_at.timestamp())
    for i, entry in enumerate(obj["recipients"]):
        assert list(entry) == ["header", "encrypted_key"]
        assert set(entry["header"]) == {"alg", "kid", "epk"}
        assert entry["header"]["alg"] == "ECDH-ES+A256KW"
        assert entry["header"]["kid"] == decryption_key(suite, f"rcpt{i}").kid
        assert entry["header"]["epk"]["crv"] == suite.agreement_crv
        assert "d" not in entry["header"]["epk"]


def test_each_recipient_gets_its_own_ephemeral_key() -> None:
    obj = json.loads(_seal(Suite.CURVE25519, 3))
    epks = {e["header"]["epk"]["x"] for e in obj["recipients"]}
    assert len(epks) == 3


@pytest.mark.parametrize("suite", list(Suite))
def test_sealing_with_the_same_randomness_is_reproducible(suite: Suite) -> None:
    assert _seal(suite, 3, "same") == _seal(suite, 3, "same")
    assert _seal(suite, 3, "same") != _seal(suite, 3, "other")


def test_an_old_key_in_the_ring_still_opens_during_rotation() -> None:
    old, new = decryption_key(Suite.P256, "rcpt0"), decryption_key(Suite.CURVE25519, "new")
    message = open_envelope(
        _seal(Suite.P256),
        keyring=KeyRing([new, old]),
        sender_keys=_lookup(Suite.P256),
        now=NOW,
        is_replay=never_seen,
    )
    assert message.recipient_kid == old.kid


def test_replay_check_is_asked_about_sender_and_message_id() -> None:
    asked: list[tuple[str, str]] = []

    def is_replay(sender: str, mid: str) -> bool:
        asked.append((sender, mid))
        return False

    open_envelope(
        _seal(Suite.P256),
        keyring=KeyRing([decryption_key(Suite.P256, "rcpt0")]),
        sender_keys=_lookup(Suite.P256),
        now=NOW,
        is_replay=is_replay,
    )
    assert asked == [(SENDER, CLAIMS.message_id)]


# ------------------------------------------------------------------ VerifiedMessage is earned


def test_verified_message_cannot_be_built_outside_open_envelope() -> None:
    with pytest.raises(LocalError):
        VerifiedMessage(
            claims=CLAIMS,
            inner_jws=b"",
            sender_kid="",
            recipient_kid="",
            header=peek_header(_seal(Suite.P256)),
            digest=b"",
        )
    with pytest.raises(LocalError):
        VerifiedMessage(  # a guessed witness is not the witness
            claims=CLAIMS,
            inner_jws=b"",
            sender_kid="",
            recipient_kid="",
            header=peek_header(_seal(Suite.P256)),
            digest=b"",
            witness=object(),
        )


def test_verified_message_cannot_be_altered_or_copied_with_changes() -> None:
    message = open_envelope(
        _seal(Suite.P256),
        keyring=KeyRing([decryption_key(Suite.P256, "rcpt0")]),
        sender_keys=_lookup(Suite.P256),
        now=NOW,
        is_replay=never_seen,
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        message.inner_jws = b"forged"  # type: ignore[misc]
    with pytest.raises((LocalError, ValueError)):
        dataclasses.replace(message, inner_jws=b"forged")


# ------------------------------------------------------------------ peek_header


def test_peek_header_reads_routing_without_keys() -> None:
    raw = _seal(Suite.CURVE25519, 3)
    header = peek_header(raw)
    assert header.message_id == CLAIMS.message_id
    assert header.sender_org == SENDER
    assert header.recipient_orgs == CLAIMS.recipient_orgs()
    assert header.issued_at == CLAIMS.created_at
    assert header.expires_at == CLAIMS.expires_at
    assert header.recipient_kids == tuple(
        decryption_key(Suite.CURVE25519, f"rcpt{i}").kid for i in range(3)
    )
    own = decryption_key(Suite.CURVE25519, "rcpt0")
    opened = open_envelope(
        raw,
        keyring=KeyRing([own]),
        sender_keys=_lookup(Suite.CURVE25519),
        now=NOW,
        is_replay=never_seen,
    )
    assert header.digest == opened.digest


def test_peek_header_checks_the_time_window_only_when_given_now() -> None:
    raw = _seal(Suite.P256)
    late = CLAIMS.expires_at + timedelta(seconds=1)
    assert peek_header(raw).message_id == CLAIMS.message_id
    with pytest.raises(RemoteError) as caught:
        peek_header(raw, now=late)
    assert caught.value.reason == "expired"


def test_seal_returns_the_header_it_wrote() -> None:
    """The sender learns its envelope's header and digest from seal, not by parsing it back."""
    sealed = seal(
        CLAIMS,
        signing_key=signing_key(Suite.CURVE25519, "sender"),
        recipients=[decryption_key(Suite.CURVE25519, f"rcpt{i}").public for i in range(3)],
        rand=SeededRand("r"),
    )
    assert sealed.raw == _seal(Suite.CURVE25519, 3)
    assert sealed.header == peek_header(sealed.raw)
    opened = open_envelope(
        sealed.raw,
        keyring=KeyRing([decryption_key(Suite.CURVE25519, "rcpt1")]),
        sender_keys=_lookup(Suite.CURVE25519),
        now=NOW,
        is_replay=never_seen,
    )
    assert sealed.digest == opened.digest == hashlib.sha256(opened.inner_jws).digest()


def test_open_takes_the_peeked_header_instead_of_parsing_again() -> None:
    raw = _seal(Suite.P256)
    header = peek_header(raw)

    def open_with(
        h: EnvelopeHeader, data: bytes = raw, limits: EnvelopeLimits = DEFAULT_LIMITS
    ) -> VerifiedMessage:
        return open_envelope(
            data,
            header=h,
            keyring=KeyRing([decryption_key(Suite.P256, "rcpt0")]),
            sender_keys=_lookup(Suite.P256),
            now=NOW,
            is_replay=never_seen,
            limits=limits,
        )

    opened = open_with(header)
    assert opened.claims == CLAIMS
    assert opened.header == header
    # A header is only good for the bytes (and limits) it was peeked from: never a way to have
    # other bytes opened under the header of good ones.
    other = _seal(Suite.P256, seed="other")
    with pytest.raises(LocalError, match="not peeked from these envelope bytes"):
        open_with(header, other)
    with pytest.raises(LocalError, match="not peeked from these envelope bytes"):
        open_with(
            seal(
                CLAIMS,
                signing_key=signing_key(Suite.P256, "sender"),
                recipients=[decryption_key(Suite.P256, "rcpt0").public],
                rand=SeededRand("r"),
            ).header
        )
    with pytest.raises(LocalError, match="other limits"):
        open_with(header, raw, EnvelopeLimits(max_recipients=2))
    # Bytes equal to the peeked ones (a copy) are the same envelope.
    assert open_with(header, bytes(bytearray(raw))).digest == header.digest


def test_open_refuses_a_naive_now() -> None:
    with pytest.raises(LocalError):
        open_envelope(
            _seal(Suite.P256),
            keyring=KeyRing([decryption_key(Suite.P256, "rcpt0")]),
            sender_keys=_lookup(Suite.P256),
            now=NOW.replace(tzinfo=None),
            is_replay=never_seen,
        )


# ------------------------------------------------------------------ seal refuses our own mistakes


def test_seal_needs_a_recipient() -> None:
    with pytest.raises(LocalError):
        seal(CLAIMS, signing_key=signing_key(Suite.P256, "s"), recipients=[], rand=SeededRand("r"))


def test_seal_refuses_more_recipients_than_a_receiver_accepts() -> None:
    keys = [decryption_key(Suite.CURVE25519, str(i)).public for i in range(MAX_RECIPIENTS + 1)]
    with pytest.raises(LocalError):
        seal(
            CLAIMS, signing_key=signing_key(Suite.P256, "s"), recipients=keys, rand=SeededRand("r")
        )


def test_seal_refuses_the_same_key_twice() -> None:
    key = decryption_key(Suite.P256, "a").public
    with pytest.raises(LocalError):
        seal(
            CLAIMS,
            signing_key=signing_key(Suite.P256, "s"),
            recipients=[key, key],
            rand=SeededRand("r"),
        )


def test_seal_refuses_claims_a_receiver_would_refuse_as_too_large() -> None:
    limits = EnvelopeLimits(max_claims_bytes=100)
    with pytest.raises(LocalError):
        seal(
            CLAIMS,
            signing_key=signing_key(Suite.P256, "s"),
            recipients=[decryption_key(Suite.P256, "a").public],
            rand=SeededRand("r"),
            limits=limits,
        )
    with pytest.raises(LocalError):
        seal(
            CLAIMS,
            signing_key=signing_key(Suite.P256, "s"),
            recipients=[decryption_key(Suite.P256, "a").public],
            rand=SeededRand("r"),
            limits=EnvelopeLimits(max_envelope_bytes=1000),
        )


def test_default_limits_are_the_named_constants() -> None:
    assert DEFAULT_LIMITS.max_envelope_bytes == 256 * 1024
    assert DEFAULT_LIMITS.max_recipients == 16
    assert DEFAULT_LIMITS.max_iat_age == timedelta(days=7)
    assert DEFAULT_LIMITS.max_future_skew == timedelta(minutes=5)
    assert DEFAULT_LIMITS.max_inner_jws_bytes > DEFAULT_LIMITS.max_claims_bytes * 4 // 3
