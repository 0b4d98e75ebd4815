"""OpenID Connect login for the console: authorization code flow with PKCE (RFC 7636), against
the organisation's own identity provider, and the mapping of its claims onto a console role.

The flow (OpenID Connect Core 1.0, section 3.1):

1. ``GET /login/oidc`` makes a pending login (random ``state``, ``nonce`` and PKCE verifier, kept
   in this process, bound to the browser by a short-lived cookie) and redirects to the provider's
   authorization endpoint, found by discovery (``/.well-known/openid-configuration``).
2. The provider sends the browser back to ``GET /auth/callback?code=...&state=...``. The pending
   login is taken (once: a second use of the same callback finds nothing), its ``state`` must
   match, the code is exchanged at the token endpoint with the PKCE verifier, and the ID token is
   validated (section 3.1.3.7): an asymmetric signature algorithm of
   :attr:`OidcSettings.id_token_algs` (never ``none``, never HMAC: a provider's public key is no
   shared secret), a signature by a key
   of the provider's JWKS, the exact issuer, this client in the audience (and as ``azp`` when
   there are several), not expired, not issued in the future, the nonce of this login, and,
   when :attr:`OidcSettings.acr_values` is set, one of those authentication contexts (the
   provider's multi-factor login).
3. The role comes from one claim (:attr:`OidcSettings.role_claim`, a dotted path such as
   ``groups`` or ``realm_access.roles``) through an ordered mapping: the first configured value
   the user has gives the role. No match, no login (deny by default).

A successful login ends in the caller's ``on_identity(request, identity)``, which starts the
console session. A failed one is logged by its reason code only (never a token, code or claim).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from ipaddress import ip_address
from typing import Any, Final
from urllib.parse import quote, urlencode, urlsplit

import aiohttp
from aiohttp import web
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from gateway.console.identity import Identity
from gateway.console.roles import Role

log = logging.getLogger(__name__)

LOGIN_PATH: Final = "/login/oidc"
CALLBACK_PATH: Final = "/auth/callback"
LOGIN_COOKIE: Final = "zvg_oidc_login"
ASYMMETRIC_ALGS: Final = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
_MAX_PENDING: Final = 10_000
_MAX_RESPONSE: Final = 256 * 1024
_JWKS_REFRESH_S: Final = 60.0

OnIdentity = Callable[[web.Request, Identity], Awaitable[web.StreamResponse]]
OnFailure = Callable[[web.Request, "OidcError"], Awaitable[web.StreamResponse]]


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
class OidcSettings:
    """The ``[console.oidc]`` settings (parsed and checked by the console's config)."""

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
    cookie_secure: bool = True

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


@dataclass(frozen=True)
class ProviderMetadata:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    id_token_algs: frozenset[str]


@dataclass(frozen=True)
class PendingLogin:
    state: str
    nonce: str
    verifier: str
    created: float


async def _read_capped(resp: aiohttp.ClientResponse) -> bytes | None:
    """The whole body of a provider's answer, or None when it is larger than we accept."""
    body = bytearray()
    async for chunk in resp.content.iter_chunked(64 * 1024):
        body += chunk
        if len(body) > _MAX_RESPONSE:
            return None
    return bytes(body)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def pkce_challenge(verifier: str) -> str:
    """The S256 code challenge of a verifier (RFC 7636, section 4.2)."""
    return _b64url(hashlib.sha256(verifier.encode("ascii")).digest())


def claim_at(claims: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path (``realm_access.roles``), or None."""
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def map_role(claims: Mapping[str, Any], settings: OidcSettings) -> Role | None:
    """The role the user's claim values give (first configured match), else None: deny."""
    value = claim_at(claims, settings.role_claim)
    values = {value} if isinstance(value, str) else value
    if not isinstance(values, list | set):
        return None
    held = {v for v in values if isinstance(v, str)}
    return next((role for wanted, role in settings.role_map if wanted in held), None)


def identity_from_claims(claims: Mapping[str, Any], settings: OidcSettings) -> Identity:
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


def _header(raw: str) -> dict[str, Any]:
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
    settings: OidcSettings,
    metadata: ProviderMetadata,
    nonce: str,
    now: float,
) -> dict[str, Any]:
    """The claims of a valid ID token (OpenID Connect Core 1.0, 3.1.3.7); else OidcError."""
    header = _header(raw)
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


class OidcClient:
    """One relying party: discovery, JWKS (refetched when a token names an unknown key, at most
    once a minute), the pending logins of this process, the code exchange and validation."""

    def __init__(
        self,
        settings: OidcSettings,
        *,
        http: aiohttp.ClientSession | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self._http = http
        self._own_http = http is None
        self._now = now
        self._metadata: ProviderMetadata | None = None
        self._keys: KeySet | None = None
        self._keys_at = float("-inf")
        self._pending: OrderedDict[str, PendingLogin] = OrderedDict()

    async def close(self) -> None:
        if self._own_http and self._http is not None:
            await self._http.close()
        self._http = None

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))
            self._own_http = True
        return self._http

    async def _get_json(self, url: str) -> dict[str, Any]:
        try:
            async with self._session().get(url, allow_redirects=False) as resp:
                body = await _read_capped(resp)
                if resp.status != 200 or body is None:
                    raise OidcError("provider")
            data = json.loads(body)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise OidcError("provider") from exc
        if not isinstance(data, dict):
            raise OidcError("provider")
        return data

    async def metadata(self) -> ProviderMetadata:
        """The provider's discovery document (fetched once), checked against the settings."""
        if self._metadata is not None:
            return self._metadata
        url = self.settings.issuer.rstrip("/") + "/.well-known/openid-configuration"
        doc = await self._get_json(url)
        try:
            meta = ProviderMetadata(
                issuer=str(doc["issuer"]),
                authorization_endpoint=str(doc["authorization_endpoint"]),
                token_endpoint=str(doc["token_endpoint"]),
                jwks_uri=str(doc["jwks_uri"]),
                id_token_algs=frozenset(doc.get("id_token_signing_alg_values_supported", [])),
            )
            for url in (meta.authorization_endpoint, meta.token_endpoint, meta.jwks_uri):
                check_url(url)
        except (KeyError, TypeError, ValueError) as exc:
            raise OidcError("discovery") from exc
        methods = doc.get("code_challenge_methods_supported")
        if meta.issuer != self.settings.issuer or (methods is not None and "S256" not in methods):
            raise OidcError("discovery")
        self._metadata = meta
        return meta

    async def keys(self, *, refresh: bool = False) -> KeySet:
        """The provider's signing keys (JWKS); ``refresh`` refetches them (key rotation)."""
        due = self._now() - self._keys_at >= _JWKS_REFRESH_S
        if self._keys is not None and not (refresh and due):
            return self._keys
        doc = await self._get_json((await self.metadata()).jwks_uri)
        usable = [
            k
            for k in doc.get("keys", [])
            if isinstance(k, dict)
            and k.get("kty") in {"RSA", "EC", "OKP"}
            and k.get("use", "sig") == "sig"
        ]
        try:
            self._keys = KeySet.import_key_set({"keys": usable})
        except (JoseError, ValueError, TypeError) as exc:
            raise OidcError("provider") from exc
        self._keys_at = self._now()
        return self._keys

    async def start(self) -> tuple[str, str]:
        """A new pending login: (its handle for the browser's cookie, the authorization URL)."""
        meta = await self.metadata()
        now = self._now()
        self._expire(now)
        handle = secrets.token_urlsafe(32)
        login = PendingLogin(
            state=secrets.token_urlsafe(32),
            nonce=secrets.token_urlsafe(32),
            verifier=secrets.token_urlsafe(64),
            created=now,
        )
        self._pending[handle] = login
        while len(self._pending) > _MAX_PENDING:
            self._pending.popitem(last=False)
        params = {
            "response_type": "code",
            "client_id": self.settings.client_id,
            "redirect_uri": self.settings.redirect_uri,
            "scope": " ".join(self.settings.scopes),
            "state": login.state,
            "nonce": login.nonce,
            "code_challenge": pkce_challenge(login.verifier),
            "code_challenge_method": "S256",
        }
        if self.settings.acr_values:
            params["acr_values"] = " ".join(self.settings.acr_values)
        query = urlencode(params)
        sep = "&" if "?" in meta.authorization_endpoint else "?"
        return handle, f"{meta.authorization_endpoint}{sep}{query}"

    def _expire(self, now: float) -> None:
        ttl = self.settings.login_ttl_s
        for handle in [h for h, p in self._pending.items() if now - p.created > ttl]:
            del self._pending[handle]

    async def finish(self, handle: str | None, params: Mapping[str, str]) -> Identity:
        """The identity of a callback's parameters for the pending login ``handle``; the pending
        login is used up whatever the outcome. OidcError on any failure."""
        self._expire(self._now())
        login = self._pending.pop(handle, None) if handle else None
        if login is None:
            raise OidcError("no-login")
        state = params.get("state", "")
        if not hmac.compare_digest(state.encode(), login.state.encode()):
            raise OidcError("state")
        if "error" in params or not params.get("code"):
            raise OidcError("provider-denied")
        raw = await self.exchange(params["code"], login.verifier)
        claims = await self.validate(raw, nonce=login.nonce)
        return identity_from_claims(claims, self.settings)

    async def exchange(self, code: str, verifier: str) -> str:
        """The (not yet validated) ID token the token endpoint gives for ``code``."""
        meta = await self.metadata()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.settings.redirect_uri,
            "code_verifier": verifier,
        }
        headers = {"Accept": "application/json"}
        if self.settings.client_secret is None:
            form["client_id"] = self.settings.client_id
        else:  # client_secret_basic: each part form-urlencoded first (RFC 6749, section 2.3.1)
            user, secret = self.settings.client_id, self.settings.client_secret
            pair = f"{quote(user, safe='')}:{quote(secret, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
        try:
            async with self._session().post(
                meta.token_endpoint, data=form, headers=headers, allow_redirects=False
            ) as resp:
                body = await _read_capped(resp)
                ok = resp.status == 200 and body is not None
            data = json.loads(body) if ok and body is not None else None
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise OidcError("token-exchange") from exc
        raw = data.get("id_token") if isinstance(data, dict) else None
        if not isinstance(raw, str):
            raise OidcError("token-exchange")
        return raw

    async def validate(self, raw: str, *, nonce: str) -> dict[str, Any]:
        """:func:`validate_id_token` with the provider's keys, refetched once for a new key id."""
        meta = await self.metadata()
        keys = await self.keys()
        kid = _header(raw).get("kid")
        if kid is not None and not any(k.kid == kid for k in keys.keys):
            keys = await self.keys(refresh=True)
        return validate_id_token(
            raw, keys=keys, settings=self.settings, metadata=meta, nonce=nonce, now=self._now()
        )


