"""One negative test per rule of the envelope profile (docs/envelope.md), grouped by threat.

Every refusal is a ``RemoteError``; each test checks its coarse public reason and that the
precise internal detail names the rule that fired (so a test cannot pass for the wrong reason).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gateway.core import envelope as env
from gateway.core import jose
from gateway.core.envelope import EnvelopeLimits, open_envelope
from gateway.core.keys import KeyRing, SenderKeyLookup, SigningPublicKey, StaticSenderKeys, Suite
from gateway.errors import RemoteError
from schemas.claims import claims_to_json
from tests.envelope_forge import (
    DELETE,
    SeededRand,
    b64json,
    decryption_key,
    dumps,
    example_claims,
    forge,
    just_after,
    never_seen,
    signing_key,
    unb64json,
)

CLAIMS = example_claims("case.referral")
SENDER = CLAIMS.sender.org
NOW = just_after(CLAIMS)
SUITES = list(Suite)
OTHER_ORG = "00000001999000009000"


def _sender(suite: Suite) -> Any:
    return signing_key(suite, "sender")


def _own(suite: Suite) -> Any:
    return decryption_key(suite, "own")


def _lookup(suite: Suite) -> StaticSenderKeys:
    return StaticSenderKeys({SENDER: [_sender(suite).public]})


def _good(suite: Suite, claims: Any = CLAIMS, **changes: Any) -> dict[str, Any]:
    return forge(claims, _sender(suite), [_own(suite).public], SeededRand("good"), **changes)


def _open(
    raw: bytes,
    suite: Suite = Suite.P256,
    *,
    now: datetime = NOW,
    ring: KeyRing | None = None,
    lookup: SenderKeyLookup | None = None,
    replay: Callable[[str, str], bool] = never_seen,
    limits: EnvelopeLimits = env.DEFAULT_LIMITS,
) -> env.VerifiedMessage:
    return open_envelope(
        raw,
        keyring=ring or KeyRing([_own(suite)]),
        sender_keys=lookup or _lookup(suite),
        now=now,
        is_replay=replay,
        limits=limits,
    )


def _refused(raw: bytes, reason: str, detail: str, suite: Suite = Suite.P256, **kw: Any) -> None:
    with pytest.raises(RemoteError) as caught:
        _open(raw, suite, **kw)
    assert caught.value.reason == reason, caught.value.detail
    assert detail in caught.value.detail, caught.value.detail


def _with_protected(obj: dict[str, Any], **changes: Any) -> bytes:
    """Edit the protected header *without* re-encrypting (an attacker's edit)."""
    header = unb64json(obj["protected"])
    for name, value in changes.items():
        if value is DELETE:
            header.pop(name)
        else:
            header[name] = value
    return dumps({**obj, "protected": b64json(header)})


def _with_recipient_header(obj: dict[str, Any], **changes: Any) -> bytes:
    entry = obj["recipients"][0]
    header = dict(entry["header"])
    for name, value in changes.items():
        if value is DELETE:
            header.pop(name)
        else:
            header[name] = value
    return dumps({**obj, "recipients": [{**entry, "header": header}]})


def _flip(b64: str, index: int = 0) -> str:
    raw = bytearray(jose.b64u_decode(b64))
    raw[index] ^= 0x01
    return jose.b64u_encode(bytes(raw))


def test_the_baseline_envelope_opens() -> None:
    for suite in SUITES:
        assert _open(dumps(_good(suite)), suite).claims == CLAIMS


# ------------------------------------------------------------------ size limits (DoS)


def test_envelope_over_the_byte_limit_is_too_large() -> None:
    _refused(
        dumps(_good(Suite.P256)),
        "too_large",
        "envelope exceeds",
        limits=EnvelopeLimits(max_envelope_bytes=2048),
    )


def test_recipient_list_over_the_limit_is_too_large() -> None:
    keys = [decryption_key(Suite.CURVE25519, str(i)).public for i in range(3)]
    obj = forge(CLAIMS, _sender(Suite.P256), keys, SeededRand("3"))
    _refused(dumps(obj), "too_large", "recipient entries", limits=EnvelopeLimits(max_recipients=2))


def test_zvg_rcp_over_the_limit_is_too_large() -> None:
    orgs = [f"{i:020d}" for i in range(17)]
    _refused(_with_protected(_good(Suite.P256), zvg_rcp=orgs), "too_large", "zvg_rcp names more")


def test_claims_over_the_limit_are_too_large_before_decryption() -> None:
    _refused(
        dumps(_good(Suite.P256)),
        "too_large",
        "ciphertext exceeds",
        limits=EnvelopeLimits(max_claims_bytes=1024),
    )


def test_claims_over_the_limit_are_too_large_after_decryption() -> None:
    size = len(claims_to_json(CLAIMS))
    _refused(
        dumps(_good(Suite.P256)),
        "too_large",
        "claims exceed",
        limits=EnvelopeLimits(max_claims_bytes=size - 100),
    )


# ------------------------------------------------------------------ parsing (ambiguity)


@pytest.mark.parametrize(
    "raw",
    [b"", b"not json", b"[]", b'"envelope"', b"\xff\xfe{}", b"a.b.c.d.e"],
    ids=["empty", "text", "array", "string", "not-utf8", "compact-jwe"],
)
def test_input_that_is_not_a_json_object_is_malformed(raw: bytes) -> None:
    _refused(raw, "malformed", "envelope")


def test_duplicate_member_in_the_envelope_is_malformed() -> None:
    raw = dumps(_good(Suite.P256))
    iv = json.loads(raw)["iv"]
    doubled = raw[:-1] + b',"iv":"' + iv.encode() + b'"}'
    _refused(doubled, "malformed", "duplicate member")


def test_duplicate_member_in_the_protected_header_is_malformed() -> None:
    obj = _good(Suite.P256)
    text = jose.b64u_decode(obj["protected"]).decode()
    doubled = text[:-1] + ',"enc":"A256GCM"}'
    raw = dumps({**obj, "protected": jose.b64u_encode(doubled.encode())})
    _refused(raw, "malformed", "duplicate member")


def test_duplicate_member_in_the_jws_header_is_malformed() -> None:
    sender = _sender(Suite.P256)
    header = (f'{{"alg":"ES256","kid":"{sender.kid}","typ":"zvg-message+jws","typ":"x"}}').encode()
    signing_input = (
        jose.b64u_encode(header) + "." + jose.b64u_encode(claims_to_json(CLAIMS))
    ).encode()
    inner = signing_input + b"." + jose.b64u_encode(sender.sign(signing_input)).encode()
    _refused(dumps(_good(Suite.P256, inner=inner)), "malformed", "duplicate member")


def test_duplicate_member_in_the_signed_claims_is_malformed() -> None:
    payload = claims_to_json(CLAIMS)
    doubled = payload[:-1] + b',"case_ref":"other-case-ref"}'
    obj = forge(
        payload,
        _sender(Suite.P256),
        [_own(Suite.P256).public],
        SeededRand("d"),
        inner=env._sign_jws(doubled, _sender(Suite.P256)),
    )
    _refused(dumps(obj), "malformed", "claims: duplicate key")


@pytest.mark.parametrize("member", ["iv", "tag", "ciphertext", "protected"])
def test_non_canonical_base64url_is_malformed(member: str) -> None:
    obj = _good(Suite.P256)
    value = obj[member]
    # Re-encode with padding: same bytes, but not the canonical unpadded text.
    padded = value + "=" * (-len(value) % 4) if len(value) % 4 else value + "===="
    _refused(dumps({**obj, member: padded}), "malformed", member)


def test_non_canonical_trailing_bits_are_malformed() -> None:
    obj = _good(Suite.P256)
    iv = obj["iv"]  # 12 bytes: 16 characters, no spare bits, so use the 16-byte tag (22 chars)
    tag = obj["tag"]
    assert len(tag) % 4 == 2
    assert len(iv) % 4 == 0
    last = jose._ALPHABET.index(tag[-1])
    bad = tag[:-1] + jose._ALPHABET[last | 1]
    _refused(dumps({**obj, "tag": bad}), "malformed", "non-canonical")


def test_non_canonical_base64url_inside_the_jws_is_malformed() -> None:
    sender = _sender(Suite.P256)
    inner = env._sign_jws(claims_to_json(CLAIMS), sender)
    head, payload, sig = inner.split(b".")
    bad = head + b"." + payload + b"." + sig + b"=="
    _refused(dumps(_good(Suite.P256, inner=bad)), "malformed", "JWS signature")


@pytest.mark.parametrize("member", ["protected", "recipients", "iv", "ciphertext", "tag"])
def test_a_missing_jwe_member_is_malformed(member: str) -> None:
    obj = _good(Suite.P256)
    del obj[member]
    _refused(dumps(obj), "malformed", "General JSON")


@pytest.mark.parametrize("member", ["unprotected", "aad", "header", "encrypted_key", "extra"])
def test_a_jwe_member_outside_the_profile_is_unsupported(member: str) -> None:
    obj = {**_good(Suite.P256), member: {} if member in ("unprotected", "header") else "AAAA"}
    _refused(dumps(obj), "unsupported", "JWE member outside the profile")


def test_flattened_serialization_is_unsupported() -> None:
    obj = _good(Suite.P256)
    entry = obj.pop("recipients")[0]
    _refused(dumps({**obj, **entry}), "unsupported", "JWE member outside the profile")


# ------------------------------------------------------------------ protected header (profile)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("zip", "DEF"),
        ("crit", ["zvg_mid"]),
        ("jku", "https://attacker.example/keys"),
        ("jwk", {"kty": "OKP", "crv": "X25519", "x": "AAAA"}),
        ("x5u", "https://attacker.example/cert"),
        ("x5c", ["MIIB"]),
        ("x5t", "AAAA"),
        ("cty", "JWT"),
        ("alg", "ECDH-ES+A256KW"),
        ("kid", "AAAA"),
        ("epk", {}),
        ("apu", "QWxpY2U"),
        ("zvg_purpose", "ZVH.RISICO"),
        ("unknown", 1),
    ],
)
def test_protected_header_parameter_outside_the_profile_is_unsupported(
    name: str, value: Any
) -> None:
    raw = _with_protected(_good(Suite.P256), **{name: value})
    _refused(raw, "unsupported", "protected header parameter outside the profile")


