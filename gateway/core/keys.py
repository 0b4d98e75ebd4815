"""Keys of the envelope profile: the two suites, key wrappers with ``kid`` and suite, key rings.

Rules enforced here (docs/envelope.md §1):

- Exactly two suites. **P-256**: signatures ``ES256``, key agreement ``ECDH-ES+A256KW`` on P-256
  (mandatory to implement). **Curve25519**: signatures ``Ed25519`` (RFC 9864), key agreement
  ``ECDH-ES+A256KW`` on X25519 (RFC 8037). A key belongs to exactly one suite, decided by its
  type; nothing else can be wrapped.
- Every key's id is its RFC 7638 JWK thumbprint, computed here, never taken from input.
- Signing keys and encryption keys are different types: one can never be passed for the other
  (a P-256 key used for both would be allowed by the curve, not by these types).
- A :class:`KeyRing` of own decryption keys is never empty (``cryptography``'s ``MultiFernet``
  rule): during rotation it holds the new key and the old ones still being used by senders.

Wrappers are immutable and compare by ``kid``. Nothing here reads files or draws randomness: key
material comes in as ``cryptography`` objects or is derived from caller-supplied random bytes.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Protocol, cast

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, x25519

from gateway.core import jose
from gateway.errors import LocalError, RemoteError

__all__ = [
    "KEY_AGREEMENT_ALG",
    "DecryptionKey",
    "EncryptionPublicKey",
    "KeyRing",
    "SenderKeyLookup",
    "SigningKey",
    "SigningPublicKey",
    "StaticSenderKeys",
    "Suite",
]

#: The only key-management algorithm of the profile, in both suites (RFC 7518 §4.6).
KEY_AGREEMENT_ALG = "ECDH-ES+A256KW"


class Suite(enum.Enum):
    """A key suite (docs/envelope.md §1); its value is the name in config files and the CLI."""

    P256 = "p256"
    CURVE25519 = "curve25519"

    @property
    def signature_alg(self) -> str:
        """JWS ``alg`` of this suite's signing keys: ``ES256`` or ``Ed25519`` (RFC 9864)."""
        return "ES256" if self is Suite.P256 else "Ed25519"

    @property
    def signature_crv(self) -> str:
        """JWK ``crv`` of this suite's signing keys."""
        return "P-256" if self is Suite.P256 else "Ed25519"

    @property
    def agreement_crv(self) -> str:
        """JWK ``crv`` of this suite's encryption (key agreement) keys."""
        return "P-256" if self is Suite.P256 else "X25519"


_SUITE_BY_SIG_ALG = {s.signature_alg: s for s in Suite}
_SUITE_BY_AGREEMENT_CRV = {s.agreement_crv: s for s in Suite}


def suite_for_signature_alg(alg: str) -> Suite | None:
    """The suite whose JWS ``alg`` is ``alg``, or ``None`` outside the profile."""
    return _SUITE_BY_SIG_ALG.get(alg)


def suite_for_agreement_crv(crv: str) -> Suite | None:
    """The suite whose key-agreement ``crv`` is ``crv``, or ``None`` outside the profile."""
    return _SUITE_BY_AGREEMENT_CRV.get(crv)


def _is_p256(key: object) -> bool:
    return isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey) and isinstance(
        key.curve, ec.SECP256R1
    )


def _suite_of(key: object, curve25519: type, refusal: str) -> Suite:
    """The suite of a public key that is either a P-256 key or of type ``curve25519`` (the one
    Curve25519 key type its use allows); ``LocalError(refusal)`` for any other key."""
    if isinstance(key, curve25519):
        return Suite.CURVE25519
    if _is_p256(key):
        return Suite.P256
    raise LocalError(refusal)


#: JWK members a public key's JWK may carry besides the key itself (RFC 7517 §4).
_JWK_METADATA = frozenset({"kid", "use", "alg", "key_ops"})


class _PublicKey:
    """Identity shared by :class:`SigningPublicKey` and :class:`EncryptionPublicKey`: a wrapper
    equals a wrapper of the same type with the same ``kid``, and hashes with its ``use``, so one
    P-256 key wrapped both ways gives two unequal values.

    Private, and never a parameter type: the two public key types share it but stay unrelated
    (neither is a subtype of the other), so mypy refuses one where the other is expected.
    """

    __slots__ = ()

    #: The JWK ``use`` (RFC 7517 §4.2) of this type's keys: ``sig`` or ``enc``.
    _USE: ClassVar[str]

    kid: str

    def __eq__(self, other: object) -> bool:
        return isinstance(other, type(self)) and other.kid == self.kid

    def __hash__(self) -> int:
        return hash((self._USE, self.kid))


class _PrivateKey:
    """What :class:`SigningKey` and :class:`DecryptionKey` share: ``kid`` and ``suite`` are
    their public half's. Private, like :class:`_PublicKey`, and for the same reason."""

    __slots__ = ()

    public: SigningPublicKey | EncryptionPublicKey

    @property
    def kid(self) -> str:
        """RFC 7638 thumbprint of the public key."""
        return self.public.kid

    @property
    def suite(self) -> Suite:
        """The suite this key belongs to."""
        return self.public.suite


