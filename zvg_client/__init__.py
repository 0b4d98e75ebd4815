"""zv-gateway-client: the async Python client for a zv-gateway node's local HTTP API.

Integrators embed it to send, receive and acknowledge case messages without installing the node
(``pip install zv-gateway-client``; its README). It brings the wire contract with it: the
pydantic models of :mod:`schemas` (``SendRequest``, ``InboxItem``, the per-type claims).

- :class:`~zvg_client.client.NodeClient` — send (idempotent, retried), status, inbox (long-poll
  and server-sent events), ack and reject;
- :func:`~zvg_client.client.request_from_dict`, :func:`~zvg_client.client.item_claims`;
- :mod:`zvg_client.errors` — the typed errors.
"""

from __future__ import annotations

from zvg_client.client import NodeClient, RetryPolicy, item_claims, request_from_dict
from zvg_client.errors import (
    AdapterError,
    IdempotencyConflict,
    InvalidMessage,
    NodeError,
    NotFound,
    PolicyDenied,
    TooLarge,
    Unauthorized,
    Unavailable,
)

__all__ = [
    "AdapterError",
    "IdempotencyConflict",
    "InvalidMessage",
    "NodeClient",
    "NodeError",
    "NotFound",
    "PolicyDenied",
    "RetryPolicy",
    "TooLarge",
    "Unauthorized",
    "Unavailable",
    "__version__",
    "item_claims",
    "request_from_dict",
]

#: The client distribution's version (its own, not the node's: ``clients/python/README.md``).
__version__ = "0.1.0"
