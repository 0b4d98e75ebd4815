"""The console's aiohttp application: :func:`build_console_app`.

Served on its own listener by the node process when ``[console] enabled = true``
(:func:`start_console`, called by ``gateway.node.runner``). Every answer carries a strict
Content-Security-Policy (no inline script or style, nothing from another origin), ``no-store``
caching for everything but the static files, and the other hardening headers; HSTS behind TLS.

Deny by default: every route's handler is wrapped by :func:`allow` with the roles that may use
it (``tests/console/test_roles.py`` walks the router and fails on a handler without roles),
except the login, logout, language switch and static files.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

import aiohttp_jinja2
import jinja2
from aiohttp import web
from argon2 import PasswordHasher

from gateway.console.access import Access, AccessLog, access_record
from gateway.console.auth import LocalAccounts, LoginThrottle
from gateway.console.config import ConsoleSettings, split_listen
from gateway.console.i18n import LANGUAGES, Lang, translate
from gateway.console.roles import Role
from gateway.console.session import SESSION_COOKIE, Session, SessionStore, same_token
from gateway.core.directory import TrustedDirectory
from gateway.errors import GatewayError
from gateway.node.service import NodeService

__all__ = [
    "CONSOLE",
    "SESSION",
    "Console",
    "allow",
    "build_console_app",
    "render",
    "see_other",
    "session_of",
    "start_console",
]

log = logging.getLogger("gateway.console")

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
LANG_COOKIE = "zvg-console-lang"

CSP = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "font-src 'self'",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ]
)
"""The Content-Security-Policy of every answer: no inline script or style, nothing from another
origin, no framing, forms only to the console."""

SAFE_METHODS = frozenset({"GET", "HEAD"})
ADDRESS_FACTOR = 4
"""An address may fail this many times more often than an account before it is refused: many
people may share one address (an office's NAT, a reverse proxy), and one person's typos must
not lock out the rest."""
FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
H = TypeVar("H", bound=Handler)


@dataclass(frozen=True)
class Verification:
    """The result of the last full verification run from the console."""

    at: datetime
    ok: bool
    records: int
    witnessed: int
    failure: str


@dataclass
class Console:
    """What the console's handlers share."""

    settings: ConsoleSettings
    service: NodeService
    sessions: SessionStore
    accounts: LocalAccounts
    throttle: LoginThrottle
    access: AccessLog
    clock: Callable[[], datetime]
    tls: bool
    verification: Verification | None = None
    verifying: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def org(self) -> str:
        return self.service.org

    @property
    def directory(self) -> TrustedDirectory:
        return self.service.directory

    @property
    def store_path(self) -> Path:
        return self.service.config.store_path

    async def look(self, access: Access) -> None:
        """Record one look (``console.access``) before it is shown; 503 when it cannot be."""
        try:
            now = self.clock()
            await self.access.write(access_record(access, now), now)
        except GatewayError as exc:
            log.warning("console: an access record could not be written (%s)", type(exc).__name__)
            raise web.HTTPServiceUnavailable(text="error.unavailable") from None


CONSOLE = web.AppKey("console", Console)
SESSION = web.RequestKey("console_session", Session)
"""The request's live session (absent: none)."""
EXPIRED = web.RequestKey("console_session_expired", bool)
"""Whether the request carried a session cookie that has ended."""


def session_of(request: web.Request) -> Session | None:
    return request.get(SESSION)


def see_other(location: str) -> web.Response:
    """A 303 to ``location`` (a response to return and add cookies to)."""
    return web.Response(status=303, headers={"Location": location})


def lang_of(request: web.Request) -> Lang:
    value = request.cookies.get(LANG_COOKIE)
    for lang in LANGUAGES:
        if value == lang:
            return lang
    return "nl"


def render(
    request: web.Request, template: str, context: Mapping[str, Any], *, status: int = 200
) -> web.Response:
    """A page: ``template`` with ``context`` and what every page uses (words, session)."""
    lang = lang_of(request)
    session = session_of(request)
    console = request.app[CONSOLE]

    def t(key: str, **values: object) -> str:
        return translate(lang, key, **values)

    names = console.directory.names()
    base = {
        "t": t,
        "lang": lang,
        "identity": session.identity if session else None,
        "csrf": session.csrf if session else "",
        "org": console.org,
        "org_name": names.get(console.org, console.org),
        "names": names,
        "path": request.path_qs,
        "Role": Role,
    }
    return aiohttp_jinja2.render_template(template, request, {**base, **context}, status=status)


def error_page(request: web.Request, key: str, status: int) -> web.Response:
    return render(request, "error.html", {"message_key": key}, status=status)


def allow(*roles: Role) -> Callable[[H], H]:
    """Only sessions with one of ``roles`` reach the handler; no session goes to the login."""
    allowed = frozenset(roles)

    def wrap(handler: H) -> H:
        async def guarded(request: web.Request) -> web.StreamResponse:
            session = session_of(request)
            if session is None:
                where = quote(request.path_qs, safe="/?=&")
                expired = "&expired=1" if request.get(EXPIRED) else ""
                return see_other(f"/login?next={where}{expired}")
            if session.identity.role not in allowed:
                return error_page(request, "error.forbidden", 403)
            return await handler(request)

        guarded.roles = allowed  # type: ignore[attr-defined]  # read by the deny-by-default test
        guarded.__name__ = handler.__name__
        guarded.__doc__ = handler.__doc__
        return guarded  # type: ignore[return-value]  # the same signature as the handler

    return wrap


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The hardening headers on every answer, errors included."""
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status == 503 and exc.text == "error.unavailable":
            response = error_page(request, "error.unavailable", 503)
        elif exc.status == 404:
            response = error_page(request, "error.not_found", 404)
        else:
            _harden(request, exc)
            raise
    except Exception as exc:  # noqa: BLE001 - an answer with the headers, not aiohttp's bare 500
        # The class only, no traceback: an exception's text may hold what a record held.
        name = type(exc).__name__
        log.error("console: %s %s failed (%s)", request.method, request.path, name)  # noqa: TRY400 - no traceback, on purpose
        response = error_page(request, "error.internal", 500)
    _harden(request, response)
    return response


def _harden(request: web.Request, response: web.StreamResponse) -> None:
    headers = response.headers
    headers["Content-Security-Policy"] = CSP
    headers["X-Content-Type-Options"] = "nosniff"
    # same-origin, not no-referrer: under no-referrer a browser sends `Origin: null` with every
    # form POST, even to the console itself, and the CSRF check refuses an opaque origin; the
    # console links nowhere else, so no URL (a search with a case reference) leaves the origin.
    headers["Referrer-Policy"] = "same-origin"
    headers["X-Frame-Options"] = "DENY"
    headers["Cross-Origin-Opener-Policy"] = "same-origin"
    headers["Cross-Origin-Resource-Policy"] = "same-origin"
    headers["Permissions-Policy"] = "camera=(), microphone=(), geolocation=(), payment=()"
    if not request.path.startswith("/static/"):
        headers["Cache-Control"] = "no-store"
    if request.app[CONSOLE].tls:
        headers["Strict-Transport-Security"] = "max-age=31536000"


@web.middleware
async def sessions(request: web.Request, handler: Handler) -> web.StreamResponse:
    """``request[SESSION]``: the live session of the cookie, when there is one."""
    console = request.app[CONSOLE]
    sid = request.cookies.get(SESSION_COOKIE)
    session = console.sessions.touch(sid, console.clock()) if sid else None
    if session is not None:
        request[SESSION] = session
    request[EXPIRED] = sid is not None and session is None
    return await handler(request)


@web.middleware
async def csrf(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every state-changing request carries the session's CSRF token (the login form its own,
    checked by the login handler), and no other origin's ``Origin`` header."""
    if request.method in SAFE_METHODS:
        return await handler(request)
    origin = request.headers.get("Origin")
    # The host only: behind a reverse proxy that ends TLS the console sees http, the browser
    # sends https; an opaque origin ("null": a sandboxed frame, a redirect) is refused.
    if origin is not None and urlsplit(origin).netloc != request.host:
        return error_page(request, "error.csrf", 403)
    if request.path == "/login":
        return await handler(request)
    session = session_of(request)
    if session is None:
        return see_other("/login?expired=1")
    token = request.headers.get("X-CSRF-Token")
    if token is None and request.content_type in FORM_TYPES:
        token = str((await request.post()).get("csrf", ""))
    if not same_token(token, session.csrf):
        return error_page(request, "error.csrf", 403)
    return await handler(request)


def build_console_app(
    service: NodeService,
    settings: ConsoleSettings,
    *,
    users_file: Path,
    hasher: PasswordHasher | None = None,
    clock: Callable[[], datetime] | None = None,
    tls: bool = False,
) -> web.Application:
    """The console of the node ``service`` (module docstring). ``hasher`` verifies local
    passwords (default: argon2-cffi's RFC 9106 parameters); ``clock`` defaults to the node's."""
    from gateway.console import (
        case_pages,
        evidence,
        login,
        notice_pages,
        pages,
        review_pages,
        rights_pages,
    )

    app = web.Application(
        middlewares=[security_headers, sessions, csrf],
        client_max_size=evidence.MAX_BUNDLE_BYTES + 64 * 1024,
    )
    console = Console(
        settings=settings,
        service=service,
        sessions=SessionStore(
            idle=timedelta(minutes=settings.idle_timeout_minutes),
            absolute=timedelta(hours=settings.absolute_timeout_hours),
        ),
        accounts=LocalAccounts(users_file, hasher),
        throttle=LoginThrottle(
            max_failures=settings.max_failed_logins,
            window=timedelta(minutes=settings.lockout_minutes),
            address_factor=ADDRESS_FACTOR,
        ),
        access=AccessLog(service.audit.store, service.audit.append),
        clock=clock or service.clock,
        tls=tls,
    )
    app[CONSOLE] = console
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.PackageLoader("gateway.console", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    login.add_routes(app)
    pages.add_routes(app)
    case_pages.add_routes(app)
    evidence.add_routes(app)
    review_pages.add_routes(app)
    notice_pages.add_routes(app)
    rights_pages.add_routes(app)
    app.router.add_get("/lang/{lang}", switch_language)
    app.router.add_static("/static", STATIC, follow_symlinks=False)
    _mount_oidc(app, settings)
    return app


def _mount_oidc(app: web.Application, settings: ConsoleSettings) -> None:
    """The OpenID Connect routes (``gateway.console.oidc``: ``/login/oidc``, ``/auth/callback``)
    when an issuer is configured; a login ends in :func:`gateway.console.login.start_session`,
    a failed one on the login page with its reason code."""
    if settings.oidc.issuer is None:
        return
    from gateway.console.login import oidc_failed, start_session
    from gateway.console.oidc import add_oidc_routes, client_settings

    client = client_settings(settings.oidc)
    if client is not None:
        add_oidc_routes(app, client, start_session, on_failure=oidc_failed)


async def switch_language(request: web.Request) -> web.StreamResponse:
    """``/lang/en?next=/search``: remember the language, back to the page."""
    lang = request.match_info["lang"]
    if lang not in LANGUAGES:
        raise web.HTTPNotFound
    target = request.query.get("next", "/")
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        target = "/"
    response = see_other(target)
    response.set_cookie(
        LANG_COOKIE,
        lang,
        max_age=365 * 86400,
        path="/",
        secure=True,
        httponly=True,
        samesite="Strict",
    )
    return response


def _tls_context(settings: ConsoleSettings) -> ssl.SSLContext | None:
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(settings.tls_cert), str(settings.tls_key))
    return context


async def start_console(service: NodeService) -> web.AppRunner | None:
    """Start the console of ``service`` on its listener when enabled (``None`` when not)."""
    config = service.config
    settings = config.console
    if not settings.enabled:
        return None
    tls = _tls_context(settings)
    app = build_console_app(
        service, settings, users_file=config.console_users_file, tls=tls is not None
    )
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    host, port = split_listen(settings.listen)
    site = web.TCPSite(runner, host, port, ssl_context=tls)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    scheme = "https" if tls else "http"
    log.info("console listening on %s://%s", scheme, settings.listen)
    return runner
