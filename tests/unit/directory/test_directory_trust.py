"""Directory trust as a state machine, table-driven in the style of python-tuf's key-rotation
tests: thresholds, authority changes, rollback, expiry, parsing; then key lifecycle lookups."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from gateway.core import jose
from gateway.core.directory import (
    TrustedDirectory,
    add_signature,
    parse_signed,
    unsigned,
    verify_signatures,
)
from gateway.core.keys import DecryptionKey, SigningKey, Suite
from gateway.errors import LocalError, RemoteError
from gateway.federation import authority_key_entry
from gateway.testing.veenstad import ORGS, demo_payload
from schemas.catalogue import default_catalogue
from schemas.directory import Authority, DirectoryPayload, KeyEntry
from tests.envelope_forge import decryption_key, signing_key

CAT = default_catalogue()
T0 = datetime(2026, 3, 1, tzinfo=UTC)
NOW = T0 + timedelta(days=10)
GGZ = next(o for o in ORGS if o.key == "ggz")

# Six administrators: A-C are the first authority, D-F a later one.
ADMINS = {
    n: signing_key(Suite.P256 if n in "ACE" else Suite.CURVE25519, f"admin-{n}") for n in "ABCDEF"
}


def authority(names: str, threshold: int) -> Authority:
    return Authority(
        threshold=threshold, keys=tuple(authority_key_entry(n, ADMINS[n]) for n in names)
    )


def payload(
    version: int, auth: Authority, *, expires: datetime | None = None, **kw: object
) -> DirectoryPayload:
    p = demo_payload(
        version=version,
        issued_at=T0,
        expires=expires or T0 + timedelta(days=365),
        authority=auth,
        keys={},
    )
    return p.model_copy(update=kw) if kw else p


def signed_by(p: DirectoryPayload, signers: str) -> bytes:
    s = unsigned(p)
    for n in signers:
        s = add_signature(s, ADMINS[n])
    return s.to_json()


ABC2 = authority("ABC", 2)
V1 = signed_by(payload(1, ABC2), "AB")


@dataclass(frozen=True)
class Step:
    """One update on top of the trusted v1 (authority A, B, C; threshold 2)."""

    name: str
    raw: bytes
    error: str | None  # the RemoteError reason expected, or None when trusted


STEPS = [
    Step("same authority, 2 of 3", signed_by(payload(2, ABC2), "BC"), None),
    Step("same authority, 1 of 3", signed_by(payload(2, ABC2), "C"), "bad_signature"),
    Step(
        "same authority, one key signing twice", signed_by(payload(2, ABC2), "AA"), "bad_signature"
    ),
    Step("unknown signers are ignored", signed_by(payload(2, ABC2), "ADE"), "bad_signature"),
    Step("jump ahead to v7", signed_by(payload(7, ABC2), "AC"), None),
    Step("replay of v1", V1, "replayed"),
    Step(
        "rollback to v0-like lower version",
        signed_by(payload(1, ABC2, name="Older"), "AB"),
        "replayed",
    ),
    Step(
        "new authority, old and new thresholds",
        signed_by(payload(2, authority("DEF", 2)), "ABDE"),
        None,
    ),
    Step(
        "new authority, only the old signed",
        signed_by(payload(2, authority("DEF", 2)), "ABC"),
        "bad_signature",
    ),
    Step(
        "new authority, only the new signed",
        signed_by(payload(2, authority("DEF", 2)), "DEF"),
        "bad_signature",
    ),
    Step(
        "threshold raised to 3, 2 signed",
        signed_by(payload(2, authority("ABC", 3)), "AB"),
        "bad_signature",
    ),
    Step(
        "threshold raised to 3, 3 signed", signed_by(payload(2, authority("ABC", 3)), "ABC"), None
    ),
    Step(
        "threshold lowered to 1, 1 signed",
        signed_by(payload(2, authority("ABC", 1)), "A"),
        "bad_signature",
    ),
    Step("one key swapped (C→D), old+new", signed_by(payload(2, authority("ABD", 2)), "AB"), None),
    Step(
        "one key swapped (C→D), only C and D",
        signed_by(payload(2, authority("ABD", 2)), "CD"),
        "bad_signature",
    ),
    Step(
        "expired update",
        signed_by(payload(2, ABC2, expires=NOW - timedelta(days=1)), "AB"),
        "expired",
    ),
    Step(
        "other federation", signed_by(payload(2, ABC2, federation="elders"), "AB"), "invalid_claims"
    ),
]


@pytest.mark.parametrize("step", STEPS, ids=lambda s: s.name)
def test_update_rules(step: Step) -> None:
    trusted = TrustedDirectory.first(V1, now=NOW, catalogue=CAT)
    if step.error is None:
        new = trusted.update(step.raw, now=NOW, catalogue=CAT)
        assert new.version > trusted.version
        assert new.raw == step.raw
    else:
        with pytest.raises(RemoteError) as caught:
            trusted.update(step.raw, now=NOW, catalogue=CAT)
        assert caught.value.reason == step.error, caught.value.detail


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (V1, None),
        (signed_by(payload(1, ABC2), "A"), "bad_signature"),
        (signed_by(payload(1, ABC2), ""), "bad_signature"),
        (signed_by(payload(1, ABC2, expires=NOW - timedelta(seconds=1)), "AB"), "expired"),
        (signed_by(payload(1, ABC2), "DE"), "bad_signature"),
    ],
    ids=["threshold", "one-signature", "unsigned", "expired", "foreign-signers"],
)
def test_first_trust(raw: bytes, error: str | None) -> None:
    if error is None:
        assert TrustedDirectory.first(raw, now=NOW, catalogue=CAT).version == 1
    else:
        with pytest.raises(RemoteError) as caught:
            TrustedDirectory.first(raw, now=NOW, catalogue=CAT)
        assert caught.value.reason == error


@pytest.mark.parametrize("witness", [None, object()], ids=["no-witness", "guessed-witness"])
def test_trusted_directory_cannot_be_built_outside_its_checks(witness: object) -> None:
    """Only first() and update() make a TrustedDirectory: not even the fields of a trusted one
    copied into the constructor (nor dataclasses.replace) give one."""
    trusted = TrustedDirectory.first(V1, now=NOW, catalogue=CAT)
    with pytest.raises(LocalError, match="only TrustedDirectory"):
        TrustedDirectory(trusted.signed, trusted.raw, witness=witness)
    with pytest.raises(LocalError):
        dataclasses.replace(trusted)


def test_verification_result_is_a_value() -> None:
    s = parse_signed(signed_by(payload(1, ABC2), "AD"), catalogue=CAT)
    result = verify_signatures(s, ABC2)
    assert not result.verified
    assert result.threshold == 2
    assert result.signed == {ADMINS["A"].kid}
    assert result.missing == {ADMINS["B"].kid, ADMINS["C"].kid}
    assert result.unknown == {ADMINS["D"].kid}
    assert "1 of 2 needed (A); missing: B, C" in result.describe()


def test_tampered_payload_invalidates_every_signature() -> None:
    doc = json.loads(V1)
    data = json.loads(jose.b64u_decode(doc["payload"]))
    data["policy"]["rules"][0]["data_categories"].append("GEZONDHEID")
    doc["payload"] = jose.b64u_encode(json.dumps(data).encode())
    with pytest.raises(RemoteError) as caught:
        TrustedDirectory.first(json.dumps(doc).encode(), now=NOW, catalogue=CAT)
    assert caught.value.reason == "bad_signature"


def _doc(**changes: object) -> bytes:
    doc = json.loads(V1)
    doc.update(changes)
    return json.dumps(doc).encode()


def _sig_header(header: dict[str, object]) -> bytes:
    doc = json.loads(V1)
    doc["signatures"][0]["protected"] = jose.b64u_encode(json.dumps(header).encode())
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "malformed"),
        (b'{"payload": "x", "payload": "y", "signatures": []}', "malformed"),
        (_doc(header={"alg": "none"}), "malformed"),
        (_sig_header({"alg": "none", "kid": "x", "typ": "zvg-directory+jws"}), "unsupported"),
        (_sig_header({"alg": "HS256", "kid": "x", "typ": "zvg-directory+jws"}), "unsupported"),
        (_sig_header({"alg": "ES256", "kid": "x", "typ": "JWT"}), "unsupported"),
        (
            _sig_header({"alg": "ES256", "kid": "x", "typ": "zvg-directory+jws", "jwk": {}}),
            "unsupported",
        ),
        (b"x" * (4 * 1024 * 1024 + 1), "too_large"),
        (_doc(payload=jose.b64u_encode(b'{"type": "zvg-directory"}')), "invalid_claims"),
        (_doc(payload="not base64url!"), "malformed"),
    ],
    ids=[
        "json",
        "duplicate-key",
        "unprotected-header",
        "alg-none",
        "hmac",
        "typ",
        "jwk-header",
        "size",
        "payload-shape",
        "base64",
    ],
)
def test_parsing_is_strict(raw: bytes, reason: str) -> None:
    with pytest.raises(RemoteError) as caught:
        parse_signed(raw, catalogue=CAT)
    assert caught.value.reason == reason


def test_status_warns_before_expiry() -> None:
    trusted = TrustedDirectory.first(V1, now=NOW, catalogue=CAT)
    expires = trusted.payload.expires
    assert trusted.status(expires - timedelta(days=30), timedelta(days=14))[0] == "valid"
    assert trusted.status(expires - timedelta(days=3), timedelta(days=14))[0] == "expiring"
    assert trusted.status(expires, timedelta(days=14))[0] == "expired"


def test_catalogue_major_version_must_match() -> None:
    other = CAT.model_copy(update={"version": "2.0.0"})
    with pytest.raises(LocalError, match="major versions differ"):
        TrustedDirectory.first(V1, now=NOW, catalogue=other)


# ---------------------------------------------------------------- key lifecycle


SIG_OLD = signing_key(Suite.P256, "ggz-sig-old")
SIG_NEW = signing_key(Suite.CURVE25519, "ggz-sig-new")
ENC_OLD = decryption_key(Suite.P256, "ggz-enc-old")
ENC_NEW = decryption_key(Suite.CURVE25519, "ggz-enc-new")
ROTATED = T0 + timedelta(days=100)
OVERLAP_END = ROTATED + timedelta(days=30)


def _entry(
    key: SigningKey | DecryptionKey, use: str, start: datetime, end: datetime, **kw: object
) -> KeyEntry:
    jwk = key.public.jwk()
    return KeyEntry.model_validate(
        {
            "kid": key.kid,
            "use": use,
            "jwk": {k: jwk[k] for k in ("kty", "crv", "x", "y") if k in jwk},
            "not_before": start,
            "not_after": end,
            **kw,
        },
        strict=False,
    )


def _with_ggz_keys(*entries: KeyEntry) -> TrustedDirectory:
    p = demo_payload(
        version=1,
        issued_at=T0,
        expires=T0 + timedelta(days=3650),
        authority=ABC2,
        keys={"ggz": entries},
    )
    return TrustedDirectory.first(signed_by(p, "AB"), now=T0, catalogue=CAT)


ROTATION = _with_ggz_keys(
    _entry(SIG_OLD, "sig", T0, OVERLAP_END),
    _entry(SIG_NEW, "sig", ROTATED, T0 + timedelta(days=465)),
    _entry(ENC_OLD, "enc", T0, OVERLAP_END),
    _entry(ENC_NEW, "enc", ROTATED, T0 + timedelta(days=465)),
)


@pytest.mark.parametrize(
    ("kid", "at", "valid"),
    [
        (SIG_OLD.kid, T0 + timedelta(days=1), True),
        (SIG_OLD.kid, ROTATED + timedelta(days=1), True),  # overlap: old still verifies
        (SIG_OLD.kid, OVERLAP_END, False),  # after the overlap
        (SIG_NEW.kid, ROTATED - timedelta(seconds=1), False),  # not yet valid
        (SIG_NEW.kid, ROTATED, True),
        (ENC_OLD.kid, T0 + timedelta(days=1), False),  # an encryption key never verifies
        ("unknown-kid", T0, False),
    ],
    ids=[
        "old-before",
        "old-in-overlap",
        "old-after-overlap",
        "new-early",
        "new",
        "enc-key",
        "unknown",
    ],
)
def test_rotation_signing_key_lookup(kid: str, at: datetime, valid: bool) -> None:
    assert (ROTATION.signing_key(GGZ.oin, kid, at) is not None) is valid


def test_senders_seal_to_the_newest_valid_encryption_key() -> None:
    assert ROTATION.encryption_key(GGZ.oin, T0 + timedelta(days=1)).kid == ENC_OLD.kid
    assert ROTATION.encryption_key(GGZ.oin, ROTATED + timedelta(days=1)).kid == ENC_NEW.kid
    with pytest.raises(LocalError, match="no valid encryption key"):
        ROTATION.encryption_key(GGZ.oin, T0 + timedelta(days=500))


REVOKED_AT = T0 + timedelta(days=50)


@pytest.mark.parametrize(
    ("reason", "at", "valid"),
    [
        ("superseded", REVOKED_AT - timedelta(seconds=1), True),
        ("superseded", REVOKED_AT, False),
        ("compromised", REVOKED_AT - timedelta(days=10), False),
        ("compromised", T0 + timedelta(seconds=1), False),
    ],
    ids=["superseded-before", "superseded-after", "compromised-before", "compromised-early"],
)
def test_revocation(reason: str, at: datetime, valid: bool) -> None:
    d = _with_ggz_keys(
        _entry(
            SIG_OLD,
            "sig",
            T0,
            T0 + timedelta(days=365),
            status="revoked",
            revoked_at=REVOKED_AT,
            revocation_reason=reason,
        ),
        _entry(ENC_OLD, "enc", T0, T0 + timedelta(days=365)),
    )
    assert (d.signing_key(GGZ.oin, SIG_OLD.kid, at) is not None) is valid


def test_revoked_encryption_key_is_not_sealed_to() -> None:
    d = _with_ggz_keys(
        _entry(SIG_OLD, "sig", T0, T0 + timedelta(days=365)),
        _entry(
            ENC_OLD,
            "enc",
            T0,
            T0 + timedelta(days=365),
            status="revoked",
            revoked_at=REVOKED_AT,
            revocation_reason="compromised",
        ),
        _entry(ENC_NEW, "enc", T0 + timedelta(days=60), T0 + timedelta(days=365)),
    )
    assert d.encryption_key(GGZ.oin, T0 + timedelta(days=70)).kid == ENC_NEW.kid
    with pytest.raises(LocalError):
        d.encryption_key(GGZ.oin, T0 + timedelta(days=55))
