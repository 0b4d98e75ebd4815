"""The pure half of the console's OpenID Connect login (gateway/console/oidc.py): its settings,
the ID token's validation (OpenID Connect Core 1.0, section 3.1.3.7) and the mapping of its claims
onto a console role. No I/O: the keys and the provider's metadata come in as values."""

from __future__ import annotations

import base64
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import ip_address
from pathlib import Path
from typing import Any, Final, Protocol
from urllib.parse import urlsplit

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from gateway.console.identity import Identity
from gateway.console.roles import Role

CALLBACK_PATH: Final = "/auth/callback"
ASYMMETRIC_ALGS: Final = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class OidcError(Exception):
    """A login that did not succeed. ``reason`` is a short code, safe to log and to show:
    ``discovery``, ``provider``, ``no-login`` (no pending login for this browser), ``state``,
    ``provider-denied``, ``token-exchange``, ``malformed``, ``alg``, ``signature``, ``issuer``,
    ``audience``, ``azp``, ``expired``, ``issued-in-future``, ``nonce``, ``acr`` (not the
    required authentication context, such as multi-factor), ``no-role``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class OidcClientSettings:
    """What the relying party needs; made from the ``[console.oidc]`` settings by
    :func:`client_settings`."""

    issuer: str
    client_id: str
    redirect_uri: str
    role_map: tuple[tuple[str, Role], ...]
    """Ordered (claim value, role) pairs: the first value the user has gives the role."""
    client_secret: str | None = field(default=None, repr=False)
    """None: a public client (PKCE only); else ``client_secret_basic`` at the token endpoint."""
    role_claim: str = "groups"
    scopes: tuple[str, ...] = ("openid", "profile")
    display_name_claims: tuple[str, ...] = ("name", "preferred_username")
    id_token_algs: tuple[str, ...] = ("RS256", "PS256", "ES256", "EdDSA")
    acr_values: tuple[str, ...] = ()
    """When set: asked for in the authorization request, and the ID token's ``acr`` (the
    authentication context the provider reached, such as its multi-factor login) must be one of
    them. Empty: any login the provider accepts."""
    leeway_s: int = 60
    login_ttl_s: int = 600

    def __post_init__(self) -> None:
        for url in (self.issuer, self.redirect_uri):
            check_url(url)
        if urlsplit(self.redirect_uri).path != CALLBACK_PATH:
            raise ValueError(f"redirect_uri must end in the console's {CALLBACK_PATH}")
        bad = set(self.id_token_algs) - ASYMMETRIC_ALGS
        if bad or not self.id_token_algs:
            raise ValueError(f"id_token_algs must be asymmetric signature algorithms, not {bad}")
        if "openid" not in self.scopes:
            raise ValueError("scopes must include openid")


def check_url(url: str) -> None:
    """https, or http on a loopback address (the tests' provider, a provider on the same host)."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname:
        host = parts.hostname
        try:
            if host == "localhost" or ip_address(host).is_loopback:
                return
        except ValueError:
            pass
    raise ValueError(
        f"{url!r}: an OpenID provider or callback must use https (http: loopback only)"
    )


class OidcConfig(Protocol):
    """The ``[console.oidc]`` settings as the console's config reads them."""

    @property
    def issuer(self) -> str | None: ...
    @property
    def client_id(self) -> str | None: ...
    @property
    def client_secret_file(self) -> Path | None: ...
    @property
    def redirect_url(self) -> str | None: ...
    @property
    def scopes(self) -> tuple[str, ...]: ...
    @property
    def role_claim(self) -> str: ...
    @property
    def role_mapping(self) -> Mapping[str, Role]: ...


def client_settings(config: OidcConfig) -> OidcClientSettings | None:
    """The relying party's settings from ``[console.oidc]``: None when no ``issuer`` is set (no
    OpenID Connect login); ValueError naming what is missing or wrong. ``role_mapping`` keeps the
    file's order, which is the order of precedence. An ``acr_values`` setting, when the config
    has one, requires those authentication contexts (multi-factor)."""
    if config.issuer is None:
        return None
    missing = [n for n in ("client_id", "redirect_url") if getattr(config, n) is None]
    if missing or not config.role_mapping:
        raise ValueError(f"[console.oidc] needs {', '.join(missing) or 'role_mapping'}")
    assert config.client_id is not None  # noqa: S101 - checked just above, for mypy
    assert config.redirect_url is not None  # noqa: S101 - checked just above, for mypy
    secret = None
    if config.client_secret_file is not None:
        secret = config.client_secret_file.read_text(encoding="utf-8").strip()
        if not secret:
            raise ValueError(
                f"[console.oidc] client_secret_file {config.client_secret_file} is empty"
            )
    acr = getattr(config, "acr_values", ())
    return OidcClientSettings(
        issuer=config.issuer,
        client_id=config.client_id,
        client_secret=secret,
        redirect_uri=config.redirect_url,
        role_map=tuple(config.role_mapping.items()),
        role_claim=config.role_claim,
        scopes=tuple(config.scopes),
        acr_values=tuple(acr),
    )


@dataclass(frozen=True)
class ProviderMetadata:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    id_token_algs: frozenset[str]


def claim_at(claims: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path (``realm_access.roles``), or None."""
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def map_role(claims: Mapping[str, Any], settings: OidcClientSettings) -> Role | None:
    """The role the user's claim values give (first configured match), else None: deny."""
    value = claim_at(claims, settings.role_claim)
    values = {value} if isinstance(value, str) else value
    if not isinstance(values, list | set):
        return None
    held = {v for v in values if isinstance(v, str)}
    return next((role for wanted, role in settings.role_map if wanted in held), None)


def identity_from_claims(claims: Mapping[str, Any], settings: OidcClientSettings) -> Identity:
    """The console identity of validated ID token claims; OidcError("no-role") without a role."""
    role = map_role(claims, settings)
    if role is None:
        raise OidcError("no-role")
    subject = str(claims["sub"])
    name = next(
        (v for c in settings.display_name_claims if isinstance(v := claims.get(c), str) and v),
        subject,
    )
    return Identity(subject=subject, display_name=name[:200], role=role, method="oidc")


def header_of(raw: str) -> dict[str, Any]:
    """The protected header of a compact JWS, unverified; OidcError("malformed")."""
    parts = raw.split(".")
    if len(parts) != 3:
        raise OidcError("malformed")
    try:
        header = json.loads(_b64url_decode(parts[0]))
    except ValueError as exc:
        raise OidcError("malformed") from exc
    if not isinstance(header, dict):
        raise OidcError("malformed")
    return header


def validate_id_token(
    raw: str,
    *,
    keys: KeySet,
    settings: OidcClientSettings,
    metadata: ProviderMetadata,
    nonce: str,
    now: float,
) -> dict[str, Any]:
    """The claims of a valid ID token (OpenID Connect Core 1.0, 3.1.3.7); else OidcError."""
    header = header_of(raw)
    alg = header.get("alg")
    allowed = set(settings.id_token_algs) & metadata.id_token_algs
    if not isinstance(alg, str) or alg not in allowed:
        raise OidcError("alg")
    try:
        signed = jws.deserialize_compact(raw, keys, algorithms=[alg])
        claims = json.loads(signed.payload)
    except (JoseError, ValueError) as exc:
        raise OidcError("signature") from exc
    if not isinstance(claims, dict):
        raise OidcError("malformed")
    if claims.get("iss") != metadata.issuer:
        raise OidcError("issuer")
    aud = claims.get("aud")
    audience = [aud] if isinstance(aud, str) else aud
    if not isinstance(audience, list) or settings.client_id not in audience:
        raise OidcError("audience")
    azp = claims.get("azp")
    if (len(audience) > 1 or azp is not None) and azp != settings.client_id:
        raise OidcError("azp")
    exp, iat = claims.get("exp"), claims.get("iat")
    if not isinstance(exp, int | float) or not isinstance(iat, int | float):
        raise OidcError("malformed")
    if now >= exp + settings.leeway_s:
        raise OidcError("expired")
    if iat > now + settings.leeway_s:
        raise OidcError("issued-in-future")
    got = claims.get("nonce")
    if not isinstance(got, str) or not hmac.compare_digest(got.encode(), nonce.encode()):
        raise OidcError("nonce")
    if not isinstance(claims.get("sub"), str) or not claims["sub"]:
        raise OidcError("malformed")
    if settings.acr_values and claims.get("acr") not in settings.acr_values:
        raise OidcError("acr")
    return claims
