"""The outbox publisher (docs/architecture.md §9.1, §9.6).

Publishes every queued envelope with confirms through the broker port and retries until the
broker confirmed it or the message expired. Fresh entries are handed over at once
(:meth:`Outbox.hand_over`, by ``send`` and the receipt loop); a periodic scan of the store
catches whatever that misses (a restart, a failed publish). While the port says it is not
connected, nothing is published and everything stays in the outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from datetime import timedelta

from gateway.broker.transport import MessageExpiredError
from gateway.core.broker_topology import routing_key
from gateway.core.delivery import OutboundEvent
from gateway.errors import LocalError, TransientError
from gateway.node.context import NodeContext
from gateway.node.store import OutboxEntry, PendingPublish, SetStatus

__all__ = ["PUBLISH_BATCH", "Outbox"]

log = logging.getLogger("gateway.node")

#: Outbox entries fetched per publishing round.
PUBLISH_BATCH = 512
#: Publishes this process saw confirmed (or expire) that it remembers, so that a hand-over or a
#: scan that comes late never queues them again (far more than a publish window's worth).
REMEMBER_DONE = 4096


class Outbox:
    """The outbox loop (module docstring)."""

    def __init__(self, ctx: NodeContext) -> None:
        self.ctx = ctx
        #: Envelopes just made durable, handed straight to the publisher (no re-reading), and
        #: what the periodic scan found; keyed by (message id, recipient org), so a scan never
        #: queues one twice. Started in order, at most ``broker.publish_window`` at once (the
        #: rest wait here or in the store).
        self._ready: OrderedDict[tuple[str, str], PendingPublish] = OrderedDict()
        self._in_flight: set[tuple[str, str]] = set()
        #: Lately confirmed or expired here, oldest first: a scan may find a fresh entry before
        #: ``send`` hands it over, and that late hand-over must not publish it a second time.
        self._done: OrderedDict[tuple[str, str], None] = OrderedDict()
        #: Publishes not yet confirmed (``zvg.outbox.pending``): counted from the store at start
        #: and at every outbox scan, moved in between by hand-overs and confirms; ``send``
        #: answers 429 above ``limits.max_outbox_backlog``
        #: (docs/decisions/0049-outbox-backlog-answers-429.md).
        self.backlog = 0

    def hand_over(self, entry: OutboxEntry) -> None:
        """Give a durable outbox entry to the publisher at once (one publish per recipient)."""
        for org, _roles in entry.recipients:
            if (entry.message_id, org) in self._done:
                continue
            self.backlog += 1
            self._ready[entry.message_id, org] = PendingPublish(
                entry.message_id,
                org,
                entry.envelope,
                entry.expires_at,
                entry.message_type,
                entry.purpose,
                entry.case_ref,
                entry.trace_id,
            )
        self.ctx.outbox_wake.set()

    async def count_backlog(self) -> None:
        """Set :attr:`backlog` from the store (at start, and at every outbox scan: whatever the
        counting in between missed — a receipt or the retention job moving a status — is
        corrected there)."""
        with contextlib.suppress(TransientError):
            gauges = await self.ctx.store.gauges(self.ctx.now())
            self.backlog = int(gauges["outbox_pending"])

    def wake(self) -> None:
        """Look at the outbox now (the broker just connected)."""
        self.ctx.outbox_wake.set()

    async def run(self) -> None:
        """Publish every queued envelope until confirmed (or expired); runs until stopped.

        Fresh entries come straight from :meth:`hand_over`; every ``outbox_retry_seconds`` (and
        at start) a scan of the store picks up anything older that is still unconfirmed."""
        ctx = self.ctx
        retry = ctx.config.limits.outbox_retry_seconds
        window = ctx.config.broker.publish_window
        loop = asyncio.get_running_loop()
        next_scan = next_count = 0.0
        while not ctx.stopping.is_set():
            ctx.outbox_wake.clear()
            if loop.time() >= next_count:
                await self.count_backlog()
                next_count = loop.time() + retry
            if ctx.broker.connected:
                if loop.time() >= next_scan:
                    older = None if next_scan == 0.0 else ctx.now() - timedelta(seconds=retry)
                    with contextlib.suppress(TransientError):
                        for p in await ctx.store.pending_publishes(PUBLISH_BATCH, older):
                            key = (p.message_id, p.org)
                            if key not in self._in_flight and key not in self._done:
                                self._ready.setdefault(key, p)
                    next_scan = loop.time() + retry
                while self._ready and len(self._in_flight) < window:
                    key, p = self._ready.popitem(last=False)
                    # A copy queued while the same publish was in flight (by a hand-over that
                    # came during the scan's publish) is dropped once that one is done.
                    if key not in self._in_flight and key not in self._done:
                        self._in_flight.add(key)
                        ctx.spawn(self._publish(p, key), f"publish {p.message_id}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ctx.outbox_wake.wait(), timeout=retry)

    async def _publish(self, p: PendingPublish, key: tuple[str, str]) -> None:
        ctx = self.ctx
        retry_after = 0.0
        try:
            await ctx.broker.publish(
                routing_key(p.org, ctx.org),
                p.envelope,
                message_id=p.message_id,
                expiration=p.expires_at,
            )
        except MessageExpiredError:
            await self._mark_expired(p)
            self._remember(key)
        except (TransientError, LocalError) as exc:
            retry_after = ctx.config.limits.outbox_retry_seconds
            log.warning(
                "publish of %s to %s failed (%s); retrying in %.0f s",
                p.message_id,
                p.org,
                exc.__class__.__name__,
                retry_after,
            )
        else:
            # An entry re-read from the store (the scan found it first, or after a restart)
            # publishes in its send's trace too: one trace id finds the whole exchange (LDV).
            trace_id = p.trace_id
            if not trace_id:
                with contextlib.suppress(TransientError):  # then a trace of its own
                    trace_id = await ctx.audit.send_trace(p.message_id)
            now = ctx.now()
            record = ctx.record(
                "message.publish",
                trace_id=trace_id,
                message_id=p.message_id,
                peer=p.org,
                purpose=p.purpose,
                message_type=p.message_type,
                case_ref=p.case_ref,
            )
            committed = await ctx.store.commit(
                SetStatus(p.message_id, p.org, OutboundEvent.PUBLISHED, None, now),
                ctx.audit.append([record], now),
            )
            self._remember(key)
            if committed.applied:
                self.backlog -= 1
        finally:
            if retry_after:
                await asyncio.sleep(retry_after)
            self._in_flight.discard(key)
            if retry_after or self._ready:
                ctx.outbox_wake.set()

    def _remember(self, key: tuple[str, str]) -> None:
        self._done[key] = None
        if len(self._done) > REMEMBER_DONE:
            self._done.popitem(last=False)

    async def _mark_expired(self, p: PendingPublish) -> None:
        ctx = self.ctx
        now = ctx.now()
        record = ctx.record("message.expire", "error", message_id=p.message_id, peer=p.org)
        committed = await ctx.store.commit(
            SetStatus(p.message_id, p.org, OutboundEvent.EXPIRED, None, now),
            ctx.audit.append([record], now),
        )
        if committed.applied:
            self.backlog -= 1
