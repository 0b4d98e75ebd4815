"""A robust AMQP connection to one of several members of a RabbitMQ cluster (decision 0093).

aio-pika's robust connection takes one URL and, after losing it, tries that same URL again for
ever (aio-pika issue #141 asks for several hosts; it is open). :class:`ClusterConnection` is that
robust connection with a list of member URLs: every reconnection attempt goes to the *next*
member, round the list, so a node whose member died is back on another one after one
``reconnect_interval``, and keeps trying all of them while none answers. Channels, the consumer
and its prefetch are restored on the new member as they would be on the old one (a quorum queue
lives on every member, so the queue is the same queue).

How: aio-pika starts each (re)connection attempt by clearing the connection's ``transport``
before it opens one to ``url``; this class advances ``url`` to the next member at that moment,
from the second attempt on. ``tests/integration/test_broker_cluster.py`` checks it on the real
aio-pika against members that die.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import aio_pika
from aio_pika.abc import UnderlayConnection
from yarl import URL

__all__ = ["ClusterConnection"]


class ClusterConnection(aio_pika.RobustConnection):
    """A robust connection that moves to the next member URL on each reconnection attempt.

    ``start`` is the index of the member the first attempt goes to. :attr:`member` is the index
    of the member the current (or next) attempt is for; :attr:`switches` counts the moves.
    """

    def __init__(self, urls: Sequence[URL], *, start: int = 0, **kwargs: Any) -> None:
        if not urls:
            raise ValueError("a cluster connection needs at least one member URL")
        self._members = tuple(urls)
        self._index = start % len(self._members)
        self._attempts = 0
        self._counting = False
        self._transport: UnderlayConnection | None = None
        self.switches = 0
        super().__init__(self._members[self._index], **kwargs)
        self._counting = True

    @property
    def member(self) -> int:
        return self._index

    @property
    def transport(self) -> UnderlayConnection | None:
        return self._transport

    @transport.setter
    def transport(self, value: UnderlayConnection | None) -> None:
        self._transport = value
        if value is not None or not self._counting or self._close_called:
            return
        # An attempt is about to open a connection to self.url.
        if self._attempts and len(self._members) > 1:
            self._index = (self._index + 1) % len(self._members)
            self.url = self._members[self._index]
            self.switches += 1
        self._attempts += 1
