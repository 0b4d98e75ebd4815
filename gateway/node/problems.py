"""Refusals of the local API as RFC 9457 problem details (``application/problem+json``).

:class:`ApiError` is a :class:`~gateway.errors.RemoteError` (the adapter sent something we
refuse) that also knows its HTTP status and a stable problem ``type``; the API renders it. Types
are URIs under :data:`PROBLEM_BASE`; integrators switch on the last path segment.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway.errors import RemoteError
from schemas.api import FieldError, Problem
from schemas.reasons import RejectReason

__all__ = ["PROBLEM_BASE", "PROBLEM_TYPES", "ApiError"]

PROBLEM_BASE = "https://zv-gateway.example/problems/"

#: slug → (HTTP status, title). The documented, stable set (docs/api.md).
PROBLEM_TYPES: dict[str, tuple[int, str]] = {
    "invalid-request": (400, "The request is not valid JSON or not of the expected shape"),
    "unauthorized": (401, "A valid bearer token is needed"),
    "forbidden": (403, "This token's role may not do this"),
    "policy-denied": (403, "The federation policy does not allow this message"),
    "not-found": (404, "No such message"),
    "idempotency-conflict": (409, "The Idempotency-Key was used for a different request"),
    "recipient-unavailable": (409, "A recipient cannot receive messages now"),
    "request-timeout": (408, "The request did not arrive in time"),
    "too-large": (413, "The request body is too large"),
    "unsupported-media-type": (415, "Send application/json"),
    "invalid-message": (422, "The message breaks the contract"),
    "outbox-full": (429, "The node's outbox is full; try again after Retry-After"),
    "unavailable": (503, "The node cannot accept this now; try again later"),
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