@pytest.mark.parametrize(
    ("name", "value", "detail"),
    [
        ("typ", "JWE", "envelope typ"),
        ("typ", "zvg-message+jws", "envelope typ"),
        ("enc", "A128GCM", "enc"),
        ("enc", "A256CBC-HS512", "enc"),
        ("enc", "none", "enc"),
    ],
)
def test_protected_header_value_outside_the_profile_is_unsupported(
    name: str, value: str, detail: str
) -> None:
    _refused(_with_protected(_good(Suite.P256), **{name: value}), "unsupported", detail)


@pytest.mark.parametrize(
    ("changes", "detail"),
    [
        ({"zvg_dig": DELETE}, "lacks zvg_dig"),
        ({"iat": DELETE}, "lacks iat"),
        ({"zvg_mid": "019CADD4-5620-7D6F-BD7A-8C9A07606E06"}, "zvg_mid"),  # upper case
        ({"zvg_mid": "019cadd4-5620-4d6f-bd7a-8c9a07606e06"}, "zvg_mid"),  # UUIDv4
        ({"zvg_snd": "123"}, "zvg_snd"),
        ({"zvg_snd": ["00000001999000002000"]}, "zvg_snd"),
        ({"zvg_rcp": []}, "zvg_rcp"),
        ({"zvg_rcp": "00000001999000001000"}, "zvg_rcp"),
        (
            {"zvg_rcp": ["00000001999000001000", "00000001999000001000"]},
            "zvg_rcp names an org twice",
        ),
        ({"zvg_rcp": ["0000000199900000100X"]}, "zvg_rcp holds"),
        ({"iat": "1772442900"}, "iat is not an integer"),
        ({"iat": 1772442900.0}, "iat is not an integer"),
        ({"iat": True}, "iat is not an integer"),
        ({"exp": -1}, "exp is out of range"),
        ({"exp": 10**20}, "exp is out of range"),
        ({"exp": 1772442900}, "exp is not after iat"),
        ({"zvg_dig": "AAAA"}, "zvg_dig"),
        ({"zvg_dig": "A" * 42 + "B"}, "zvg_dig"),  # 43 chars, non-canonical last char
    ],
)
def test_protected_header_with_a_bad_value_is_malformed(
    changes: dict[str, Any], detail: str
) -> None:
    _refused(_with_protected(_good(Suite.P256), **changes), "malformed", detail)


