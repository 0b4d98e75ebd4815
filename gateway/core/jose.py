"""The JOSE primitives of the envelope profile, implemented directly on ``cryptography``.

Only what the fixed profile of docs/envelope.md needs, each done one way, strictly:

- base64url without padding, decoded strictly: only the RFC 4648 §5 alphabet, no padding, no
  whitespace, no impossible length, and the unused low bits of the last character must be zero, so
  every byte string has exactly one accepted encoding (RFC 7515 §2, RFC 4648 §3.5). Python's own
  decoder silently drops invalid characters; this one refuses them.
- JSON text (RFC 8259) parsed strictly: UTF-8 only (RFC 8259 §8.1), no duplicate member names
  (RFC 7515 §5.2 step 4 / RFC 7516 §5.2 step 4 allow refusing them; we must, or two libraries
  read two different headers), no ``NaN``/``Infinity``, the top level must be an object.
- RFC 7638 JWK thumbprints (SHA-256) as key ids.
- JWK <-> key conversion for the two suites only: EC P-256 (RFC 7518 §6.2), OKP Ed25519 and
  X25519 (RFC 8037 §2). Coordinates must have their full fixed length; P-256 points must lie on the
  curve (checked by ``cryptography`` when the key is built).
- ECDH-ES key agreement with the Concat KDF (RFC 7518 §4.6.2, NIST SP 800-56A §5.8.1) for
  ``ECDH-ES+A256KW``; X25519 shared secrets that are all zero (low-order points) are refused.
- AES Key Wrap (RFC 3394) with a 256-bit KEK (RFC 7518 §4.4), AES-256-GCM content encryption
  with a 96-bit IV and a 128-bit tag (RFC 7518 §5.3).
- ``ES256`` signatures as the 64-byte ``R || S`` concatenation (RFC 7518 §3.4), made
  deterministically (RFC 6979) so a seeded seal is reproducible; ``Ed25519`` signatures
  (RFC 8032, identifier from RFC 9864).
- Private keys derived from caller-supplied random bytes (the core never draws randomness):
  P-256 by FIPS 186-5 A.2.1 ("extra random bits", reduce mod ``n-1`` then add 1).

Every failure on untrusted input raises :class:`gateway.errors.RemoteError` with a coarse reason
and a precise detail that never contains key material or payload bytes.
"""

from __future__ import annotations

import binascii
import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any, Final

import orjson
import pybase64
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, x25519
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from gateway.errors import RemoteError
from schemas import strictjson

__all__ = [
    "A256KW_WRAPPED_BYTES",
    "CEK_BYTES",
    "GCM_IV_BYTES",
    "GCM_TAG_BYTES",
    "SIGNATURE_BYTES",
    "PrivateKey",
    "PublicKey",
    "Rand",
    "a256gcm_decrypt",
    "a256gcm_encrypt",
    "a256kw_unwrap",
    "a256kw_wrap",
    "b64u_decode",
    "b64u_encode",
    "concat_kdf_a256kw",
    "derive_ed25519",
    "derive_p256",
    "derive_x25519",
    "ecdh",
    "ed25519_sign",
    "ed25519_verify",
    "es256_sign",
    "es256_verify",
    "json_dumps",
    "parse_json_object",
    "private_jwk",
    "private_key_from_jwk",
    "public_jwk",
    "public_key_from_jwk",
    "thumbprint",
]

Rand = Callable[[int], bytes]
"""A source of random bytes: ``rand(n)`` returns ``n`` fresh random bytes (``os.urandom`` in the
shell; a seeded generator in tests and vector generation)."""

PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | x25519.X25519PublicKey
PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | x25519.X25519PrivateKey

#: AES-256 content-encryption key and key-encryption key length (RFC 7518 §4.4, §5.3).
CEK_BYTES: Final = 32
#: AES key wrap output for a 256-bit CEK: 64-bit integrity block + the key (RFC 3394 §2.2.1).
A256KW_WRAPPED_BYTES: Final = 40
#: A256GCM initialisation vector: 96 bits (RFC 7518 §5.3).
GCM_IV_BYTES: Final = 12
#: A256GCM authentication tag: 128 bits (RFC 7518 §5.3).
GCM_TAG_BYTES: Final = 16
#: ES256 ``R || S`` and Ed25519 signatures are both 64 bytes (RFC 7518 §3.4, RFC 8032 §5.1.6).
SIGNATURE_BYTES: Final = 64
#: P-256 coordinates and Curve25519 keys are 32 bytes (RFC 7518 §6.2.1.2, RFC 8037 §2).
COORD_BYTES: Final = 32

