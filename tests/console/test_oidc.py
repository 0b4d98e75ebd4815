"""The console's OpenID Connect login (gateway/console/oidc.py) against a real OpenID provider on
loopback (tests/console/oidc_provider: npm ``oidc-provider``), driven as a browser would with
aiohttp's client: the happy path per role, and the attacks the flow must stop."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import logging
import secrets
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import aiohttp
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from joserfc import jws
from joserfc.jwk import ECKey, KeySet, RSAKey
from yarl import URL

from gateway.console.identity import Identity
from gateway.console.oidc import (
    LOGIN_COOKIE,
    OidcClient,
    OidcClientSettings,
    OidcError,
    ProviderMetadata,
    add_oidc_routes,
    client_settings,
    map_role,
    validate_id_token,
)
from gateway.console.roles import Role
from tests.console._oidc_provider import (
    Provider,
    id_token_for,
    register_client,
    run_provider,
    sign_in,
)

ROLE_MAP = (
    ("zvh-fg", Role.PRIVACY_OFFICER),
    ("zvh-ciso", Role.SECURITY_OFFICER),
    ("zvh-audit", Role.AUDITOR),
    ("zvh-contactpunt", Role.CONTACTPUNT),
)


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    with run_provider() as running:
        yield running


@dataclass
class Console:
    """A minimal aiohttp app with the OIDC routes, its settings, and a browser for it."""

    url: str
    settings: OidcClientSettings
    client: OidcClient
    browser: aiohttp.ClientSession
    password: str
    identities: list[Identity] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    async def authorization_url(self) -> str:
        async with self.browser.get(f"{self.url}/login/oidc", allow_redirects=False) as resp:
            assert resp.status == 302
            return resp.headers["Location"]

    async def until_callback(self, account: str) -> str:
        """Start a login and sign in at the provider: the callback URL, not yet visited."""
        url = await self.authorization_url()
        return await sign_in(
            self.browser, url, account, self.password, until=self.settings.redirect_uri
        )

    async def visit(self, url: str) -> tuple[int, str]:
        async with self.browser.get(url, allow_redirects=False) as resp:
            return resp.status, await resp.text()

    async def login(self, account: str) -> tuple[int, str]:
        return await self.visit(await self.until_callback(account))

    def login_cookie(self) -> str:
        return self.browser.cookie_jar.filter_cookies(URL(self.settings.redirect_uri))[
            LOGIN_COOKIE
        ].value

    async def replay(self, url: str, cookie: str) -> tuple[int, str]:
        """``url`` with the login cookie sent again, although the console deleted it."""
        headers = {"Cookie": f"{LOGIN_COOKIE}={cookie}"}
        async with (
            aiohttp.ClientSession() as other,
            other.get(url, headers=headers, allow_redirects=False) as resp,
        ):
            return resp.status, await resp.text()


class MakeConsole(Protocol):
    def __call__(
        self,
        *,
        issuer: str | None = None,
        confidential: bool = False,
        now: Callable[[], float] = ...,
        role_claim: str = ...,
        default_failure: bool = ...,
        acr_values: tuple[str, ...] = ...,
        redirect_after_login: bool = ...,
    ) -> Awaitable[Console]: ...


@pytest.fixture
async def make_console(provider: Provider) -> AsyncIterator[MakeConsole]:
    runners: list[web.AppRunner] = []
    sessions: list[aiohttp.ClientSession] = []
    http = aiohttp.ClientSession()

    async def make(
        *,
        issuer: str | None = None,
        confidential: bool = False,
        now: Callable[[], float] = time.time,
        role_claim: str = "groups",
        default_failure: bool = False,
        acr_values: tuple[str, ...] = (),
        redirect_after_login: bool = False,
    ) -> Console:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        url = f"http://127.0.0.1:{port}"
        redirect_uri = f"{url}/auth/callback"
        client_id, secret = await register_client(
            http, provider.main, redirect_uri, confidential=confidential
        )
        settings = OidcClientSettings(
            issuer=issuer or provider.main,
            client_id=client_id,
            client_secret=secret,
            redirect_uri=redirect_uri,
            role_map=ROLE_MAP,
            role_claim=role_claim,
            scopes=("openid", "profile", "groups"),
            acr_values=acr_values,
        )
        client = OidcClient(settings, now=now)
        browser = aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True, treat_as_secure_origin=[url])
        )
        sessions.append(browser)
        console = Console(url, settings, client, browser, provider.password)

        async def on_identity(request: web.Request, identity: Identity) -> web.StreamResponse:
            console.identities.append(identity)
            if redirect_after_login:
                raise web.HTTPSeeOther("/")
            return web.Response(text=f"welkom {identity.display_name} ({identity.role})")

        async def on_failure(request: web.Request, error: OidcError) -> web.StreamResponse:
            console.failures.append(error.reason)
            return web.Response(status=403, text=error.reason)

        app = web.Application()
        if default_failure:
            add_oidc_routes(app, settings, on_identity, client=client)
        else:
            add_oidc_routes(app, settings, on_identity, on_failure=on_failure, client=client)
        runner = web.AppRunner(app)
        await runner.setup()
        runners.append(runner)
        await web.SockSite(runner, sock).start()
        return console

    yield make
    for runner in runners:
        await runner.cleanup()
    for session in sessions:
        await session.close()
    await http.close()


def _with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query.update(changes)
    return urlunsplit(parts._replace(query=urlencode(query)))


def _query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


# ------------------------------------------------------------------ the flow


@pytest.mark.parametrize("confidential", [False, True], ids=["public-client", "client-secret"])
async def test_login_through_the_provider_gives_the_mapped_identity(
    make_console: MakeConsole, confidential: bool
) -> None:
    console = await make_console(confidential=confidential)
    status, text = await console.login("sanne")
    assert status == 200, text
    assert console.identities == [
        Identity(
            subject="sanne",
            display_name="Sanne de Vries",
            role=Role.SECURITY_OFFICER,
            method="oidc",
        )
    ]
    assert console.failures == []


async def test_the_authorization_request_uses_pkce_s256_state_and_nonce(
    make_console: MakeConsole,
) -> None:
    console = await make_console()
    async with console.browser.get(f"{console.url}/login/oidc", allow_redirects=False) as resp:
        assert resp.status == 302
        query = _query(resp.headers["Location"])
        cookie = resp.cookies[LOGIN_COOKIE]
    assert query["code_challenge_method"] == "S256"
    assert len(query["code_challenge"]) == 43
    assert "code_verifier" not in query
    assert len(query["state"]) >= 43
    assert len(query["nonce"]) >= 43
    assert query["state"] != query["nonce"]
    assert query["redirect_uri"] == console.settings.redirect_uri
    # bound to this browser, only sent back to the callback, and across the provider's redirect
    assert cookie["httponly"]
    assert cookie["secure"]
    assert cookie["samesite"] == "Lax"
    assert cookie["path"] == "/auth/callback"
    assert cookie.value not in (query["state"], query["nonce"])


@pytest.mark.parametrize(
    ("account", "role"),
    [("fatima", Role.PRIVACY_OFFICER), ("jeroen", Role.AUDITOR)],
)
async def test_each_group_maps_to_its_role(
    make_console: MakeConsole, account: str, role: Role
) -> None:
    console = await make_console()
    status, _ = await console.login(account)
    assert status == 200
    assert [i.role for i in console.identities] == [role]


@pytest.mark.parametrize("account", ["kees", "mila"], ids=["unmapped-group", "no-groups-claim"])
async def test_a_user_whose_claims_map_to_no_role_is_denied(
    make_console: MakeConsole, account: str
) -> None:
    console = await make_console()
    status, text = await console.login(account)
    assert status == 403
    assert text == "no-role"
    assert console.identities == []


async def test_the_role_claim_is_configurable(make_console: MakeConsole) -> None:
    """A claim the provider does not send gives no role, even to a user in a mapped group."""
    console = await make_console(role_claim="realm_access.roles")
    status, text = await console.login("sanne")
    assert (status, text) == (403, "no-role")


def test_role_mapping_is_ordered_and_reads_dotted_paths() -> None:
    settings = OidcClientSettings(
        issuer="https://idp.example",
        client_id="console",
        redirect_uri="https://console.example/auth/callback",
        role_map=ROLE_MAP,
        role_claim="realm_access.roles",
    )
    both = {"realm_access": {"roles": ["zvh-ciso", "zvh-fg"]}}
    assert map_role(both, settings) is Role.PRIVACY_OFFICER  # first in the configured order
    assert map_role({"realm_access": {"roles": "zvh-audit"}}, settings) is Role.AUDITOR
    assert map_role({"realm_access": {"roles": ["ZVH-CISO"]}}, settings) is None  # exact match
    assert map_role({"realm_access": ["zvh-ciso"]}, settings) is None
    assert map_role({"realm_access": {"roles": [1, None]}}, settings) is None


async def test_without_a_failure_page_a_refusal_is_403_for_no_role_and_400_otherwise(
    make_console: MakeConsole,
) -> None:
    console = await make_console(default_failure=True)
    async with console.browser.get(f"{console.url}/login/oidc") as resp:  # follows to the form
        assert resp.status == 200
    status, text = await console.login("kees")
    assert status == 403
    assert "no-role" in text
    status, text = await console.visit(
        _with_query(await console.until_callback("sanne"), state="x")
    )
    assert status == 400
    assert "state" in text
    assert console.identities == []


@pytest.mark.parametrize("redirect", [False, True], ids=["returns", "raises-redirect"])
async def test_the_login_cookie_is_deleted_whatever_on_identity_answers(
    make_console: MakeConsole, redirect: bool
) -> None:
    console = await make_console(redirect_after_login=redirect)
    callback = await console.until_callback("sanne")
    async with console.browser.get(callback, allow_redirects=False) as resp:
        assert resp.status == (303 if redirect else 200)
        assert resp.cookies[LOGIN_COOKIE].value == ""
        assert resp.cookies[LOGIN_COOKIE]["secure"]  # else a browser ignores a __Secure- cookie
        assert resp.headers["Cache-Control"] == "no-store"
    assert len(console.identities) == 1


MFA = "urn:zvg:test:mfa"


async def test_a_console_that_requires_multi_factor_asks_for_it_and_gets_it(
    make_console: MakeConsole,
) -> None:
    console = await make_console(acr_values=(MFA,))
    assert _query(await console.authorization_url())["acr_values"] == MFA
    status, _ = await console.login("sanne")
    assert status == 200
    assert [i.subject for i in console.identities] == ["sanne"]


async def test_a_password_only_login_is_refused_where_multi_factor_is_required(
    make_console: MakeConsole,
) -> None:
    """bram is a security officer whose login at the provider reached only the password context."""
    strict = await make_console(acr_values=(MFA,))
    assert await strict.login("bram") == (403, "acr")
    assert strict.identities == []
    lenient = await make_console()
    assert (await lenient.login("bram"))[0] == 200


# ------------------------------------------------------------------ attacks on the callback


async def test_a_callback_with_the_wrong_state_is_refused(make_console: MakeConsole) -> None:
    console = await make_console()
    callback = await console.until_callback("sanne")
    cookie = console.login_cookie()
    status, text = await console.visit(_with_query(callback, state=secrets.token_urlsafe(32)))
    assert (status, text) == (403, "state")
    # the pending login is used up: the genuine callback after it finds nothing, even with the
    # (deleted) login cookie sent again
    assert await console.visit(callback) == (403, "no-login")
    assert await console.replay(callback, cookie) == (403, "no-login")
    assert console.identities == []


async def test_a_callback_in_a_browser_that_did_not_start_the_login_is_refused(
    make_console: MakeConsole,
) -> None:
    """Login CSRF: the attacker's own (valid) callback URL, opened in a victim's browser."""
    console = await make_console()
    callback = await console.until_callback("sanne")
    async with (
        aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as victim,
        victim.get(callback, allow_redirects=False) as resp,
    ):
        assert (resp.status, await resp.text()) == (403, "no-login")
    assert console.identities == []


async def test_a_replayed_callback_is_refused(make_console: MakeConsole) -> None:
    console = await make_console()
    callback = await console.until_callback("sanne")
    cookie = console.login_cookie()
    assert (await console.visit(callback))[0] == 200
    assert await console.visit(callback) == (403, "no-login")  # the cookie was deleted
    assert await console.replay(callback, cookie) == (403, "no-login")  # and is used up
    assert len(console.identities) == 1


async def test_a_replayed_code_is_refused_by_the_provider(make_console: MakeConsole) -> None:
    """A used code under a fresh login's state: the token endpoint refuses it (invalid_grant)."""
    console = await make_console()
    first = await console.until_callback("sanne")
    assert (await console.visit(first))[0] == 200
    fresh = await console.authorization_url()
    replay = _with_query(first, state=_query(fresh)["state"])
    assert await console.visit(replay) == (403, "token-exchange")
    assert len(console.identities) == 1


