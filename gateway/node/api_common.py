"""What every handler of the local API shares: the app keys, the bearer token check, the actor
headers and query parameters (:mod:`gateway.node.api`, :mod:`gateway.node.lists`)."""

from __future__ import annotations

import re

from aiohttp import web

from gateway.core.audit import Actor
from gateway.node.config import Token
from gateway.node.problems import ApiError
from gateway.node.service import NodeService
from schemas.api import ACTOR_HEADERS

__all__ = ["SERVICE", "TOKENS", "actor_of", "client_of", "int_param"]

SERVICE: web.AppKey[NodeService] = web.AppKey("service")
TOKENS: web.AppKey[tuple[Token, ...]] = web.AppKey("tokens")

#: A number in a query parameter: ASCII digits only (``str.isdigit`` also takes superscripts and
#: fullwidth or Arabic-Indic digits, which ``int`` then refuses or reads), and few enough that
#: ``int`` never refuses the length.
_NUMBER = re.compile(r"[0-9]{1,9}")


def client_of(request: web.Request, *roles: str) -> Token:
    """The token that authenticates ``request``, if its role is one of ``roles``."""
    header = request.headers.get("Authorization", "")
    scheme, _, presented = header.partition(" ")
    presented = presented.strip()
    if scheme.lower() != "bearer" or not presented:
        raise ApiError("unauthorized", "send Authorization: Bearer <token>")
    if not presented.isascii():  # a token is ASCII (RFC 6750 b64token); never hash other bytes
        raise ApiError("unauthorized", "the bearer token is not known to this node")
    for token in request.app[TOKENS]:
        if token.matches(presented):
            if token.role not in roles:
                raise ApiError("forbidden", f"role {token.role!r} may not use {request.path}")
            return token
    raise ApiError("unauthorized", "the bearer token is not known to this node")


def actor_of(request: web.Request) -> Actor | None:
    """The acting employee named by the actor headers, if any."""
    actor_id, role, responsible = (request.headers.get(h) for h in ACTOR_HEADERS)
    if actor_id is None:
        return None
    for name, value in zip(ACTOR_HEADERS, (actor_id, role, responsible), strict=True):
        if value is not None and (not 1 <= len(value) <= 128 or not value.isprintable()):
            raise ApiError("invalid-request", f"header {name} must be 1-128 printable characters")
    return Actor(id=actor_id, role=role, responsible=responsible)


def int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    """Query parameter ``name``: a whole number from ``low`` to ``high`` in ASCII digits."""
    raw = request.query.get(name)
    if raw is None:
        return default
    if not _NUMBER.fullmatch(raw) or not low <= int(raw) <= high:
        raise ApiError(
            "invalid-request", f"query parameter {name} must be an integer from {low} to {high}"
        )
    return int(raw)