_P256 = ec.SECP256R1()
_P256_ORDER: Final = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256(), deterministic_signing=True)
_ECDSA_SHA256_VERIFY = ec.ECDSA(hashes.SHA256())
_ECDH = ec.ECDH()
_X962 = serialization.Encoding.X962
_UNCOMPRESSED = serialization.PublicFormat.UncompressedPoint

# ---------------------------------------------------------------------------------- base64url

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_VALUE = {ord(c): i for i, c in enumerate(_ALPHABET)}
_TO_STANDARD = bytes.maketrans(b"-_", b"+/")
_PADDING = (b"", b"", b"==", b"=")
#: ``altchars`` of :mod:`pybase64`: the two characters base64url uses for ``+`` and ``/``.
_URLSAFE = b"-_"


def b64u_encode(data: bytes) -> str:
    """Encode ``data`` as unpadded base64url text (RFC 7515 §2)."""
    return pybase64.b64encode_as_string(data, _URLSAFE).rstrip("=")


def b64u_decode(text: str | bytes, what: str = "base64url value") -> bytes:
    """Decode unpadded base64url strictly; the one canonical encoding of each byte string only.

    Raises ``RemoteError("malformed")`` for a character outside the alphabet (including ``=``,
    ``+``, ``/`` and whitespace), a length of ``1 mod 4`` (no byte string encodes to it) or
    non-zero unused bits in the last character (RFC 4648 §3.5: such text is not canonical).
    """
    if isinstance(text, str):
        if not text.isascii():
            raise RemoteError("malformed", f"{what}: character outside the base64url alphabet")
        raw = text.encode("ascii")
    else:
        raw = text
    # Translate to the standard alphabet, deleting '+', '/' and '=': a length change means one
    # of them was there (this pass replaces three scans).
    standard = raw.translate(_TO_STANDARD, b"+/=")
    if len(standard) != len(raw):
        raise RemoteError("malformed", f"{what}: character outside the base64url alphabet")
    rem = len(raw) % 4
    if rem == 1:
        raise RemoteError("malformed", f"{what}: impossible base64url length")
    if rem:
        # 2 characters carry 1 byte (4 spare bits), 3 characters carry 2 bytes (2 spare bits).
        last = _VALUE.get(raw[-1], 0)
        if last & (0x0F if rem == 2 else 0x03):
            raise RemoteError("malformed", f"{what}: non-canonical base64url (unused bits set)")
    try:
        # validate=True refuses every character outside the (translated) alphabet, whitespace
        # too. Positional arguments: keywords cost a third of a short decode.
        return pybase64.b64decode(standard + _PADDING[rem], None, True)
    except binascii.Error as exc:
        raise RemoteError("malformed", f"{what}: character outside the base64url alphabet") from exc


# ---------------------------------------------------------------------------------- JSON