async def test_a_code_issued_for_another_nonce_is_refused(
    make_console: MakeConsole, provider: Provider
) -> None:
    """Code injection: the attacker copies the victim's authorization request (its PKCE challenge
    is public) but with a nonce of its own, signs in, and hands its code to the victim's callback.
    PKCE passes (same challenge); the ID token's nonce is not the victim's."""
    console = await make_console()
    victim_request = await console.authorization_url()
    state = _query(victim_request)["state"]
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as attacker:
        forged = _with_query(victim_request, nonce=secrets.token_urlsafe(32))
        attacker_callback = await sign_in(
            attacker, forged, "sanne", provider.password, until=console.settings.redirect_uri
        )
    injected = _with_query(attacker_callback, state=state)
    assert await console.visit(injected) == (403, "nonce")
    assert console.identities == []


async def test_an_error_from_the_provider_is_a_failed_login(make_console: MakeConsole) -> None:
    console = await make_console()
    state = _query(await console.authorization_url())["state"]
    url = f"{console.settings.redirect_uri}?error=access_denied&state={state}"
    assert await console.visit(url) == (403, "provider-denied")


async def test_failed_logins_are_logged_by_reason_without_code_or_token(
    make_console: MakeConsole, provider: Provider, caplog: pytest.LogCaptureFixture
) -> None:
    console = await make_console()
    victim_request = await console.authorization_url()
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as attacker:
        forged = _with_query(victim_request, nonce="attacker")
        callback = await sign_in(
            attacker, forged, "sanne", provider.password, until=console.settings.redirect_uri
        )
    code = _query(callback)["code"]
    with caplog.at_level(logging.INFO, logger="gateway.console.oidc"):
        await console.visit(_with_query(callback, state=_query(victim_request)["state"]))
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "console OIDC login failed: nonce" in text
    assert code not in text
    assert "eyJ" not in text
    assert "sanne" not in text