# ------------------------------------------------------------------------------------ signing


@dataclass(frozen=True, slots=True, eq=False)
class SigningPublicKey(_PublicKey):
    """A sender's public signing key (``ES256`` on P-256 or ``Ed25519``) with its ``kid``."""

    _USE: ClassVar[str] = "sig"

    key: ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
    suite: Suite
    kid: str = field(repr=True)

    @classmethod
    def from_key(
        cls, key: ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
    ) -> SigningPublicKey:
        """Wrap a ``cryptography`` public key; raises ``LocalError`` outside both suites."""
        suite = _suite_of(key, ed25519.Ed25519PublicKey, "a signing key must be P-256 or Ed25519")
        return cls(key, suite, jose.thumbprint(key))

    @classmethod
    def from_jwk(cls, jwk: Mapping[str, Any]) -> SigningPublicKey:
        """A signing key from its public JWK; ``kid``, ``use``, ``alg`` and ``key_ops`` may be
        present but ``kid`` is recomputed and must match, ``use`` must be ``sig`` and ``alg`` the
        suite's. Raises ``RemoteError`` (``unsupported`` or ``malformed``) otherwise."""
        key = jose.public_key_from_jwk(jwk, "signing JWK", extra_members=_JWK_METADATA)
        if isinstance(key, x25519.X25519PublicKey):
            raise RemoteError("unsupported", "signing JWK: X25519 is a key-agreement curve")
        wrapped = cls.from_key(key)
        _check_jwk_metadata(jwk, wrapped.kid, cls._USE, wrapped.alg)
        return wrapped

    @property
    def alg(self) -> str:
        """The JWS ``alg`` this key verifies."""
        return self.suite.signature_alg

    def jwk(self) -> dict[str, str]:
        """Public JWK with ``kid``, ``use: sig`` and ``alg`` (for a JWK Set or the directory)."""
        return {**jose.public_jwk(self.key), "kid": self.kid, "use": self._USE, "alg": self.alg}

    def verify(self, signature: bytes, data: bytes) -> bool:
        """True when ``signature`` over ``data`` verifies under this key with its suite's alg."""
        # The suite was decided by the key's type (from_key); comparing it is cheaper than
        # isinstance against cryptography's abstract key classes, on every envelope opened.
        if self.suite is Suite.CURVE25519:
            return jose.ed25519_verify(cast(ed25519.Ed25519PublicKey, self.key), signature, data)
        return jose.es256_verify(cast(ec.EllipticCurvePublicKey, self.key), signature, data)


