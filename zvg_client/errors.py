"""The errors :class:`~zvg_client.client.NodeClient` raises: one per problem ``type`` the node's
API documents (``https://zv-gateway.example/problems/…``), under :class:`NodeError`.

- :class:`InvalidMessage` (``invalid-message``, ``invalid-request``; also raised by
  :func:`~zvg_client.client.request_from_dict` for data that breaks the contract),
  :class:`PolicyDenied`, :class:`Unauthorized` (``unauthorized``, ``forbidden``),
  :class:`NotFound`, :class:`IdempotencyConflict`, :class:`TooLarge` and :class:`Unavailable`
  (``unavailable``, ``recipient-unavailable``, 429/502/503/504 and no answer: the only retryable
  one).

:class:`AdapterError` is the root; zv-gateway's own adapters raise their other errors under it
too (``adapters.errors``). Messages name fields and rules, never payload content.
"""

from __future__ import annotations

from typing import Any

from schemas.api import FieldError, Problem

__all__ = [
    "PROBLEM_BASE",
    "AdapterError",
    "IdempotencyConflict",
    "InvalidMessage",
    "NodeError",
    "NotFound",
    "PolicyDenied",
    "TooLarge",
    "Unauthorized",
    "Unavailable",
]

#: Prefix of every problem ``type`` the node sends.
PROBLEM_BASE = "https://zv-gateway.example/problems/"


class AdapterError(Exception):
    """Root of every error an adapter raises on purpose."""


class NodeError(AdapterError):
    """The node answered with an error, or could not be reached.

    ``status`` is the HTTP status (0 when no answer came), ``problem`` the RFC 9457 document
    when the node sent one. ``str(error)`` is ``title: detail`` (no payload content).
    """

    retryable = False

    def __init__(self, status: int, problem: Problem | None, message: str | None = None) -> None:
        if message is None:
            message = f"{problem.title}: {problem.detail}" if problem else f"HTTP {status}"
        super().__init__(message)
        self.status = status
        self.problem = problem

    @property
    def type(self) -> str | None:
        """The problem ``type`` URI, when the node sent a problem document."""
        return self.problem.type if self.problem else None


class InvalidMessage(NodeError):
    """``400``/``422`` (``invalid-request``, ``invalid-message``): the message breaks the
    contract. ``errors`` names each field and rule.

    What to do: fix the mapping or the source record; resending the same message will fail again.
    """

    @property
    def errors(self) -> tuple[FieldError, ...]:
        return self.problem.errors if self.problem else ()


class PolicyDenied(NodeError):
    """``403`` ``policy-denied``: the federation policy does not allow this message.

    ``decision`` holds the node's explanation (reason code, purpose, recipient, category or flag,
    rule, directory version). What to do: send less (drop the category), to someone else, or
    under another purpose — or ask the federation's privacy officers to change the policy.
    """

    @property
    def decision(self) -> dict[str, Any]:
        return dict(self.problem.decision or {}) if self.problem else {}


class Unauthorized(NodeError):
    """``401`` (or a ``403`` that is not a policy denial): the token is missing, wrong or lacks
    the role. What to do: check the adapter's token file against the node's configuration."""


class NotFound(NodeError):
    """``404``: no such message (or inbox item) for this organisation."""


class IdempotencyConflict(NodeError):
    """``409`` ``idempotency-conflict``: this Idempotency-Key was used for a different message.
    What to do: a key names one message; derive keys from the whole source record."""


class TooLarge(NodeError):
    """``413``: the message is larger than the node accepts. What to do: send less content."""


class Unavailable(NodeError):
    """``429``/``502``/``503``/``504``, a timeout or no connection: try again later.

    ``retry_after`` is the node's ``Retry-After`` in seconds, when it gave one. The client
    retries these itself with backoff; this is raised when its attempts are used up.
    """

    retryable = True

    def __init__(
        self,
        status: int,
        problem: Problem | None,
        message: str | None = None,
        *,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(status, problem, message)
        self.retry_after = retry_after