def test_protected_header_that_is_not_an_object_is_malformed() -> None:
    obj = _good(Suite.P256)
    raw = dumps({**obj, "protected": jose.b64u_encode(b"[1]")})
    _refused(raw, "malformed", "protected header")


# ------------------------------------------------------------------ recipient entries (injection)


@pytest.mark.parametrize(
    "alg",
    [
        "none",
        "dir",
        "ECDH-ES",
        "ECDH-ES+A128KW",
        "ECDH-ES+A192KW",
        "A256KW",
        "A256GCMKW",
        "PBES2-HS512+A256KW",
        "RSA-OAEP-256",
        "RSA1_5",
        "ECDH-1PU+A256KW",
        "HPKE-0",
    ],
)
def test_recipient_alg_outside_the_profile_is_unsupported(alg: str) -> None:
    _refused(_with_recipient_header(_good(Suite.P256), alg=alg), "unsupported", "recipient alg")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("jwk", {"kty": "EC"}),
        ("jku", "https://attacker.example"),
        ("x5u", "https://attacker.example"),
        ("x5c", ["MIIB"]),
        ("enc", "A128GCM"),
        ("zip", "DEF"),
        ("crit", ["exp"]),
        ("apu", "QWxpY2U"),
        ("apv", "Qm9i"),
        ("skid", "AAAA"),
        ("p2s", "AAAA"),
        ("whatever", 1),
    ],
)
def test_recipient_header_parameter_outside_the_profile_is_unsupported(
    name: str, value: Any
) -> None:
    raw = _with_recipient_header(_good(Suite.P256), **{name: value})
    _refused(raw, "unsupported", "recipient header parameter outside the profile")