@dataclass(frozen=True, slots=True, eq=False)
class SigningKey(_PrivateKey):
    """Our own private signing key. ``repr`` shows the ``kid`` only, never key material."""

    private: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey = field(repr=False)
    public: SigningPublicKey

    @classmethod
    def from_key(cls, key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> SigningKey:
        """Wrap a ``cryptography`` private key; raises ``LocalError`` outside both suites."""
        return cls(key, SigningPublicKey.from_key(key.public_key()))

    @classmethod
    def derive(cls, suite: Suite, rand: jose.Rand) -> SigningKey:
        """A new signing key of ``suite`` made from ``rand`` (the shell passes ``os.urandom``)."""
        if suite is Suite.P256:
            return cls.from_key(jose.derive_p256(rand))
        return cls.from_key(jose.derive_ed25519(rand))

    def sign(self, data: bytes) -> bytes:
        """A 64-byte JWS signature of ``data`` with the suite's ``alg``."""
        if self.public.suite is Suite.CURVE25519:  # decided by the key's type, as in verify
            return jose.ed25519_sign(cast(ed25519.Ed25519PrivateKey, self.private), data)
        return jose.es256_sign(cast(ec.EllipticCurvePrivateKey, self.private), data)


# ------------------------------------------------------------------------------------ encryption


@dataclass(frozen=True, slots=True, eq=False)
class EncryptionPublicKey(_PublicKey):
    """A recipient's public key-agreement key (P-256 or X25519) with its ``kid``."""

    _USE: ClassVar[str] = "enc"

    key: ec.EllipticCurvePublicKey | x25519.X25519PublicKey
    suite: Suite
    kid: str

    @classmethod
    def from_key(
        cls, key: ec.EllipticCurvePublicKey | x25519.X25519PublicKey
    ) -> EncryptionPublicKey:
        """Wrap a ``cryptography`` public key; raises ``LocalError`` outside both suites."""
        suite = _suite_of(key, x25519.X25519PublicKey, "an encryption key must be P-256 or X25519")
        return cls(key, suite, jose.thumbprint(key))

    @classmethod
    def from_jwk(cls, jwk: Mapping[str, Any]) -> EncryptionPublicKey:
        """An encryption key from its public JWK (``kid`` must match, ``use`` must be ``enc``,
        ``alg`` ``ECDH-ES+A256KW`` when present). Raises ``RemoteError`` otherwise."""
        key = jose.public_key_from_jwk(jwk, "encryption JWK", extra_members=_JWK_METADATA)
        if isinstance(key, ed25519.Ed25519PublicKey):
            raise RemoteError("unsupported", "encryption JWK: Ed25519 is a signature curve")
        wrapped = cls.from_key(key)
        _check_jwk_metadata(jwk, wrapped.kid, cls._USE, KEY_AGREEMENT_ALG)
        return wrapped

    def jwk(self) -> dict[str, str]:
        """Public JWK with ``kid``, ``use: enc`` and ``alg: ECDH-ES+A256KW``."""
        return {
            **jose.public_jwk(self.key),
            "kid": self.kid,
            "use": self._USE,
            "alg": KEY_AGREEMENT_ALG,
        }


@dataclass(frozen=True, slots=True, eq=False)
class DecryptionKey(_PrivateKey):
    """Our own private key-agreement key (P-256 or X25519). ``repr`` never shows key material."""

    private: ec.EllipticCurvePrivateKey | x25519.X25519PrivateKey = field(repr=False)
    public: EncryptionPublicKey

    @classmethod
    def from_key(cls, key: ec.EllipticCurvePrivateKey | x25519.X25519PrivateKey) -> DecryptionKey:
        """Wrap a ``cryptography`` private key; raises ``LocalError`` outside both suites."""
        return cls(key, EncryptionPublicKey.from_key(key.public_key()))

    @classmethod
    def derive(cls, suite: Suite, rand: jose.Rand) -> DecryptionKey:
        """A new key-agreement key of ``suite`` made from ``rand``."""
        if suite is Suite.P256:
            return cls.from_key(jose.derive_p256(rand))
        return cls.from_key(jose.derive_x25519(rand))


def _check_jwk_metadata(jwk: Mapping[str, Any], kid: str, use: str, alg: str) -> None:
    if "kid" in jwk and jwk["kid"] != kid:
        raise RemoteError("malformed", "JWK kid is not its RFC 7638 thumbprint")
    if "use" in jwk and jwk["use"] != use:
        raise RemoteError("unsupported", f"JWK use is not {use!r}")
    if "alg" in jwk and jwk["alg"] != alg:
        raise RemoteError("unsupported", f"JWK alg is not {alg!r}")


# ------------------------------------------------------------------------------------ rings


class KeyRing:
    """Our own decryption keys, by ``kid``: the current key first, older ones still accepted.

    Seal with the newest key (publish only that one), open with any key in the ring. Refuses to be
    empty (``LocalError``): an empty ring would make every envelope ``not_for_us`` and hide a
    configuration mistake.
    """

    __slots__ = ("_by_kid", "_keys")

    def __init__(self, keys: Iterable[DecryptionKey]) -> None:
        by_kid: dict[str, DecryptionKey] = {}
        for key in keys:
            if not isinstance(key, DecryptionKey):
                raise LocalError("a key ring holds DecryptionKey objects only")
            by_kid.setdefault(key.kid, key)
        if not by_kid:
            raise LocalError("a key ring needs at least one decryption key")
        self._by_kid = by_kid
        self._keys = tuple(by_kid.values())

    def get(self, kid: str) -> DecryptionKey | None:
        """The key with this ``kid``, or ``None``."""
        return self._by_kid.get(kid)

    @property
    def current(self) -> DecryptionKey:
        """The first (newest) key: the one to publish in the directory."""
        return self._keys[0]

    @property
    def kids(self) -> tuple[str, ...]:
        """All key ids, newest first."""
        return tuple(self._by_kid)

    def __iter__(self) -> Iterator[DecryptionKey]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"KeyRing(kids={list(self._by_kid)})"


class SenderKeyLookup(Protocol):
    """Where ``open_envelope`` finds a sender's public signing key.

    ``lookup(org, kid, at)`` returns the signing key with id ``kid`` of organisation ``org`` if it
    was valid at ``at`` (the envelope's ``iat``) and not revoked before it, else ``None``. The
    federation directory implements it; :class:`StaticSenderKeys` is the simple version for tests
    and the debugging CLI.
    """

    def __call__(self, org: str, kid: str, at: datetime, /) -> SigningPublicKey | None: ...


class StaticSenderKeys:
    """A fixed ``org -> signing keys`` table with no validity windows (tests, debugging CLI).

    Keys in ``any_org`` are trusted for whichever sender an envelope names: only for a person
    checking an envelope by hand with keys they chose themselves (``zvg envelope open``).
    """

    __slots__ = ("_any", "_table")

    def __init__(
        self,
        table: Mapping[str, Sequence[SigningPublicKey]] | None = None,
        *,
        any_org: Iterable[SigningPublicKey] = (),
    ) -> None:
        self._table = {org: {k.kid: k for k in keys} for org, keys in (table or {}).items()}
        self._any = {k.kid: k for k in any_org}

    def __call__(self, org: str, kid: str, at: datetime, /) -> SigningPublicKey | None:
        del at  # no validity windows here: that is the directory's job
        found = self._table.get(org, {}).get(kid)
        return found if found is not None else self._any.get(kid)
