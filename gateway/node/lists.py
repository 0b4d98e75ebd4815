"""The two lists of the local API, paged with opaque cursors (docs/api.md, "Lists").

``GET /v1/inbox``: the oldest unacknowledged messages after a cursor (long-poll with ``wait``),
so an adapter sees message 51 without acking the first 50. ``GET /v1/messages``: the messages
this node sent, newest first, filtered by status, case reference, purpose and time.

A cursor is an opaque token: base64url of a small JSON value holding only a position (an inbox
sequence number; a creation time and message id) — never a filter value or anything personal,
so a cursor in a log or a URL tells nothing about a case. Filters travel beside it, and the
``Link: <…>; rel="next"`` header repeats them. A cursor the node did not issue is ``400``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import UTC, datetime
from typing import Any, get_args
from urllib.parse import urlencode

from aiohttp import web

from gateway.node.api_common import SERVICE, actor_of, client_of, int_param
from gateway.node.problems import ApiError
from gateway.node.store import SentQuery
from schemas.api import DeliveryStatus, InboxPage, MessagePage

__all__ = ["decode_cursor", "encode_cursor", "inbox_handler", "sent_handler"]

#: Most messages one ``GET /v1/messages`` page holds (and its default).
SENT_PAGE_MAX = 100
_STATUSES = frozenset(get_args(DeliveryStatus))
#: The shapes of a case reference (schemas._base.CaseRef) and of a purpose code.
_CASE_REF = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{2,63}")
_PURPOSE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def encode_cursor(kind: str, *position: Any) -> str:
    """An opaque cursor for ``position`` in list ``kind`` (``"i"`` inbox, ``"m"`` messages)."""
    raw = json.dumps([kind, *position], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(kind: str, cursor: str) -> list[Any]:
    """The position in ``cursor``; ``ApiError`` invalid-request for one the node did not issue
    for list ``kind``."""
    value: Any = None
    if cursor.isascii() and len(cursor) <= 200:
        try:
            value = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        except (ValueError, binascii.Error):
            value = None
    if not isinstance(value, list) or not value or value[0] != kind:
        raise _bad_cursor()
    return value[1:]


def _bad_cursor() -> ApiError:
    return ApiError("invalid-request", "query parameter cursor is not a cursor of this list")


def _next_link(request: web.Request, cursor: str) -> str:
    query = [(k, v) for k, v in request.query.items() if k not in {"cursor", "wait"}]
    return f'<{request.path}?{urlencode([*query, ("cursor", cursor)])}>; rel="next"'


def _page(request: web.Request, page: InboxPage | MessagePage) -> web.Response:
    headers = {"Link": _next_link(request, page.next_cursor)} if page.next_cursor else None
    return web.json_response(text=page.model_dump_json(), headers=headers)


async def inbox_handler(request: web.Request) -> web.Response:
    """``GET /v1/inbox?wait=&limit=&cursor=``."""
    client_of(request, "adapter")
    service = request.app[SERVICE]
    lim = service.config.limits
    wait = int_param(request, "wait", 0, 0, lim.inbox_wait_max_seconds)
    limit = int_param(request, "limit", lim.inbox_page_max, 1, lim.inbox_page_max)
    after = 0
    if "cursor" in request.query:
        position = decode_cursor("i", request.query["cursor"])
        if len(position) != 1 or type(position[0]) is not int or position[0] < 0:
            raise _bad_cursor()
        after = position[0]
    items, last = await service.inbox.page(
        limit=limit, wait=wait, actor=actor_of(request), after=after
    )
    # A full page may have more after it; a short one is the end (until more messages arrive).
    cursor = encode_cursor("i", last) if len(items) == limit else None
    return _page(request, InboxPage(items=tuple(items), next_cursor=cursor))


def _time(request: web.Request, name: str) -> datetime | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        value = None
    if value is None or value.tzinfo is None:
        raise ApiError(
            "invalid-request",
            f"query parameter {name} must be an RFC 3339 time with an offset"
            " (2026-03-01T00:00:00Z)",
        )
    return value


def _text(request: web.Request, name: str, pattern: re.Pattern[str]) -> str | None:
    raw = request.query.get(name)
    if raw is not None and not pattern.fullmatch(raw):
        raise ApiError("invalid-request", f"query parameter {name} is not a valid {name}")
    return raw


async def sent_handler(request: web.Request) -> web.Response:
    """``GET /v1/messages?status=&case_ref=&purpose=&since=&until=&limit=&cursor=``."""
    client_of(request, "adapter", "auditor")
    limit = int_param(request, "limit", SENT_PAGE_MAX, 1, SENT_PAGE_MAX)
    status = request.query.get("status")
    if status is not None and status not in _STATUSES:
        raise ApiError(
            "invalid-request",
            f"query parameter status must be one of {', '.join(sorted(_STATUSES))}",
        )
    before = None
    if "cursor" in request.query:
        position = decode_cursor("m", request.query["cursor"])
        if (
            len(position) != 2
            or not isinstance(position[0], int | float)
            or isinstance(position[0], bool)
            or not isinstance(position[1], str)
        ):
            raise _bad_cursor()
        try:
            before = (datetime.fromtimestamp(position[0], UTC), position[1])
        except (OverflowError, OSError, ValueError):
            raise _bad_cursor() from None
    query = SentQuery(
        status=status,
        case_ref=_text(request, "case_ref", _CASE_REF),
        purpose=_text(request, "purpose", _PURPOSE),
        since=_time(request, "since"),
        until=_time(request, "until"),
        before=before,
        limit=limit,
    )
    items = await request.app[SERVICE].outbound.sent(query)
    cursor = None
    if len(items) == limit:
        last = items[-1]
        cursor = encode_cursor("m", last.created_at.timestamp(), last.message_id)
    return _page(request, MessagePage(items=tuple(items), next_cursor=cursor))
