"""The paths of the OpenAPI document (:mod:`gateway.node.openapi`): one operation per route,
each with an ``operationId``, a tag, a description, its parameters, headers and problems."""

from __future__ import annotations

from typing import Any

from gateway.node.lists import SENT_PAGE_MAX
from gateway.node.problems import PROBLEM_TYPES
from schemas.api import ACTOR_HEADERS

__all__ = ["paths"]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(name: str, description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": _ref(name)}},
    }
    if headers:
        out["headers"] = headers
    return out


_HEADER = {"schema": {"type": "string"}}
_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait, then send again.", **_HEADER}}
_ALLOW = {"Allow": {"description": "The methods the route takes.", **_HEADER}}


def _problems(*slugs: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for slug in dict.fromkeys(slugs):  # once each, in order
        status, title = PROBLEM_TYPES[slug]
        entry = out.setdefault(
            str(status),
            {
                "description": "",
                "content": {"application/problem+json": {"schema": _ref("Problem")}},
            },
        )
        entry["description"] = (
            entry["description"] + "; " if entry["description"] else ""
        ) + f"{slug}: {title}"
        if status in {405, 429, 503}:
            entry["headers"] = _ALLOW if status == 405 else _RETRY_AFTER
    return out


_ACTOR_PARAMS = [
    {
        "name": h,
        "in": "header",
        "required": False,
        "schema": {"type": "string", "minLength": 1, "maxLength": 128},
        "description": "Pseudonymous id, role, responsible user of the acting employee (NEN 7513).",
    }
    for h in ACTOR_HEADERS
]
_ID_PARAM = {
    "name": "message_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "description": "The message id (a UUIDv7).",
}
_CURSOR = {
    "name": "cursor",
    "in": "query",
    "required": False,
    "schema": {"type": "string", "maxLength": 200},
    "description": "The next_cursor of the previous page (opaque; only a position).",
}
_LINK = {
    "Link": {
        "description": 'The next page, when there may be one: <…?cursor=…>; rel="next".',
        "schema": {"type": "string"},
    }
}
#: Every route: the token and the node (no request, however malformed, gets another 5xx).
_ALWAYS = ("invalid-request", "unauthorized", "forbidden", "method-not-allowed", "unavailable")


def _op(
    op_id: str, tag: str, summary: str, description: str, responses: dict[str, Any], **more: Any
) -> dict[str, Any]:
    return {
        "operationId": op_id,
        "tags": [tag],
        "summary": summary,
        "description": description,
        **more,
        "responses": responses,
    }


def paths(wait_max: int, page_max: int) -> dict[str, Any]:
    """The paths, with the bounds of this node's limits (``limits.inbox_*``)."""
    return {
        "/v1/messages": {
            "post": _op(
                "sendMessage",
                "messages",
                "Send a message",
                "The node validates the message against the contract and the federation policy, "
                "seals it, logs it and stores it in its outbox before it answers 202. Send an "
                "Idempotency-Key: a repeat within 7 days of the same request (the same JSON, "
                "however formatted) answers the same message id with Idempotent-Replayed: true.",
                {
                    "202": _json(
                        "SendAccepted",
                        "Accepted: durably in the outbox",
                        {
                            "Location": {
                                "description": "The message's status URL.",
                                "required": True,
                                "schema": {"type": "string"},
                            },
                            "Idempotent-Replayed": {
                                "description": "true when this repeats an earlier request.",
                                "schema": {"type": "string", "enum": ["true"]},
                            },
                        },
                    ),
                    **_problems(
                        "invalid-request",
                        "policy-denied",
                        "idempotency-conflict",
                        "recipient-unavailable",
                        "request-timeout",
                        "too-large",
                        "unsupported-media-type",
                        "invalid-message",
                        "outbox-full",
                        *_ALWAYS,
                    ),
                },
                parameters=[
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string", "minLength": 1, "maxLength": 200},
                        "description": "A retry with the same key (within 7 days) returns the "
                        "same message id.",
                    },
                    *_ACTOR_PARAMS,
                ],
                requestBody={
                    "required": True,
                    "content": {"application/json": {"schema": _ref("SendRequest")}},
                },
            ),
            "get": _op(
                "listSentMessages",
                "messages",
                "List the messages this node sent",
                "Newest first, with their status per recipient (no content), filtered by status "
                "(any recipient), case reference, purpose and creation time; paged by cursor.",
                {
                    "200": _json("MessagePage", "A page of messages", _LINK),
                    **_problems("invalid-request", *_ALWAYS),
                },
                parameters=[
                    {
                        "name": "status",
                        "in": "query",
                        "schema": {
                            "type": "string",
                            "enum": [
                                "queued",
                                "sent",
                                "delivered",
                                "accepted",
                                "rejected",
                                "expired",
                            ],
                        },
                        "description": "Messages where any recipient has this status.",
                    },
                    {"name": "case_ref", "in": "query", "schema": {"type": "string"}},
                    {"name": "purpose", "in": "query", "schema": {"type": "string"}},
                    {
                        "name": "since",
                        "in": "query",
                        "schema": {"type": "string", "format": "date-time"},
                        "description": "Created at or after (RFC 3339, with offset).",
                    },
                    {
                        "name": "until",
                        "in": "query",
                        "schema": {"type": "string", "format": "date-time"},
                        "description": "Created before (RFC 3339, with offset).",
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": SENT_PAGE_MAX},
                    },
                    _CURSOR,
                ],
            ),
        },
        "/v1/messages/{message_id}": {
            "get": _op(
                "getMessageStatus",
                "messages",
                "Status of a sent message",
                "The message's metadata and its delivery status per recipient (no content).",
                {
                    "200": _json("MessageStatus", "The status"),
                    **_problems("not-found", *_ALWAYS),
                },
                parameters=[_ID_PARAM],
            )
        },
        "/v1/inbox": {
            "get": _op(
                "listInbox",
                "inbox",
                "Unacknowledged messages (long-poll)",
                "The oldest delivered messages not yet acked or rejected, after the cursor if "
                "given; waits up to `wait` seconds for one when there are none. A full page "
                "carries next_cursor (and a Link header): pass it to see the messages after it "
                "without acking these.",
                {
                    "200": _json("InboxPage", "Messages", _LINK),
                    **_problems("invalid-request", *_ALWAYS),
                },
                parameters=[
                    {
                        "name": "wait",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 0, "maximum": wait_max},
                        "description": "Seconds to wait for a message (at most "
                        "limits.inbox_wait_max_seconds).",
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": page_max},
                        "description": "At most this many (at most limits.inbox_page_max).",
                    },
                    _CURSOR,
                    *_ACTOR_PARAMS,
                ],
            )
        },
        "/v1/inbox/stream": {
            "get": _op(
                "streamInbox",
                "inbox",
                "Server-sent events",
                "One `message` event per unacknowledged message (data: an InboxItem, id: the "
                "message id), then each new one, and a keepalive comment every 15 s.",
                {
                    "200": {
                        "description": "An event stream",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    },
                    **_problems("invalid-request", *_ALWAYS),
                },
                parameters=[
                    {
                        "name": "Last-Event-ID",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string"},
                        "description": "Sent by EventSource on a reconnect. The stream starts "
                        "again with every still unacknowledged message whatever it says, so a "
                        "reconnect loses nothing: store, then ack.",
                    },
                    *_ACTOR_PARAMS,
                ],
            )
        },
        "/v1/inbox/{message_id}/ack": {
            "post": _op(
                "ackMessage",
                "inbox",
                "Accept a delivered message",
                "Sends the sender an `accepted` receipt. Idempotent.",
                {"204": {"description": "Accepted"}, **_problems("not-found", *_ALWAYS)},
                parameters=[_ID_PARAM, *_ACTOR_PARAMS],
            )
        },
        "/v1/inbox/{message_id}/reject": {
            "post": _op(
                "rejectMessage",
                "inbox",
                "Refuse a delivered message",
                "Sends the sender a `rejected` receipt (reason adapter_rejected); the reason "
                "code and note stay in this node's audit log. Idempotent.",
                {
                    "204": {"description": "Rejected"},
                    **_problems(
                        "invalid-request",
                        "not-found",
                        "request-timeout",
                        "too-large",
                        "invalid-message",
                        *_ALWAYS,
                    ),
                },
                parameters=[_ID_PARAM, *_ACTOR_PARAMS],
                requestBody={
                    "required": True,
                    "content": {"application/json": {"schema": _ref("RejectRequest")}},
                },
            )
        },
        "/v1/directory": {
            "get": _op(
                "getDirectory",
                "directory",
                "The federation's members and what this organisation may send",
                "Members with their roles, and per policy rule: purpose, recipients, message "
                "types, data categories and flags this organisation may send.",
                {"200": _json("DirectoryView", "The directory view"), **_problems(*_ALWAYS)},
            )
        },
        "/v1/openapi.json": {
            "get": _op(
                "getOpenApi",
                "meta",
                "This document",
                "The OpenAPI document of this node's API.",
                {
                    "200": {
                        "description": "OpenAPI 3.1",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    **_problems(*_ALWAYS),
                },
            )
        },
        "/healthz": {
            "get": _op(
                "getHealth",
                "ops",
                "Liveness",
                "The process is alive; 503 once its store failed closed (restart it). No token.",
                {"200": _json("Health", "ok"), "503": _json("Health", "store failed closed")},
                security=[],
            )
        },
        "/readyz": {
            "get": _op(
                "getReadiness",
                "ops",
                "Readiness",
                "Broker connected, directory valid, store writable. No token.",
                {"200": _json("Readiness", "ready"), "503": _json("Readiness", "not ready")},
                security=[],
            )
        },
        "/metrics": {
            "get": _op(
                "getMetrics",
                "ops",
                "Prometheus metrics",
                "The text exposition format. No token.",
                {
                    "200": {
                        "description": "Metrics",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
                security=[],
            )
        },
        "/problems/{slug}": {
            "get": _op(
                "getProblemType",
                "meta",
                "The page a problem type resolves to",
                "What the problem means and what to do. No token.",
                {
                    "200": {
                        "description": "An HTML page",
                        "content": {"text/html": {"schema": {"type": "string"}}},
                    },
                    **_problems("no-route"),
                },
                parameters=[
                    {
                        "name": "slug",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "enum": sorted(PROBLEM_TYPES)},
                    }
                ],
                security=[],
            )
        },
    }
