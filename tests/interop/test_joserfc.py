"""Interop with joserfc (independent JOSE implementation): both directions, both suites, 1 and 3
recipients. joserfc must be told about our private header parameters (its registry refuses
unknown ones) and, for a multi-recipient JWE, be given only our own recipient entry with
``verify_all_recipients=False`` (docs/envelope.md §7)."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from joserfc import jwe, jws
from joserfc.jwe import GeneralJSONEncryption, JWERegistry
from joserfc.jwk import ECKey, OKPKey
from joserfc.registry import HeaderParameter

from gateway.core import jose
from gateway.core.envelope import open_envelope, routing_header, seal
from gateway.core.keys import DecryptionKey, EncryptionPublicKey, SigningKey, SigningPublicKey
from schemas.claims import claims_to_json
from tests.envelope_forge import just_after, never_seen
from tests.interop.conftest import Parties

#: Our private protected-header parameters, declared to joserfc (docs/envelope.md lists them).
ZVG_HEADERS = {
    "zvg_mid": HeaderParameter("zv-gateway message id (UUIDv7)", "str", required=True),
    "zvg_snd": HeaderParameter("zv-gateway sender OIN", "str", required=True),
    "zvg_rcp": HeaderParameter("zv-gateway recipient OINs", "list[str]", required=True),
    "zvg_dig": HeaderParameter("SHA-256 of the inner JWS", "str", required=True),
    "iat": HeaderParameter("issued at (NumericDate)", "int", required=True),
    "exp": HeaderParameter("expires (NumericDate)", "int", required=True),
}


def _registry() -> JWERegistry:
    return JWERegistry(
        header_registry=ZVG_HEADERS,
        algorithms=["ECDH-ES+A256KW", "A256GCM"],
        verify_all_recipients=False,
    )


def _key(members: dict[str, str]) -> Any:
    jwk: dict[str, str | list[str]] = dict(members)
    return ECKey.import_key(jwk) if jwk["kty"] == "EC" else OKPKey.import_key(jwk)


def _private(key: DecryptionKey | SigningKey) -> Any:
    return _key({**jose.private_jwk(key.private), "kid": key.kid})


def _public(key: EncryptionPublicKey | SigningPublicKey) -> Any:
    return _key(key.jwk())


def test_zvg_envelopes_open_with_joserfc(parties: Parties) -> None:
    raw = seal(
        parties.claims,
        signing_key=parties.sender,
        recipients=[r.public for r in parties.recipients],
        rand=os.urandom,
    ).raw
    data = json.loads(raw)
    for own in parties.recipients:
        mine = [e for e in data["recipients"] if e["header"]["kid"] == own.kid]
        only_mine: Any = {**data, "recipients": mine}
        decrypted = jwe.decrypt_json(only_mine, _private(own), registry=_registry())
        inner = decrypted.plaintext
        assert inner is not None
        assert decrypted.protected["zvg_dig"] == jose.b64u_encode(hashlib.sha256(inner).digest())
        verified = jws.deserialize_compact(
            inner, _public(parties.sender.public), algorithms=[parties.suite.signature_alg]
        )
        assert verified.payload == claims_to_json(parties.claims)
        assert verified.protected == {
            "alg": parties.suite.signature_alg,
            "kid": parties.sender.kid,
            "typ": "zvg-message+jws",
        }


def _joserfc_seal(parties: Parties) -> bytes:
    alg = parties.suite.signature_alg
    inner = jws.serialize_compact(
        {"alg": alg, "kid": parties.sender.kid, "typ": "zvg-message+jws"},
        claims_to_json(parties.claims),
        _private(parties.sender),
        algorithms=[alg],
    ).encode("ascii")
    obj = GeneralJSONEncryption(routing_header(parties.claims, inner), inner)
    for r in parties.recipients:
        obj.add_recipient({"alg": "ECDH-ES+A256KW", "kid": r.kid}, _public(r.public))
    return json.dumps(jwe.encrypt_json(obj, None, registry=_registry())).encode()


def test_joserfc_envelopes_open_in_zvg(parties: Parties) -> None:
    raw = _joserfc_seal(parties)
    for i, own in enumerate(parties.recipients):
        message = open_envelope(
            raw,
            keyring=parties.ring(i),
            sender_keys=parties.lookup(),
            now=just_after(parties.claims),
            is_replay=never_seen,
        )
        assert message.claims == parties.claims
        assert message.recipient_kid == own.kid
        assert message.sender_kid == parties.sender.kid


def test_mixed_suite_envelopes_interoperate_with_joserfc(mixed: Parties) -> None:
    test_zvg_envelopes_open_with_joserfc(mixed)
    test_joserfc_envelopes_open_in_zvg(mixed)
