"""The envelope: sign-then-encrypt with one fixed JOSE profile (docs/envelope.md).

An envelope is a JWE in General JSON Serialization (RFC 7516 §7.2.1, always the general form)
whose plaintext is a compact JWS (RFC 7515 §7.1) over the message claims (docs/contract.md) —
signed first, then encrypted (RFC 7519 §11.2).

Profile (anything else is refused):

- JWE members: exactly ``protected``, ``recipients``, ``iv``, ``ciphertext``, ``tag``. No shared
  ``unprotected`` header, no ``aad`` member: the protected header alone is the AAD
  (RFC 7516 §5.1 step 14).
- Protected header, exactly: ``typ`` = ``zvg-envelope+jwe``, ``enc`` = ``A256GCM``, ``zvg_mid``
  (message id, lower-case UUIDv7), ``zvg_snd`` (sender OIN), ``zvg_rcp`` (recipient OINs, distinct),
  ``iat`` and ``exp`` (NumericDate integers, RFC 7519 §2), ``zvg_dig`` (base64url SHA-256 of the
  inner compact JWS: the content commitment every recipient checks). Readable by the broker:
  nothing sensitive.
- Per-recipient header, exactly: ``alg`` = ``ECDH-ES+A256KW``, ``kid`` (RFC 7638 thumbprint of the
  recipient's key), ``epk`` (P-256 or X25519 public JWK, RFC 7518 §4.6.1.1). No ``apu``/``apv``.
- Inner JWS header, exactly: ``alg`` (``ES256`` | ``Ed25519``), ``kid`` (RFC 7638 thumbprint of
  the sender's signing key), ``typ`` = ``zvg-message+jws``. Payload: the claims JSON bytes.
- Refused everywhere: ``none``, ``dir``, PBES2, RSA, any other ``alg``/``enc``/``crv``/``kty``,
  ``zip``, ``crit``, ``jku``, ``jwk``, ``x5u``, ``x5c``, ``cty`` and every unknown parameter
  (closes algorithm confusion and key injection, RFC 8725 §2.1, §3.1); duplicate JSON member
  names; non-canonical base64url.

:func:`open_envelope` checks, in this order, cheap before costly so no public-key operation is
spent on junk: size → strict JSON → header profile → time window → replay → a recipient entry
for one of our keys → ECDH, key unwrap, AES-GCM → the digest commitment → inner JWS header →
sender key lookup (valid at ``iat``) → signature → claims contract → inner claims repeat the
routing header (message id, sender, recipient set, ``iat``, ``exp``). Every refusal is a
:class:`~gateway.errors.RemoteError` with a coarse public reason and a precise internal detail.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import InitVar, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric import ec, x25519
from pydantic import ValidationError

from gateway.core import jose
from gateway.core.keys import (
    KEY_AGREEMENT_ALG,
    DecryptionKey,
    EncryptionPublicKey,
    KeyRing,
    SenderKeyLookup,
    SigningKey,
    SigningPublicKey,
    Suite,
    suite_for_agreement_crv,
    suite_for_signature_alg,
)
from gateway.errors import LocalError, RemoteError
from schemas import limits as contract_limits
from schemas.claims import ClaimsBase, claims_to_json, parse_claims

__all__ = [
    "CONTENT_ENC",
    "DEFAULT_LIMITS",
    "ENVELOPE_TYP",
    "MAX_CLAIMS_BYTES",
    "MAX_ENVELOPE_BYTES",
    "MAX_FUTURE_SKEW",
    "MAX_IAT_AGE",
    "MAX_RECIPIENTS",
    "MESSAGE_TYP",
    "EnvelopeHeader",
    "EnvelopeLimits",
    "ReplayCheck",
    "SealedEnvelope",
    "VerifiedMessage",
    "check_time_window",
    "claims_refusal",
    "open_envelope",
    "peek_header",
    "routing_header",
    "seal",
    "verify_signed_claims",
]

# ------------------------------------------------------------------------------------ limits

#: Bytes of one envelope as received. A message is a structured case note, not a file transfer:
#: 2 KiB is typical, the largest handover with 50-item lists and free texts stays under 64 KiB;
#: 256 KiB leaves room while bounding parse cost and broker memory per message.
MAX_ENVELOPE_BYTES: Final = 256 * 1024
#: Recipient entries in one envelope, and organisations in ``zvg_rcp``. Equal to the contract's
#: recipient limit (``schemas.limits.MAX_RECIPIENTS``): each entry costs the receiver nothing,
#: but the sender one ECDH, and a larger fan-out is a broadcast the federation does not do.
MAX_RECIPIENTS: Final = contract_limits.MAX_RECIPIENTS
#: Bytes of the signed claims JSON (the inner JWS payload). Below the envelope limit once
#: base64url (4/3) and the JWS header and signature are added.
MAX_CLAIMS_BYTES: Final = 160 * 1024
#: Oldest ``iat`` accepted (docs/envelope.md §2.6): one week covers a long weekend of broker or
#: node outage plus retries, and bounds how long the receiver must remember ``(sender, message
#: id)`` pairs.
MAX_IAT_AGE: Final = timedelta(days=7)
#: How far ``iat`` may lie ahead of our clock (docs/envelope.md §2.6): NTP-synchronised nodes
#: differ by milliseconds; five minutes tolerates a badly set clock without accepting post-dated
#: messages.
MAX_FUTURE_SKEW: Final = timedelta(minutes=5)

#: Bytes the inner JWS may have beyond the base64url claims: its header (≈ 130 bytes), two dots
#: and the 86-character signature, with room to spare. Checked on the ciphertext before decrypting.
_JWS_OVERHEAD_BYTES: Final = 1024
#: Largest NumericDate accepted: 9999-12-31T23:59:59Z, the end of ``datetime``'s range.
_MAX_NUMERIC_DATE: Final = 253_402_300_799


@dataclass(frozen=True, slots=True)
class EnvelopeLimits:
    """The named bounds :func:`open_envelope` and :func:`peek_header` enforce (defaults above)."""

    max_envelope_bytes: int = MAX_ENVELOPE_BYTES
    max_recipients: int = MAX_RECIPIENTS
    max_claims_bytes: int = MAX_CLAIMS_BYTES
    max_iat_age: timedelta = MAX_IAT_AGE
    max_future_skew: timedelta = MAX_FUTURE_SKEW

    @property
    def max_inner_jws_bytes(self) -> int:
        """Largest inner JWS that can carry ``max_claims_bytes`` of claims."""
        return -(-self.max_claims_bytes * 4 // 3) + _JWS_OVERHEAD_BYTES


DEFAULT_LIMITS: Final = EnvelopeLimits()

# ------------------------------------------------------------------------------------ profile

#: ``typ`` of the outer JWE and of the inner JWS (RFC 7515 §4.1.9, without ``application/``).
ENVELOPE_TYP: Final = "zvg-envelope+jwe"
MESSAGE_TYP: Final = "zvg-message+jws"
#: The only content encryption of the profile.
CONTENT_ENC: Final = "A256GCM"

#: The protected header parameters, in the order :func:`routing_header` writes them.
_PROTECTED = ("typ", "enc", "zvg_mid", "zvg_snd", "zvg_rcp", "iat", "exp", "zvg_dig")
_PROTECTED_SET = frozenset(_PROTECTED)
_JWE_MEMBERS = frozenset({"protected", "recipients", "iv", "ciphertext", "tag"})
_RECIPIENT_MEMBERS = frozenset({"header", "encrypted_key"})
_RECIPIENT_HEADER = frozenset({"alg", "kid", "epk"})
_JWS_HEADER = frozenset({"alg", "kid", "typ"})

_UUID7 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
_OIN = re.compile(r"[0-9]{20}")
#: A SHA-256 thumbprint or digest in base64url: 43 characters, the last one canonical.
_B64U_SHA256 = re.compile(r"[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]")
_SAFE_NAME = re.compile(r"[A-Za-z0-9_.+-]{1,40}")
_P256 = ec.SECP256R1()

ReplayCheck = Callable[[str, str], bool]
"""``is_replay(sender_org, message_id)``: True when this pair was already accepted."""


def _name(value: object) -> str:
    """A header name or value fit for a log line (attacker-chosen: shown only when harmless)."""
    return repr(value) if isinstance(value, str) and _SAFE_NAME.fullmatch(value) else "<other>"


@dataclass(frozen=True, slots=True)
class EnvelopeHeader:
    """The protected header of an envelope that passed the profile checks (readable, unverified).

    What the broker consumer and the node may use before decrypting: who sent it, the message id,
    the time window, the content commitment and which keys it was encrypted to. None of it is
    authenticated until :func:`open_envelope` succeeds.
    """

    message_id: str
    sender_org: str
    recipient_orgs: tuple[str, ...]
    iat: int
    exp: int
    digest: bytes
    recipient_kids: tuple[str, ...]
    #: The rest of the envelope as :func:`peek_header` parsed it, so that
    #: ``open_envelope(raw, header=...)`` does not parse the same bytes twice. Module-private;
    #: not part of the header's value.
    _parsed: _Parsed | None = field(default=None, repr=False, compare=False)

    @property
    def issued_at(self) -> datetime:
        """``iat`` as an aware UTC datetime."""
        return datetime.fromtimestamp(self.iat, UTC)

    @property
    def expires_at(self) -> datetime:
        """``exp`` as an aware UTC datetime."""
        return datetime.fromtimestamp(self.exp, UTC)


@dataclass(frozen=True, slots=True)
class SealedEnvelope:
    """What :func:`seal` made: the envelope's bytes and the protected header it wrote into them,
    so the sender never parses its own envelope back for the message id or digest."""

    raw: bytes
    header: EnvelopeHeader

    @property
    def digest(self) -> bytes:
        """SHA-256 of the inner JWS (``zvg_dig``, the content commitment receipts name)."""
        return self.header.digest


class _Recipient:
    """One recipient entry that passed the profile: its kid, decoded epk and wrapped key."""

    __slots__ = ("encrypted_key", "epk_crv", "epk_point", "kid")

    def __init__(self, kid: str, epk_crv: str, epk_point: bytes, encrypted_key: bytes) -> None:
        self.kid = kid
        self.epk_crv = epk_crv  # "P-256" or "X25519"
        self.epk_point = epk_point  # x || y for P-256, x for X25519 (raw bytes)
        self.encrypted_key = encrypted_key


class _Parsed:
    """An envelope that passed the profile checks, decoded, besides its header (module-private):
    the bytes and limits it was parsed from and with, and the parts decryption needs."""

    __slots__ = ("ciphertext", "iv", "limits", "protected_b64", "raw", "recipients", "tag")

    def __init__(
        self,
        raw: bytes,
        limits: EnvelopeLimits,
        protected_b64: str,
        recipients: tuple[_Recipient, ...],
        iv: bytes,
        ciphertext: bytes,
        tag: bytes,
    ) -> None:
        self.raw = raw
        self.limits = limits
        self.protected_b64 = protected_b64
        self.recipients = recipients
        self.iv = iv
        self.ciphertext = ciphertext
        self.tag = tag


_WITNESS = object()


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifiedMessage:
    """A message whose envelope decrypted, whose signature verified and whose claims passed.

    Only :func:`open_envelope` can build one (the constructor demands a module-private witness and
    raises ``LocalError`` otherwise), so holding a ``VerifiedMessage`` means these checks ran.

    - ``claims``: the validated message claims (docs/contract.md).
    - ``inner_jws``: the exact compact JWS bytes the sender signed — keep them: they prove what
      the sender signed, to whom, for which purpose (non-repudiation).
    - ``sender_kid`` / ``recipient_kid``: the signing key and our decryption key that were used.
    - ``header``: the protected header, now authenticated (it was the AEAD's AAD).
    - ``digest``: SHA-256 of ``inner_jws`` (the content commitment; receipts name it).
    """

    claims: ClaimsBase
    inner_jws: bytes
    sender_kid: str
    recipient_kid: str
    header: EnvelopeHeader
    digest: bytes
    witness: InitVar[object] = None

    def __post_init__(self, witness: object) -> None:
        if witness is not _WITNESS:
            raise LocalError("only open_envelope() creates a VerifiedMessage")


# ------------------------------------------------------------------------------------ parsing


def _b64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise RemoteError("malformed", f"{what} is not a string")
    return jose.b64u_decode(value, what)


def _numeric_date(value: Any, what: str) -> int:
    if type(value) is not int:
        raise RemoteError("malformed", f"{what} is not an integer NumericDate")
    if not 0 < value <= _MAX_NUMERIC_DATE:
        raise RemoteError("malformed", f"{what} is out of range")
    return value


def _check_protected(
    header: dict[str, Any], limits: EnvelopeLimits
) -> tuple[str, str, tuple[str, ...], int, int, bytes]:
    if header.keys() != _PROTECTED_SET:
        unknown = header.keys() - _PROTECTED_SET
        if unknown:
            names = ", ".join(sorted(_name(n) for n in unknown))
            raise RemoteError(
                "unsupported", f"protected header parameter outside the profile: {names}"
            )
        missing = _PROTECTED_SET - header.keys()
        raise RemoteError("malformed", f"protected header lacks {', '.join(sorted(missing))}")
    if header["typ"] != ENVELOPE_TYP:
        raise RemoteError(
            "unsupported", f"envelope typ {_name(header['typ'])} is not {ENVELOPE_TYP}"
        )
    if header["enc"] != CONTENT_ENC:
        raise RemoteError("unsupported", f"enc {_name(header['enc'])} is not {CONTENT_ENC}")
    mid, snd, rcp = header["zvg_mid"], header["zvg_snd"], header["zvg_rcp"]
    if not isinstance(mid, str) or not _UUID7.fullmatch(mid):
        raise RemoteError("malformed", "zvg_mid is not a lower-case UUIDv7")
    if not isinstance(snd, str) or not _OIN.fullmatch(snd):
        raise RemoteError("malformed", "zvg_snd is not an OIN")
    if not isinstance(rcp, list) or not rcp:
        raise RemoteError("malformed", "zvg_rcp is not a non-empty list")
    if len(rcp) > limits.max_recipients:
        raise RemoteError("too_large", f"zvg_rcp names more than {limits.max_recipients} orgs")
    if not all(isinstance(r, str) and _OIN.fullmatch(r) for r in rcp):
        raise RemoteError("malformed", "zvg_rcp holds something that is not an OIN")
    if len(set(rcp)) != len(rcp):
        raise RemoteError("malformed", "zvg_rcp names an org twice")
    iat = _numeric_date(header["iat"], "iat")
    exp = _numeric_date(header["exp"], "exp")
    if exp <= iat:
        raise RemoteError("malformed", "exp is not after iat")
    dig = header["zvg_dig"]
    if not isinstance(dig, str) or not _B64U_SHA256.fullmatch(dig):
        raise RemoteError("malformed", "zvg_dig is not a base64url SHA-256 digest")
    return mid, snd, tuple(rcp), iat, exp, jose.b64u_decode(dig, "zvg_dig")


_EPK_MEMBERS = {
    "P-256": frozenset({"kty", "crv", "x", "y"}),
    "X25519": frozenset({"kty", "crv", "x"}),
}


def _check_epk(epk: Any) -> tuple[str, bytes]:
    if not isinstance(epk, dict):
        raise RemoteError("malformed", "epk is not a JSON object")
    kty, crv = epk.get("kty"), epk.get("crv")
    if not (isinstance(crv, str) and (kty, crv) in (("EC", "P-256"), ("OKP", "X25519"))):
        raise RemoteError("unsupported", f"epk {_name(kty)}/{_name(crv)} is outside the profile")
    if epk.keys() != _EPK_MEMBERS[crv]:
        raise RemoteError("unsupported", "epk members are not exactly those of its key type")
    point = _b64(epk["x"], "epk.x")
    if len(point) != jose.COORD_BYTES:
        raise RemoteError("malformed", f"epk.x is not {jose.COORD_BYTES} bytes")
    if crv == "P-256":
        y = _b64(epk["y"], "epk.y")
        if len(y) != jose.COORD_BYTES:
            raise RemoteError("malformed", f"epk.y is not {jose.COORD_BYTES} bytes")
        point += y
    return crv, point


def _check_recipient(entry: Any) -> _Recipient:
    if not isinstance(entry, dict):
        raise RemoteError("malformed", "recipient entry is not a JSON object")
    if entry.keys() != _RECIPIENT_MEMBERS:
        if entry.keys() - _RECIPIENT_MEMBERS:
            raise RemoteError("unsupported", "recipient entry has members outside the profile")
        raise RemoteError("malformed", "recipient entry lacks header or encrypted_key")
    header = entry["header"]
    if not isinstance(header, dict):
        raise RemoteError("malformed", "recipient header is not a JSON object")
    if header.keys() != _RECIPIENT_HEADER:
        unknown = header.keys() - _RECIPIENT_HEADER
        if unknown:
            names = ", ".join(sorted(_name(n) for n in unknown))
            raise RemoteError(
                "unsupported", f"recipient header parameter outside the profile: {names}"
            )
        raise RemoteError("malformed", "recipient header lacks alg, kid or epk")
    if header["alg"] != KEY_AGREEMENT_ALG:
        raise RemoteError(
            "unsupported", f"recipient alg {_name(header['alg'])} is not {KEY_AGREEMENT_ALG}"
        )
    kid = header["kid"]
    if not isinstance(kid, str) or not _B64U_SHA256.fullmatch(kid):
        raise RemoteError("malformed", "recipient kid is not an RFC 7638 thumbprint")
    crv, point = _check_epk(header["epk"])
    encrypted_key = _b64(entry["encrypted_key"], "encrypted_key")
    if len(encrypted_key) != jose.A256KW_WRAPPED_BYTES:
        raise RemoteError("malformed", "encrypted_key is not a wrapped 256-bit key")
    return _Recipient(kid, crv, point, encrypted_key)


def _parse(raw: bytes, limits: EnvelopeLimits) -> EnvelopeHeader:
    """The header of a profile envelope, carrying the rest of the parse (``_parsed``)."""
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise LocalError("an envelope is bytes")
    if len(raw) > limits.max_envelope_bytes:
        raise RemoteError("too_large", f"envelope exceeds {limits.max_envelope_bytes} bytes")
    raw = raw if isinstance(raw, bytes) else bytes(raw)
    jwe = jose.parse_json_object(raw, "envelope")
    if jwe.keys() != _JWE_MEMBERS:
        if jwe.keys() - _JWE_MEMBERS:
            names = ", ".join(sorted(_name(n) for n in jwe.keys() - _JWE_MEMBERS))
            raise RemoteError("unsupported", f"JWE member outside the profile: {names}")
        raise RemoteError(
            "malformed", "not a General JSON JWE (protected/recipients/iv/ciphertext/tag)"
        )
    protected_b64 = jwe["protected"]
    mid, snd, rcp, iat, exp, digest = _check_protected(
        jose.parse_json_object(_b64(protected_b64, "protected"), "protected header"), limits
    )
    entries = jwe["recipients"]
    if not isinstance(entries, list) or not entries:
        raise RemoteError("malformed", "recipients is not a non-empty list")
    if len(entries) > limits.max_recipients:
        raise RemoteError("too_large", f"more than {limits.max_recipients} recipient entries")
    recipients = tuple(_check_recipient(e) for e in entries)
    kids = tuple(r.kid for r in recipients)
    if len(set(kids)) != len(kids):
        raise RemoteError("malformed", "two recipient entries name the same kid")
    iv = _b64(jwe["iv"], "iv")
    tag = _b64(jwe["tag"], "tag")
    if len(iv) != jose.GCM_IV_BYTES or len(tag) != jose.GCM_TAG_BYTES:
        raise RemoteError("malformed", "iv or tag has the wrong length for A256GCM")
    ciphertext = _b64(jwe["ciphertext"], "ciphertext")
    if len(ciphertext) > limits.max_inner_jws_bytes:
        raise RemoteError("too_large", "ciphertext exceeds the largest inner JWS allowed")
    parsed = _Parsed(raw, limits, protected_b64, recipients, iv, ciphertext, tag)
    return EnvelopeHeader(mid, snd, rcp, iat, exp, digest, kids, parsed)


def _seconds(now: datetime) -> float:
    """``now`` as seconds since the epoch (NumericDate, RFC 7519 §2); ``LocalError`` if naive."""
    if not isinstance(now, datetime) or now.tzinfo is None or now.utcoffset() is None:
        raise LocalError("now must be a timezone-aware datetime")
    return now.timestamp()


def check_time_window(
    header: EnvelopeHeader, now: datetime, limits: EnvelopeLimits = DEFAULT_LIMITS
) -> None:
    """Refuse an envelope outside its time window: ``RemoteError("expired")`` when ``exp`` has
    passed (``now >= exp``, RFC 7519 §4.1.4), ``iat`` is more than ``limits.max_iat_age`` old, or
    ``iat`` is more than ``limits.max_future_skew`` ahead of ``now``."""
    _check_window(header, _seconds(now), limits)


def _check_window(header: EnvelopeHeader, t: float, limits: EnvelopeLimits) -> None:
    """:func:`check_time_window` for a ``now`` already checked, as seconds since the epoch."""
    if t >= header.exp:
        raise RemoteError("expired", "exp has passed")
    if header.iat > t + limits.max_future_skew.total_seconds():
        raise RemoteError("expired", "iat lies further in the future than the allowed skew")
    if header.iat < t - limits.max_iat_age.total_seconds():
        raise RemoteError("expired", "iat is older than the accepted age")


def peek_header(
    raw: bytes, *, limits: EnvelopeLimits = DEFAULT_LIMITS, now: datetime | None = None
) -> EnvelopeHeader:
    """The cheap checks only, without any key: size, strict JSON, the header profile and, when
    ``now`` is given, the time window. Returns the (unauthenticated) protected header.

    The broker consumer and the node use it to learn the sender, message id, ``exp`` and digest
    before spending a public-key operation, then hand it to ``open_envelope(raw, header=...)``,
    which does not parse the bytes again. Raises ``RemoteError`` exactly as
    :func:`open_envelope` would for the same checks.
    """
    header = _parse(raw, limits)
    if now is not None:
        check_time_window(header, now, limits)
    return header


# ------------------------------------------------------------------------------------ open

#: Field paths named in an ``invalid_claims`` detail; the rest are counted, not listed.
_MAX_PATHS_IN_DETAIL: Final = 8


def _path(error: Any) -> str:
    loc = list(error["loc"])
    if error["type"] == "extra_forbidden" and loc:
        loc[-1] = "<unexpected member>"  # its name came from the input: do not echo it
    return ".".join(str(p) for p in loc) or "(top)"


def claims_refusal(exc: ValidationError) -> RemoteError:
    """The refusal for claims that ``parse_claims`` rejected: ``RemoteError("malformed")`` when
    they are not strict JSON (duplicate member names, ``NaN``, not UTF-8, too deep: the same rule
    as for every other JSON in the envelope), else ``RemoteError("invalid_claims")`` naming the
    failing field paths but never their values (they may be personal data), nor the names of
    unexpected members."""
    errors = exc.errors(include_input=False, include_url=False)
    for error in errors:
        if error["type"] == "zvg_json":
            return RemoteError("malformed", f"claims: {error['msg']}")
    where = sorted({_path(e) for e in errors})
    shown = ", ".join(where[:_MAX_PATHS_IN_DETAIL])
    more = (
        f" and {len(where) - _MAX_PATHS_IN_DETAIL} more"
        if len(where) > _MAX_PATHS_IN_DETAIL
        else ""
    )
    return RemoteError("invalid_claims", f"claims violate the contract at: {shown}{more}")


def _decrypt(parsed: _Parsed, keyring: KeyRing) -> tuple[bytes, DecryptionKey]:
    for entry in parsed.recipients:
        own = keyring.get(entry.kid)
        if own is not None:
            break
    else:
        raise RemoteError("not_for_us", "no recipient entry for a key in our key ring")
    if suite_for_agreement_crv(entry.epk_crv) is not own.suite:
        raise RemoteError("undecryptable", "epk curve differs from our key's curve")
    epk: ec.EllipticCurvePublicKey | x25519.X25519PublicKey
    if entry.epk_crv == "X25519":
        epk = x25519.X25519PublicKey.from_public_bytes(entry.epk_point)
    else:
        try:
            epk = ec.EllipticCurvePublicKey.from_encoded_point(_P256, b"\x04" + entry.epk_point)
        except ValueError:
            raise RemoteError("undecryptable", "epk: point is not on P-256") from None
    kek = jose.concat_kdf_a256kw(jose.ecdh(own.private, epk))
    cek = jose.a256kw_unwrap(kek, entry.encrypted_key)
    aad = parsed.protected_b64.encode("ascii")
    plaintext = jose.a256gcm_decrypt(cek, parsed.iv, parsed.ciphertext, parsed.tag, aad)
    return plaintext, own


def _routing_mismatch(claims: ClaimsBase, header: EnvelopeHeader) -> str | None:
    if claims.message_id != header.message_id:
        return "message_id"
    if claims.sender.org != header.sender_org:
        return "sender.org"
    if {r.org for r in claims.recipients} != set(header.recipient_orgs):
        return "recipients"
    if claims.created_at.timestamp() != header.iat:
        return "created_at (iat)"
    if claims.expires_at.timestamp() != header.exp:
        return "expires_at (exp)"
    return None


@functools.lru_cache(maxsize=256)
def _check_jws_header(segment: bytes) -> tuple[Suite, str]:
    """The suite and ``kid`` of a profile JWS header (its base64url segment), or ``RemoteError``.

    Memoised: a sender's header is the same on every message, and only successful results are
    cached (an exception is never stored), so the cache holds at most 256 well-formed headers.
    """
    jws_header = jose.parse_json_object(jose.b64u_decode(segment, "JWS header"), "JWS header")
    if jws_header.keys() != _JWS_HEADER:
        unknown = jws_header.keys() - _JWS_HEADER
        if unknown:
            names = ", ".join(sorted(_name(n) for n in unknown))
            raise RemoteError("unsupported", f"JWS header parameter outside the profile: {names}")
        raise RemoteError("malformed", "JWS header lacks alg, kid or typ")
    alg, kid = jws_header["alg"], jws_header["kid"]
    suite = suite_for_signature_alg(alg) if isinstance(alg, str) else None
    if suite is None:
        raise RemoteError("unsupported", f"JWS alg {_name(alg)} is outside the profile")
    if jws_header["typ"] != MESSAGE_TYP:
        raise RemoteError("unsupported", f"JWS typ {_name(jws_header['typ'])} is not {MESSAGE_TYP}")
    if not isinstance(kid, str) or not _B64U_SHA256.fullmatch(kid):
        raise RemoteError("malformed", "JWS kid is not an RFC 7638 thumbprint")
    return suite, kid


class _Authenticated:
    """What the cryptographic stage of :func:`open_envelope` established (claims not yet parsed)."""

    __slots__ = ("digest", "header", "inner_jws", "payload", "recipient_kid", "sender_kid")

    def __init__(
        self,
        header: EnvelopeHeader,
        inner_jws: bytes,
        payload: bytes,
        digest: bytes,
        sender_kid: str,
        recipient_kid: str,
    ) -> None:
        self.header = header
        self.inner_jws = inner_jws
        self.payload = payload
        self.digest = digest
        self.sender_kid = sender_kid
        self.recipient_kid = recipient_kid


def _peeked(raw: bytes, header: EnvelopeHeader, limits: EnvelopeLimits) -> _Parsed:
    """The parse behind a header :func:`peek_header` returned for ``raw`` with ``limits``;
    ``LocalError`` for a header of other bytes or limits, or one that was not peeked."""
    parsed = header._parsed
    if parsed is None or (parsed.raw is not raw and parsed.raw != raw):
        raise LocalError("the header was not peeked from these envelope bytes")
    if parsed.limits != limits:
        raise LocalError("the header was peeked with other limits")
    return parsed


def _authenticate(
    raw: bytes,
    header: EnvelopeHeader | None,
    keyring: KeyRing,
    sender_keys: SenderKeyLookup,
    now: datetime,
    is_replay: ReplayCheck,
    limits: EnvelopeLimits,
) -> _Authenticated:
    """Every check of :func:`open_envelope` up to and including the signature (module-private)."""
    t = _seconds(now)
    if header is None:
        header = _parse(raw, limits)
    parsed = _peeked(raw, header, limits)
    header = replace(header, _parsed=None)  # the verified message keeps no ciphertext
    _check_window(header, t, limits)
    if is_replay(header.sender_org, header.message_id):
        raise RemoteError("replayed", "(sender, message id) was already accepted")

    inner, own = _decrypt(parsed, keyring)
    digest = hashlib.sha256(inner).digest()
    if not hmac.compare_digest(digest, header.digest):
        raise RemoteError("bad_signature", "inner JWS does not match the zvg_dig commitment")

    jws = _split_jws(inner, limits)
    _verify_jws(jws, sender_keys(header.sender_org, jws.kid, header.issued_at))
    return _Authenticated(header, inner, jws.payload, digest, jws.kid, own.kid)


class _Jws:
    """A profile compact JWS split into its parts (module-private)."""

    __slots__ = ("kid", "payload", "signature", "signing_input", "suite")

    def __init__(
        self, suite: Suite, kid: str, signing_input: bytes, payload: bytes, signature: bytes
    ) -> None:
        self.suite = suite
        self.kid = kid
        self.signing_input = signing_input
        self.payload = payload
        self.signature = signature


def _split_jws(inner: bytes, limits: EnvelopeLimits) -> _Jws:
    """The parts of a profile compact JWS (header checked, payload size bounded)."""
    parts = inner.split(b".")
    if len(parts) != 3:
        raise RemoteError("malformed", "inner JWS is not in compact serialization")
    suite, kid = _check_jws_header(parts[0])
    payload = jose.b64u_decode(parts[1], "JWS payload")
    if len(payload) > limits.max_claims_bytes:
        raise RemoteError("too_large", f"claims exceed {limits.max_claims_bytes} bytes")
    signature = jose.b64u_decode(parts[2], "JWS signature")
    return _Jws(suite, kid, parts[0] + b"." + parts[1], payload, signature)


def _verify_jws(jws: _Jws, sender_key: SigningPublicKey | None) -> None:
    if sender_key is None or sender_key.kid != jws.kid:
        raise RemoteError("unknown_sender", "no signing key with this kid for the sender at iat")
    if sender_key.suite is not jws.suite:
        raise RemoteError("bad_signature", "JWS alg is not the sender key's algorithm")
    if not sender_key.verify(jws.signature, jws.signing_input):
        raise RemoteError("bad_signature", "inner JWS signature does not verify")


def open_envelope(
    raw: bytes,
    *,
    header: EnvelopeHeader | None = None,
    keyring: KeyRing,
    sender_keys: SenderKeyLookup,
    now: datetime,
    is_replay: ReplayCheck,
    limits: EnvelopeLimits = DEFAULT_LIMITS,
) -> VerifiedMessage:
    """Decrypt and verify an envelope; the only way to obtain a :class:`VerifiedMessage`.

    ``keyring`` holds our own decryption keys (any may match a recipient entry); ``sender_keys``
    finds the sender's signing key valid at ``iat``; ``is_replay(sender_org, message_id)`` says
    whether the pair was already accepted (it is consulted, never updated: the caller records the
    pair when it durably stores the message). ``header``, when given, is what
    ``peek_header(raw, limits=limits)`` returned for these bytes: the envelope is then not parsed
    a second time. Raises ``RemoteError`` with the reason of the first rule that fails, in the
    order of the module docstring; nothing else for any input bytes. Raises ``LocalError`` for a
    naive ``now`` or a ``header`` not peeked from ``raw`` with ``limits``.
    """
    done = _authenticate(raw, header, keyring, sender_keys, now, is_replay, limits)
    try:
        claims = parse_claims(done.payload)
    except ValidationError as exc:
        raise claims_refusal(exc) from None
    mismatch = _routing_mismatch(claims, done.header)
    if mismatch is not None:
        raise RemoteError("invalid_claims", f"signed {mismatch} differs from the routing header")
    return VerifiedMessage(
        claims=claims,
        inner_jws=done.inner_jws,
        sender_kid=done.sender_kid,
        recipient_kid=done.recipient_kid,
        header=done.header,
        digest=done.digest,
        witness=_WITNESS,
    )


def verify_signed_claims(
    inner_jws: bytes, *, sender_keys: SenderKeyLookup, limits: EnvelopeLimits = DEFAULT_LIMITS
) -> ClaimsBase:
    """Verify a stored inner JWS offline (evidence bundles): profile header, the claimed
    sender's key valid at the claims' ``created_at``, the signature, then the contract. Returns
    the claims; raises ``RemoteError`` otherwise. The claims are parsed before the signature is
    checked only to find the sender and time; nothing unverified is returned."""
    jws = _split_jws(inner_jws, limits)
    try:
        claims = parse_claims(jws.payload)
    except ValidationError as exc:
        raise claims_refusal(exc) from None
    _verify_jws(jws, sender_keys(claims.sender.org, jws.kid, claims.created_at))
    return claims


# ------------------------------------------------------------------------------------ seal


@functools.lru_cache(maxsize=64)
def _profile_jws_header_b64(alg: str, kid: str) -> str:
    """base64url of the profile's JWS header for a signing key (the same for every message)."""
    return jose.b64u_encode(jose.json_dumps({"alg": alg, "kid": kid, "typ": MESSAGE_TYP}))


def _sign_jws(payload: bytes, key: SigningKey, header: Mapping[str, Any] | None = None) -> bytes:
    """Compact JWS of ``payload`` (RFC 7515 §7.1) with the profile header unless one is given."""
    header_b64 = (
        _profile_jws_header_b64(key.suite.signature_alg, key.kid)
        if header is None
        else jose.b64u_encode(jose.json_dumps(header))
    )
    signing_input = (header_b64 + "." + jose.b64u_encode(payload)).encode("ascii")
    return signing_input + b"." + jose.b64u_encode(key.sign(signing_input)).encode("ascii")


def _recipient_entry(recipient: EncryptionPublicKey, cek: bytes, rand: jose.Rand) -> dict[str, Any]:
    eph: x25519.X25519PrivateKey | ec.EllipticCurvePrivateKey
    if recipient.suite is Suite.CURVE25519:
        eph = jose.derive_x25519(rand)
    else:
        eph = jose.derive_p256(rand)
    z = jose.ecdh(eph, recipient.key)
    epk = jose.public_jwk(eph.public_key())
    return {
        "header": {"alg": KEY_AGREEMENT_ALG, "kid": recipient.kid, "epk": epk},
        "encrypted_key": jose.b64u_encode(jose.a256kw_wrap(jose.concat_kdf_a256kw(z), cek)),
    }


def _encrypt(
    protected: Mapping[str, Any],
    plaintext: bytes,
    recipients: Sequence[EncryptionPublicKey],
    rand: jose.Rand,
) -> dict[str, Any]:
    """The General JSON JWE object (RFC 7516 §7.2.1) of ``plaintext`` for ``recipients``."""
    protected_b64 = jose.b64u_encode(jose.json_dumps(protected))
    fresh = rand(jose.CEK_BYTES + jose.GCM_IV_BYTES)
    cek, iv = fresh[: jose.CEK_BYTES], fresh[jose.CEK_BYTES :]
    entries = [_recipient_entry(r, cek, rand) for r in recipients]
    ciphertext, tag = jose.a256gcm_encrypt(cek, iv, plaintext, protected_b64.encode("ascii"))
    return {
        "protected": protected_b64,
        "recipients": entries,
        "iv": jose.b64u_encode(iv),
        "ciphertext": jose.b64u_encode(ciphertext),
        "tag": jose.b64u_encode(tag),
    }


def routing_header(claims: ClaimsBase, inner_jws: bytes) -> dict[str, Any]:
    """The protected header for ``claims`` whose signed form is ``inner_jws`` (profile order)."""
    return _protected(_header_of(claims, hashlib.sha256(inner_jws).digest(), ()))


def _header_of(
    claims: ClaimsBase, digest: bytes, recipient_kids: tuple[str, ...]
) -> EnvelopeHeader:
    return EnvelopeHeader(
        message_id=claims.message_id,
        sender_org=claims.sender.org,
        recipient_orgs=tuple(claims.recipient_orgs()),
        iat=int(claims.created_at.timestamp()),
        exp=int(claims.expires_at.timestamp()),
        digest=digest,
        recipient_kids=recipient_kids,
    )


def _protected(header: EnvelopeHeader) -> dict[str, Any]:
    """The protected header members of ``header``, in profile order."""
    return {
        "typ": ENVELOPE_TYP,
        "enc": CONTENT_ENC,
        "zvg_mid": header.message_id,
        "zvg_snd": header.sender_org,
        "zvg_rcp": list(header.recipient_orgs),
        "iat": header.iat,
        "exp": header.exp,
        "zvg_dig": jose.b64u_encode(header.digest),
    }


def seal(
    claims: ClaimsBase,
    *,
    signing_key: SigningKey,
    recipients: Sequence[EncryptionPublicKey],
    rand: jose.Rand,
    limits: EnvelopeLimits = DEFAULT_LIMITS,
) -> SealedEnvelope:
    """Sign ``claims`` with ``signing_key``, then encrypt to every key in ``recipients``.

    Returns the envelope — ``raw``: the UTF-8 bytes of a General JSON JWE of the profile — with
    the protected header written into it (message id, digest, ...). ``recipients`` may
    mix both suites (one ephemeral key per recipient). ``rand`` supplies the CEK, the IV and the
    ephemeral keys; ES256 signatures are deterministic (RFC 6979), so a seeded ``rand`` gives
    identical envelopes. Raises ``LocalError`` for no recipients, more than
    ``limits.max_recipients``, the same key twice, claims over ``limits.max_claims_bytes`` or an
    envelope over ``limits.max_envelope_bytes`` (the receiver would refuse it).
    """
    if not recipients:
        raise LocalError("an envelope needs at least one recipient key")
    if len(recipients) > limits.max_recipients:
        raise LocalError(f"more than {limits.max_recipients} recipient keys")
    if len({r.kid for r in recipients}) != len(recipients):
        raise LocalError("the same recipient key is given twice")
    payload = claims_to_json(claims)
    if len(payload) > limits.max_claims_bytes:
        raise LocalError(f"claims exceed {limits.max_claims_bytes} bytes")
    inner = _sign_jws(payload, signing_key)
    header = _header_of(claims, hashlib.sha256(inner).digest(), tuple(r.kid for r in recipients))
    envelope = jose.json_dumps(_encrypt(_protected(header), inner, recipients, rand))
    if len(envelope) > limits.max_envelope_bytes:
        raise LocalError(f"envelope exceeds {limits.max_envelope_bytes} bytes")
    return SealedEnvelope(envelope, header)