# ------------------------------------------------------------------ the ID token


async def test_an_expired_id_token_is_refused(make_console: MakeConsole) -> None:
    """The console's clock two hours on: the provider's fresh ID token (10 min) has expired."""
    console = await make_console(now=lambda: time.time() + 7200)
    assert await console.login("sanne") == (403, "expired")


async def test_an_id_token_issued_in_the_future_is_refused(make_console: MakeConsole) -> None:
    console = await make_console(now=lambda: time.time() - 7200)
    assert await console.login("sanne") == (403, "issued-in-future")


@pytest.fixture
async def real_token(
    make_console: MakeConsole, provider: Provider
) -> tuple[Console, str, str, dict[str, Any]]:
    """A console and an ID token the provider issued to it (nonce known), with its claims."""
    console = await make_console()
    nonce = secrets.token_urlsafe(16)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        token = await id_token_for(
            http,
            provider.main,
            console.settings.client_id,
            console.settings.redirect_uri,
            "sanne",
            provider.password,
            nonce,
        )
    claims = await console.client.validate(token, nonce=nonce)
    return console, token, nonce, claims


async def test_the_expiry_leeway_is_exact(
    real_token: tuple[Console, str, str, dict[str, Any]],
) -> None:
    console, token, nonce, claims = real_token
    edge = claims["exp"] + console.settings.leeway_s
    at = replace_clock(console, edge - 1)
    assert (await at.validate(token, nonce=nonce))["sub"] == "sanne"
    with pytest.raises(OidcError, match="expired"):
        await replace_clock(console, edge).validate(token, nonce=nonce)


