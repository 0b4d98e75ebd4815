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
   :attr:`OidcClientSettings.id_token_algs` (never ``none``, never HMAC: a provider's public key
   is no shared secret), a signature by a key of the provider's JWKS, the exact issuer, this
   client in the audience (and as ``azp`` when there are several), not expired, not issued in
   the future, the nonce of this login, and, when :attr:`OidcClientSettings.acr_values` is set,
   one of those authentication contexts (the provider's multi-factor login).
3. The role comes from one claim (:attr:`OidcClientSettings.role_claim`, a dotted path such as
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
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote, urlencode

import aiohttp
from aiohttp import web
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from gateway.console.identity import Identity
from gateway.console.oidc_tokens import (
    ASYMMETRIC_ALGS,
    CALLBACK_PATH,
    OidcClientSettings,
    OidcConfig,
    OidcError,
    ProviderMetadata,
    check_url,
    claim_at,
    client_settings,
    header_of,
    identity_from_claims,
    map_role,
    validate_id_token,
)

__all__ = [
    "ASYMMETRIC_ALGS",
    "CALLBACK_PATH",
    "LOGIN_COOKIE",
    "LOGIN_PATH",
    "OidcClient",
    "OidcClientSettings",
    "OidcConfig",
    "OidcError",
    "ProviderMetadata",
    "add_oidc_routes",
    "check_url",
    "claim_at",
    "client_settings",
    "identity_from_claims",
    "map_role",
    "pkce_challenge",
    "validate_id_token",
]

log = logging.getLogger(__name__)

LOGIN_PATH: Final = "/login/oidc"
LOGIN_COOKIE: Final = "__Secure-zvg-console-oidc"
"""The pending login's handle. ``__Secure-``: a browser takes it only with ``Secure`` (which
browsers honour on loopback http too); not ``__Host-``, as its path is the callback's."""
_MAX_PENDING: Final = 10_000
_MAX_RESPONSE: Final = 256 * 1024
_JWKS_REFRESH_S: Final = 60.0

OnIdentity = Callable[[web.Request, Identity], Awaitable[web.StreamResponse]]
OnFailure = Callable[[web.Request, OidcError], Awaitable[web.StreamResponse]]


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


def pkce_challenge(verifier: str) -> str:
    """The S256 code challenge of a verifier (RFC 7636, section 4.2)."""
    return _b64url(hashlib.sha256(verifier.encode("ascii")).digest())


class OidcClient:
    """One relying party: discovery, JWKS (refetched when a token names an unknown key, at most
    once a minute), the pending logins of this process, the code exchange and validation."""

    def __init__(
        self,
        settings: OidcClientSettings,
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
        kid = header_of(raw).get("kid")
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
    settings: OidcClientSettings,
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
            secure=True,
            httponly=True,
            samesite="Lax",
        )
        return resp

    def used_up(resp: web.StreamResponse) -> web.StreamResponse:
        resp.del_cookie(
            LOGIN_COOKIE, path=CALLBACK_PATH, secure=True, httponly=True, samesite="Lax"
        )
        resp.headers["Cache-Control"] = "no-store"
        return resp

    async def callback(request: web.Request) -> web.StreamResponse:
        try:
            identity = await oidc.finish(request.cookies.get(LOGIN_COOKIE), request.query)
        except OidcError as exc:
            log.warning("console OIDC login failed: %s", exc.reason)
            return used_up(await on_failure(request, exc))
        try:
            return used_up(await on_identity(request, identity))
        except web.HTTPException as exc:  # on_identity may raise its redirect, aiohttp's idiom
            used_up(exc)
            raise

    async def close(_app: web.Application) -> None:
        await oidc.close()

    app.router.add_get(LOGIN_PATH, login)
    app.router.add_get(CALLBACK_PATH, callback)
    app.on_cleanup.append(close)
    return oidc
