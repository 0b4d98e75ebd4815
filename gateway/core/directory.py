"""Verifying the federation directory: threshold signatures, versions, expiry, key lookups.

The directory (``schemas.directory.DirectoryPayload``) travels as a JWS in JSON General
Serialization (RFC 7515 §7.2.1) with one signature per authority key that signed it. Each
signature's protected header is exactly ``{"alg", "kid", "typ": "zvg-directory+jws"}`` with
``alg`` ``ES256`` or ``Ed25519``; no unprotected header. Rules, modelled on TUF's root metadata
(python-tuf ``trusted_metadata_set.py``):

- :func:`verify_signatures` returns a value — threshold, valid signers, missing signers, unknown
  signers (ignored) — and :func:`require_threshold` raises when the threshold is not met. A key
  counts once, however many signatures it made.
- The first directory a node trusts must be signed by a threshold of its own authority
  (:meth:`TrustedDirectory.first`); ops pin it (``directory.trust_anchor``).
- An update (:meth:`TrustedDirectory.update`) must have a strictly higher ``version`` (a rollback
  or a replay of an old or the same version is refused), be signed by a threshold of the
  **current** authority **and** a threshold of its **own** authority (so changing the authority
  keys or the threshold needs both), and not be expired.
- ``expires`` is enforced: an expired directory is refused, and :meth:`TrustedDirectory.status`
  reports ``expiring`` within the warning window.
- Key lookups implement rotation and revocation (docs/decisions/0021-revocation.md): a signing
  key is valid for a message whose ``iat`` is inside its window; a key revoked as ``superseded``
  still verifies messages sealed before ``revoked_at``; a key revoked as ``compromised`` verifies
  nothing any more. Senders seal to the newest valid encryption key of each recipient.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable
from dataclasses import InitVar, dataclass
from datetime import datetime, timedelta
from typing import Any, Final, Literal

from cryptography.hazmat.primitives.asymmetric import ed25519
from pydantic import ValidationError

from gateway.core import jose, note
from gateway.core.keys import EncryptionPublicKey, SigningKey, SigningPublicKey
from gateway.errors import LocalError, RemoteError
from schemas import strictjson
from schemas.catalogue import Catalogue
from schemas.directory import Authority, DirectoryPayload, KeyEntry, Member, PublicJwk

__all__ = [
    "DIRECTORY_TYP",
    "MAX_DIRECTORY_BYTES",
    "SignedDirectory",
    "TrustedDirectory",
    "VerificationResult",
    "add_signature",
    "encode_payload",
    "parse_signed",
    "require_threshold",
    "verify_signatures",
]

DIRECTORY_TYP: Final = "zvg-directory+jws"
#: Largest signed directory accepted (bytes). 500 members with a dozen keys each and a thousand
#: rules stay well under 4 MiB; anything larger is not a directory.
MAX_DIRECTORY_BYTES: Final = 4 * 1024 * 1024
#: Most signatures one directory may carry (authority keys are at most 16; leave room for
#: signatures by keys of a previous or next authority).
MAX_SIGNATURES: Final = 32
_SIG_ALGS: Final = frozenset({"ES256", "Ed25519"})


@dataclass(frozen=True)
class _Signature:
    kid: str
    alg: str
    protected_b64: str
    signature: bytes


@dataclass(frozen=True)
class SignedDirectory:
    """A directory parsed from its JWS JSON form: shape checked, signatures **not** verified."""

    payload: DirectoryPayload
    payload_b64: str
    signatures: tuple[_Signature, ...]

    @property
    def version(self) -> int:
        return self.payload.version

    def to_json(self) -> bytes:
        """The JWS JSON General Serialization bytes (signatures in the order they were made)."""
        return jose.json_dumps(
            {
                "payload": self.payload_b64,
                "signatures": [
                    {"protected": s.protected_b64, "signature": jose.b64u_encode(s.signature)}
                    for s in self.signatures
                ],
            }
        )

    def digest(self) -> str:
        """SHA-256 of the signed payload bytes (hex): names this exact version in logs."""
        return hashlib.sha256(jose.b64u_decode(self.payload_b64)).hexdigest()


def encode_payload(payload: DirectoryPayload) -> bytes:
    """The bytes authorities sign: the payload's compact JSON (``None`` fields omitted)."""
    return payload.model_dump_json(exclude_none=True).encode("utf-8")