def replace_clock(console: Console, now: float) -> OidcClient:
    client = OidcClient(console.settings, now=lambda: now)
    client._metadata = console.client._metadata
    client._keys = console.client._keys
    return client


async def test_a_key_the_client_has_not_seen_is_fetched_again_from_the_jwks_once_a_minute(
    real_token: tuple[Console, str, str, dict[str, Any]],
) -> None:
    """Key rotation: the keys were fetched before the provider's key was published. An unknown
    key id makes the client fetch the JWKS again, but not more than once a minute (a stream of
    tokens with made-up key ids must not make it hammer the provider)."""
    console, token, nonce, _ = real_token
    clock = [time.time()]
    client = OidcClient(console.settings, now=lambda: clock[0])
    try:
        await client.keys()
        old = ECKey.generate_key("P-256", {"kid": "old-1"}, private=False)
        client._keys = KeySet([old])  # as if fetched before the provider published its keys
        with pytest.raises(OidcError, match="signature"):
            await client.validate(token, nonce=nonce)
        clock[0] += 61
        assert (await client.validate(token, nonce=nonce))["sub"] == "sanne"
        assert {k.kid for k in client._keys.keys} == {"rs-1", "es-1"}
    finally:
        await client.close()


async def test_an_id_token_from_another_issuer_is_refused(
    make_console: MakeConsole, provider: Provider
) -> None:
    """The rogue provider signs with the same keys: only the issuer gives it away."""
    console = await make_console()
    nonce = secrets.token_urlsafe(16)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        client_id, _ = await register_client(http, provider.rogue, console.settings.redirect_uri)
        token = await id_token_for(
            http,
            provider.rogue,
            client_id,
            console.settings.redirect_uri,
            "sanne",
            provider.password,
            nonce,
        )
    rogue = replace(console.settings, client_id=client_id)  # same audience, other issuer
    client = OidcClient(rogue)
    try:
        with pytest.raises(OidcError, match="issuer"):
            await client.validate(token, nonce=nonce)
    finally:
        await client.close()


