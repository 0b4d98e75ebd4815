"""Interop with jwcrypto (independent JOSE implementation): both directions, both suites, 1 and 3
recipients. jwcrypto tries every recipient entry, so it gets a key set and a narrowed algorithm
list (docs/envelope.md §7); it writes the flattened serialization for one recipient, which the
test wraps in the general form our profile requires (RFC 7516 §7.2.2: same content, other shape)."""

from __future__ import annotations

import json
import os
from typing import Any

from jwcrypto import jwe, jwk, jws

from gateway.core import jose
from gateway.core.envelope import open_envelope, routing_header, seal
from schemas.claims import claims_to_json
from tests.envelope_forge import just_after, never_seen
from tests.interop.conftest import Parties

ALGS = ["ECDH-ES+A256KW", "A256GCM"]


def test_zvg_envelopes_open_with_jwcrypto(parties: Parties) -> None:
    raw = seal(
        parties.claims,
        signing_key=parties.sender,
        recipients=[r.public for r in parties.recipients],
        rand=os.urandom,
    ).raw
    for own in parties.recipients:
        keys = jwk.JWKSet()
        keys.add(jwk.JWK(**jose.private_jwk(own.private), kid=own.kid))
        token = jwe.JWE(algs=ALGS)
        token.deserialize(raw.decode(), key=keys)
        signed = jws.JWS()
        signed.allowed_algs = [parties.suite.signature_alg]
        signed.deserialize(token.payload.decode(), key=jwk.JWK(**parties.sender.public.jwk()))
        assert signed.payload == claims_to_json(parties.claims)
        assert signed.jose_header == {
            "alg": parties.suite.signature_alg,
            "kid": parties.sender.kid,
            "typ": "zvg-message+jws",
        }


def _general(serialized: str) -> dict[str, Any]:
    obj: dict[str, Any] = json.loads(serialized)
    if "recipients" not in obj:
        entry = {"header": obj.pop("header"), "encrypted_key": obj.pop("encrypted_key")}
        obj["recipients"] = [entry]
    return obj


def _jwcrypto_seal(parties: Parties) -> bytes:
    alg = parties.suite.signature_alg
    signed = jws.JWS(claims_to_json(parties.claims))
    signed.add_signature(
        jwk.JWK(**jose.private_jwk(parties.sender.private)),
        alg=alg,
        protected={"alg": alg, "kid": parties.sender.kid, "typ": "zvg-message+jws"},
    )
    inner = signed.serialize(compact=True).encode("ascii")
    token = jwe.JWE(inner, protected=json.dumps(routing_header(parties.claims, inner)))
    for r in parties.recipients:
        token.add_recipient(
            jwk.JWK(**r.public.jwk()), header={"alg": "ECDH-ES+A256KW", "kid": r.kid}
        )
    return json.dumps(_general(token.serialize(compact=False))).encode()


def test_jwcrypto_envelopes_open_in_zvg(parties: Parties) -> None:
    raw = _jwcrypto_seal(parties)
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


def test_mixed_suite_envelopes_interoperate_with_jwcrypto(mixed: Parties) -> None:
    test_zvg_envelopes_open_with_jwcrypto(mixed)
    test_jwcrypto_envelopes_open_in_zvg(mixed)