async def _default_failure(_request: web.Request, error: OidcError) -> web.StreamResponse:
    status = 403 if error.reason == "no-role" else 400
    return web.Response(status=status, text=f"Inloggen mislukt / login failed: {error.reason}\n")


def add_oidc_routes(
    app: web.Application,
    settings: OidcSettings,
    on_identity: OnIdentity,
    *,
    on_failure: OnFailure = _default_failure,
    client: OidcClient | None = None,
) -> OidcClient:
    """Mount ``GET /login/oidc`` and ``GET /auth/callback`` on ``app``; a successful login ends
    in ``on_identity``, a failed one (logged by reason) in ``on_failure``. The client (and its
    HTTP session) is closed with the app."""
    oidc = client or OidcClient(settings)

    async def login(request: web.Request) -> web.StreamResponse:
        try:
            handle, url = await oidc.start()
        except OidcError as exc:
            log.warning("console OIDC login could not start: %s", exc.reason)
            return await on_failure(request, exc)
        resp = web.Response(status=302, headers={"Location": url, "Cache-Control": "no-store"})
        # SameSite=Lax, not Strict: the provider's redirect back is a cross-site navigation.
        resp.set_cookie(
            LOGIN_COOKIE,
            handle,
            max_age=settings.login_ttl_s,
            path=CALLBACK_PATH,
            secure=settings.cookie_secure,
            httponly=True,
            samesite="Lax",
        )
        return resp

    async def callback(request: web.Request) -> web.StreamResponse:
        try:
            identity = await oidc.finish(request.cookies.get(LOGIN_COOKIE), request.query)
        except OidcError as exc:
            log.warning("console OIDC login failed: %s", exc.reason)
            resp = await on_failure(request, exc)
        else:
            resp = await on_identity(request, identity)
        resp.del_cookie(LOGIN_COOKIE, path=CALLBACK_PATH)
        resp.headers["Cache-Control"] = "no-store"
        return resp

    async def close(_app: web.Application) -> None:
        await oidc.close()

    app.router.add_get(LOGIN_PATH, login)
    app.router.add_get(CALLBACK_PATH, callback)
    app.on_cleanup.append(close)
    return oidc