async def test_an_id_token_for_another_client_is_refused(
    make_console: MakeConsole, provider: Provider
) -> None:
    console = await make_console()
    other = await make_console()  # another relying party of the same provider
    nonce = secrets.token_urlsafe(16)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        token = await id_token_for(
            http,
            provider.main,
            other.settings.client_id,
            other.settings.redirect_uri,
            "sanne",
            provider.password,
            nonce,
        )
    assert (await other.client.validate(token, nonce=nonce))["aud"] == other.settings.client_id
    with pytest.raises(OidcError, match="audience"):
        await console.client.validate(token, nonce=nonce)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _forge(header: dict[str, Any], payload_b64: str, sign: Callable[[bytes], bytes]) -> str:
    head = _b64url(json.dumps(header).encode())
    signing_input = f"{head}.{payload_b64}".encode()
    return f"{head}.{payload_b64}.{_b64url(sign(signing_input))}"


def _hmac(secret: bytes, digest: Callable[[], Any], data: bytes) -> bytes:
    return hmac.new(secret, data, digest).digest()


def _no_signature(_: bytes) -> bytes:
    return b""


async def test_alg_none_is_refused(real_token: tuple[Console, str, str, dict[str, Any]]) -> None:
    console, token, nonce, _ = real_token
    payload = token.split(".")[1]
    for alg in ("none", "None", "NONE"):
        forged = _forge({"alg": alg, "typ": "JWT"}, payload, _no_signature)
        with pytest.raises(OidcError, match="alg"):
            await console.client.validate(forged, nonce=nonce)
        with pytest.raises(OidcError):
            await console.client.validate(forged[: forged.rindex(".")], nonce=nonce)


