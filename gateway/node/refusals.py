"""Refused inbound envelopes: counted at once, summarised per sender per interval.

Before an envelope is authenticated, nothing about it deserves a record of its own: whoever holds
a member's broker credentials can publish thousands a second (issue 14: 12,000 junk messages in
4.7 s), and a WARNING line and an audit record per envelope would let junk write the node's log
and its permanent, witnessed audit log. So every envelope the consumer dead-letters
(:class:`~gateway.core.decisions.Reject`, whether the consumer's sender check or the node's
inbound pipeline refused it) is

- counted at once in ``zvg_rejections_total{stage="receive", reason, sender}``: ``reason`` is
  the coarse public code (:data:`schemas.reasons.RejectReason`), ``sender`` the member the broker
  vouches for — the one whose broker user is the AMQP ``user_id``, else the sender named in the
  routing key (the member's topic permission admits only its own), else ``unknown``. Both label
  sets are bounded by the directory and the reason codes, and carry no personal data;
- added to a tally per sender and reason. Every ``audit.refusal_interval_seconds`` the tally
  becomes one ``refusal.summary`` audit record (status ``rejected``, peer = the sender, detail =
  the total and the count per reason, start time = the first refusal of the interval) and one
  WARNING line per sender; an interval without refusals writes nothing. Stopping the node writes
  what was tallied.

A crash loses at most one interval's tally; the metric (until the restart) and the dead-letter
queue still show it. Decision: docs/decisions/0044-refusals-summarised-per-sender.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

from gateway.broker.transport import Delivery
from gateway.core.audit import Record, new_record
from gateway.core.broker_topology import split_routing_key
from gateway.core.directory import TrustedDirectory
from gateway.errors import RemoteError, TransientError
from gateway.telemetry import Telemetry

__all__ = ["UNKNOWN_SENDER", "Refusals"]

log = logging.getLogger("gateway.node")

UNKNOWN_SENDER = "unknown"
"""The ``sender`` of a refusal the broker vouches for no member: no or a foreign ``user_id`` and
a routing key that names no member (only possible for users provisioning did not create)."""

Write = Callable[[Sequence[Record], datetime], Awaitable[object]]


class Refusals:
    """The tally of one node (module docstring). :meth:`note` is synchronous and cheap: the
    consumer calls it for every refused envelope."""

    def __init__(
        self,
        *,
        directory: Callable[[], TrustedDirectory],
        telemetry: Telemetry,
        write: Write,
        clock: Callable[[], datetime],
    ) -> None:
        self._directory = directory
        self._telemetry = telemetry
        self._write = write
        self._clock = clock
        self._since: dict[str, datetime] = {}
        self._counts: dict[str, dict[str, int]] = {}
        self._users: tuple[int, dict[str, str]] = (-1, {})

    def sender(self, delivery: Delivery) -> str:
        """The member OIN the broker vouches for as the publisher of ``delivery``."""
        directory = self._directory()
        version, users = self._users
        if version != directory.version:
            users = {m.broker_user: m.oin for m in directory.payload.members}
            self._users = (directory.version, users)
        if delivery.user_id and delivery.user_id in users:
            return users[delivery.user_id]
        with contextlib.suppress(RemoteError):
            _, routed = split_routing_key(delivery.routing_key)
            if directory.member(routed) is not None:
                return routed
        return UNKNOWN_SENDER

    def note(self, delivery: Delivery, reason: str) -> None:
        """Count one dead-lettered envelope: the metric now, the summary at the next flush."""
        sender = self.sender(delivery)
        self._telemetry.rejections.add(1, {"stage": "receive", "reason": reason, "sender": sender})
        counts = self._counts.setdefault(sender, {})
        counts[reason] = counts.get(reason, 0) + 1
        self._since.setdefault(sender, self._clock())

    async def flush(self) -> int:
        """Write one ``refusal.summary`` record and one WARNING line per sender tallied since
        the last flush; returns how many senders. On a store failure the tally is kept for the
        next flush (and :class:`TransientError` raised)."""
        if not self._counts:
            return 0
        counts, since = self._counts, self._since
        self._counts, self._since = {}, {}
        now = self._clock()
        records = [
            new_record(
                name="refusal.summary",
                status="rejected",
                start_time=since[sender],
                end_time=now,
                peer=sender,
                # A summary joins no message's trace: it is its own (docs/decisions/0098).
                trace_id=os.urandom(16).hex(),
                span_id=os.urandom(8).hex(),
                detail={"total": sum(by_reason.values()), **dict(sorted(by_reason.items()))},
            )
            for sender, by_reason in sorted(counts.items())
        ]
        try:
            await self._write(records, now)
        except TransientError:
            for sender, by_reason in counts.items():
                merged = self._counts.setdefault(sender, {})
                for reason, n in by_reason.items():
                    merged[reason] = merged.get(reason, 0) + n
                self._since[sender] = min(since[sender], self._since.get(sender, since[sender]))
            raise
        names = self._directory().names()
        for sender, by_reason in sorted(counts.items()):
            log.warning(
                "refused and dead-lettered %d envelope(s) from %s (%s) since %s: %s",
                sum(by_reason.values()),
                sender,
                names.get(sender, "not a member"),
                since[sender].isoformat(timespec="seconds"),
                ", ".join(f"{r} {n}" for r, n in sorted(by_reason.items())),
            )
        return len(records)

    async def run(self, interval_s: float, stopping: asyncio.Event) -> None:
        """Flush every ``interval_s`` seconds until ``stopping`` is set, then once more."""
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=interval_s)
            try:
                await self.flush()
            except TransientError as exc:
                log.warning("writing the refusal summary failed (%s); retrying", exc)
