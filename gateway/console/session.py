"""Console sessions: who is logged in, held in the node's memory (docs/decisions/0096).

A session is a random 256-bit id in a cookie (``__Host-`` prefix: HttpOnly, Secure,
SameSite=Strict, ``Path=/``, no ``Domain``), mapped to an :class:`Identity` and a CSRF token.
It ends after ``idle`` without a request, ``absolute`` after the login however active, at
logout, and when the node restarts (sessions are not stored: a restart logs everyone out).

CSRF: every state-changing request (every method but GET and HEAD) carries the session's token
in the form field ``csrf`` (or the ``X-CSRF-Token`` header); the login form, before there is a
session, carries the token of a short-lived login cookie (double submit). Both are compared in
constant time. SameSite=Strict already keeps the cookie off cross-site requests; the token is
the second, independent guard.
"""

from __future__ import annotations

import hmac
import secrets
from collections import OrderedDict
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from aiohttp import web

from gateway.console.identity import Identity

__all__ = [
    "LOGIN_COOKIE",
    "SESSION_COOKIE",
    "Session",
    "SessionStore",
    "clear_cookie",
    "same_token",
    "set_cookie",
]

SESSION_COOKIE = "__Host-zvg-console"
"""The session cookie. ``__Host-``: the browser keeps it only when Secure, ``Path=/`` and without
``Domain``, so no sibling host can set or overwrite it."""
LOGIN_COOKIE = "__Host-zvg-console-login"
"""The login form's CSRF cookie (before there is a session)."""
MAX_SESSIONS = 1000
"""Sessions held at once; the least recently used one ends when another starts."""


@dataclass(frozen=True)
class Session:
    id: str
    identity: Identity
    csrf: str
    created: datetime
    last_seen: datetime


class SessionStore:
    """The live sessions, in memory, with the idle and absolute timeouts."""

    def __init__(self, *, idle: timedelta, absolute: timedelta) -> None:
        self.idle = idle
        self.absolute = absolute
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    def start(self, identity: Identity, now: datetime) -> Session:
        """A new session (a new id, never one the browser sent: no session fixation)."""
        session = Session(
            id=secrets.token_urlsafe(32),
            identity=identity,
            csrf=secrets.token_urlsafe(32),
            created=now,
            last_seen=now,
        )
        self._sessions[session.id] = session
        while len(self._sessions) > MAX_SESSIONS:
            self._sessions.popitem(last=False)
        return session

    def touch(self, session_id: str, now: datetime) -> Session | None:
        """The live session with this id, its idle clock restarted; ``None`` (and the session
        ended) when it has timed out or does not exist."""
        session = self._sessions.get(session_id)
        if session is None:
            return None
        if now - session.last_seen >= self.idle or now - session.created >= self.absolute:
            del self._sessions[session_id]
            return None
        session = replace(session, last_seen=now)
        self._sessions[session_id] = session
        self._sessions.move_to_end(session_id)
        return session

    def end(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)


def same_token(given: str | None, expected: str) -> bool:
    """Constant-time comparison of a presented CSRF token with the expected one."""
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def set_cookie(response: web.StreamResponse, name: str, value: str, max_age: int) -> None:
    """A console cookie: HttpOnly, Secure, SameSite=Strict, ``Path=/``."""
    response.set_cookie(
        name, value, max_age=max_age, path="/", secure=True, httponly=True, samesite="Strict"
    )


def clear_cookie(response: web.StreamResponse, name: str) -> None:
    response.del_cookie(name, path="/", secure=True, httponly=True, samesite="Strict")
