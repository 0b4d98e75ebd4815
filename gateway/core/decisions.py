"""What a node decided about one inbound broker message, as a value (design principle 7,
"decisions are values; the shell settles them", docs/architecture.md §14; layers: §3).

The core and the node's inbound pipeline return one of these; exactly one place in the shell
(:class:`gateway.broker.transport.Consumer`) settles it on the broker:

- :class:`Deliver` — the message is durably stored (inbox + audit): **ack**.
- :class:`Reject` — the message can never be processed (malformed, bad signature, spoofed sender,
  policy): **nack without requeue**, which dead-letters it into the organisation's dead-letter
  queue (docs/ops/broker.md §2). ``reason`` is the coarse public code; ``detail`` stays in our logs.
- :class:`Retry` — a local, temporary failure (store busy): **requeue** after ``after_seconds``.
  Every requeue counts towards the queue's delivery limit, so a message that keeps failing is
  dead-lettered with reason ``delivery_limit`` instead of looping forever.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from schemas.reasons import REJECT_REASONS, RejectReason

__all__ = ["Decision", "Deliver", "Reject", "Retry"]


@dataclass(frozen=True, slots=True)
class Deliver:
    """The message was handled and stored durably; the broker may forget it."""


@dataclass(frozen=True, slots=True)
class Reject:
    """The message is refused for good and goes to the dead-letter queue.

    Raises :class:`ValueError` when ``reason`` is not one of :data:`schemas.reasons.RejectReason`
    (a programming error: the reason set is closed).
    """

    reason: RejectReason
    detail: str

    def __post_init__(self) -> None:
        if self.reason not in REJECT_REASONS:
            raise ValueError(f"unknown reject reason {self.reason!r}")


@dataclass(frozen=True, slots=True)
class Retry:
    """A temporary local failure: give the message back to the queue after ``after_seconds``.

    Raises :class:`ValueError` when ``after_seconds`` is negative or not finite.
    """

    after_seconds: float

    def __post_init__(self) -> None:
        if not math.isfinite(self.after_seconds) or self.after_seconds < 0:
            raise ValueError("after_seconds must be a finite number >= 0")


Decision = Deliver | Reject | Retry
