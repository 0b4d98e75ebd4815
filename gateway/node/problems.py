"""Refusals of the local API as RFC 9457 problem details (``application/problem+json``).

:class:`ApiError` is a :class:`~gateway.errors.RemoteError` (the adapter sent something we
refuse) that also knows its HTTP status and a stable problem ``type``; the API renders it. Types
are URI references under :data:`PROBLEM_BASE` (``/problems/<slug>``): relative, so every node
serves the page that explains one (:func:`problem_page`, no token needed), and stable, so
integrators switch on the last path segment.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from gateway.errors import RemoteError
from schemas.api import FieldError, Problem
from schemas.reasons import RejectReason

__all__ = ["PROBLEM_BASE", "PROBLEM_HELP", "PROBLEM_TYPES", "ApiError", "problem_page"]

#: Where the problem types live: a URI reference resolved against the node's own address.
PROBLEM_BASE = "/problems/"

#: slug → (HTTP status, title). The documented, stable set (docs/api.md).
PROBLEM_TYPES: dict[str, tuple[int, str]] = {
    "invalid-request": (400, "The request is not valid JSON or not of the expected shape"),
    "unauthorized": (401, "A valid bearer token is needed"),
    "forbidden": (403, "This token's role may not do this"),
    "policy-denied": (403, "The federation policy does not allow this message"),
    "not-found": (404, "No such message"),
    "no-route": (404, "The node's API has no such route"),
    "method-not-allowed": (405, "This route does not take this method"),
    "idempotency-conflict": (409, "The Idempotency-Key was used for a different request"),
    "recipient-unavailable": (409, "A recipient cannot receive messages now"),
    "request-timeout": (408, "The request did not arrive in time"),
    "too-large": (413, "The request body is too large"),
    "unsupported-media-type": (415, "Send application/json"),
    "invalid-message": (422, "The message breaks the contract"),
    "outbox-full": (429, "The node's outbox is full; try again after Retry-After"),
    "unavailable": (503, "The node cannot accept this now; try again later"),
}

#: slug → (when the node answers it, what the adapter does): the page at ``/problems/<slug>``.
PROBLEM_HELP: dict[str, tuple[str, str]] = {
    "invalid-request": (
        (
            "The body is not JSON or has duplicate keys, a query parameter, cursor or header "
            "(Idempotency-Key, actor headers) is invalid, or the body does not match its "
            "Content-Encoding."
        ),
        "Fix the request; it will fail again unchanged.",
    ),
    "unauthorized": (
        "There is no Authorization: Bearer header, or the node does not know the token.",
        "Check the token, and that the node was restarted after it was added.",
    ),
    "forbidden": (
        "The token's role may not use this route (an auditor token sending, for instance).",
        "Use a token with the adapter role.",
    ),
    "policy-denied": (
        (
            "No rule of the federation policy allows this purpose, type, sender role and recipient "
            "role, or a category or flag is not allowed. The decision member says which."
        ),
        "Do not retry: change the message or ask the federation's administrators for a rule.",
    ),
    "not-found": (
        "No message with this id was sent by this node, or none is waiting in its inbox.",
        "Check the id; an ack after retention is not-found and harmless.",
    ),
    "no-route": (
        "The path is not a route of the node's API (a typo, or a version prefix other than /v1).",
        "Check the path against the OpenAPI document at /v1/openapi.json.",
    ),
    "method-not-allowed": (
        (
            "The route exists but does not take this HTTP method; the Allow header lists those it "
            "takes."
        ),
        "Use one of the methods in Allow.",
    ),
    "idempotency-conflict": (
        (
            "The Idempotency-Key was used, within the last 7 days, with a different request, or "
            "by a concurrent request."
        ),
        "A new message needs a new key; for the concurrent case, retry the same request.",
    ),
    "recipient-unavailable": (
        "A recipient has no valid encryption key in the directory (expired or revoked).",
        "Nothing was stored: retry later, and tell your node's operator.",
    ),
    "request-timeout": (
        "The request body did not arrive within api.body_timeout_seconds of its head.",
        "Send the whole body at once; retry with the same Idempotency-Key.",
    ),
    "too-large": (
        "The body is over limits.max_request_bytes.",
        "A message is a summary, not a file: send less.",
    ),
    "unsupported-media-type": (
        "The Content-Type is not application/json.",
        "Send Content-Type: application/json.",
    ),
    "invalid-message": (
        (
            "The message breaks the contract: a missing or invalid field, categories or flags "
            "that do not match the body, a role your organisation does not hold. The errors "
            "member names each field (never its value)."
        ),
        "Fix the fields named in errors.",
    ),
    "outbox-full": (
        (
            "The node has limits.max_outbox_backlog publishes waiting for the broker; nothing was "
            "stored."
        ),
        "Send the same request again after Retry-After seconds, with the same Idempotency-Key.",
    ),
    "unavailable": (
        (
            "The node cannot accept now (its directory expired, it serves api.max_connections "
            "connections) or failed internally."
        ),
        "Retry after Retry-After seconds with the same Idempotency-Key.",
    ),
}


class ApiError(RemoteError):
    """A refusal the API renders as problem+json. ``detail`` is shown to the adapter, so it must
    explain the refusal without echoing payload values."""

    def __init__(
        self,
        slug: str,
        detail: str,
        *,
        reason: RejectReason = "invalid_claims",
        errors: Sequence[FieldError] = (),
        decision: dict[str, Any] | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(reason, detail)
        if slug not in PROBLEM_TYPES:
            raise ValueError(f"unknown problem type {slug!r}")
        self.slug = slug
        self.status, self.title = PROBLEM_TYPES[slug]
        self.errors = tuple(errors)
        self.decision = decision
        self.retry_after = retry_after

    def problem(self, instance: str | None = None) -> Problem:
        return Problem(
            type=PROBLEM_BASE + self.slug,
            title=self.title,
            status=self.status,
            detail=self.detail,
            instance=instance,
            errors=self.errors,
            decision=self.decision,
        )


async def problem_page(request: web.Request) -> web.Response:
    """``GET /problems/{slug}``: the page a problem ``type`` resolves to (HTML, no token)."""
    slug = request.match_info["slug"]
    if slug not in PROBLEM_TYPES:
        raise ApiError("no-route", f"no problem type {slug!r} is documented by this node")
    status, title = PROBLEM_TYPES[slug]
    when, what = PROBLEM_HELP[slug]
    page = (
        f"<!doctype html>\n<html lang=en><meta charset=utf-8><title>{html.escape(slug)}</title>\n"
        f"<h1>{status} {html.escape(slug)}</h1>\n<p>{html.escape(title)}.</p>\n"
        f"<h2>When</h2>\n<p>{html.escape(when)}</p>\n"
        f"<h2>What to do</h2>\n<p>{html.escape(what)}</p>\n"
        "<p>All problem types: docs/api.md, “Errors”.</p>\n</html>\n"
    )
    return web.Response(text=page, content_type="text/html")
