"""The envelope test vectors (tests/vectors/envelope/*.json) and how they are made.

Run ``python scripts/gen_envelope_vectors.py`` to write them, ``--check`` to verify the committed
files are exactly what this module makes. Everything is deterministic: keys and all randomness
come from :class:`tests.envelope_forge.SeededRand`, and ES256 signatures follow RFC 6979.

Each vector is a JSON object (docs/envelope.md, "Test vectors"):

- ``description``: what it shows; ``suite``: ``p256``, ``curve25519`` or ``mixed``.
- ``now``: the receiver's clock (RFC 3339, UTC).
- ``recipient_private_jwk``: the receiver's decryption key (with ``d`` and ``kid``).
- ``sender_public_jwk``: the signing key the directory lists for the envelope's ``zvg_snd``.
- ``envelope``: the JWE JSON object; the bytes a receiver gets are its compact serialization
  (``json.dumps(envelope, separators=(",", ":"), ensure_ascii=False)`` in UTF-8).
- ``claims`` (the signed claims, when it opens) or ``error`` (the coarse reason it is refused).
- optional ``limits`` (overrides of the receiver's limits) and ``seen`` (``[sender, message id]``
  pairs the receiver has already accepted).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.core import envelope as env
from gateway.core import jose
from gateway.core.envelope import EnvelopeLimits, open_envelope
from gateway.core.keys import (
    DecryptionKey,
    KeyRing,
    SigningKey,
    SigningPublicKey,
    StaticSenderKeys,
    Suite,
)
from gateway.errors import RemoteError
from schemas.claims import ClaimsBase, claims_to_json, parse_claims
from tests.envelope_forge import (
    SeededRand,
    b64json,
    decryption_key,
    example_claims,
    forge,
    signing_key,
    unb64json,
)

__all__ = [
    "DIRECTORY",
    "EXPECTED_DETAIL",
    "build_vectors",
    "check",
    "envelope_bytes",
    "open_vector",
    "render",
]

DIRECTORY = Path(__file__).resolve().parent / "envelope"
P256, X25519 = Suite.P256, Suite.CURVE25519

# ------------------------------------------------------------------ the cast


def sender_key(suite: Suite, claims: ClaimsBase) -> SigningKey:
    """The signing key of the claims' sender org in ``suite``."""
    return signing_key(suite, f"org-{claims.sender.org}")


def org_key(suite: Suite, org: str) -> DecryptionKey:
    """The decryption key of ``org`` in ``suite``."""
    return decryption_key(suite, f"org-{org}")


def rfc3339(moment: datetime) -> str:
    """UTC time as RFC 3339 text with ``Z``."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: str) -> datetime:
    """Inverse of :func:`rfc3339`."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass
class Case:
    """Inputs of one vector: which claims, suites and recipients, and how to break it."""

    claims: ClaimsBase
    suite: Suite
    recipients: list[DecryptionKey]
    receiver: DecryptionKey
    seed: str
    now: datetime = field(init=False)

    def __post_init__(self) -> None:
        self.now = self.claims.created_at + timedelta(seconds=60)

    @property
    def sender(self) -> SigningKey:
        return sender_key(self.suite, self.claims)

    def envelope(self, **changes: Any) -> dict[str, Any]:
        """A validly encrypted envelope, with :func:`tests.envelope_forge.forge` changes."""
        return forge(
            self.claims,
            self.sender,
            [r.public for r in self.recipients],
            SeededRand(self.seed),
            **changes,
        )


def _case(
    name: str, suite: Suite, claims: str = "case.referral", n: int = 1, mixed: bool = False
) -> Case:
    c = example_claims(claims)
    orgs = list(c.recipient_orgs())[:n]
    keys = [org_key(X25519 if mixed and i == 1 else suite, org) for i, org in enumerate(orgs)]
    return Case(claims=c, suite=suite, recipients=keys, receiver=keys[-1], seed=f"vector/{name}")


