"""Inbound: the consumer's ``on_delivery`` (docs/architecture.md §9.6).

``on_delivery`` runs the cheap checks, deduplicates by (sender, message id), opens and verifies,
re-checks the policy with *our* directory, and stores the message in the inbox with its audit
records and a pending receipt before the broker ack. Verified receipts go to
:class:`gateway.node.receipts_in.IncomingReceipts`, witnessing messages to
:class:`gateway.audit.witness_loop.Witnessing`.

Unauthenticated input is never answered: a receipt is only sent for a message whose signature
verified and which is not itself a receipt (docs/decisions/0040-receipts-only-for-verified.md).
What cannot be accepted before it is verified is dead-lettered and summarised per sender
(:mod:`gateway.node.refusals`).

A failure of the node's own store (:class:`~gateway.node.store.StoreUnavailableError`, or the
store failed closed) says nothing about the message, so it is never given back to the broker,
whose queue counts every return against its delivery limit (decision 0115): the delivery is
**held** (it keeps its prefetch slot, unacked) and tried again with backoff while the store is
unavailable, and until the node stops once the store failed closed (a liveness probe restarts
the process; the broker then hands the message to the next consumer). So is a delivery that
meets this node's own trusted directory expired: it is held until a newer version is trusted.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from opentelemetry import trace
from opentelemetry.trace import Link, SpanContext, TraceFlags

from gateway.broker.transport import Delivery
from gateway.core import jose
from gateway.core.audit import MessageFields, message_record, policy_record
from gateway.core.broker_topology import WITNESS_CONTENT_TYPE, routing_key
from gateway.core.decisions import Decision, Deliver, Reject, Retry
from gateway.core.envelope import EnvelopeHeader, VerifiedMessage, open_envelope, peek_header
from gateway.core.inbound import decide_inbound
from gateway.errors import LocalError, RemoteError, TransientError
from gateway.node.activities import processing_activity
from gateway.node.context import Changes, NodeContext
from gateway.node.erasure import naming_no_one, notice_erasure
from gateway.node.receipts_in import IncomingReceipts
from gateway.node.refusals import Refusals
from gateway.node.store import (
    InboxEntry,
    InsertInbox,
    QueueReceipt,
    StoreFailedClosedError,
    StoreUnavailableError,
)
from schemas.bodies import ReceiptBatchBody, ReceiptBody
from schemas.claims import ClaimsBase, claims_to_json

__all__ = [
    "STORE_RETRY_FIRST_S",
    "STORE_RETRY_MAX_S",
    "Inbound",
    "refuse",
]

log = logging.getLogger("gateway.node")

#: First pause before a delivery held for the store is tried again; it doubles up to the max.
STORE_RETRY_FIRST_S = 0.2
STORE_RETRY_MAX_S = 5.0

WitnessHandler = Callable[[Delivery, datetime], Awaitable[Decision]]
#: What handles a stored ``rights.*`` message (gateway.node.rights.RightsDesk.on_message).
RightsHandler = Callable[[ClaimsBase], Awaitable[None]]


def refuse(exc: RemoteError, delivery: Delivery, message_id: str | None) -> Decision:
    """Dead-letter what we cannot accept before verifying it; never answer. Counted and
    summarised per sender by :meth:`Inbound.on_settled` (one log line and one audit record per
    interval, not per envelope: anyone with a member's broker login can send thousands)."""
    log.debug(
        "refusing envelope %s from broker user %s: %s (%s)",
        message_id,
        delivery.user_id,
        exc.reason,
        exc.detail,
    )
    return Reject(exc.reason, exc.detail)


class Inbound:
    """The inbound pipeline of one node (module docstring)."""

    def __init__(
        self,
        ctx: NodeContext,
        *,
        receipts: IncomingReceipts,
        witness: WitnessHandler,
        refusals: Refusals,
        rights: RightsHandler | None = None,
    ) -> None:
        self.ctx = ctx
        self._rights = rights
        self._receipts = receipts
        self._witness = witness
        self._refusals = refusals
        self._peeked: tuple[bytes, EnvelopeHeader] | None = None
        #: Deliveries held now because the store is unavailable (module docstring).
        self.holding = 0
        #: Changed whenever a delivery starts or stops being held.
        self.holding_changed = Changes()

    def sender_of(self, body: bytes) -> str:
        """The sender org named in an envelope's header (for the consumer's user_id check)."""
        return self._peek(body).sender_org

    def _peek(self, body: bytes) -> EnvelopeHeader:
        """``peek_header`` memoised per envelope: the consumer's sender check and the inbound
        pipeline both need the header of the same bytes (refusals are never cached)."""
        cached = self._peeked
        if cached is not None and cached[0] is body:
            return cached[1]
        header = peek_header(body, limits=self.ctx.envelope_limits)
        self._peeked = (body, header)
        return header

    def broker_user_of(self, org: str) -> str | None:
        member = self.ctx.directory.member(org)
        return None if member is None else member.broker_user

    async def on_delivery(self, delivery: Delivery) -> Decision:
        """The inbound pipeline (module docstring). Returns the decision the consumer settles;
        holds the delivery while the store is unavailable, and gives it back (``Retry``) only
        when the node stops meanwhile."""
        ctx = self.ctx
        pause = STORE_RETRY_FIRST_S
        while True:
            try:
                return await self._handle(delivery)
            except _DirectoryExpiredError as exc:
                why, counter = str(exc), "held_for_directory"
            except Exception as exc:
                if not self._store_down(exc):
                    raise
                why = f"the store is unavailable ({type(exc).__name__}: {exc})"
                counter = "held_for_store"
            ctx.count(counter)
            self._hold(1, why)
            try:
                if getattr(ctx.store, "failed_closed", False):
                    await ctx.stopping.wait()  # it will not come back in this process
                else:
                    await ctx.pause(pause)
            finally:
                self._hold(-1, why)
            if ctx.stopping.is_set():
                return Retry(0)
            pause = min(pause * 2, STORE_RETRY_MAX_S)

    def _store_down(self, exc: Exception) -> bool:
        """Whether ``exc`` is the node's own store failing, not anything about the message."""
        return isinstance(exc, StoreUnavailableError | StoreFailedClosedError) or bool(
            getattr(self.ctx.store, "failed_closed", False)
        )

    def _hold(self, delta: int, why: str) -> None:
        before, self.holding = self.holding, self.holding + delta
        if before == 0 and delta > 0:
            log.warning(
                "holding inbound deliveries while %s: unacked, not given back to the queue, "
                "until that ends or the process stops",
                why,
            )
        elif self.holding == 0:
            log.info("no inbound delivery held any more")
        self.holding_changed.changed()

    async def _handle(self, delivery: Delivery) -> Decision:
        """The inbound pipeline proper (:meth:`on_delivery` holds it through store outages)."""
        ctx = self.ctx
        started = ctx.now()
        if delivery.content_type == WITNESS_CONTENT_TYPE:
            return await self._witness(delivery, started)
        try:
            header = self._peek(delivery.body)
        except RemoteError as exc:
            return refuse(exc, delivery, None)
        if ctx.directory.status(started, timedelta(0))[0] == "expired":
            raise _DirectoryExpiredError(
                f"the trusted directory (version {ctx.directory.version}) has expired"
            )
        seen = await ctx.store.seen(header.sender_org, header.message_id)
        if seen is not None:
            if seen.digest != header.digest:
                return refuse(
                    RemoteError("replayed", "same (sender, message id), different content"),
                    delivery,
                    header.message_id,
                )
            ctx.count("duplicates")
            await self._republish_receipts(header.sender_org, header.message_id)
            return Deliver()
        directory = ctx.directory
        try:
            verified = open_envelope(
                delivery.body,
                header=header,
                keyring=ctx.keys.ring,
                sender_keys=directory.signing_key,
                now=started,
                is_replay=lambda _s, _m: False,  # checked above against the durable inbox
                limits=ctx.envelope_limits,
            )
        except RemoteError as exc:
            return refuse(exc, delivery, header.message_id)
        claims = verified.claims
        if ctx.org not in claims.recipient_orgs():
            return refuse(
                RemoteError("not_for_us", "claims do not name this organisation"),
                delivery,
                claims.message_id,
            )
        if isinstance(claims.body, ReceiptBody | ReceiptBatchBody):
            return await self._receipts.on_receipt(verified, started)
        return await self._on_message(verified, started)

    def on_settled(self, delivery: Delivery, decision: Decision) -> None:
        """The consumer settled ``delivery`` on the broker: count what was dead-lettered."""
        if isinstance(decision, Reject):
            self._refusals.note(delivery, decision.reason)

    async def _on_message(self, verified: VerifiedMessage, started: datetime) -> Decision:
        ctx = self.ctx
        claims = verified.claims
        span_link = _link(claims.trace)
        with ctx.telemetry.tracer.start_as_current_span(
            "zvg.receive", kind=trace.SpanKind.CONSUMER, links=[span_link] if span_link else []
        ) as span:
            span.set_attributes(
                {
                    "zvg.message_id": claims.message_id,
                    "zvg.message_type": claims.message_type,
                    "zvg.purpose": claims.purpose,
                    "zvg.sender": claims.sender.org,
                }
            )
            inbound = decide_inbound(verified, org=ctx.org, directory=ctx.directory.payload)
            sc = span.get_span_context()
            fields = (
                MessageFields.of(
                    claims,
                    trace_id=f"{sc.trace_id:032x}",
                    span_id=f"{sc.span_id:016x}",
                    processing_activity=processing_activity(ctx.config, claims.purpose),
                )
                .with_foreign_operation(claims)
                .with_digest(jose.b64u_encode(verified.digest), verified.sender_kid)
            )
            fields = naming_no_one(fields, claims)
            allowed = inbound.allowed
            entry = InboxEntry(
                sender=claims.sender.org,
                message_id=claims.message_id,
                digest=verified.digest,
                message_type=claims.message_type,
                roles=inbound.roles,
                received_at=started,
                expires_at=claims.expires_at,
                forget_after=ctx.retention.forget_after(started),
                status=inbound.state,
                reason=inbound.reason,
                claims=claims_to_json(claims) if allowed else None,
                inner_jws=verified.inner_jws if allowed else None,
            )
            now = ctx.now()
            if allowed:
                what = message_record("message.receive", fields, at=now, start_time=started)
            else:
                what = message_record(
                    "message.refuse", fields, at=now, status="denied", reason="policy_denied"
                )
            # An erase notice: erase our copy of what its sender sent, with the notice.
            shred, erased = (
                ([], []) if not allowed else await notice_erasure(ctx, claims, received=True)
            )
            records = [policy_record(inbound.decision, fields, at=now), what, *erased]
            committed = await ctx.store.commit(
                InsertInbox(entry),
                *shred,
                ctx.audit.append(records, started),
                QueueReceipt(
                    claims.sender.org,
                    claims.message_id,
                    inbound.receipt_status,
                    inbound.reason,
                    inbound.receipt_info,
                    proves=what,
                    now=started,
                ),
            )
        if not committed.applied:  # a concurrent duplicate won the race
            ctx.count("duplicates")
            return Deliver()
        self._measure(verified, started, allowed)
        ctx.receipt_wake.set()
        if allowed and self._rights is not None and claims.message_type.startswith("rights."):
            await self._rights(claims)  # the node answers or collects it itself
        if allowed:
            ctx.inbox_changed.changed()
        return Deliver()

    def _measure(self, verified: VerifiedMessage, started: datetime, allowed: bool) -> None:
        claims = verified.claims
        t = self.ctx.telemetry
        outcome = "delivered" if allowed else "policy_denied"
        t.messages.add(
            1,
            {
                "direction": "in",
                "type": claims.message_type,
                "purpose": claims.purpose,
                "outcome": outcome,
            },
        )
        if not allowed:
            t.rejections.add(
                1, {"stage": "receive", "reason": "policy_denied", "sender": claims.sender.org}
            )
        now = self.ctx.now()
        t.latency.record((now - started).total_seconds(), {"stage": "receive"})
        t.latency.record(max(0.0, (now - claims.created_at).total_seconds()), {"stage": "e2e"})

    async def _republish_receipts(self, sender: str, message_id: str) -> None:
        ctx = self.ctx
        if not ctx.broker.connected:
            return
        for p in await ctx.store.receipt_envelopes(sender, message_id):
            with contextlib.suppress(TransientError, LocalError):
                await ctx.broker.publish(
                    routing_key(sender, ctx.org),
                    p.envelope,
                    message_id=p.message_id,
                    expiration=p.expires_at,
                )


def _link(traceparent: str) -> Link | None:
    parts = traceparent.split("-")
    try:
        ctx = SpanContext(
            int(parts[1], 16),
            int(parts[2], 16),
            is_remote=True,
            trace_flags=TraceFlags(int(parts[3], 16)),
        )
    except (IndexError, ValueError):
        return None
    return Link(ctx, {"zvg.link": "sender"})


class _DirectoryExpiredError(Exception):
    """This node's trusted directory has expired: no message can be checked until a newer
    version is trusted. Says nothing about the message, so it is held like a store outage
    (each return to the queue would count against its delivery limit)."""
