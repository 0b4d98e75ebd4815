"""A recording handler for Consumer tests."""

from __future__ import annotations

from collections.abc import Callable

from gateway.broker.transport import Delivery
from gateway.core.decisions import Decision, Deliver


class Recorder:
    """An async handler that records every delivery and answers with ``decide(delivery)``."""

    def __init__(self, decide: Callable[[Delivery], Decision] | None = None) -> None:
        self.deliveries: list[Delivery] = []
        self._decide = decide or (lambda _: Deliver())

    async def __call__(self, delivery: Delivery) -> Decision:
        self.deliveries.append(delivery)
        return self._decide(delivery)

    @property
    def message_ids(self) -> list[str | None]:
        return [d.message_id for d in self.deliveries]
