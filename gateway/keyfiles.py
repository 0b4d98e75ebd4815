"""Key files: private keys as PKCS#8 PEM (mode 0600, optional passphrase), public keys as a JWK Set.

The shell around :mod:`gateway.core.keys` (docs/architecture.md §12: private keys in 0600
PKCS#8 files, optionally passphrase-protected). Guarantees:

- A private key file is created with ``O_CREAT | O_EXCL`` and mode ``0600`` from the start: it is
  never readable by others, not even for a moment, and an existing file is never overwritten.
- Loading a private key file that group or others may access logs a warning (``logging``, logger
  ``gateway.keyfiles``) naming the file and its mode, and still loads it: refusing would turn a
  deployment mistake into an outage, while the warning shows up in every start-up log.
- Errors (missing file, wrong passphrase, wrong key type) are :class:`~gateway.errors.LocalError`
  and never contain key material.

File layout of ``zvg keys generate --org OIN --out DIR`` (docs/decisions/0013-key-file-layout.md):
``DIR/<OIN>.signing.key.pem``, ``DIR/<OIN>.encryption.key.pem``, ``DIR/<OIN>.audit.key.pem``
(the Ed25519 key that signs audit-log checkpoints, docs/architecture.md §7: never reused for
messages) and
``DIR/<OIN>.public.jwks.json``. ``zvg keys rotate`` adds a tag: ``<OIN>.<tag>.signing.key.pem``.
"""

from __future__ import annotations

import json
import logging
import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, x25519

from gateway.core import jose
from gateway.core.keys import (
    DecryptionKey,
    EncryptionPublicKey,
    SigningKey,
    SigningPublicKey,
    Suite,
)
from gateway.errors import LocalError, RemoteError

__all__ = [
    "MAX_KEY_FILE_BYTES",
    "PRIVATE_KEY_MODE",
    "GeneratedKeys",
    "PublicKeys",
    "generate_keys",
    "jwks_document",
    "load_audit_key",
    "load_decryption_key",
    "load_public_keys",
    "load_signing_key",
    "read_passphrase",
    "write_private_key",
]

log = logging.getLogger("gateway.keyfiles")

#: Owner read/write only (docs/architecture.md §12).
PRIVATE_KEY_MODE = 0o600
#: Bits that must be clear on a private key file: any access by group or others.
_GROUP_OTHER_BITS = 0o077
#: Largest key file we read: a PKCS#8 PEM of a P-256 key is about 250 bytes, a JWK Set of a few
#: keys a few KiB; anything bigger is the wrong file.
MAX_KEY_FILE_BYTES = 64 * 1024


def _read_bounded(path: Path) -> bytes:
    try:
        with path.open("rb") as f:
            data = f.read(MAX_KEY_FILE_BYTES + 1)
    except OSError as exc:
        raise LocalError(f"cannot read key file {path}: {exc.strerror}") from None
    if len(data) > MAX_KEY_FILE_BYTES:
        raise LocalError(f"{path} is larger than {MAX_KEY_FILE_BYTES} bytes; not a key file")
    return data