@pytest.mark.parametrize(
    "epk",
    [
        {"kty": "EC", "crv": "P-384", "x": "AAAA", "y": "AAAA"},
        {"kty": "EC", "crv": "P-521", "x": "AAAA", "y": "AAAA"},
        {"kty": "OKP", "crv": "X448", "x": "AAAA"},
        {"kty": "OKP", "crv": "Ed25519", "x": "AAAA"},
        {"kty": "RSA", "n": "AAAA", "e": "AQAB"},
        {"kty": "oct", "k": "AAAA"},
    ],
)
def test_epk_outside_the_profile_is_unsupported(epk: dict[str, str]) -> None:
    _refused(_with_recipient_header(_good(Suite.P256), epk=epk), "unsupported", "epk")


@pytest.mark.parametrize("extra", [{"d": "AAAA"}, {"kid": "x"}, {"x5c": ["MIIB"]}])
def test_epk_with_extra_members_is_unsupported(extra: dict[str, Any]) -> None:
    obj = _good(Suite.P256)
    epk = {**obj["recipients"][0]["header"]["epk"], **extra}
    _refused(_with_recipient_header(obj, epk=epk), "unsupported", "epk members")


def test_epk_with_a_short_coordinate_is_malformed() -> None:
    obj = _good(Suite.CURVE25519)
    epk = {**obj["recipients"][0]["header"]["epk"], "x": "AAAA"}
    _refused(_with_recipient_header(obj, epk=epk), "malformed", "epk.x", Suite.CURVE25519)


@pytest.mark.parametrize(
    ("changes", "detail"),
    [
        ({"kid": DELETE}, "lacks alg, kid or epk"),
        ({"kid": "not-a-thumbprint"}, "recipient kid"),
        ({"kid": 7}, "recipient kid"),
        ({"epk": "AAAA"}, "epk is not a JSON object"),
    ],
)
def test_recipient_header_with_a_bad_value_is_malformed(
    changes: dict[str, Any], detail: str
) -> None:
    _refused(_with_recipient_header(_good(Suite.P256), **changes), "malformed", detail)


def test_recipient_entry_with_an_extra_member_is_unsupported() -> None:
    obj = _good(Suite.P256)
    entry = {**obj["recipients"][0], "unprotected": {}}
    _refused(dumps({**obj, "recipients": [entry]}), "unsupported", "recipient entry")


def test_two_entries_for_the_same_kid_are_malformed() -> None:
    obj = _good(Suite.P256)
    _refused(dumps({**obj, "recipients": obj["recipients"] * 2}), "malformed", "same kid")


@pytest.mark.parametrize(
    ("member", "value", "detail"),
    [
        ("encrypted_key", "AAAA", "encrypted_key"),
        ("iv", jose.b64u_encode(b"\x00" * 16), "iv or tag"),
        ("tag", jose.b64u_encode(b"\x00" * 12), "iv or tag"),
    ],
)
def test_wrong_lengths_are_malformed(member: str, value: str, detail: str) -> None:
    obj = _good(Suite.P256)
    if member == "encrypted_key":
        obj["recipients"] = [{**obj["recipients"][0], "encrypted_key": value}]
    else:
        obj[member] = value
    _refused(dumps(obj), "malformed", detail)


