"""The login page (local account: user name, password and TOTP code), logout, and
:func:`start_session`, which the OpenID Connect callback (``gateway.console.oidc``) calls too.

Failed logins are rate-limited per account and per client address (:class:`LoginThrottle`),
logged (one line: the reason and the count, never the password or code) and recorded as
``console.login`` audit records with status ``denied``. The answer never says which of name,
password or code was wrong.
"""

from __future__ import annotations

import asyncio
import logging
import secrets

from aiohttp import web

from gateway.console.access import login_record
from gateway.console.app import CONSOLE, render, see_other, session_of
from gateway.console.identity import Identity
from gateway.console.roles import Role
from gateway.console.session import (
    LOGIN_COOKIE,
    SESSION_COOKIE,
    clear_cookie,
    same_token,
    set_cookie,
)
from gateway.errors import GatewayError, LocalError

__all__ = ["add_routes", "oidc_failed", "safe_next", "start_session"]

log = logging.getLogger("gateway.console")

LOGIN_FORM_SECONDS = 1800
"""How long a login form stays valid (its CSRF cookie)."""
_MAX_FIELD = 256
MAX_LOGIN_BYTES = 8 * 1024
"""Largest login form body (before there is a session nobody may send more)."""


def safe_next(target: str | None) -> str:
    """Where to go after the login: a path on this console, else the start page."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    if target.startswith("/login"):
        return "/"
    return target


def _landing(identity: Identity, target: str) -> str:
    if target == "/" and identity.role is Role.CONTACTPUNT:
        return "/search"
    return target


async def _record(
    request: web.Request,
    *,
    account: str,
    method: str,
    reason: str | None = None,
    role: str | None = None,
) -> None:
    console = request.app[CONSOLE]
    now = console.clock()
    try:
        record = login_record(account=account, method=method, at=now, reason=reason, role=role)
    except LocalError:  # a typed name the audit log may not hold (shaped like a BSN)
        record = login_record(
            account="(not recordable)", method=method, at=now, reason=reason, role=role
        )
    await console.access.write(record, now)


async def start_session(request: web.Request, identity: Identity) -> web.StreamResponse:
    """Log ``identity`` in: a new session (new id), its ``console.login`` record, the cookie,
    and a redirect to the page asked for (``next`` in the query) or the start page."""
    console = request.app[CONSOLE]
    previous = session_of(request)
    if previous is not None:  # one session per browser
        console.sessions.end(previous.id)
    session = console.sessions.start(identity, console.clock())
    try:
        await _record(
            request, account=identity.subject, method=identity.method, role=identity.role.value
        )
    except GatewayError:
        console.sessions.end(session.id)
        raise web.HTTPServiceUnavailable(text="error.unavailable") from None
    target = _landing(identity, safe_next(request.query.get("next")))
    response = see_other(target)
    max_age = int(console.settings.absolute_timeout_hours * 3600)
    set_cookie(response, SESSION_COOKIE, session.id, max_age)
    clear_cookie(response, LOGIN_COOKIE)
    log.info("console: %s login as %s", identity.method, identity.role.value)
    return response


def _login_page(
    request: web.Request, *, status: int = 200, error: str | None = None, **values: object
) -> web.Response:
    token = secrets.token_urlsafe(32)
    console = request.app[CONSOLE]
    response = render(
        request,
        "login.html",
        {
            "login_token": token,
            "error": error,
            "error_values": values,
            "expired": request.query.get("expired") == "1",
            "next": safe_next(request.query.get("next")),
            "oidc": console.settings.oidc.issuer is not None,
        },
        status=status,
    )
    set_cookie(response, LOGIN_COOKIE, token, LOGIN_FORM_SECONDS)
    return response


async def oidc_failed(request: web.Request, error: Exception) -> web.StreamResponse:
    """A failed OpenID Connect login: the login page with the reason code (safe to show: no
    token, code or claim), recorded like a failed local login."""
    reason = str(getattr(error, "reason", "failed"))
    await _record(request, account="(oidc)", method="oidc", reason=f"oidc:{reason}")
    status = 403 if reason == "no-role" else 400
    return _login_page(request, status=status, error="login.oidc.failed", reason=reason)


async def login_form(request: web.Request) -> web.StreamResponse:
    if session_of(request) is not None:
        return see_other("/")
    return _login_page(request)


async def login_submit(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE]
    if request.content_length is None or request.content_length > MAX_LOGIN_BYTES:
        return _login_page(request, status=413, error="login.failed")
    form = await request.post()
    if not same_token(str(form.get("csrf", "")), request.cookies.get(LOGIN_COOKIE, "")):
        return _login_page(request, status=403, error="error.csrf")
    name = str(form.get("user", ""))[:_MAX_FIELD].strip().lower()
    password = str(form.get("password", ""))[:_MAX_FIELD]
    code = str(form.get("code", ""))[:_MAX_FIELD]
    keys = (f"account:{name}", f"address:{request.remote or '?'}")
    now = console.clock()
    minutes = round(console.settings.lockout_minutes)
    if console.throttle.locked(keys, now):
        log.warning("console: login refused, too many failed attempts")
        await _record(request, account=name or "(empty)", method="local", reason="locked")
        return _login_page(request, status=429, error="login.locked", minutes=minutes)
    result = await asyncio.to_thread(console.accounts.check, name, password, code, now)
    if result.identity is None:
        failures = console.throttle.failed(keys, now)
        log.warning(
            "console: failed login (%s), %d failures in the window", result.reason, failures
        )
        await _record(request, account=name or "(empty)", method="local", reason=result.reason)
        return _login_page(request, status=401, error="login.failed")
    console.throttle.succeeded(keys[0])
    return await start_session(request, result.identity)


async def logout(request: web.Request) -> web.StreamResponse:
    """End the session (the CSRF middleware checked the token)."""
    console = request.app[CONSOLE]
    session = session_of(request)
    if session is not None:
        console.sessions.end(session.id)
    response = see_other("/login")
    clear_cookie(response, SESSION_COOKIE)
    return response


def add_routes(app: web.Application) -> None:
    app.router.add_get("/login", login_form)
    app.router.add_post("/login", login_submit)
    app.router.add_post("/logout", logout)