async def test_hs256_signed_with_the_providers_public_key_is_refused(
    real_token: tuple[Console, str, str, dict[str, Any]], provider: Provider
) -> None:
    """Key confusion: an HMAC 'signature' keyed with the provider's public RSA key, in every
    form a confused verifier might use as the secret (PEM, DER, the JWK's JSON, its modulus)."""
    console, token, nonce, _ = real_token
    payload = token.split(".")[1]
    jwk = next(k for k in provider.jwks["keys"] if k["kty"] == "RSA")
    public = RSAKey.import_key(jwk).public_key
    secrets_tried = [
        public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        json.dumps(jwk).encode(),
        base64.urlsafe_b64decode(jwk["n"] + "=="),
    ]
    for secret in secrets_tried:
        for alg, digest in (("HS256", hashlib.sha256), ("HS512", hashlib.sha512)):
            mac = functools.partial(_hmac, secret, digest)
            forged = _forge({"alg": alg, "kid": jwk["kid"]}, payload, mac)
            with pytest.raises(OidcError, match="alg"):
                await console.client.validate(forged, nonce=nonce)


def test_the_settings_refuse_symmetric_and_none_algorithms() -> None:
    base = {
        "issuer": "https://idp.example",
        "client_id": "console",
        "redirect_uri": "https://console.example/auth/callback",
        "role_map": ROLE_MAP,
    }
    for algs in (("HS256",), ("none",), ("RS256", "HS256"), ()):
        with pytest.raises(ValueError, match="id_token_algs"):
            OidcClientSettings(**base, id_token_algs=algs)  # type: ignore[arg-type] # the dict's values


async def test_a_changed_claim_breaks_the_signature(
    real_token: tuple[Console, str, str, dict[str, Any]],
) -> None:
    console, token, nonce, claims = real_token
    head, _, sig = token.split(".")
    escalated = {**claims, "groups": ["zvh-fg"], "sub": "kees"}
    forged = f"{head}.{_b64url(json.dumps(escalated).encode())}.{sig}"
    with pytest.raises(OidcError, match="signature"):
        await console.client.validate(forged, nonce=nonce)


async def test_a_token_signed_by_a_key_outside_the_providers_jwks_is_refused(
    real_token: tuple[Console, str, str, dict[str, Any]],
) -> None:
    """Signed with a fresh key under the provider's own key id, and under a new key id (which
    makes the client refetch the JWKS, and find no such key)."""
    console, _, nonce, claims = real_token
    attacker = ECKey.generate_key("P-256")
    for kid in ("es-1", "rotated-2"):
        forged = jws.serialize_compact(
            {"alg": "ES256", "kid": kid}, json.dumps(claims).encode(), attacker
        )
        with pytest.raises(OidcError, match="signature"):
            await console.client.validate(forged, nonce=nonce)


async def test_a_malformed_token_is_refused(
    real_token: tuple[Console, str, str, dict[str, Any]],
) -> None:
    console, _, nonce, _ = real_token
    for bad in ("", "a.b", "not.a.jwt", "!!!.e30.sig", f"{_b64url(b'[1]')}.e30.sig"):
        with pytest.raises(OidcError, match="malformed"):
            await console.client.validate(bad, nonce=nonce)


# ------------------------------------------------------------------ settings and discovery


async def test_discovery_with_another_issuer_than_configured_is_refused(
    make_console: MakeConsole, provider: Provider
) -> None:
    """Configured with a trailing slash, the provider names itself without: not the same issuer."""
    console = await make_console(issuer=provider.main + "/")
    async with console.browser.get(f"{console.url}/login/oidc", allow_redirects=False) as resp:
        assert (resp.status, await resp.text()) == (403, "discovery")