# ------------------------------------------------------------------ time window and replay


def test_expired_envelope_is_refused() -> None:
    _refused(dumps(_good(Suite.P256)), "expired", "exp has passed", now=CLAIMS.expires_at)


def test_iat_too_old_is_refused() -> None:
    limits = EnvelopeLimits(max_iat_age=timedelta(days=1))
    _refused(
        dumps(_good(Suite.P256)),
        "expired",
        "iat is older",
        now=CLAIMS.created_at + timedelta(days=1, seconds=1),
        limits=limits,
    )


def test_iat_too_far_in_the_future_is_refused() -> None:
    _refused(
        dumps(_good(Suite.P256)),
        "expired",
        "iat lies further in the future",
        now=CLAIMS.created_at - timedelta(minutes=5, seconds=1),
    )


def test_iat_within_the_clock_skew_is_accepted() -> None:
    assert _open(dumps(_good(Suite.P256)), now=CLAIMS.created_at - timedelta(minutes=5))


def test_replayed_message_id_is_refused() -> None:
    seen = {(SENDER, CLAIMS.message_id)}
    _refused(
        dumps(_good(Suite.P256)),
        "replayed",
        "already accepted",
        replay=lambda s, m: (s, m) in seen,
    )


# ------------------------------------------------------------------ decryption


@pytest.mark.parametrize("suite", SUITES)
def test_no_entry_for_our_keys_is_not_for_us(suite: Suite) -> None:
    ring = KeyRing([decryption_key(suite, "someone-else")])
    _refused(dumps(_good(suite)), "not_for_us", "no recipient entry", suite, ring=ring)


@pytest.mark.parametrize("suite", SUITES)
def test_entry_with_our_kid_but_another_key_is_undecryptable(suite: Suite) -> None:
    obj = forge(CLAIMS, _sender(suite), [decryption_key(suite, "other").public], SeededRand("w"))
    raw = _with_recipient_header(obj, kid=_own(suite).kid)
    _refused(raw, "undecryptable", "key unwrap failed", suite)


def test_p256_epk_off_the_curve_is_undecryptable() -> None:
    obj = _good(Suite.P256)
    epk = dict(obj["recipients"][0]["header"]["epk"])
    epk["y"] = _flip(epk["y"], 31)
    _refused(_with_recipient_header(obj, epk=epk), "undecryptable", "not on P-256")


@pytest.mark.parametrize(
    "x",
    [
        "00" * 32,
        "01" + "00" * 31,
        "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
    ],
)
def test_x25519_epk_of_low_order_is_undecryptable(x: str) -> None:
    obj = _good(Suite.CURVE25519)
    epk = {"crv": "X25519", "kty": "OKP", "x": jose.b64u_encode(bytes.fromhex(x))}
    raw = _with_recipient_header(obj, epk=epk)
    _refused(raw, "undecryptable", "invalid peer point", Suite.CURVE25519)


def test_epk_on_the_other_suites_curve_is_undecryptable() -> None:
    obj = _good(Suite.P256)
    epk = _good(Suite.CURVE25519)["recipients"][0]["header"]["epk"]
    _refused(_with_recipient_header(obj, epk=epk), "undecryptable", "curve differs")


@pytest.mark.parametrize("suite", SUITES)
@pytest.mark.parametrize("member", ["iv", "ciphertext", "tag", "encrypted_key"])
def test_tampered_ciphertext_parts_are_undecryptable(suite: Suite, member: str) -> None:
    obj = _good(suite)
    if member == "encrypted_key":
        entry = obj["recipients"][0]
        obj["recipients"] = [{**entry, "encrypted_key": _flip(entry["encrypted_key"], 7)}]
    else:
        obj[member] = _flip(obj[member], 5)
    _refused(dumps(obj), "undecryptable", "failed", suite)