class _DuplicateKeyError(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _DuplicateKeyError
    return obj


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(object_pairs_hook=_no_duplicates, parse_constant=_no_constants)


def parse_json_object(data: bytes | str, what: str = "JSON") -> dict[str, Any]:
    """Parse JSON text whose top level must be an object, refusing anything ambiguous.

    Raises ``RemoteError("malformed")`` for bytes that are not UTF-8 (a byte order mark included),
    invalid JSON, duplicate member names at any depth, ``NaN``/``Infinity``, integers beyond
    Python's digit limit, nesting deep enough to exhaust the recursion limit, or a top level that
    is not an object. Callers bound the input size first.

    Fast path: compact JSON that :mod:`orjson` writes back byte for byte, as every zv-gateway
    header and envelope is written (:func:`schemas.strictjson.compact_loads`, which says why that
    is safe). Anything else, valid or not, is decided by the strict decoder below.
    """
    if isinstance(data, bytes):
        fast = strictjson.compact_loads(data)
        if type(fast) is dict:
            return fast
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError as exc:
        raise RemoteError("malformed", f"{what}: not UTF-8") from exc
    try:
        value = _DECODER.decode(text)
    except _DuplicateKeyError as exc:
        raise RemoteError("malformed", f"{what}: duplicate member name") from exc
    except (ValueError, RecursionError) as exc:
        raise RemoteError("malformed", f"{what}: not valid JSON") from exc
    if not isinstance(value, dict):
        raise RemoteError("malformed", f"{what}: top level is not a JSON object")
    return value


def json_dumps(value: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON (no whitespace, members in the given order), as every header is sent.

    Written by :mod:`orjson`, whose output for strings, integers, booleans, ``null``, arrays and
    objects is byte-for-byte that of ``json.dumps(value, separators=(",", ":"),
    ensure_ascii=False)``; what ``orjson`` cannot write (integers beyond 64 bits, non-string
    member names) is written by ``json`` instead. A float (no profile header holds one) may be
    spelled differently from ``json``'s, as the same number.

    The result is copied into bytes of its own size: ``orjson`` leaves its output in an
    over-allocated buffer (32 KiB behind a 5 KB envelope; see home-assistant/core#181245), and a
    node keeps envelopes in memory until they are published.
    """
    try:
        return bytes(memoryview(orjson.dumps(value)))
    except orjson.JSONEncodeError:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


# ---------------------------------------------------------------------------------- JWK


def _coord(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise RemoteError("malformed", f"{what}: coordinate is not a string")
    raw = b64u_decode(value, what)
    if len(raw) != COORD_BYTES:
        raise RemoteError("malformed", f"{what}: coordinate is not {COORD_BYTES} bytes")
    return raw


_PUBLIC_MEMBERS = {
    ("EC", "P-256"): frozenset({"kty", "crv", "x", "y"}),
    ("OKP", "Ed25519"): frozenset({"kty", "crv", "x"}),
    ("OKP", "X25519"): frozenset({"kty", "crv", "x"}),
}


def _check_kty_crv(jwk: Mapping[str, Any], what: str) -> tuple[str, str]:
    kty, crv = jwk.get("kty"), jwk.get("crv")
    if isinstance(kty, str) and kty not in ("EC", "OKP"):
        raise RemoteError("unsupported", f"{what}: key type {kty[:16]!r} is outside the profile")
    if not isinstance(kty, str) or not isinstance(crv, str):
        raise RemoteError("malformed", f"{what}: kty and crv must be strings")
    if (kty, crv) not in _PUBLIC_MEMBERS:
        raise RemoteError(
            "unsupported", f"{what}: key type {kty}/{crv[:16]!r} is outside the profile"
        )
    return kty, crv


def public_key_from_jwk(
    jwk: Mapping[str, Any],
    what: str = "JWK",
    *,
    extra_members: frozenset[str] = frozenset(),
) -> PublicKey:
    """Build a public key from a JWK of the profile (EC P-256, OKP Ed25519 or OKP X25519).

    Members other than those RFC 7638 names for the key type (plus ``extra_members``) are
    refused, so a JWK cannot smuggle in anything (``d`` included). Raises
    ``RemoteError("unsupported")`` for another key type or curve, ``RemoteError("malformed")``
    for a wrong shape, and ``RemoteError("undecryptable")`` for a P-256 point not on the curve.
    """
    kty, crv = _check_kty_crv(jwk, what)
    allowed = _PUBLIC_MEMBERS[(kty, crv)]
    if not allowed <= jwk.keys() or not jwk.keys() <= allowed | extra_members:
        raise RemoteError("malformed", f"{what}: members are not those of a {crv} public key")
    x = _coord(jwk["x"], what)
    if crv == "X25519":
        return x25519.X25519PublicKey.from_public_bytes(x)
    if crv == "Ed25519":
        return ed25519.Ed25519PublicKey.from_public_bytes(x)
    y = _coord(jwk["y"], what)
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(_P256, b"\x04" + x + y)
    except ValueError as exc:
        raise RemoteError("undecryptable", f"{what}: point is not on P-256") from exc


def public_jwk(key: PublicKey) -> dict[str, str]:
    """The RFC 7638 required members of a public key, in thumbprint (lexicographic) order."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise TypeError("only P-256 EC keys are in the profile")
        point = key.public_bytes(_X962, _UNCOMPRESSED)
        return {
            "crv": "P-256",
            "kty": "EC",
            "x": b64u_encode(point[1:33]),
            "y": b64u_encode(point[33:]),
        }
    crv = "Ed25519" if isinstance(key, ed25519.Ed25519PublicKey) else "X25519"
    return {"crv": crv, "kty": "OKP", "x": b64u_encode(key.public_bytes_raw())}


def private_jwk(key: PrivateKey) -> dict[str, str]:
    """The public members plus ``d`` (RFC 7518 §6.2.2.1, RFC 8037 §2). This is key material."""
    jwk = public_jwk(key.public_key())
    if isinstance(key, ec.EllipticCurvePrivateKey):
        jwk["d"] = b64u_encode(key.private_numbers().private_value.to_bytes(COORD_BYTES, "big"))
    else:
        jwk["d"] = b64u_encode(key.private_bytes_raw())
    return jwk


def private_key_from_jwk(jwk: Mapping[str, Any], what: str = "private JWK") -> PrivateKey:
    """Build a private key from a JWK with ``d``; other members (``kid``, ``use``, ...) are ignored.

    The public members must match ``d``. Raises ``RemoteError`` like :func:`public_key_from_jwk`.
    """
    kty, crv = _check_kty_crv(jwk, what)
    d = _coord(jwk.get("d"), what)
    key: PrivateKey
    if crv == "X25519":
        key = x25519.X25519PrivateKey.from_private_bytes(d)
    elif crv == "Ed25519":
        key = ed25519.Ed25519PrivateKey.from_private_bytes(d)
    else:
        scalar = int.from_bytes(d, "big")
        if not 0 < scalar < _P256_ORDER:
            raise RemoteError("malformed", f"{what}: d is out of range")
        key = ec.derive_private_key(scalar, _P256)
    public = {m: jwk.get(m) for m in _PUBLIC_MEMBERS[(kty, crv)]}
    if public != public_jwk(key.public_key()):
        raise RemoteError("malformed", f"{what}: public members do not match d")
    return key


def thumbprint(key: PublicKey) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url): the key id (``kid``) of every profile key."""
    canonical = json.dumps(public_jwk(key), separators=(",", ":"), sort_keys=True)
    return b64u_encode(hashlib.sha256(canonical.encode("ascii")).digest())


# ---------------------------------------------------------------------------------- key derivation


def derive_p256(rand: Rand) -> ec.EllipticCurvePrivateKey:
    """A P-256 private key from 40 random bytes (FIPS 186-5 A.2.1: ``d = c mod (n-1) + 1``)."""
    c = int.from_bytes(rand(40), "big")
    return ec.derive_private_key(c % (_P256_ORDER - 1) + 1, _P256)


def derive_x25519(rand: Rand) -> x25519.X25519PrivateKey:
    """An X25519 private key from 32 random bytes (clamped by the implementation, RFC 7748 §5)."""
    return x25519.X25519PrivateKey.from_private_bytes(rand(32))


def derive_ed25519(rand: Rand) -> ed25519.Ed25519PrivateKey:
    """An Ed25519 private key from a 32-byte random seed (RFC 8032 §5.1.5)."""
    return ed25519.Ed25519PrivateKey.from_private_bytes(rand(32))


# ---------------------------------------------------------------------------------- ECDH-ES


def ecdh(
    private: ec.EllipticCurvePrivateKey | x25519.X25519PrivateKey,
    peer: ec.EllipticCurvePublicKey | x25519.X25519PublicKey,
) -> bytes:
    """The shared secret ``Z`` of two keys of the same curve (RFC 7518 §4.6, RFC 8037 §3.2).

    Raises ``RemoteError("undecryptable")`` when the curves differ or the X25519 result is all
    zero (a low-order peer point; ``cryptography`` refuses it).
    """
    try:
        if isinstance(private, x25519.X25519PrivateKey):
            if not isinstance(peer, x25519.X25519PublicKey):
                raise RemoteError("undecryptable", "ephemeral key is not on the recipient's curve")
            return private.exchange(peer)
        if not isinstance(peer, ec.EllipticCurvePublicKey):
            raise RemoteError("undecryptable", "ephemeral key is not on the recipient's curve")
        return private.exchange(_ECDH, peer)
    except ValueError as exc:
        raise RemoteError("undecryptable", "key agreement failed (invalid peer point)") from exc


_KDF_ALG_A256KW = b"\x00\x00\x00\x0eECDH-ES+A256KW"
_KDF_TAIL = b"\x00\x00\x00\x00" * 2 + (256).to_bytes(4, "big")  # empty apu, empty apv, keydatalen


def concat_kdf_a256kw(z: bytes) -> bytes:
    """The 256-bit KEK for ``ECDH-ES+A256KW`` (RFC 7518 §4.6.2) with empty ``apu``/``apv``.

    One SHA-256 round suffices for 256 bits: ``SHA-256(0x00000001 || Z || OtherInfo)`` where
    ``OtherInfo = len||"ECDH-ES+A256KW" || len||apu || len||apv || keydatalen(256)``.
    """
    return hashlib.sha256(b"\x00\x00\x00\x01" + z + _KDF_ALG_A256KW + _KDF_TAIL).digest()


def a256kw_wrap(kek: bytes, cek: bytes) -> bytes:
    """AES-256 Key Wrap (RFC 3394) of the content-encryption key."""
    return aes_key_wrap(kek, cek)


def a256kw_unwrap(kek: bytes, wrapped: bytes) -> bytes:
    """AES Key Unwrap; raises ``RemoteError("undecryptable")`` when the integrity check fails."""
    try:
        cek = aes_key_unwrap(kek, wrapped)
    except (InvalidUnwrap, ValueError) as exc:
        raise RemoteError("undecryptable", "key unwrap failed") from exc
    if len(cek) != CEK_BYTES:
        raise RemoteError("undecryptable", "unwrapped key is not 256 bits")
    return cek


# ---------------------------------------------------------------------------------- A256GCM


def a256gcm_encrypt(cek: bytes, iv: bytes, plaintext: bytes, aad: bytes) -> tuple[bytes, bytes]:
    """AES-256-GCM: returns ``(ciphertext, tag)`` (RFC 7518 §5.3)."""
    sealed = AESGCM(cek).encrypt(iv, plaintext, aad)
    return sealed[:-GCM_TAG_BYTES], sealed[-GCM_TAG_BYTES:]


def a256gcm_decrypt(cek: bytes, iv: bytes, ciphertext: bytes, tag: bytes, aad: bytes) -> bytes:
    """AES-256-GCM decryption; raises ``RemoteError("undecryptable")`` if authentication fails."""
    if len(iv) != GCM_IV_BYTES or len(tag) != GCM_TAG_BYTES:
        raise RemoteError("malformed", "IV or tag has the wrong length")
    try:
        return AESGCM(cek).decrypt(iv, ciphertext + tag, aad)
    except InvalidTag as exc:
        raise RemoteError("undecryptable", "content authentication failed") from exc


# ---------------------------------------------------------------------------------- signatures


def es256_sign(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    """ES256 signature as 64-byte ``R || S`` (RFC 7518 §3.4), deterministic per RFC 6979."""
    r, s = decode_dss_signature(key.sign(data, _ECDSA_SHA256))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def es256_verify(key: ec.EllipticCurvePublicKey, signature: bytes, data: bytes) -> bool:
    """True when ``signature`` is a valid 64-byte ``R || S`` ES256 signature of ``data``."""
    if len(signature) != SIGNATURE_BYTES:
        return False
    der = encode_dss_signature(
        int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    )
    try:
        key.verify(der, data, _ECDSA_SHA256_VERIFY)
    except InvalidSignature:
        return False
    return True


def ed25519_sign(key: ed25519.Ed25519PrivateKey, data: bytes) -> bytes:
    """Ed25519 signature (RFC 8032 §5.1.6)."""
    return key.sign(data)


def ed25519_verify(key: ed25519.Ed25519PublicKey, signature: bytes, data: bytes) -> bool:
    """True when ``signature`` is a valid Ed25519 signature of ``data`` (RFC 8032 §5.1.7)."""
    if len(signature) != SIGNATURE_BYTES:
        return False
    try:
        key.verify(signature, data)
    except InvalidSignature:
        return False
    return True
