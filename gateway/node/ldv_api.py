"""The LDV read API: ``POST /v1/processing-activities`` (docs/ldv-read-api.md, decision 0102).

The read extension of *Logboek Dataverwerkingen* (``logboek-extensie-lezen``, OpenAPI 1.1.0):
the caller posts a JSON object with at least one of ``traceId``,
``dpl.core.processing_activity_id`` and ``dpl.core.data_subject_id`` (else ``400``), and
optionally ``startTime``/``endTime`` (RFC 3339); the answer is
``{"metadata", "processingActivities", "nextCursor"}`` with the lines of
:mod:`gateway.audit.ldv_read` in the document's form (trace ids as UUIDs, times in RFC 3339).
Pagination, which the extension leaves open: ``?limit=`` and ``?cursor=``; the next page is the
same POST with the cursor of ``nextCursor`` (also in ``Link: <…>; rel="next"``).

Only tokens with the role ``contactpunt`` or ``privacy-officer`` may read (``403`` for any
other, an adapter's included); a ``contactpunt`` token only about one person (its query names
a data subject; as the console's contactpunt searches by subject only), else ``403``. A
subject given as a BSN (``dpl.core.data_subject_id_type`` ``BSN``, or nine digits) is turned
into this organisation's pseudonym with the console's key (``console.pseudonym_key_file``), as
the console's subject search does, and then dropped.

Every call by a known token is an ``ldv.read`` audit record, written before the answer leaves:
who (the token, and the employee of the actor headers), what was asked (the filters; the
subject only as its pseudonym, in the record's personal part), how many lines; ``denied`` for a
role that may not read (or a contactpunt query about no one), ``rejected`` for a query refused.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, get_args
from urllib.parse import urlencode

from aiohttp import web

from gateway.audit.ldv import SUBJECT_ID_TYPE
from gateway.audit.ldv_read import LdvQuery, read_page
from gateway.console.data.subject import NotABsn, looks_like_bsn, subject_pseudonym
from gateway.core.audit import Actor
from gateway.errors import LocalError
from gateway.node.activities import processing_activity
from gateway.node.api_common import SERVICE, actor_of, client_of, int_param
from gateway.node.config import Token, TokenRole
from gateway.node.lists import decode_cursor, encode_cursor
from gateway.node.problems import ApiError
from gateway.node.service import NodeService
from schemas import ids, strictjson

__all__ = ["API_VERSION", "PAGE_MAX", "READERS", "ldv_path", "processing_activities"]

#: The version of the read extension's OpenAPI document this API answers to (header
#: ``API-Version``, as the document declares).
API_VERSION = "1.1.0"
#: The token roles that may read.
READERS = ("contactpunt", "privacy-officer")
#: Most lines one page holds (and the default).
PAGE_MAX = 500
PAGE_DEFAULT = 100

_FIELDS = {
    "traceId",
    "startTime",
    "endTime",
    "dpl.core.processing_activity_id",
    "dpl.core.data_subject_id",
    "dpl.core.data_subject_id_type",
}
_TRACE = re.compile(r"[0-9a-f]{32}")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_PRINTABLE = re.compile(r"[\x21-\x7e]{1,512}")
_NEEDS_ONE = (
    "at least one of traceId, dpl.core.processing_activity_id and dpl.core.data_subject_id "
    "must be given"
)


def _bad(detail: str) -> ApiError:
    return ApiError("invalid-request", detail)


def _trace(value: object) -> str:
    text = value.lower() if isinstance(value, str) else ""
    if _UUID.fullmatch(text):
        text = text.replace("-", "")
    if not _TRACE.fullmatch(text):
        raise _bad("traceId must be a trace id: 32 hex digits, or the same in UUID form")
    return text


def _time(doc: dict[str, Any], name: str) -> float | None:
    value = doc.get(name)
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**53:
        return value / 1000  # milliseconds since the epoch (the extension's older documents)
    parsed = None
    if isinstance(value, str) and len(value) <= 40:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise _bad(f"{name} must be an RFC 3339 time with an offset (2026-03-01T00:00:00Z)")
    return parsed.timestamp()


def _text(doc: dict[str, Any], name: str) -> str | None:
    value = doc.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not _PRINTABLE.fullmatch(value):
        raise _bad(f"{name} must be 1-512 printable ASCII characters without spaces")
    return value


def _subject(service: NodeService, doc: dict[str, Any]) -> tuple[str | None, str | None]:
    """The pseudonym asked for, and the id type it was given as (``BSN`` or ours)."""
    kind = _text(doc, "dpl.core.data_subject_id_type")
    value = doc.get("dpl.core.data_subject_id")
    if value is None:
        if kind is not None:
            raise _bad("dpl.core.data_subject_id_type without dpl.core.data_subject_id")
        return None, None
    if not isinstance(value, str) or not 1 <= len(value) <= 128:
        raise _bad("dpl.core.data_subject_id must be a string of 1-128 characters")
    if kind not in (None, "BSN", SUBJECT_ID_TYPE):
        raise _bad(f"dpl.core.data_subject_id_type must be BSN or {SUBJECT_ID_TYPE}")
    if kind == "BSN" or looks_like_bsn(value):
        path = service.config.console.pseudonym_key_file
        if path is None:
            raise _bad(
                "this node has no pseudonym key (console.pseudonym_key_file): ask by pseudonym"
            )
        try:
            return subject_pseudonym(path.read_bytes().rstrip(b"\r\n"), value), "BSN"
        except NotABsn:
            raise _bad("dpl.core.data_subject_id is not a valid BSN (it was not kept)") from None
        except (OSError, LocalError):
            raise ApiError(
                "unavailable", "the pseudonym key cannot be read", retry_after=60
            ) from None
    if not _PRINTABLE.fullmatch(value) or ids.find_bsn(value):
        raise _bad("dpl.core.data_subject_id must be a pseudonym (printable, no BSN) or a BSN")
    return value, SUBJECT_ID_TYPE


def parse_query(
    service: NodeService, content_type: str, body: bytes
) -> tuple[LdvQuery, str | None]:
    """The query in ``body`` and the subject's id type as given; ``ApiError`` for a refusal,
    whose detail never repeats a value."""
    if content_type != "application/json":
        raise ApiError("unsupported-media-type", "send the query as application/json")
    try:
        doc = strictjson.loads(body) if body else None
    except ValueError:
        raise _bad("the body is not acceptable JSON") from None
    if not isinstance(doc, dict):
        raise _bad("send a JSON object: " + _NEEDS_ONE)
    if set(doc) - _FIELDS:
        raise _bad("the body may only hold " + ", ".join(sorted(_FIELDS)))
    subject, kind = _subject(service, doc)
    activity = _text(doc, "dpl.core.processing_activity_id")
    if activity is not None and ids.find_bsn(activity):
        raise _bad("dpl.core.processing_activity_id must not hold a BSN")
    query = LdvQuery(
        trace_id=_trace(doc["traceId"]) if doc.get("traceId") is not None else None,
        activity=activity,
        subject=subject,
        since=_time(doc, "startTime"),
        until=_time(doc, "endTime"),
    )
    if query.trace_id is None and query.activity is None and query.subject is None:
        raise _bad(_NEEDS_ONE)
    if query.since is not None and query.until is not None and query.since > query.until:
        raise _bad("startTime is after endTime")
    return query, kind


def _position(request: web.Request, query: LdvQuery) -> tuple[int, int]:
    raw = request.query.get("cursor")
    if raw is None:
        return 0, 0
    position = decode_cursor("l", raw)
    if (
        len(position) != 3
        or any(type(p) is not int or p < 0 for p in position[:2])
        or position[2] != query.fingerprint()
    ):
        raise _bad("query parameter cursor is not a cursor of this query")
    return position[0], position[1]


def _uuid(trace: object) -> object:
    if isinstance(trace, str) and _TRACE.fullmatch(trace):
        return f"{trace[:8]}-{trace[8:12]}-{trace[12:16]}-{trace[16:20]}-{trace[20:]}"
    return trace


def _rfc3339(ms: int) -> str:
    t = datetime.fromtimestamp(ms / 1000, UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def read_line(line: dict[str, Any]) -> dict[str, Any]:
    """An export line in the read extension's form: the trace ids as UUIDs, the times in
    RFC 3339 (the export keeps the standard's hex and milliseconds)."""
    out = {
        **line,
        "traceId": _uuid(line["traceId"]),
        "startTime": _rfc3339(line["startTime"]),
        "endTime": _rfc3339(line["endTime"]),
    }
    foreign = line.get("foreignOperation")
    if isinstance(foreign, dict):
        out["foreignOperation"] = {**foreign, "traceId": _uuid(foreign.get("traceId"))}
    return out


async def _record(
    service: NodeService,
    request: web.Request,
    client: Token,
    status: str,
    *,
    query: LdvQuery | None = None,
    kind: str | None = None,
    count: int = 0,
    reason: str | None = None,
) -> None:
    """The ``ldv.read`` audit record of this call (module docstring)."""
    try:
        actor = actor_of(request) or Actor(id=client.name, role=client.role)
    except ApiError:
        actor = Actor(id=client.name, role=client.role)
    detail: dict[str, int | str] = {"client": client.name, "client_role": client.role}
    detail["count"] = count
    if "cursor" in request.query:
        detail["page"] = "next"
    if query is not None:
        if query.activity is not None:
            detail["filter.processing_activity_id"] = query.activity
        if query.subject is not None:
            detail["filter.data_subject_id_type"] = kind or SUBJECT_ID_TYPE
        for name, at in (("filter.start_time", query.since), ("filter.end_time", query.until)):
            if at is not None:
                detail[name] = datetime.fromtimestamp(at, UTC).isoformat()
    ctx = service.ctx
    record = ctx.record(
        "ldv.read",
        status,
        # A read by trace joins the trace read (as a console look at a message does).
        trace_id=query.trace_id if query is not None else None,
        actor=actor,
        data_subjects=(query.subject,) if query is not None and query.subject else (),
        reason=reason,
        detail=detail,
    )
    await ctx.store.commit(ctx.audit.append([record], ctx.now()))


async def processing_activities(request: web.Request) -> web.Response:
    """``POST /v1/processing-activities?limit=&cursor=`` (module docstring)."""
    service = request.app[SERVICE]
    client = client_of(request, *get_args(TokenRole))
    if client.role not in READERS:
        await _record(service, request, client, "denied", reason="role")
        raise ApiError(
            "forbidden",
            f"role {client.role!r} may not read the log; contactpunt and "
            "privacy-officer tokens may",
        )
    try:
        query, kind = parse_query(service, request.content_type, await request.read())
        limit = int_param(request, "limit", PAGE_DEFAULT, 1, PAGE_MAX)
        position = _position(request, query)
    except ApiError as exc:
        await _record(service, request, client, "rejected", reason=exc.slug)
        raise
    if client.role == "contactpunt" and query.subject is None:
        await _record(service, request, client, "denied", query=query, reason="subject-required")
        raise ApiError(
            "forbidden",
            "a contactpunt token reads about one person: give dpl.core.data_subject_id",
        )
    config = service.config
    page = read_page(
        service.audit.store.read,  # the store's read connection (SQLite or PostgreSQL)
        query,
        position=position,
        limit=limit,
        org=service.org,
        activity_of=lambda purpose: processing_activity(config, purpose),
    )
    await _record(service, request, client, "ok", query=query, kind=kind, count=len(page.lines))
    doc: dict[str, Any] = {
        "metadata": {
            "logbookId": f"urn:zvg:{service.org}:audit-log",
            "organizationName": service.directory.names().get(service.org, service.org),
        },
        "processingActivities": [read_line(line) for line in page.lines],
    }
    headers = {"API-Version": API_VERSION, "Cache-Control": "no-store"}
    if page.next_position is not None:
        cursor = encode_cursor("l", *page.next_position, query.fingerprint())
        doc["nextCursor"] = cursor
        link = urlencode([("limit", limit), ("cursor", cursor)])
        headers["Link"] = f'<{request.path}?{link}>; rel="next"'
    return web.json_response(doc, headers=headers)


def ldv_path() -> dict[str, Any]:
    """The route's entry in the node's OpenAPI document (the read extension's own document is
    the reference: docs/ldv-read-api.md)."""
    problem = {"$ref": "#/components/schemas/Problem"}
    answers = {
        str(status): {
            "description": text,
            "content": {"application/problem+json": {"schema": problem}},
        }
        for status, text in (
            (400, "No trace id, processing activity or subject; a bad field, time or cursor"),
            (401, "No or an unknown bearer token"),
            (403, "The token's role is not contactpunt or privacy-officer"),
            (415, "The body is not application/json"),
        )
    }
    string = {"type": "string"}
    return {
        "post": {
            "operationId": "listProcessingActivitiesPost",
            "tags": ["ldv"],
            "summary": "The audit log as Logboek Dataverwerkingen lines (LDV read extension)",
            "description": (
                "The read extension of Logboek Dataverwerkingen (OpenAPI 1.1.0), for "
                "contactpunt and privacy-officer tokens only; every call is an ldv.read audit "
                "record. Pages: limit and cursor; the next page is the same POST with the "
                "cursor of nextCursor."
            ),
            "parameters": [
                {
                    "name": "limit",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "maximum": PAGE_MAX},
                },
                {"name": "cursor", "in": "query", "schema": string},
            ],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                "traceId": string,
                                "startTime": {"type": "string", "format": "date-time"},
                                "endTime": {"type": "string", "format": "date-time"},
                                **{f: string for f in sorted(_FIELDS) if f.startswith("dpl.")},
                            },
                        }
                    }
                },
            },
            "responses": {
                "200": {
                    "description": "A page of lines (ListProcessingActivities) and nextCursor",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                **answers,
            },
        }
    }
