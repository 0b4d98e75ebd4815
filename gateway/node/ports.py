"""The node's port to the broker: what the loops need to publish, and nothing else.

The loops (``gateway.node.outbound``, ``inbound``, ``receipts``, ``gateway.audit.witness_loop``)
receive a :class:`BrokerPort` when the node is built; they never see a connection.
:class:`gateway.broker.transport.Publisher` implements it. The runner connects to the broker in
the background, so it hands the node a :class:`BrokerSlot` at construction and attaches the
publisher once connected: until then the port says it is not connected and a publish raises
:class:`~gateway.errors.TransientError` (the outbox keeps the message; docs/architecture.md).
In-process tests pass a port of their own.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from gateway.core.broker_topology import CONTENT_TYPE
from gateway.errors import TransientError

__all__ = ["BrokerPort", "BrokerSlot"]


class BrokerPort(Protocol):
    """Publishing with broker confirms (:meth:`gateway.broker.transport.Publisher.publish`)."""

    @property
    def connected(self) -> bool:
        """Whether a publish can reach the broker now (a publish may still fail)."""
        ...

    async def publish(
        self,
        routing: str,
        body: bytes,
        *,
        message_id: str,
        expiration: datetime,
        content_type: str = CONTENT_TYPE,
    ) -> None:
        """Publish and return once the broker confirmed; raises as ``Publisher.publish`` does,
        and :class:`TransientError` while not connected."""
        ...


class BrokerSlot:
    """A port that is not connected until :meth:`attach` gives it the real one (the runner's
    publisher, once the broker answered). :meth:`detach` makes it unreachable again."""

    def __init__(self) -> None:
        self._port: BrokerPort | None = None

    @property
    def connected(self) -> bool:
        return self._port is not None and self._port.connected

    def attach(self, port: BrokerPort) -> None:
        self._port = port

    def detach(self) -> BrokerPort | None:
        """Stop publishing through the attached port; returns it (to close it)."""
        port, self._port = self._port, None
        return port

    async def publish(
        self,
        routing: str,
        body: bytes,
        *,
        message_id: str,
        expiration: datetime,
        content_type: str = CONTENT_TYPE,
    ) -> None:
        port = self._port
        if port is None:
            raise TransientError("not connected to the broker yet")
        await port.publish(
            routing, body, message_id=message_id, expiration=expiration, content_type=content_type
        )
