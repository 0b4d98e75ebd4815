"""Envelope throughput: zv-gateway vs joserfc vs jwcrypto vs the bare asymmetric operations.

    .venv/bin/python -m benchmarks.envelope [--rounds N] [--ops N]

Seals/s and opens/s of one sign-then-encrypt envelope carrying 2 KiB of claims, for both key
suites and 1 and 3 recipients, measured for all implementations in the same run, in interleaved
rounds; each figure is the best round (these machines are shared and noisy, and interference only
ever slows a round down, so the fastest round is the closest to the real cost). Every
implementation does the same cryptographic work on the same keys and payload:

- seal: sign the claims (JWS compact), then encrypt to every recipient (JWE General JSON,
  ECDH-ES+A256KW + A256GCM) and serialise to bytes. zv-gateway also serialises the claims model.
- open: parse the envelope, decrypt our entry, verify the inner JWS. "zvg open" also validates
  the claims against the message contract (schemas/claims.py) as the node does; "zvg open (no
  contract)" stops after the signature, which is what the libraries do.
- floor: only the asymmetric (elliptic-curve) operations a seal or open cannot avoid, called
  directly on ``cryptography``: seal = 1 signature + per recipient an ephemeral key pair, its
  encoded public point and one ECDH; open = decoding (and so validating) the ephemeral point,
  1 ECDH and 1 signature verification. Everything else (JSON, base64url, AES, SHA-256, checks)
  is overhead above the floor.

Targets (issue 3): zv-gateway seal and open with 1 recipient at least 1.3x joserfc and within 1.3x
of the floor. Results go to benchmarks/results/envelope.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, x25519
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from joserfc import jwe as rfc_jwe
from joserfc import jws as rfc_jws
from joserfc.jwe import GeneralJSONEncryption, JWERegistry
from joserfc.jwk import ECKey, OKPKey
from joserfc.registry import HeaderParameter
from jwcrypto import jwe as c_jwe
from jwcrypto import jwk as c_jwk
from jwcrypto import jws as c_jws

from benchmarks._report import print_table, write_results
from gateway.core import envelope as env
from gateway.core import jose
from gateway.core.keys import DecryptionKey, KeyRing, SigningKey, StaticSenderKeys, Suite
from schemas.claims import ClaimsBase, claims_to_json, parse_claims
from tests.envelope_forge import example_claims

CLAIMS_BYTES = 2048
P256 = ec.SECP256R1()
X962 = serialization.Encoding.X962
UNCOMPRESSED = serialization.PublicFormat.UncompressedPoint
ALGS = ["ECDH-ES+A256KW", "A256GCM"]
ZVG_HEADERS = {
    name: HeaderParameter(name, kind)
    for name, kind in (
        ("zvg_mid", "str"),
        ("zvg_snd", "str"),
        ("zvg_rcp", "list[str]"),
        ("zvg_dig", "str"),
        ("iat", "int"),
        ("exp", "int"),
    )
}
RFC_REGISTRY = JWERegistry(
    header_registry=ZVG_HEADERS, algorithms=ALGS, verify_all_recipients=False
)


def claims_of_size(size: int) -> ClaimsBase:
    """Example case.status claims padded with a free-text note to exactly ``size`` JSON bytes."""
    base = json.loads(claims_to_json(example_claims("case.status")))
    base["data_categories"] = ["ID_PSEUDO", "VRIJE_TEKST"]
    base["body"]["note"] = ""
    pad = size - len(json.dumps(base, separators=(",", ":")).encode())
    base["body"]["note"] = ("Casus besproken; vervolgafspraken volgen. " * 100)[:pad]
    claims = parse_claims(json.dumps(base, separators=(",", ":")))
    assert len(claims_to_json(claims)) == size
    return claims


class Setup:
    """Keys, claims and the prepared envelopes of one (suite, recipients) combination."""

    def __init__(self, suite: Suite, n: int) -> None:
        self.suite = suite
        self.claims = claims_of_size(CLAIMS_BYTES)
        self.payload = claims_to_json(self.claims)
        self.sender = SigningKey.derive(suite, os.urandom)
        self.recipients = [DecryptionKey.derive(suite, os.urandom) for _ in range(n)]
        self.own = self.recipients[0]
        self.ring = KeyRing([self.own])
        self.lookup = StaticSenderKeys({self.claims.sender.org: [self.sender.public]})
        self.now = self.claims.created_at
        self.alg = suite.signature_alg
        # joserfc keys
        self.rfc_sender = _rfc_key(
            {**jose.private_jwk(self.sender.private), "kid": self.sender.kid}
        )
        self.rfc_sender_pub = _rfc_key(self.sender.public.jwk())
        self.rfc_recipients = [_rfc_key(r.public.jwk()) for r in self.recipients]
        self.rfc_own = _rfc_key({**jose.private_jwk(self.own.private), "kid": self.own.kid})
        # jwcrypto keys
        self.c_sender = c_jwk.JWK(**jose.private_jwk(self.sender.private))
        self.c_sender_pub = c_jwk.JWK(**self.sender.public.jwk())
        self.c_recipients = [c_jwk.JWK(**r.public.jwk()) for r in self.recipients]
        self.c_own = c_jwk.JWKSet()
        self.c_own.add(c_jwk.JWK(**jose.private_jwk(self.own.private), kid=self.own.kid))
        self.zvg_envelope = self.zvg_seal()
        self.rfc_envelope = self.rfc_seal()
        self.c_envelope = self.c_seal()
        # floor material
        self.peer_p256 = ec.derive_private_key(7, ec.SECP256R1()).public_key()
        self.peer_x25519 = x25519.X25519PrivateKey.from_private_bytes(b"\x07" * 32).public_key()
        self.peer_p256_raw = self.peer_p256.public_bytes(X962, UNCOMPRESSED)
        self.peer_x25519_raw = self.peer_x25519.public_bytes_raw()
        self.signature = self.sender.sign(self.payload)

    # --- zv-gateway
    def zvg_seal(self) -> bytes:
        return env.seal(
            self.claims,
            signing_key=self.sender,
            recipients=[r.public for r in self.recipients],
            rand=os.urandom,
        ).raw

    def zvg_open(self) -> Any:
        return env.open_envelope(
            self.zvg_envelope,
            keyring=self.ring,
            sender_keys=self.lookup,
            now=self.now,
            is_replay=lambda _s, _m: False,
        )

    def zvg_open_no_contract(self) -> Any:
        return env._authenticate(
            self.zvg_envelope,
            None,
            self.ring,
            self.lookup,
            self.now,
            lambda _s, _m: False,
            env.DEFAULT_LIMITS,
        )

    # --- joserfc
    def rfc_seal(self) -> bytes:
        inner = rfc_jws.serialize_compact(
            {"alg": self.alg, "kid": self.sender.kid, "typ": env.MESSAGE_TYP},
            self.payload,
            self.rfc_sender,
            algorithms=[self.alg],
        ).encode("ascii")
        obj = GeneralJSONEncryption(env.routing_header(self.claims, inner), inner)
        for r, key in zip(self.recipients, self.rfc_recipients, strict=True):
            obj.add_recipient({"alg": "ECDH-ES+A256KW", "kid": r.kid}, key)
        return json.dumps(rfc_jwe.encrypt_json(obj, None, registry=RFC_REGISTRY)).encode()

    def rfc_open(self) -> bytes:
        data = json.loads(self.rfc_envelope)
        data["recipients"] = [e for e in data["recipients"] if e["header"]["kid"] == self.own.kid]
        inner = rfc_jwe.decrypt_json(data, self.rfc_own, registry=RFC_REGISTRY).plaintext
        assert inner is not None
        payload: bytes = rfc_jws.deserialize_compact(
            inner, self.rfc_sender_pub, algorithms=[self.alg]
        ).payload
        return payload

    # --- jwcrypto
    def c_seal(self) -> bytes:
        signed = c_jws.JWS(self.payload)
        header = {"alg": self.alg, "kid": self.sender.kid, "typ": env.MESSAGE_TYP}
        signed.add_signature(self.c_sender, alg=self.alg, protected=header)
        inner = signed.serialize(compact=True).encode("ascii")
        token = c_jwe.JWE(inner, protected=json.dumps(env.routing_header(self.claims, inner)))
        for r, key in zip(self.recipients, self.c_recipients, strict=True):
            token.add_recipient(key, header={"alg": "ECDH-ES+A256KW", "kid": r.kid})
        serialized: str = token.serialize(compact=False)
        return serialized.encode()

    def c_open(self) -> bytes:
        token = c_jwe.JWE(algs=ALGS)
        token.deserialize(self.c_envelope.decode(), key=self.c_own)
        signed = c_jws.JWS()
        signed.allowed_algs = [self.alg]
        signed.deserialize(token.payload.decode(), key=self.c_sender_pub)
        payload: bytes = signed.payload
        return payload

    # --- the floor: bare asymmetric operations only
    def floor_seal(self) -> None:
        key = self.sender.private
        if isinstance(key, ed25519.Ed25519PrivateKey):
            key.sign(self.payload)
        else:
            key.sign(self.payload, ec.ECDSA(hashes.SHA256()))
        for _ in self.recipients:
            if self.suite is Suite.P256:
                eph = ec.derive_private_key(int.from_bytes(os.urandom(32)) >> 1 or 1, P256)
                eph.exchange(ec.ECDH(), self.peer_p256)
                eph.public_key().public_bytes(X962, UNCOMPRESSED)
            else:
                x_eph = x25519.X25519PrivateKey.from_private_bytes(os.urandom(32))
                x_eph.exchange(self.peer_x25519)
                x_eph.public_key().public_bytes_raw()

    def floor_open(self) -> None:
        own = self.own.private
        if isinstance(own, x25519.X25519PrivateKey):
            own.exchange(x25519.X25519PublicKey.from_public_bytes(self.peer_x25519_raw))
        else:
            own.exchange(
                ec.ECDH(), ec.EllipticCurvePublicKey.from_encoded_point(P256, self.peer_p256_raw)
            )
        key = self.sender.public.key
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(self.signature, self.payload)
        else:
            der = encode_dss_signature(
                int.from_bytes(self.signature[:32]), int.from_bytes(self.signature[32:])
            )
            key.verify(der, self.payload, ec.ECDSA(hashes.SHA256()))

    def check(self) -> None:
        """Every implementation opens every other's envelope before anything is timed."""
        assert self.zvg_open().claims == self.claims
        assert self.rfc_open() == self.payload
        assert self.c_open() == self.payload
        for raw in (self.rfc_envelope, _general(self.c_envelope)):
            opened = env.open_envelope(
                raw,
                keyring=self.ring,
                sender_keys=self.lookup,
                now=self.now,
                is_replay=lambda _s, _m: False,
            )
            assert opened.claims == self.claims