def parse_signed(raw: bytes, *, catalogue: Catalogue) -> SignedDirectory:
    """Parse a signed directory strictly. Raises ``RemoteError`` (``too_large``, ``malformed``,
    ``unsupported`` or ``invalid_claims``) with a detail naming the problem."""
    if len(raw) > MAX_DIRECTORY_BYTES:
        raise RemoteError("too_large", f"directory exceeds {MAX_DIRECTORY_BYTES} bytes")
    try:
        doc = strictjson.loads(raw)
    except ValueError as exc:
        raise RemoteError("malformed", f"directory: {exc}") from None
    if not isinstance(doc, dict) or set(doc) != {"payload", "signatures"}:
        raise RemoteError("malformed", "directory: expected exactly 'payload' and 'signatures'")
    payload_b64, sigs = doc["payload"], doc["signatures"]
    if not isinstance(payload_b64, str) or not isinstance(sigs, list):
        raise RemoteError("malformed", "directory: payload must be a string, signatures a list")
    if len(sigs) > MAX_SIGNATURES:
        raise RemoteError("too_large", f"directory: more than {MAX_SIGNATURES} signatures")
    payload_bytes = jose.b64u_decode(payload_b64, "directory payload")
    try:
        payload = DirectoryPayload.model_validate_json(
            _strict(payload_bytes), context={"catalogue": catalogue}
        )
    except ValidationError as exc:
        first = exc.errors(include_input=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "payload"
        raise RemoteError("invalid_claims", f"directory {where}: {first['msg']}") from None
    return SignedDirectory(payload, payload_b64, tuple(_signature(s) for s in sigs))


def _strict(payload: bytes) -> bytes:
    try:
        strictjson.loads(payload)
    except ValueError as exc:
        raise RemoteError("malformed", f"directory payload: {exc}") from None
    return payload


def _signature(entry: Any) -> _Signature:
    if not isinstance(entry, dict) or set(entry) != {"protected", "signature"}:
        raise RemoteError(
            "malformed", "directory signature: expected exactly 'protected' and 'signature'"
        )
    protected_b64, sig = entry["protected"], entry["signature"]
    if not isinstance(protected_b64, str) or not isinstance(sig, str):
        raise RemoteError("malformed", "directory signature: members must be strings")
    header = jose.parse_json_object(
        jose.b64u_decode(protected_b64, "directory signature header"), "directory signature header"
    )
    if set(header) != {"alg", "kid", "typ"} or header["typ"] != DIRECTORY_TYP:
        raise RemoteError(
            "unsupported", f"directory signature header must be alg, kid, typ {DIRECTORY_TYP}"
        )
    alg, kid = header["alg"], header["kid"]
    if alg not in _SIG_ALGS or not isinstance(kid, str):
        raise RemoteError("unsupported", "directory signature: alg must be ES256 or Ed25519")
    return _Signature(kid, alg, protected_b64, jose.b64u_decode(sig, "directory signature"))


@dataclass(frozen=True)
class VerificationResult:
    """Who signed, against one authority (python-tuf's ``VerificationResult``)."""

    threshold: int
    signed: frozenset[str]
    missing: frozenset[str]
    unknown: frozenset[str]
    names: dict[str, str]

    @property
    def verified(self) -> bool:
        return len(self.signed) >= self.threshold

    def describe(self) -> str:
        """``2 of 3 (zvh-manager, ciso-police); missing: privacy-officer``."""
        signed = ", ".join(sorted(self.names.get(k, k) for k in self.signed)) or "none"
        text = f"{len(self.signed)} of {self.threshold} needed ({signed})"
        if self.missing:
            text += "; missing: " + ", ".join(sorted(self.names.get(k, k) for k in self.missing))
        return text


def _authority_keys(authority: Authority) -> dict[str, SigningPublicKey]:
    keys: dict[str, SigningPublicKey] = {}
    for entry in authority.keys:
        key = SigningPublicKey.from_jwk(entry.jwk.as_dict())
        if key.kid != entry.kid:
            raise RemoteError(
                "invalid_claims", f"authority key {entry.name}: kid is not its RFC 7638 thumbprint"
            )
        keys[entry.kid] = key
    return keys


def verify_signatures(signed: SignedDirectory, authority: Authority) -> VerificationResult:
    """Check every signature against ``authority``; signatures by other keys are ignored."""
    keys = _authority_keys(authority)
    good: set[str] = set()
    unknown: set[str] = set()
    payload_b64 = signed.payload_b64.encode("ascii")
    for sig in signed.signatures:
        key = keys.get(sig.kid)
        if key is None:
            unknown.add(sig.kid)
            continue
        if key.alg != sig.alg:
            continue
        if key.verify(sig.signature, sig.protected_b64.encode("ascii") + b"." + payload_b64):
            good.add(sig.kid)
    return VerificationResult(
        threshold=authority.threshold,
        signed=frozenset(good),
        missing=frozenset(set(keys) - good),
        unknown=frozenset(unknown),
        names={k.kid: k.name for k in authority.keys},
    )


def require_threshold(result: VerificationResult, whose: str) -> None:
    """Raise ``RemoteError("bad_signature")`` unless ``result`` meets its threshold."""
    if not result.verified:
        raise RemoteError(
            "bad_signature",
            f"directory not signed by a threshold of the {whose}: {result.describe()}",
        )


def add_signature(signed: SignedDirectory, key: SigningKey) -> SignedDirectory:
    """``signed`` with one more signature by ``key`` (replacing an earlier one by the same key)."""
    header = jose.b64u_encode(
        jose.json_dumps({"alg": key.suite.signature_alg, "kid": key.kid, "typ": DIRECTORY_TYP})
    )
    signature = key.sign(header.encode("ascii") + b"." + signed.payload_b64.encode("ascii"))
    others = tuple(s for s in signed.signatures if s.kid != key.kid)
    new = _Signature(key.kid, key.suite.signature_alg, header, signature)
    return SignedDirectory(signed.payload, signed.payload_b64, (*others, new))


def unsigned(payload: DirectoryPayload) -> SignedDirectory:
    """A directory version with no signatures yet (to be signed one authority at a time)."""
    return SignedDirectory(payload, jose.b64u_encode(encode_payload(payload)), ())


# ---------------------------------------------------------------------------- trusted state

Status = Literal["valid", "expiring", "expired"]


def _key_valid_at(entry: KeyEntry, at: datetime) -> bool:
    if not entry.not_before <= at < entry.not_after:
        return False
    if entry.status == "active":
        return True
    if entry.revocation_reason == "compromised" or entry.revoked_at is None:
        return False
    return at < entry.revoked_at


#: Module-private proof that a :class:`TrustedDirectory` is built by its own checks.
_WITNESS = object()


@dataclass(frozen=True)
class TrustedDirectory:
    """A directory whose signatures, version and expiry were checked. Moves only forward.

    Only :meth:`first` and :meth:`update` build one (a module-private witness guards the
    constructor), so holding a ``TrustedDirectory`` means those checks ran."""

    signed: SignedDirectory
    raw: bytes
    witness: InitVar[object] = None

    def __post_init__(self, witness: object) -> None:
        if witness is not _WITNESS:
            raise LocalError("only TrustedDirectory.first() or .update() creates one")

    @property
    def payload(self) -> DirectoryPayload:
        return self.signed.payload

    @property
    def version(self) -> int:
        return self.signed.payload.version

    @classmethod
    def first(
        cls, raw: bytes, *, now: datetime, catalogue: Catalogue, allow_expired: bool = False
    ) -> TrustedDirectory:
        """Trust a directory for the first time: a threshold of its own authority, not expired.

        ``allow_expired`` is only for re-loading the version a node trusted before (its own
        remembered state, from which a newer, unexpired version must then be reached)."""
        signed = parse_signed(raw, catalogue=catalogue)
        _check_catalogue(signed.payload, catalogue)
        require_threshold(verify_signatures(signed, signed.payload.authority), "its authority")
        if not allow_expired:
            _check_not_expired(signed.payload, now)
        return cls(signed, raw, witness=_WITNESS)

    def require_not_expired(self, now: datetime) -> TrustedDirectory:
        """This directory, or ``RemoteError("expired")``."""
        _check_not_expired(self.payload, now)
        return self

    def update(self, raw: bytes, *, now: datetime, catalogue: Catalogue) -> TrustedDirectory:
        """The next trusted state, or ``RemoteError`` (rollback, replay, signatures, expiry)."""
        signed = parse_signed(raw, catalogue=catalogue)
        new = signed.payload
        if new.federation != self.payload.federation:
            raise RemoteError("invalid_claims", "directory is for another federation")
        if new.version <= self.version:
            raise RemoteError(
                "replayed",
                f"directory version {new.version} is not newer than the trusted {self.version} "
                "(rollback or replay refused)",
            )
        _check_catalogue(new, catalogue)
        require_threshold(verify_signatures(signed, self.payload.authority), "current authority")
        require_threshold(verify_signatures(signed, new.authority), "new authority")
        _check_not_expired(new, now)
        return TrustedDirectory(signed, raw, witness=_WITNESS)

    def status(self, now: datetime, warning: timedelta) -> tuple[Status, timedelta]:
        """``valid``, ``expiring`` (within ``warning``) or ``expired``, and the time left."""
        left = self.payload.expires - now
        if left <= timedelta(0):
            return "expired", left
        return ("expiring" if left <= warning else "valid"), left

    # ------------------------------------------------------------------ lookups

    def member(self, org: str) -> Member | None:
        return self.payload.member(org)

    def signing_key(self, org: str, kid: str, at: datetime) -> SigningPublicKey | None:
        """The sender's signing key ``kid`` if valid for a message sealed at ``at``."""
        member = self.member(org)
        if member is None:
            return None
        for entry in member.keys:
            if entry.kid == kid and entry.use == "sig" and _key_valid_at(entry, at):
                return _signing_key(entry.jwk)
        return None

    def encryption_key(self, org: str, now: datetime) -> EncryptionPublicKey:
        """The newest encryption key of ``org`` valid now. Raises ``LocalError`` if none."""
        member = self.member(org)
        candidates = [
            e for e in (member.keys if member else ()) if e.use == "enc" and _key_valid_at(e, now)
        ]
        if not candidates:
            raise LocalError(f"no valid encryption key for {org} in directory v{self.version}")
        newest = max(candidates, key=lambda e: e.not_before)
        return _encryption_key(newest.jwk)

    def audit_keys(self, org: str, at: datetime) -> list[ed25519.Ed25519PublicKey]:
        """The audit-log (checkpoint) keys of ``org`` valid at ``at``."""
        member = self.member(org)
        return [
            ed25519.Ed25519PublicKey.from_public_bytes(jose.b64u_decode(entry.jwk.x, "audit key"))
            for entry in (member.keys if member else ())
            if entry.use == "audit" and _key_valid_at(entry, at)
        ]

    def audit_log_keys(self, org: str, at: datetime) -> list[note.NoteVerifier]:
        """The note verifiers of ``org``'s audit-log (checkpoint) keys valid at ``at``, named by
        its log's origin: what :func:`gateway.core.note.open_checkpoint` takes as ``log_keys``
        (built once per key: the verifier checks the point and hashes its key id)."""
        member = self.member(org)
        origin = self.audit_origin(org)
        return [
            _audit_verifier(origin, entry.jwk.x)
            for entry in (member.keys if member else ())
            if entry.use == "audit" and _key_valid_at(entry, at)
        ]

    def audit_origin(self, org: str) -> str:
        """The checkpoint origin of ``org``'s audit log (``<federation>.zvg/<OIN>/audit-log``)."""
        return note.audit_log_origin(f"{self.payload.federation}.zvg", org)

    def witness_name(self, org: str) -> str:
        """The cosigner key name of ``org``'s node as a witness."""
        return note.witness_key_name(f"{self.payload.federation}.zvg", org)

    def witness_threshold(self) -> int:
        """How many partners must have cosigned a checkpoint of a member's log before the records
        it covers count as witnessed (``DirectoryPayload.witnesses_needed``)."""
        return self.payload.witnesses_needed()

    def names(self) -> dict[str, str]:
        """OIN → organisation name, for readable explanations."""
        return {m.oin: m.name for m in self.payload.members}

    def orgs_of_user(self) -> dict[str, str]:
        """Broker user → OIN."""
        return {m.broker_user: m.oin for m in self.payload.members}


@functools.lru_cache(maxsize=1024)
def _audit_verifier(origin: str, x: str) -> note.NoteVerifier:
    """The note verifier of an audit key (``x``: its base64url Ed25519 point) for ``origin``."""
    return note.ed25519_verifier(origin, jose.b64u_decode(x, "audit key"))


@functools.lru_cache(maxsize=1024)
def _signing_key(jwk: PublicJwk) -> SigningPublicKey:
    """The key object of a directory JWK (decoding a point costs more than a signature check;
    frozen JWK models are hashable, and a changed JWK is a different cache entry)."""
    return SigningPublicKey.from_jwk(jwk.as_dict())


@functools.lru_cache(maxsize=1024)
def _encryption_key(jwk: PublicJwk) -> EncryptionPublicKey:
    return EncryptionPublicKey.from_jwk(jwk.as_dict())


def _check_not_expired(payload: DirectoryPayload, now: datetime) -> None:
    if payload.expires <= now:
        raise RemoteError(
            "expired", f"directory version {payload.version} expired at {payload.expires:%Y-%m-%d}"
        )


def _check_catalogue(payload: DirectoryPayload, catalogue: Catalogue) -> None:
    want = payload.catalogue_version.split(".")[0]
    have = catalogue.version.split(".")[0]
    if want != have:
        raise LocalError(
            f"directory v{payload.version} uses catalogue {payload.catalogue_version}, "
            f"this node has {catalogue.version} (major versions differ)"
        )


def kids_of(entries: Iterable[KeyEntry]) -> list[str]:
    return [e.kid for e in entries]