@pytest.mark.parametrize(
    "changes",
    [
        {"exp": int(CLAIMS.expires_at.timestamp()) - 60},
        {"zvg_rcp": [*CLAIMS.recipient_orgs(), OTHER_ORG]},
        {"zvg_mid": "019cadd4-5620-7d6f-bd7a-8c9a07606e07"},
    ],
    ids=["exp", "zvg_rcp", "zvg_mid"],
)
def test_tampered_protected_header_is_undecryptable(changes: dict[str, Any]) -> None:
    _refused(
        _with_protected(_good(Suite.P256), **changes), "undecryptable", "content authentication"
    )


def test_same_header_with_other_bytes_changes_the_aad_and_is_undecryptable() -> None:
    obj = _good(Suite.P256)
    header = unb64json(obj["protected"])
    reordered = dict(reversed(list(header.items())))  # same members, different AAD bytes
    raw = dumps({**obj, "protected": b64json(reordered)})
    _refused(raw, "undecryptable", "content authentication")


# ------------------------------------------------------------------ content commitment


@pytest.mark.parametrize("suite", SUITES)
def test_inner_jws_that_does_not_match_the_digest_is_refused(suite: Suite) -> None:
    digest = jose.b64u_encode(hashlib.sha256(b"some other message").digest())
    obj = _good(suite, header_changes={"zvg_dig": digest})
    _refused(dumps(obj), "bad_signature", "zvg_dig commitment", suite)


# ------------------------------------------------------------------ inner JWS (algorithm confusion)


def _jws_header(suite: Suite, **changes: Any) -> dict[str, Any]:
    header: dict[str, Any] = {
        "alg": suite.signature_alg,
        "kid": _sender(suite).kid,
        "typ": "zvg-message+jws",
    }
    for name, value in changes.items():
        if value is DELETE:
            header.pop(name)
        else:
            header[name] = value
    return header


@pytest.mark.parametrize(
    "alg", ["none", "None", "HS256", "EdDSA", "ES384", "ES256K", "RS256", "PS256", "Ed448", ""]
)
def test_jws_alg_outside_the_profile_is_unsupported(alg: str) -> None:
    obj = _good(Suite.P256, jws_header=_jws_header(Suite.P256, alg=alg))
    _refused(dumps(obj), "unsupported", "JWS alg")


def test_unsigned_jws_is_unsupported() -> None:
    signing_input = b64json(
        {"alg": "none", "typ": "zvg-message+jws", "kid": _sender(Suite.P256).kid}
    )
    inner = (signing_input + "." + jose.b64u_encode(claims_to_json(CLAIMS)) + ".").encode()
    _refused(dumps(_good(Suite.P256, inner=inner)), "unsupported", "JWS alg")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("jwk", {"kty": "OKP"}),
        ("jku", "https://attacker.example"),
        ("x5u", "https://attacker.example"),
        ("x5c", ["MIIB"]),
        ("crit", ["b64"]),
        ("b64", False),
        ("zip", "DEF"),
        ("cty", "JWT"),
        ("nonce", "x"),
    ],
)
def test_jws_header_parameter_outside_the_profile_is_unsupported(name: str, value: Any) -> None:
    obj = _good(Suite.P256, jws_header=_jws_header(Suite.P256, **{name: value}))
    _refused(dumps(obj), "unsupported", "JWS header parameter outside the profile")


def test_jws_typ_other_than_the_message_typ_is_unsupported() -> None:
    obj = _good(Suite.P256, jws_header=_jws_header(Suite.P256, typ="JWT"))
    _refused(dumps(obj), "unsupported", "JWS typ")


@pytest.mark.parametrize(
    ("changes", "detail"),
    [({"kid": DELETE}, "lacks alg, kid or typ"), ({"kid": "x"}, "JWS kid")],
)
def test_jws_header_with_a_bad_value_is_malformed(changes: dict[str, Any], detail: str) -> None:
    obj = _good(Suite.P256, jws_header=_jws_header(Suite.P256, **changes))
    _refused(dumps(obj), "malformed", detail)


@pytest.mark.parametrize("inner", [b"abc", b"a.b", b"a.b.c.d", b"e30.e30.e30.e30.e30"])
def test_plaintext_that_is_not_a_compact_jws_is_malformed(inner: bytes) -> None:
    _refused(dumps(_good(Suite.P256, inner=inner)), "malformed", "")


# ------------------------------------------------------------------ sender authentication


@pytest.mark.parametrize("suite", SUITES)
def test_signing_key_unknown_to_the_directory_is_unknown_sender(suite: Suite) -> None:
    stranger = signing_key(suite, "stranger")
    obj = forge(CLAIMS, stranger, [_own(suite).public], SeededRand("s"))
    _refused(dumps(obj), "unknown_sender", "no signing key", suite)