def _rfc_key(jwk: dict[str, str]) -> Any:
    members: dict[str, str | list[str]] = dict(jwk)
    return ECKey.import_key(members) if jwk["kty"] == "EC" else OKPKey.import_key(members)


def _general(raw: bytes) -> bytes:
    obj = json.loads(raw)
    if "recipients" not in obj:
        obj["recipients"] = [
            {"header": obj.pop("header"), "encrypted_key": obj.pop("encrypted_key")}
        ]
    return json.dumps(obj).encode()


def _rate(fn: Callable[[], object], ops: int) -> float:
    start = time.perf_counter()
    for _ in range(ops):
        fn()
    return ops / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds (best used)")
    parser.add_argument("--ops", type=int, default=100, help="operations per round")
    args = parser.parse_args()

    rows: list[list[Any]] = []
    results: dict[str, Any] = {"claims_bytes": CLAIMS_BYTES, "rounds": args.rounds, "ops": args.ops}
    for suite in Suite:
        for n in (1, 3):
            s = Setup(suite, n)
            s.check()
            impls: dict[str, Callable[[], object]] = {
                "zvg seal": s.zvg_seal,
                "joserfc seal": s.rfc_seal,
                "jwcrypto seal": s.c_seal,
                "floor seal": s.floor_seal,
                "zvg open": s.zvg_open,
                "zvg open (no contract)": s.zvg_open_no_contract,
                "joserfc open": s.rfc_open,
                "jwcrypto open": s.c_open,
                "floor open": s.floor_open,
            }
            for fn in impls.values():  # warm up
                _rate(fn, 20)
            samples: dict[str, list[float]] = {name: [] for name in impls}
            for _ in range(args.rounds):
                for name, fn in impls.items():
                    samples[name].append(_rate(fn, args.ops))
            rate = {name: max(v) for name, v in samples.items()}
            key = f"{suite.value}/{n}"
            results[key] = {name: round(r, 1) for name, r in rate.items()}
            for op in ("seal", "open"):
                joserfc, floor = rate[f"joserfc {op}"], rate[f"floor {op}"]
                for name in (m for m in impls if m.split(" ")[1] == op):
                    r = rate[name]
                    rows.append([suite.value, n, name, r, 1e6 / r, r / joserfc, floor / r])
                zvg = rate["zvg open (no contract)"] if op == "open" else rate["zvg seal"]
                results[key][f"zvg/joserfc {op}"] = round(zvg / joserfc, 2)
                results[key][f"zvg cost/floor {op}"] = round(floor / zvg, 2)
    print_table(
        ["suite", "rcpt", "implementation", "ops/s", "µs/op", "x joserfc", "cost / floor"], rows
    )
    write_results("envelope", results)


if __name__ == "__main__":
    main()
