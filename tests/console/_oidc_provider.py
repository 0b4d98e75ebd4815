"""The real OpenID provider of the console's OIDC tests:
``tests/console/oidc_provider/provider.mjs`` (the npm package ``oidc-provider``) in a Node
process on loopback, and the steps a browser and a second relying party take against it
(register a client, sign in through its form, get an ID token of its own)."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import aiohttp

ROOT = Path(__file__).resolve().parents[2]
PROVIDER_DIR = Path(__file__).resolve().parent / "oidc_provider"


@dataclass(frozen=True)
class Provider:
    main: str
    """The issuer the console trusts."""
    rogue: str
    """A second issuer that signs with the same keys."""
    password: str
    """Every account's password."""
    jwks: dict[str, Any]


def _install() -> None:
    """``ensure_oidc_provider`` (scripts/lib.sh): ``npm ci`` when the lock file changed."""
    subprocess.run(
        ["bash", "-c", ". scripts/lib.sh; ensure_oidc_provider"],
        cwd=ROOT,
        check=True,
    )


@contextmanager
def run_provider() -> Iterator[Provider]:
    """Start the provider process; it stops when its stdin closes (and is waited for)."""
    _install()
    proc = subprocess.Popen(
        ["node", str(PROVIDER_DIR / "provider.mjs")],
        cwd=PROVIDER_DIR,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the OpenID provider did not start (exit {proc.wait()})")
        info = json.loads(line)
        yield Provider(
            main=info["main"], rogue=info["rogue"], password=info["password"], jwks=info["jwks"]
        )
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def register_client(
    http: aiohttp.ClientSession, issuer: str, redirect_uri: str, *, confidential: bool = False
) -> tuple[str, str | None]:
    """Dynamic client registration (RFC 7591): (client_id, client_secret or None)."""
    body = {
        "redirect_uris": [redirect_uri],
        "response_types": ["code"],
        "grant_types": ["authorization_code"],
        "token_endpoint_auth_method": "client_secret_basic" if confidential else "none",
        "scope": "openid profile groups",
    }
    async with http.post(f"{issuer}/reg", json=body) as resp:
        data = await resp.json()
        assert resp.status == 201, data
    return data["client_id"], data.get("client_secret")


async def sign_in(
    browser: aiohttp.ClientSession, url: str, account: str, password: str, until: str
) -> str:
    """Follow ``url`` (an authorization request) as a browser would, fill in the provider's
    login form, and return the first redirect that points at ``until`` (the client's callback),
    not followed."""
    method, data = "GET", None
    for _ in range(10):
        async with browser.request(method, url, data=data, allow_redirects=False) as resp:
            if resp.status in (302, 303):
                url = urljoin(url, resp.headers["Location"])
                if url.startswith(until):
                    return url
                method, data = "GET", None
                continue
            text = await resp.text()
            assert resp.status == 200, text
            assert "Unknown account" not in text, text
            path = urlsplit(url).path
            url = urljoin(url, f"{path}/login")
            method, data = "POST", {"login": account, "password": password}
    raise AssertionError("the provider never redirected to the callback")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


async def id_token_for(
    http: aiohttp.ClientSession,
    issuer: str,
    client_id: str,
    redirect_uri: str,
    account: str,
    password: str,
    nonce: str,
) -> str:
    """An ID token the provider issues to another relying party (the tests acting as one):
    its own PKCE verifier, its own nonce, its own code exchange."""
    async with http.get(f"{issuer}/.well-known/openid-configuration") as resp:
        meta = await resp.json()
    verifier = secrets.token_urlsafe(48)
    challenge = _b64url(hashlib.sha256(verifier.encode()).digest())
    query = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": "openid profile groups",
        "state": secrets.token_urlsafe(16),
        "nonce": nonce,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    url = f"{meta['authorization_endpoint']}?{urlencode(query)}"
    callback = await sign_in(http, url, account, password, until=redirect_uri)
    code = parse_qs(urlsplit(callback).query)["code"][0]
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "code_verifier": verifier,
        "client_id": client_id,
    }
    async with http.post(meta["token_endpoint"], data=form) as resp:
        tokens = await resp.json()
        assert resp.status == 200, tokens
    token: str = tokens["id_token"]
    return token