def test_key_of_another_org_is_unknown_sender() -> None:
    other_org_key = signing_key(Suite.P256, "other-org")
    lookup = StaticSenderKeys(
        {SENDER: [_sender(Suite.P256).public], OTHER_ORG: [other_org_key.public]}
    )
    obj = forge(CLAIMS, other_org_key, [_own(Suite.P256).public], SeededRand("o"))
    _refused(dumps(obj), "unknown_sender", "no signing key", lookup=lookup)


def test_key_not_valid_at_iat_is_unknown_sender() -> None:
    key = _sender(Suite.P256).public
    asked: list[datetime] = []

    def windowed(org: str, kid: str, at: datetime) -> SigningPublicKey | None:
        asked.append(at)
        valid_from = datetime(2026, 4, 1, tzinfo=UTC)  # rotated in after the message's iat
        return key if org == SENDER and kid == key.kid and at >= valid_from else None

    _refused(dumps(_good(Suite.P256)), "unknown_sender", "at iat", lookup=windowed)
    assert asked == [CLAIMS.created_at]


def test_lookup_returning_a_key_with_another_kid_is_unknown_sender() -> None:
    wrong = signing_key(Suite.P256, "wrong").public

    def confused(org: str, kid: str, at: datetime) -> SigningPublicKey | None:
        return wrong

    _refused(dumps(_good(Suite.P256)), "unknown_sender", "no signing key", lookup=confused)


@pytest.mark.parametrize("suite", SUITES)
def test_signature_by_another_key_under_the_senders_kid_is_bad_signature(suite: Suite) -> None:
    forger = signing_key(suite, "forger")
    obj = _good(suite, signature_key=forger)  # header names the sender's kid
    _refused(dumps(obj), "bad_signature", "does not verify", suite)


def test_alg_that_is_not_the_sender_keys_alg_is_bad_signature() -> None:
    # Algorithm confusion: an Ed25519-labelled JWS checked against a P-256 key id.
    obj = _good(
        Suite.P256,
        jws_header=_jws_header(Suite.P256, alg="Ed25519"),
        signature_key=signing_key(Suite.CURVE25519, "sender"),
    )
    _refused(dumps(obj), "bad_signature", "sender key's algorithm")


@pytest.mark.parametrize("suite", SUITES)
def test_tampered_signature_is_bad_signature(suite: Suite) -> None:
    inner = env._sign_jws(claims_to_json(CLAIMS), _sender(suite))
    head, payload, sig = inner.split(b".")
    bad = head + b"." + payload + b"." + _flip(sig.decode(), 10).encode()
    _refused(dumps(_good(suite, inner=bad)), "bad_signature", "does not verify", suite)


def test_signature_over_other_claims_is_bad_signature() -> None:
    sender = _sender(Suite.P256)
    other = env._sign_jws(claims_to_json(example_claims("case.status")), sender)
    inner = env._sign_jws(claims_to_json(CLAIMS), sender)
    spliced = inner.rsplit(b".", 1)[0] + b"." + other.rsplit(b".", 1)[1]
    _refused(dumps(_good(Suite.P256, inner=spliced)), "bad_signature", "does not verify")


# ------------------------------------------------------------------ claims


def test_signed_claims_that_break_the_contract_are_invalid() -> None:
    data = json.loads(claims_to_json(CLAIMS))
    data["purpose"] = "NOT.A.PURPOSE"
    payload = json.dumps(data, separators=(",", ":")).encode()
    sender = _sender(Suite.P256)
    obj = forge(
        CLAIMS,
        sender,
        [_own(Suite.P256).public],
        SeededRand("c"),
        inner=env._sign_jws(payload, sender),
    )
    _refused(dumps(obj), "invalid_claims", "purpose")


def test_invalid_claims_detail_names_fields_but_not_values() -> None:
    data = json.loads(claims_to_json(CLAIMS))
    data["case_ref"] = "!" * 5
    data["body"]["999999990"] = "secret-value"
    payload = json.dumps(data, separators=(",", ":")).encode()
    sender = _sender(Suite.P256)
    obj = forge(
        CLAIMS,
        sender,
        [_own(Suite.P256).public],
        SeededRand("c"),
        inner=env._sign_jws(payload, sender),
    )
    with pytest.raises(RemoteError) as caught:
        _open(dumps(obj))
    assert caught.value.reason == "invalid_claims"
    assert "case_ref" in caught.value.detail
    for leaked in ("!!!!!", "secret-value", "999999990"):
        assert leaked not in caught.value.detail


