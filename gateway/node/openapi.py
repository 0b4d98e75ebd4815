"""The OpenAPI 3.1 document of the local API, generated from the ``schemas.api`` models."""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic.json_schema import models_json_schema

from gateway import __version__
from gateway.node.problems import PROBLEM_BASE, PROBLEM_TYPES
from schemas.api import (
    ACTOR_HEADERS,
    InboxItem,
    InboxPage,
    MessageStatus,
    Problem,
    RejectRequest,
    SendAccepted,
    SendRequest,
)

__all__ = ["openapi_document"]

_MODELS = (SendRequest, SendAccepted, MessageStatus, InboxItem, InboxPage, RejectRequest, Problem)


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _problems(*slugs: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for slug in slugs:
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
    return out


_ACTOR_PARAMS = [
    {
        "name": h,
        "in": "header",
        "required": False,
        "schema": {"type": "string", "maxLength": 128},
        "description": "Pseudonymous id, role, responsible user of the acting employee (NEN 7513).",
    }
    for h in ACTOR_HEADERS
]
_ID_PARAM = {"name": "message_id", "in": "path", "required": True, "schema": {"type": "string"}}
_AUTH = ("unauthorized", "forbidden")


@cache
def openapi_document() -> dict[str, Any]:
    """The document served at ``/v1/openapi.json``."""
    _, defs = models_json_schema(
        [(m, "validation") for m in _MODELS], ref_template="#/components/schemas/{model}"
    )
    schemas = defs.get("$defs", {})
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "zv-gateway node API",
            "version": __version__,
            "description": (
                "The local API an adapter uses to send and receive case messages through its own "
                "zv-gateway node. Errors are RFC 9457 problem details; types start with "
                f"{PROBLEM_BASE}. "
                "The message bodies per type are in schemas/json/<type>.schema.json."
            ),
        },
        "servers": [{"url": "http://127.0.0.1:8400"}],
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": schemas,
        },
        "paths": {
            "/v1/messages": {
                "post": {
                    "summary": "Send a message (sealed, logged and queued before the answer)",
                    "parameters": [
                        {
                            "name": "Idempotency-Key",
                            "in": "header",
                            "required": False,
                            "schema": {"type": "string", "maxLength": 200},
                            "description": "A retry with the same key returns the same message id.",
                        },
                        *_ACTOR_PARAMS,
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("SendRequest")}},
                    },
                    "responses": {
                        "202": {
                            "description": "Accepted: durably in the outbox",
                            "content": {"application/json": {"schema": _ref("SendAccepted")}},
                        },
                        **_problems(
                            "invalid-request",
                            *_AUTH,
                            "policy-denied",
                            "idempotency-conflict",
                            "recipient-unavailable",
                            "request-timeout",
                            "too-large",
                            "unsupported-media-type",
                            "invalid-message",
                            "outbox-full",
                            "unavailable",
                        ),
                    },
                }
            },
            "/v1/messages/{message_id}": {
                "get": {
                    "summary": "Status of the message per recipient",
                    "parameters": [_ID_PARAM],
                    "responses": {
                        "200": {
                            "description": "The status",
                            "content": {"application/json": {"schema": _ref("MessageStatus")}},
                        },
                        **_problems(*_AUTH, "not-found"),
                    },
                }
            },
            "/v1/inbox": {
                "get": {
                    "summary": "Oldest unacknowledged messages (long-poll with wait)",
                    "parameters": [
                        {
                            "name": "wait",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 0},
                            "description": "Seconds to wait for a message",
                        },
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 1},
                        },
                        *_ACTOR_PARAMS,
                    ],
                    "responses": {
                        "200": {
                            "description": "Messages",
                            "content": {"application/json": {"schema": _ref("InboxPage")}},
                        },
                        **_problems("invalid-request", *_AUTH),
                    },
                }
            },
            "/v1/inbox/stream": {
                "get": {
                    "summary": "Server-sent events: one 'message' event per inbox item (InboxItem)",
                    "parameters": _ACTOR_PARAMS,
                    "responses": {
                        "200": {
                            "description": "An event stream",
                            "content": {"text/event-stream": {"schema": {"type": "string"}}},
                        },
                        **_problems(*_AUTH),
                    },
                }
            },
            "/v1/inbox/{message_id}/ack": {
                "post": {
                    "summary": "Accept a delivered message ('accepted' receipt; idempotent)",
                    "parameters": [_ID_PARAM, *_ACTOR_PARAMS],
                    "responses": {
                        "204": {"description": "Accepted"},
                        **_problems(*_AUTH, "not-found"),
                    },
                }
            },
            "/v1/inbox/{message_id}/reject": {
                "post": {
                    "summary": "Refuse a delivered message ('rejected' receipt; idempotent)",
                    "parameters": [_ID_PARAM, *_ACTOR_PARAMS],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("RejectRequest")}},
                    },
                    "responses": {
                        "204": {"description": "Rejected"},
                        **_problems(
                            "invalid-request",
                            *_AUTH,
                            "not-found",
                            "request-timeout",
                            "invalid-message",
                        ),
                    },
                }
            },
            "/v1/directory": {
                "get": {
                    "summary": "Members, and what this org may send to whom, for which purpose",
                    "responses": {
                        "200": {
                            "description": "The directory view",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                        **_problems(*_AUTH),
                    },
                }
            },
            "/healthz": {
                "get": {
                    "summary": "The process is alive",
                    "security": [],
                    "responses": {"200": {"description": "ok"}},
                }
            },
            "/readyz": {
                "get": {
                    "summary": "Broker connected, directory valid, store writable",
                    "security": [],
                    "responses": {
                        "200": {"description": "ready"},
                        "503": {"description": "not ready"},
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "security": [],
                    "responses": {"200": {"description": "text exposition format"}},
                }
            },
        },
    }