def _protected(obj: dict[str, Any], **changes: Any) -> dict[str, Any]:
    header = unb64json(obj["protected"])
    header.update(changes)
    return {**obj, "protected": b64json(header)}


def _protected_text(obj: dict[str, Any], text: str) -> dict[str, Any]:
    return {**obj, "protected": jose.b64u_encode(text.encode("utf-8"))}


def _recipient(obj: dict[str, Any], index: int = -1, **changes: Any) -> dict[str, Any]:
    entries = [dict(e) for e in obj["recipients"]]
    entry = entries[index]
    header = {**entry["header"], **{k: v for k, v in changes.items() if k != "encrypted_key"}}
    entry["header"] = header
    if "encrypted_key" in changes:
        entry["encrypted_key"] = changes["encrypted_key"]
    entries[index] = entry
    return {**obj, "recipients": entries}


def _flip(b64: str, index: int) -> str:
    raw = bytearray(jose.b64u_decode(b64))
    raw[index] ^= 0x01
    return jose.b64u_encode(bytes(raw))


def _jws_header(case: Case, **changes: Any) -> dict[str, Any]:
    return {
        "alg": case.suite.signature_alg,
        "kid": case.sender.kid,
        "typ": "zvg-message+jws",
        **changes,
    }


# ------------------------------------------------------------------ the vectors


@dataclass
class Vector:
    """One vector: its case, how to build the envelope, and what a receiver must conclude."""

    name: str
    description: str
    case: Case
    build: Callable[[Case], dict[str, Any]]
    error: str | None = None
    now: Callable[[Case], datetime] | None = None
    limits: dict[str, Any] | None = None
    seen: bool = False

    def document(self) -> dict[str, Any]:
        c = self.case
        doc: dict[str, Any] = {
            "description": self.description,
            "suite": "mixed" if len({r.suite for r in c.recipients}) > 1 else c.suite.value,
            "now": rfc3339(self.now(c) if self.now else c.now),
            "recipient_private_jwk": {
                **jose.private_jwk(c.receiver.private),
                "kid": c.receiver.kid,
            },
            "sender_public_jwk": c.sender.public.jwk(),
        }
        if self.limits:
            doc["limits"] = self.limits
        if self.seen:
            doc["seen"] = [[c.claims.sender.org, c.claims.message_id]]
        doc["envelope"] = self.build(c)
        if self.error is None:
            doc["claims"] = json.loads(claims_to_json(c.claims))
        else:
            doc["error"] = self.error
        return doc


