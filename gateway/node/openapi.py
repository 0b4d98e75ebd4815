"""The OpenAPI 3.1 document of the local API, generated from the ``schemas.api`` models.

Written for client generators: every operation has an ``operationId``, ``tags`` and a
description; the send request and the inbox item are discriminated unions on ``message_type``
(one schema per message type, its body typed); response headers and ``Last-Event-ID`` are
declared; ``servers`` is the node's configured ``api.listen``. Tests generate a client from it
and fuzz the node with it (tests/unit/node/test_openapi_clients.py).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic.json_schema import models_json_schema

from gateway import __version__
from gateway.node.ldv_api import ldv_path
from gateway.node.openapi_models import (
    DirectoryView,
    Health,
    InboxPage,
    Readiness,
    SendRequest,
)
from gateway.node.openapi_paths import paths
from gateway.node.problems import PROBLEM_BASE
from gateway.node.rights_api import RIGHTS_PATHS, RIGHTS_TAG
from schemas.api import (
    MessagePage,
    MessageStatus,
    Problem,
    RejectRequest,
    SendAccepted,
)

__all__ = ["openapi_document"]

_MODELS = (
    SendRequest,
    SendAccepted,
    MessageStatus,
    MessagePage,
    InboxPage,
    RejectRequest,
    Problem,
    DirectoryView,
    Health,
    Readiness,
)


@cache
def openapi_document(
    server: str = "http://127.0.0.1:8400", wait_max: int = 60, page_max: int = 100
) -> dict[str, Any]:
    """The document served at ``/v1/openapi.json`` for a node listening at ``server`` with
    these inbox limits (``limits.inbox_wait_max_seconds``, ``limits.inbox_page_max``)."""
    _, defs = models_json_schema(
        [(m, "validation") for m in _MODELS], ref_template="#/components/schemas/{model}"
    )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "zv-gateway node API",
            "version": __version__,
            "description": (
                "The local API an adapter uses to send and receive case messages through its own "
                "zv-gateway node. Errors are RFC 9457 problem details; their type is a URI "
                f"reference {PROBLEM_BASE}<slug> that the node serves a page for."
            ),
        },
        "servers": [{"url": server, "description": "this node (api.listen)"}],
        "security": [{"bearer": []}],
        "tags": [
            {"name": "messages", "description": "Sending, and following what was sent"},
            {"name": "inbox", "description": "Receiving: long-poll or events, then ack"},
            {"name": "directory", "description": "Who is in the federation, what may be sent"},
            {"name": "ops", "description": "Health, readiness and metrics (no token)"},
            {"name": "meta", "description": "This document and the problem type pages"},
            {
                "name": "ldv",
                "description": "The audit log as Logboek Dataverwerkingen (its read extension)",
            },
            RIGHTS_TAG,
        ],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": defs.get("$defs", {}),
        },
        "paths": {**paths(wait_max, page_max), "/v1/processing-activities": ldv_path()}
        | RIGHTS_PATHS,
    }
