"""The adapters' one error tree, split by blame like the node's (``gateway.errors``).

Adapters never import ``gateway``; this tree mirrors its three branches for the partner side:

- :class:`NodeError` — the node refused a request or could not be reached. Subclasses say why,
  one per problem ``type`` the node's API documents (``https://zv-gateway.example/problems/…``):
  :class:`InvalidMessage` (``invalid-message``, ``invalid-request``), :class:`PolicyDenied`,
  :class:`Unauthorized` (``unauthorized``, ``forbidden``), :class:`NotFound`,
  :class:`IdempotencyConflict`, :class:`TooLarge` and :class:`Unavailable` (``unavailable``,
  ``recipient-unavailable``, 429/502/503/504 and no answer: the only retryable one).
- :class:`ConfigError` — the adapter's own configuration or mapping file is wrong; fix the file.
- :class:`MappingError` — a record from the partner's system (a file, a FHIR resource, a zaak)
  cannot be turned into a message, or a message into a record. Carries a ``field`` and a rule,
  never the value (values may be personal data).
- :class:`UpstreamError` — the partner's own system (its FHIR server, its Zaken API) refused a
  request or could not be reached; each such client has its subclass (``FhirError``,
  ``ZgwError``) that says which system and names its error details.

Messages of all of them name fields and rules, never payload content.
"""

from __future__ import annotations

from typing import Any

from schemas.api import FieldError, Problem

__all__ = [
    "PROBLEM_BASE",
    "AdapterError",
    "ConfigError",
    "IdempotencyConflict",
    "InvalidMessage",
    "MappingError",
    "NodeError",
    "NotFound",
    "PolicyDenied",
    "TooLarge",
    "Unauthorized",
    "Unavailable",
    "UpstreamError",
]

#: Prefix of every problem ``type`` the node sends.
PROBLEM_BASE = "https://zv-gateway.example/problems/"


class AdapterError(Exception):
    """Root of every error an adapter raises on purpose."""


class ConfigError(AdapterError):
    """The adapter's configuration or mapping file is wrong (names the key, not a secret)."""


class MappingError(AdapterError):
    """A partner record cannot be mapped to a message, or a message to a record.

    ``field`` is where (e.g. ``"Communication.recipient"``), the message says which rule.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.rule = message


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


class UpstreamError(AdapterError):
    """A partner system's API refused a request (``status``, the HTTP status) or could not be
    reached (``status`` 0).

    ``str(error)`` is ``"<system> <what>: HTTP <status>"``, followed by ``names`` (the API's own
    error codes or invalid field names, never values) in brackets after :attr:`names_label`.
    Subclasses set :attr:`system` and :attr:`names_label`.
    """

    #: The API's name at the start of the message (``"FHIR"``, ``"Zaken API"``).
    system = "upstream"

    #: Words before the names in the brackets (``""`` for bare codes).
    names_label = ""

    def __init__(self, status: int, what: str, names: tuple[str, ...] = ()) -> None:
        suffix = f" ({self.names_label}{', '.join(names)})" if names else ""
        super().__init__(f"{self.system} {what}: HTTP {status}{suffix}")
        self.status = status
        self.names = names

    @property
    def transient(self) -> bool:
        """True when trying again later may succeed: no answer, ``429``, ``502``, ``503`` or
        ``504``."""
        return self.status == 0 or self.status in (429, 502, 503, 504)