def _vectors() -> list[Vector]:
    v: list[Vector] = []

    def add(
        name: str,
        description: str,
        case: Case,
        build: Callable[[Case], dict[str, Any]],
        error: str | None = None,
        **kw: Any,
    ) -> None:
        v.append(Vector(name, description, case, build, error, **kw))

    good = lambda c: c.envelope()  # noqa: E731

    # --- success
    add(
        "p256-1-recipient",
        "P-256 suite, one recipient: opens and yields the signed claims.",
        _case("p256-1", P256),
        good,
    )
    add(
        "p256-3-recipients",
        "P-256 suite, three recipients; this is the third recipient's key.",
        _case("p256-3", P256, "info.request", 3),
        good,
    )
    add(
        "curve25519-1-recipient",
        "Curve25519 suite (Ed25519 + X25519), one recipient: opens.",
        _case("x-1", X25519),
        good,
    )
    add(
        "curve25519-3-recipients",
        "Curve25519 suite, three recipients; the third opens.",
        _case("x-3", X25519, "info.request", 3),
        good,
    )
    add(
        "mixed-suites",
        "An ES256 sender and recipients of both suites; the X25519 recipient opens.",
        _case("mixed", P256, "info.request", 2, mixed=True),
        good,
    )

    # --- algorithms and key types outside the two suites
    add(
        "p256-recipient-alg-dir",
        "Recipient alg 'dir' (direct key) is outside the profile.",
        _case("dir", P256),
        lambda c: _recipient(c.envelope(), alg="dir"),
        "unsupported",
    )
    add(
        "curve25519-recipient-alg-pbes2",
        "Recipient alg PBES2 (password-based) is outside the profile.",
        _case("pbes2", X25519),
        lambda c: _recipient(c.envelope(), alg="PBES2-HS512+A256KW"),
        "unsupported",
    )
    add(
        "p256-recipient-alg-rsa",
        "Recipient alg RSA-OAEP-256 is outside the profile.",
        _case("rsa", P256),
        lambda c: _recipient(c.envelope(), alg="RSA-OAEP-256"),
        "unsupported",
    )
    add(
        "p256-enc-a128gcm",
        "Content encryption A128GCM instead of A256GCM.",
        _case("a128", P256),
        lambda c: _protected(c.envelope(), enc="A128GCM"),
        "unsupported",
    )
    add(
        "curve25519-epk-crv-x448",
        "Ephemeral key on X448: a curve outside the profile.",
        _case("x448", X25519),
        lambda c: _recipient(
            c.envelope(), epk={"kty": "OKP", "crv": "X448", "x": jose.b64u_encode(b"\x05" * 56)}
        ),
        "unsupported",
    )
    add(
        "p256-epk-kty-rsa",
        "Ephemeral key of key type RSA.",
        _case("ktyrsa", P256),
        lambda c: _recipient(c.envelope(), epk={"kty": "RSA", "n": "AQAB", "e": "AQAB"}),
        "unsupported",
    )
    add(
        "p256-jws-alg-none",
        "Inner JWS with alg 'none' and no signature.",
        _case("none", P256),
        lambda c: c.envelope(
            inner=(
                b64json({"alg": "none", "kid": c.sender.kid, "typ": "zvg-message+jws"})
                + "."
                + jose.b64u_encode(claims_to_json(c.claims))
                + "."
            ).encode()
        ),
        "unsupported",
    )
    add(
        "curve25519-jws-alg-eddsa",
        "Inner JWS with the polymorphic 'EdDSA' (RFC 9864 deprecates it; "
        "the profile uses 'Ed25519').",
        _case("eddsa", X25519),
        lambda c: c.envelope(jws_header=_jws_header(c, alg="EdDSA")),
        "unsupported",
    )

    # --- header parameters outside the profile
    add(
        "p256-header-zip",
        "Protected header with 'zip' (compression): refused.",
        _case("zip", P256),
        lambda c: _protected(c.envelope(), zip="DEF"),
        "unsupported",
    )
    add(
        "p256-header-crit",
        "Protected header with 'crit': refused.",
        _case("crit", P256),
        lambda c: _protected(c.envelope(), crit=["zvg_mid"]),
        "unsupported",
    )
    add(
        "curve25519-header-jku",
        "Protected header with 'jku' (key URL injection): refused.",
        _case("jku", X25519),
        lambda c: _protected(c.envelope(), jku="https://attacker.example/jwks"),
        "unsupported",
    )
    add(
        "p256-recipient-header-jwk",
        "Recipient header with an embedded 'jwk' (key injection): refused.",
        _case("jwk", P256),
        lambda c: _recipient(c.envelope(), jwk=c.envelope()["recipients"][0]["header"]["epk"]),
        "unsupported",
    )
    add(
        "p256-header-x5u",
        "Protected header with 'x5u': refused.",
        _case("x5u", P256),
        lambda c: _protected(c.envelope(), x5u="https://attacker.example/cert"),
        "unsupported",
    )
    add(
        "curve25519-jws-header-x5c",
        "Inner JWS header with 'x5c' (certificate chain): refused.",
        _case("x5c", X25519),
        lambda c: c.envelope(jws_header=_jws_header(c, x5c=["MIIBAA"])),
        "unsupported",
    )
    add(
        "p256-header-unknown",
        "Protected header with an unknown parameter: refused (no negotiation).",
        _case("unknown", P256),
        lambda c: _protected(c.envelope(), zvg_purpose="ZVH.RISICO"),
        "unsupported",
    )

    # --- parsing
    add(
        "p256-duplicate-json-key",
        "Protected header JSON with a duplicate member name ('enc' twice).",
        _case("dup", P256),
        lambda c: _protected_text(
            c.envelope(),
            jose.b64u_decode(c.envelope()["protected"]).decode()[:-1] + ',"enc":"A128GCM"}',
        ),
        "malformed",
    )
    add(
        "curve25519-malformed-json",
        "Protected header that is not valid JSON (truncated).",
        _case("badjson", X25519),
        lambda c: _protected_text(
            c.envelope(), jose.b64u_decode(c.envelope()["protected"]).decode()[:-2]
        ),
        "malformed",
    )
    add(
        "p256-noncanonical-base64url",
        "Tag in base64url with non-zero unused bits (not canonical).",
        _case("b64", P256),
        lambda c: {
            **c.envelope(),
            "tag": c.envelope()["tag"][:-1]
            + jose._ALPHABET[jose._ALPHABET.index(c.envelope()["tag"][-1]) | 1],
        },
        "malformed",
    )

    # --- decryption
    add(
        "p256-not-for-us",
        "No recipient entry carries the receiver's key id.",
        _case("notforus", P256),
        lambda c: forge(
            c.claims, c.sender, [org_key(P256, "00000001999000009000").public], SeededRand(c.seed)
        ),
        "not_for_us",
    )
    add(
        "curve25519-wrong-key",
        "The entry names the receiver's kid but was encrypted to another key.",
        _case("wrongkey", X25519),
        lambda c: _recipient(
            forge(
                c.claims,
                c.sender,
                [org_key(X25519, "00000001999000009000").public],
                SeededRand(c.seed),
            ),
            kid=c.receiver.kid,
        ),
        "undecryptable",
    )
    add(
        "p256-invalid-curve-point",
        "Ephemeral P-256 key that is not on the curve (invalid-curve attack).",
        _case("offcurve", P256),
        lambda c: _recipient(
            c.envelope(),
            epk={
                **c.envelope()["recipients"][0]["header"]["epk"],
                "y": _flip(c.envelope()["recipients"][0]["header"]["epk"]["y"], 31),
            },
        ),
        "undecryptable",
    )
    add(
        "curve25519-low-order-point",
        "Ephemeral X25519 key of low order (all-zero shared secret).",
        _case("loworder", X25519),
        lambda c: _recipient(
            c.envelope(), epk={"crv": "X25519", "kty": "OKP", "x": jose.b64u_encode(b"\x00" * 32)}
        ),
        "undecryptable",
    )
    add(
        "p256-tampered-protected-header",
        "exp moved 60 s earlier after encryption: the AAD no longer matches.",
        _case("tamperhdr", P256),
        lambda c: _protected(c.envelope(), exp=int(c.claims.expires_at.timestamp()) - 60),
        "undecryptable",
    )
    add(
        "p256-tampered-aad",
        "The same header members re-serialized in another order: other AAD bytes.",
        _case("aad", P256),
        lambda c: {
            **c.envelope(),
            "protected": b64json(
                dict(reversed(list(unb64json(c.envelope()["protected"]).items())))
            ),
        },
        "undecryptable",
    )
    add(
        "p256-tampered-iv",
        "One bit of the IV flipped.",
        _case("iv", P256),
        lambda c: {**c.envelope(), "iv": _flip(c.envelope()["iv"], 0)},
        "undecryptable",
    )
    add(
        "curve25519-tampered-ciphertext",
        "One bit of the ciphertext flipped.",
        _case("ct", X25519),
        lambda c: {**c.envelope(), "ciphertext": _flip(c.envelope()["ciphertext"], 100)},
        "undecryptable",
    )
    add(
        "p256-tampered-tag",
        "One bit of the authentication tag flipped.",
        _case("tag", P256),
        lambda c: {**c.envelope(), "tag": _flip(c.envelope()["tag"], 15)},
        "undecryptable",
    )
    add(
        "curve25519-tampered-encrypted-key",
        "One bit of the wrapped content key flipped.",
        _case("ek", X25519),
        lambda c: _recipient(
            c.envelope(), encrypted_key=_flip(c.envelope()["recipients"][0]["encrypted_key"], 3)
        ),
        "undecryptable",
    )

    # --- content commitment and signature
    other_digest = jose.b64u_encode(hashlib.sha256(b"another message").digest())
    add(
        "p256-digest-mismatch",
        "zvg_dig commits to other content than the encrypted inner JWS.",
        _case("dig", P256),
        lambda c: c.envelope(header_changes={"zvg_dig": other_digest}),
        "bad_signature",
    )
    add(
        "curve25519-digest-mismatch",
        "zvg_dig commits to other content than the encrypted inner JWS.",
        _case("digx", X25519),
        lambda c: c.envelope(header_changes={"zvg_dig": other_digest}),
        "bad_signature",
    )
    add(
        "p256-signature-by-other-key",
        "Signed by another key under the sender's kid.",
        _case("forger", P256),
        lambda c: c.envelope(signature_key=signing_key(P256, "forger")),
        "bad_signature",
    )
    add(
        "curve25519-unknown-signing-key",
        "Signed by a key the directory does not list for the sender.",
        _case("stranger", X25519),
        lambda c: forge(
            c.claims,
            signing_key(X25519, "stranger"),
            [r.public for r in c.recipients],
            SeededRand(c.seed),
        ),
        "unknown_sender",
    )

    # --- claims
    add(
        "p256-routing-mismatch-message-id",
        "Outer zvg_mid differs from the signed message_id.",
        _case("mid", P256),
        lambda c: c.envelope(header_changes={"zvg_mid": "019cadd4-5620-7d6f-bd7a-000000000000"}),
        "invalid_claims",
    )
    add(
        "curve25519-routing-mismatch-recipients",
        "Outer zvg_rcp names an org the signed claims do not.",
        _case("rcp", X25519),
        lambda c: c.envelope(
            header_changes={"zvg_rcp": [*c.claims.recipient_orgs(), "00000001999000009000"]}
        ),
        "invalid_claims",
    )

    def contract_violation(c: Case) -> dict[str, Any]:
        data = json.loads(claims_to_json(c.claims))
        data["flags"]["police_data"] = False  # POLITIE is declared, so the flag must be set
        payload = json.dumps(data, separators=(",", ":")).encode()
        return c.envelope(inner=env._sign_jws(payload, c.sender))

    add(
        "p256-claims-contract-violation",
        "Signed claims that break the contract (flag and category disagree).",
        _case("contract", P256),
        contract_violation,
        "invalid_claims",
    )

    # --- receipts: single, and coalesced (docs/decisions/0006-coalesced-receipts.md)
    add(
        "p256-receipt",
        "A single receipt (one message's status with its inclusion proof): opens.",
        _case("receipt", P256, "receipt"),
        good,
    )
    add(
        "curve25519-receipt-coalesced",
        "A coalesced receipt: two entries, each with its own proof against one checkpoint.",
        _case("receipt-coalesced", X25519, "receipt-batch"),
        good,
    )

    def resigned(c: Case, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        data = json.loads(claims_to_json(c.claims))
        change(data)
        payload = json.dumps(data, separators=(",", ":")).encode()
        return c.envelope(inner=env._sign_jws(payload, c.sender))

    def twice(data: dict[str, Any]) -> None:
        data["body"]["entries"][1] = data["body"]["entries"][0]

    def too_many(data: dict[str, Any]) -> None:
        first = data["body"]["entries"][0]
        data["body"]["entries"] = [first] + [
            {**first, "message_id": f"019cadd4-5700-7a41-9c3e-{i:012x}"} for i in range(32)
        ]

    add(
        "p256-receipt-coalesced-duplicate-entry",
        "A coalesced receipt stating the same status about the same message twice.",
        _case("receipt-twice", P256, "receipt-batch"),
        lambda c: resigned(c, twice),
        "invalid_claims",
    )
    add(
        "p256-receipt-coalesced-too-many-entries",
        "A coalesced receipt with 33 entries (at most 32).",
        _case("receipt-33", P256, "receipt-batch"),
        lambda c: resigned(c, too_many),
        "invalid_claims",
    )

    # --- time, replay
    add(
        "p256-expired",
        "Received at exp: expired.",
        _case("expired", P256),
        good,
        "expired",
        now=lambda c: c.claims.expires_at,
    )

    def eight_days_old(c: Case) -> dict[str, Any]:
        iat = int(c.claims.created_at.timestamp())
        return c.envelope(header_changes={"iat": iat - 8 * 86400})

    add(
        "curve25519-iat-too-old",
        "iat eight days before now (more than 7 days old), exp still ahead.",
        _case("old", X25519),
        eight_days_old,
        "expired",
    )
    add(
        "p256-iat-in-future",
        "Received 10 minutes before iat (more than the 5-minute skew).",
        _case("future", P256),
        good,
        "expired",
        now=lambda c: c.claims.created_at - timedelta(minutes=10),
    )
    add(
        "p256-replayed",
        "(sender, message id) already accepted by this receiver.",
        _case("replay", P256),
        good,
        "replayed",
        seen=True,
    )

    # --- limits
    add(
        "p256-envelope-too-large",
        "Envelope over max_envelope_bytes (4096 here).",
        _case("big", P256),
        good,
        "too_large",
        limits={"max_envelope_bytes": 4096},
    )
    add(
        "curve25519-too-many-recipients",
        "Three recipient entries with max_recipients 2.",
        _case("many", X25519, "info.request", 3),
        good,
        "too_large",
        limits={"max_recipients": 2},
    )
    add(
        "p256-claims-too-large",
        "Claims over max_claims_bytes (1024 here).",
        _case("claimsbig", P256),
        good,
        "too_large",
        limits={"max_claims_bytes": 1024},
    )
    return v


#: The rule each refusing vector must trip (a substring of the internal detail), so a vector
#: cannot silently start failing for another reason with the same public code.
EXPECTED_DETAIL = {
    "p256-recipient-alg-dir": "recipient alg",
    "curve25519-recipient-alg-pbes2": "recipient alg",
    "p256-recipient-alg-rsa": "recipient alg",
    "p256-enc-a128gcm": "enc 'A128GCM'",
    "curve25519-epk-crv-x448": "epk 'OKP'/'X448'",
    "p256-epk-kty-rsa": "epk 'RSA'",
    "p256-jws-alg-none": "JWS alg 'none'",
    "curve25519-jws-alg-eddsa": "JWS alg 'EdDSA'",
    "p256-header-zip": "'zip'",
    "p256-header-crit": "'crit'",
    "curve25519-header-jku": "'jku'",
    "p256-recipient-header-jwk": "recipient header parameter outside the profile: 'jwk'",
    "p256-header-x5u": "'x5u'",
    "curve25519-jws-header-x5c": "JWS header parameter outside the profile: 'x5c'",
    "p256-header-unknown": "'zvg_purpose'",
    "p256-duplicate-json-key": "duplicate member",
    "curve25519-malformed-json": "not valid JSON",
    "p256-noncanonical-base64url": "non-canonical",
    "p256-not-for-us": "no recipient entry",
    "curve25519-wrong-key": "key unwrap failed",
    "p256-invalid-curve-point": "not on P-256",
    "curve25519-low-order-point": "invalid peer point",
    "p256-tampered-protected-header": "content authentication",
    "p256-tampered-aad": "content authentication",
    "p256-tampered-iv": "content authentication",
    "curve25519-tampered-ciphertext": "content authentication",
    "p256-tampered-tag": "content authentication",
    "curve25519-tampered-encrypted-key": "key unwrap failed",
    "p256-digest-mismatch": "zvg_dig commitment",
    "curve25519-digest-mismatch": "zvg_dig commitment",
    "p256-signature-by-other-key": "signature does not verify",
    "curve25519-unknown-signing-key": "no signing key",
    "p256-routing-mismatch-message-id": "signed message_id",
    "curve25519-routing-mismatch-recipients": "signed recipients",
    "p256-claims-contract-violation": "flags.police_data",
    "p256-receipt-coalesced-duplicate-entry": "receipt.body.batch.entries.1",
    "p256-receipt-coalesced-too-many-entries": "receipt.body.batch.entries",
    "p256-expired": "exp has passed",
    "curve25519-iat-too-old": "iat is older",
    "p256-iat-in-future": "iat lies further in the future",
    "p256-replayed": "already accepted",
    "p256-envelope-too-large": "envelope exceeds",
    "curve25519-too-many-recipients": "more than 2",
    "p256-claims-too-large": "largest inner JWS",
}


def build_vectors() -> dict[str, dict[str, Any]]:
    """Every vector document by file name (without ``.json``)."""
    return {vector.name: vector.document() for vector in _vectors()}


def render(doc: dict[str, Any]) -> str:
    """The committed text of a vector file."""
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


# ------------------------------------------------------------------ checking a vector


def envelope_bytes(doc: dict[str, Any]) -> bytes:
    """The envelope bytes a receiver gets for a vector."""
    return json.dumps(doc["envelope"], separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def open_vector(doc: dict[str, Any]) -> ClaimsBase:
    """Open a vector exactly as a receiver would; returns the claims or raises ``RemoteError``."""
    private = jose.private_key_from_jwk(doc["recipient_private_jwk"])
    assert not isinstance(private, Ed25519PrivateKey), "a recipient key is P-256 or X25519"
    own = DecryptionKey.from_key(private)
    raw = envelope_bytes(doc)
    header = _header(doc)
    sender = header.get("zvg_snd")
    org = sender if isinstance(sender, str) else ""
    lookup = StaticSenderKeys({org: [SigningPublicKey.from_jwk(doc["sender_public_jwk"])]})
    seen = {tuple(pair) for pair in doc.get("seen", [])}
    limits = EnvelopeLimits(**doc.get("limits", {}))
    message = open_envelope(
        raw,
        keyring=KeyRing([own]),
        sender_keys=lookup,
        now=parse_rfc3339(doc["now"]),
        is_replay=lambda s, m: (s, m) in seen,
        limits=limits,
    )
    return message.claims


def _header(doc: dict[str, Any]) -> dict[str, Any]:
    """The protected header as far as it decodes (the sender org names the directory entry)."""
    try:
        header = unb64json(doc["envelope"]["protected"])
    except (ValueError, KeyError, TypeError):
        return {}
    return header if isinstance(header, dict) else {}


def check(doc: dict[str, Any], detail: str | None = None) -> str | None:
    """``None`` when the vector behaves as it states (and, for a refusal, its internal detail
    contains ``detail``), else what went wrong."""
    try:
        claims = open_vector(doc)
    except RemoteError as exc:
        if doc.get("error") == exc.reason and (detail is None or detail in exc.detail):
            return None
        return f"refused ({exc.reason}: {exc.detail}), expected {doc.get('error') or 'success'}"
    if "claims" not in doc:
        return f"opened, expected {doc['error']}"
    if claims != parse_claims(json.dumps(doc["claims"])):
        return "opened to other claims than stated"
    return None