def test_signed_claims_that_are_not_an_object_are_invalid() -> None:
    sender = _sender(Suite.P256)
    obj = forge(
        CLAIMS,
        sender,
        [_own(Suite.P256).public],
        SeededRand("c"),
        inner=env._sign_jws(b"[]", sender),
    )
    _refused(dumps(obj), "invalid_claims", "(top)")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"zvg_mid": "019cadd4-5620-7d6f-bd7a-8c9a07606e07"}, "message_id"),
        ({"zvg_snd": OTHER_ORG}, "sender.org"),
        ({"zvg_rcp": [*CLAIMS.recipient_orgs(), OTHER_ORG]}, "recipients"),
        ({"zvg_rcp": [OTHER_ORG]}, "recipients"),
        ({"iat": int(CLAIMS.created_at.timestamp()) - 1}, "created_at"),
        ({"exp": int(CLAIMS.expires_at.timestamp()) + 1}, "expires_at"),
    ],
    ids=["mid", "sender", "extra-recipient", "other-recipient", "iat", "exp"],
)
def test_routing_header_that_the_signed_claims_do_not_repeat_is_invalid(
    changes: dict[str, Any], field: str
) -> None:
    # A sender (or a broker able to re-encrypt) puts routing the signature does not cover.
    lookup = StaticSenderKeys(any_org=[_sender(Suite.P256).public])
    obj = _good(Suite.P256, header_changes=changes)
    _refused(dumps(obj), "invalid_claims", field, lookup=lookup)


# ------------------------------------------------------------------ order: cheap checks first


@pytest.fixture
def forbid_public_key_operations(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], None]]:
    """Call the yielded function to make every public-key operation fail the test."""
    calls: list[str] = []

    def forbidden(name: str) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            raise AssertionError(f"{name} called before the cheap checks finished")

        return call

    def arm() -> None:
        for name in ("ecdh", "public_key_from_jwk", "es256_verify", "ed25519_verify"):
            monkeypatch.setattr(jose, name, forbidden(name))

    yield arm
    assert calls == []


def _unknown_lookup(org: str, kid: str, at: datetime) -> SigningPublicKey | None:
    raise AssertionError("sender keys looked up before decryption")


@pytest.mark.parametrize(
    ("make", "kw", "reason"),
    [
        (lambda: b"{" * 10 + b"x" * 300_000, {}, "too_large"),
        (lambda: b'{"a":1,"a":2}', {}, "malformed"),
        (lambda: _with_protected(_good(Suite.P256), zip="DEF"), {}, "unsupported"),
        (lambda: dumps(_good(Suite.P256)), {"now": CLAIMS.expires_at}, "expired"),
        (lambda: dumps(_good(Suite.P256)), {"replay": lambda _s, _m: True}, "replayed"),
        (
            lambda: dumps(_good(Suite.P256)),
            {"ring": KeyRing([decryption_key(Suite.P256, "nobody")])},
            "not_for_us",
        ),
    ],
    ids=["size", "json", "header", "time", "replay", "not-for-us"],
)
def test_cheap_checks_run_before_any_public_key_operation(
    forbid_public_key_operations: Callable[[], None],
    make: Callable[[], bytes],
    kw: dict[str, Any],
    reason: str,
) -> None:
    raw = make()
    forbid_public_key_operations()
    with pytest.raises(RemoteError) as caught:
        _open(raw, lookup=_unknown_lookup, **kw)
    assert caught.value.reason == reason


def test_time_window_is_checked_before_replay() -> None:
    def replay(sender: str, mid: str) -> bool:
        raise AssertionError("replay store consulted for an expired envelope")

    _refused(dumps(_good(Suite.P256)), "expired", "exp", now=CLAIMS.expires_at, replay=replay)


def test_arbitrary_key_material_in_errors_never_appears() -> None:
    obj = _good(Suite.P256)
    raw = _with_recipient_header(obj, jwk={"kty": "EC", "d": "SECRETSECRET"})
    with pytest.raises(RemoteError) as caught:
        _open(raw)
    assert "SECRET" not in caught.value.detail
