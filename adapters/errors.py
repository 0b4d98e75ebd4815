"""The adapters' one error tree, split by blame like the node's (``gateway.errors``).

Adapters never import ``gateway``; this tree (rooted at
:class:`~zvg_client.errors.AdapterError`) mirrors its three branches for the partner side:

- :class:`~zvg_client.errors.NodeError` — the node refused a request or could not be reached
  (the client's errors, :mod:`zvg_client.errors`: one subclass per problem ``type``).
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

from zvg_client.errors import AdapterError

__all__ = ["AdapterError", "ConfigError", "MappingError", "UpstreamError"]


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