def write_private_key(
    path: Path,
    key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | x25519.X25519PrivateKey,
    passphrase: bytes | None = None,
) -> None:
    """Write ``key`` as PKCS#8 PEM to a new file with mode 0600.

    With a ``passphrase`` the PEM is encrypted (``BestAvailableEncryption``: PBES2 with AES-256).
    Raises ``LocalError`` if ``path`` exists (never overwrites) or cannot be created.
    """
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_KEY_MODE)
    except FileExistsError:
        raise LocalError(f"{path} already exists; refusing to overwrite a key") from None
    except OSError as exc:
        raise LocalError(f"cannot create {path}: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), PRIVATE_KEY_MODE)  # the umask may have narrowed it; never widened
        f.write(pem)


def _load_private(path: Path, passphrase: bytes | None) -> Any:
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError as exc:
        raise LocalError(f"cannot read key file {path}: {exc.strerror}") from None
    if mode & _GROUP_OTHER_BITS:
        log.warning(
            "private key file %s has mode %04o: group or others can access it; run chmod 600",
            path,
            mode,
        )
    data = _read_bounded(path)
    try:
        return serialization.load_pem_private_key(data, password=passphrase or None)
    except TypeError:
        if passphrase:
            raise LocalError(f"{path} is not encrypted, but a passphrase was given") from None
        raise LocalError(f"{path} is encrypted; a passphrase is needed") from None
    except ValueError:
        raise LocalError(
            f"{path} is not a PKCS#8 PEM private key, or the passphrase is wrong"
        ) from None


def load_signing_key(path: Path, passphrase: bytes | None = None) -> SigningKey:
    """Load our signing key (P-256 or Ed25519) from a PKCS#8 PEM file; warns on a loose mode."""
    key = _load_private(path, passphrase)
    if isinstance(key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey):
        return SigningKey.from_key(key)
    raise LocalError(f"{path} does not hold a signing key (P-256 or Ed25519)")


def load_decryption_key(path: Path, passphrase: bytes | None = None) -> DecryptionKey:
    """Load one of our decryption keys (P-256 or X25519) from PKCS#8 PEM; warns on a loose mode."""
    key = _load_private(path, passphrase)
    if isinstance(key, x25519.X25519PrivateKey | ec.EllipticCurvePrivateKey):
        return DecryptionKey.from_key(key)
    raise LocalError(f"{path} does not hold an encryption key (P-256 or X25519)")


def load_audit_key(path: Path, passphrase: bytes | None = None) -> ed25519.Ed25519PrivateKey:
    """Load the Ed25519 audit-log (checkpoint) key from a PKCS#8 PEM file."""
    key = _load_private(path, passphrase)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key
    raise LocalError(f"{path} does not hold an Ed25519 audit-log key")


def audit_jwk(key: ed25519.Ed25519PublicKey) -> dict[str, str]:
    """The public JWK of an audit-log key: ``use`` ``audit`` (a private use value, RFC 7517
    §4.2), ``alg`` ``Ed25519``, ``kid`` its RFC 7638 thumbprint."""
    return {**jose.public_jwk(key), "kid": jose.thumbprint(key), "use": "audit", "alg": "Ed25519"}


def jwks_document(
    signing: Sequence[SigningPublicKey],
    encryption: Sequence[EncryptionPublicKey],
    org: str | None = None,
    audit: Sequence[ed25519.Ed25519PublicKey] = (),
) -> dict[str, Any]:
    """A JWK Set (RFC 7517 §5) of public keys, each with ``kid``, ``use`` and ``alg``.

    With ``org``, the set carries a ``zvg_org`` member naming the owner (RFC 7517 §5 lets a JWK
    Set have members a reader does not understand; readers ignore them).
    """
    doc: dict[str, Any] = {
        "keys": [k.jwk() for k in signing]
        + [k.jwk() for k in encryption]
        + [audit_jwk(k) for k in audit]
    }
    if org is not None:
        doc["zvg_org"] = org
    return doc


@dataclass(frozen=True)
class PublicKeys:
    """The keys of a JWK Set file, sorted by use, and the owner it names (if any)."""

    signing: list[SigningPublicKey]
    encryption: list[EncryptionPublicKey]
    org: str | None
    audit: list[ed25519.Ed25519PublicKey]


def load_public_keys(path: Path) -> PublicKeys:
    """Read a JWK Set (or a single JWK) and sort its keys by ``use`` (``sig`` / ``enc``).

    A key without ``use`` is classified by its curve (Ed25519: sig, X25519: enc); a P-256 key
    without ``use`` is refused as ambiguous. Raises ``LocalError`` for anything else.
    """
    data = _read_bounded(path)
    try:
        doc = json.loads(data)
    except ValueError:
        raise LocalError(f"{path} is not JSON") from None
    if not isinstance(doc, dict):
        raise LocalError(f"{path} is not a JWK or a JWK Set")
    entries = doc["keys"] if isinstance(doc.get("keys"), list) else [doc]
    signing: list[SigningPublicKey] = []
    encryption: list[EncryptionPublicKey] = []
    audit: list[ed25519.Ed25519PublicKey] = []
    for i, jwk in enumerate(entries):
        if not isinstance(jwk, dict):
            raise LocalError(f"{path}: key {i} is not a JSON object")
        use = jwk.get("use") or {"Ed25519": "sig", "X25519": "enc"}.get(jwk.get("crv", ""))
        try:
            if use == "sig":
                signing.append(SigningPublicKey.from_jwk(jwk))
            elif use == "enc":
                encryption.append(EncryptionPublicKey.from_jwk(jwk))
            elif use == "audit":
                key = jose.public_key_from_jwk(
                    jwk, "audit JWK", extra_members=frozenset({"kid", "use", "alg"})
                )
                if not isinstance(key, ed25519.Ed25519PublicKey):
                    raise LocalError(f"{path}: key {i}: an audit-log key must be Ed25519")
                audit.append(key)
            else:
                raise LocalError(f"{path}: key {i} has no use (sig/enc) and P-256 is ambiguous")
        except RemoteError as exc:
            raise LocalError(f"{path}: key {i}: {exc.detail}") from None
    org = doc.get("zvg_org")
    return PublicKeys(signing, encryption, org if isinstance(org, str) else None, audit)


@dataclass(frozen=True)
class GeneratedKeys:
    """Paths written by :func:`generate_keys` and the new keys' ids."""

    signing_key_file: Path
    encryption_key_file: Path
    audit_key_file: Path
    jwks_file: Path
    signing_kid: str
    encryption_kid: str


def generate_keys(
    org: str,
    out_dir: Path,
    suite: Suite,
    *,
    rand: Callable[[int], bytes],
    passphrase: bytes | None = None,
    tag: str | None = None,
) -> GeneratedKeys:
    """Make a signing key and an encryption key of ``suite`` and an Ed25519 audit-log key for
    ``org`` and write them.

    Private keys go to ``<org>.signing.key.pem``, ``<org>.encryption.key.pem`` and
    ``<org>.audit.key.pem`` (PKCS#8 PEM, 0600, encrypted when ``passphrase`` is given), public
    keys to ``<org>.public.jwks.json``; with ``tag`` (rotation) the names are
    ``<org>.<tag>.…``. Refuses (``LocalError``) before writing anything if any file exists.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = org if tag is None else f"{org}.{tag}"
    files = GeneratedKeys(
        signing_key_file=out_dir / f"{stem}.signing.key.pem",
        encryption_key_file=out_dir / f"{stem}.encryption.key.pem",
        audit_key_file=out_dir / f"{stem}.audit.key.pem",
        jwks_file=out_dir / f"{stem}.public.jwks.json",
        signing_kid="",
        encryption_kid="",
    )
    for path in (
        files.signing_key_file,
        files.encryption_key_file,
        files.audit_key_file,
        files.jwks_file,
    ):
        if path.exists():
            raise LocalError(f"{path} already exists; refusing to overwrite keys")
    signing = SigningKey.derive(suite, rand)
    decryption = DecryptionKey.derive(suite, rand)
    audit = ed25519.Ed25519PrivateKey.from_private_bytes(rand(32))
    doc = jwks_document([signing.public], [decryption.public], org, [audit.public_key()])
    write_private_key(files.signing_key_file, signing.private, passphrase)
    write_private_key(files.encryption_key_file, decryption.private, passphrase)
    write_private_key(files.audit_key_file, audit, passphrase)
    try:
        with files.jwks_file.open("x", encoding="utf-8") as f:
            f.write(json.dumps(doc, indent=2) + "\n")
    except FileExistsError:
        raise LocalError(f"{files.jwks_file} already exists; refusing to overwrite keys") from None
    return GeneratedKeys(
        signing_key_file=files.signing_key_file,
        encryption_key_file=files.encryption_key_file,
        audit_key_file=files.audit_key_file,
        jwks_file=files.jwks_file,
        signing_kid=signing.kid,
        encryption_kid=decryption.kid,
    )


def read_passphrase(path: Path) -> bytes:
    """The passphrase in ``path``: its first line without the line ending; never empty."""
    data = _read_bounded(path)
    line = data.splitlines()[0] if data else b""
    if not line:
        raise LocalError(f"{path} holds an empty passphrase")
    return line