def test_the_settings_refuse_plain_http_off_loopback_and_another_callback_path() -> None:
    base: dict[str, Any] = {"client_id": "c", "role_map": ROLE_MAP}
    good_cb = "https://console.example/auth/callback"
    with pytest.raises(ValueError, match="https"):
        OidcClientSettings(issuer="http://idp.example", redirect_uri=good_cb, **base)
    with pytest.raises(ValueError, match="https"):
        OidcClientSettings(
            issuer="https://idp.example", redirect_uri="http://10.0.0.1/auth/callback", **base
        )
    with pytest.raises(ValueError, match="/auth/callback"):
        OidcClientSettings(
            issuer="https://idp.example", redirect_uri="https://c.example/cb", **base
        )
    ok = OidcClientSettings(
        issuer="http://127.0.0.1:9/", redirect_uri="http://[::1]:8/auth/callback", **base
    )
    assert "secret" not in repr(replace(ok, client_secret="s3cr3t-value"))
    assert "s3cr3t-value" not in repr(replace(ok, client_secret="s3cr3t-value"))


@dataclass(frozen=True)
class _Config:
    """The shape of the console config's ``[console.oidc]`` section."""

    issuer: str | None = "https://idp.example"
    client_id: str | None = "zvg-console"
    client_secret_file: Path | None = None
    redirect_url: str | None = "https://console.example/auth/callback"
    scopes: tuple[str, ...] = ("openid", "profile", "groups")
    role_claim: str = "groups"
    role_mapping: dict[str, Role] = field(
        default_factory=lambda: {"zvh-audit": Role.AUDITOR, "zvh-ciso": Role.SECURITY_OFFICER}
    )


def test_client_settings_from_the_console_config(tmp_path: Path) -> None:
    assert client_settings(_Config(issuer=None)) is None
    secret = tmp_path / "oidc-secret"
    secret.write_text("s3cr3t\n")
    settings = client_settings(_Config(client_secret_file=secret))
    assert settings is not None
    assert settings.client_secret == "s3cr3t"
    assert settings.redirect_uri == "https://console.example/auth/callback"
    # the file's order is the order of precedence
    assert settings.role_map == (("zvh-audit", Role.AUDITOR), ("zvh-ciso", Role.SECURITY_OFFICER))
    assert map_role({"groups": ["zvh-ciso", "zvh-audit"]}, settings) is Role.AUDITOR
    with pytest.raises(ValueError, match="client_id"):
        client_settings(_Config(client_id=None))
    with pytest.raises(ValueError, match="role_mapping"):
        client_settings(_Config(role_mapping={}))
    secret.write_text("\n")
    with pytest.raises(ValueError, match="empty"):
        client_settings(_Config(client_secret_file=secret))
    with pytest.raises(ValueError, match="https"):
        client_settings(_Config(issuer="http://idp.example"))


def test_several_audiences_need_this_client_as_authorized_party() -> None:
    """OpenID Connect Core 3.1.3.7 (3, 4): with other audiences beside this client, ``azp``
    must name this client. Signed here with a key of our own (the validator's inputs are values)."""
    key = ECKey.generate_key("P-256", {"kid": "k1"})
    settings = OidcClientSettings(
        issuer="https://idp.example",
        client_id="console",
        redirect_uri="https://console.example/auth/callback",
        role_map=ROLE_MAP,
    )
    meta = ProviderMetadata(
        issuer="https://idp.example",
        authorization_endpoint="https://idp.example/auth",
        token_endpoint="https://idp.example/token",
        jwks_uri="https://idp.example/jwks",
        id_token_algs=frozenset({"ES256"}),
    )
    now = time.time()
    base = {"iss": "https://idp.example", "sub": "s", "iat": now, "exp": now + 60, "nonce": "n"}

    def check(**claims: Any) -> dict[str, Any]:
        raw = jws.serialize_compact(
            {"alg": "ES256", "kid": "k1"}, json.dumps({**base, **claims}).encode(), key
        )
        return validate_id_token(
            raw, keys=KeySet([key]), settings=settings, metadata=meta, nonce="n", now=now
        )

    assert check(aud="console")["sub"] == "s"
    assert check(aud=["console", "other"], azp="console")["sub"] == "s"
    for claims in (
        {"aud": ["console", "other"]},
        {"aud": ["console", "other"], "azp": "other"},
        {"aud": "console", "azp": "other"},
    ):
        with pytest.raises(OidcError, match="azp"):
            check(**claims)
    with pytest.raises(OidcError, match="audience"):
        check(aud=["other"], azp="console")
