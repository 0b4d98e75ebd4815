"""The inbox for adapters: long-poll, event stream, ack and reject (docs/architecture.md).

Messages wait in the store's inbox until the adapter settles them; settling queues the matching
receipt (``accepted`` or ``rejected``) in the same transaction. Handing a message out the first
time writes a ``message.deliver`` record, and an ``access`` record for the actor who asked.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

from gateway.core import jose
from gateway.core.audit import Actor, MessageFields, access_record, message_record
from gateway.core.delivery import InboundEvent, InboundState, inbound_move, receipt_status
from gateway.core.receipts import ReceiptInfo
from gateway.node.activities import processing_activity
from gateway.node.context import NodeContext
from gateway.node.problems import ApiError
from gateway.node.store import NODE_HANDLED_TYPES, Command, QueueReceipt, SettleInbox
from schemas import strictjson
from schemas.api import InboxItem
from schemas.claims import parse_claims

__all__ = ["Inbox"]


class Inbox:
    """What adapters read from and settle in the node's inbox."""

    def __init__(self, ctx: NodeContext) -> None:
        self.ctx = ctx

    async def waiting(
        self, *, limit: int, wait: float, actor: Actor | None = None
    ) -> list[InboxItem]:
        """The oldest unacknowledged messages; waits up to ``wait`` seconds for one to arrive."""
        return (await self.page(limit=limit, wait=wait, actor=actor))[0]

    async def page(
        self, *, limit: int, wait: float, actor: Actor | None = None, after: int = 0
    ) -> tuple[list[InboxItem], int]:
        """The oldest unacknowledged messages after inbox position ``after`` (waits up to
        ``wait`` seconds for one to arrive), and the position of the last (``after`` if none):
        the cursor of the page that follows."""
        deadline = asyncio.get_running_loop().time() + wait
        while True:
            changed = self.changes()  # before the read: an arrival after it wakes the wait
            rows = await self.ctx.store.take_inbox(limit, after)
            if rows or wait <= 0:
                break
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0 or self.ctx.stopping.is_set():
                break
            await self.wait(changed, remaining)
        if not rows:
            return [], after
        now = self.ctx.now()
        first = [r for r in rows if r.handed_out == 0]
        claims = {r.message_id: strictjson.loads(r.claims) for r in rows}
        records = [
            self.ctx.record(
                "message.deliver",
                trace_id=_trace_id(claims[r.message_id]),
                message_id=r.message_id,
                peer=r.sender,
                purpose=claims[r.message_id]["purpose"],
                message_type=claims[r.message_id]["message_type"],
                case_ref=claims[r.message_id]["case_ref"],
            )
            for r in first
        ]
        if actor is not None:
            # One access record per message handed out to an actor the first time: adapters
            # that poll and ack later would otherwise log every poll (NEN 7513 asks who saw
            # what, not how often a system asked again).
            records += [
                self.ctx.record(
                    "access",
                    trace_id=_trace_id(claims[r.message_id]),
                    actor=actor,
                    message_id=r.message_id,
                    case_ref=claims[r.message_id]["case_ref"],
                )
                for r in first
            ]
        if records:
            await self.ctx.store.commit(self.ctx.audit.append(records, now))
        items = [
            InboxItem(
                message_id=r.message_id,
                sender=r.sender,
                recipient_roles=r.roles,
                received_at=r.received_at,
                redelivered=r.handed_out > 0,
                claims=claims[r.message_id],
            )
            for r in rows
        ]
        return items, rows[-1].seq

    async def record_access(self, actor: Actor, message_ids: Sequence[str]) -> None:
        """Access records for messages shown to an actor (the event stream, once per message)."""
        now = self.ctx.now()
        records = [self.ctx.record("access", actor=actor, message_id=m) for m in message_ids]
        await self.ctx.store.commit(self.ctx.audit.append(records, now))

    def changes(self) -> asyncio.Event:
        """Set when the inbox changes from now on: take it before reading the inbox, and
        :meth:`wait` on it after (gateway.node.context.Changes)."""
        return self.ctx.inbox_changed.ticket()

    async def wait(self, changed: asyncio.Event, seconds: float) -> None:
        """Return when ``changed`` (from :meth:`changes`) is set, or after ``seconds``."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), timeout=seconds)

    async def settle(
        self,
        message_id: str,
        *,
        accept: bool,
        adapter_reason: str | None = None,
        note: str | None = None,
        actor: Actor | None = None,
        also: Sequence[Command] = (),
        by_adapter: bool = False,
        keep_payload: bool = True,
    ) -> bool:
        """Ack (accept) or reject a delivered message; queues the matching receipt. Idempotent.
        ``note`` and ``adapter_reason`` (the adapter's words and code about a reject) go into our
        own record only, as personal data: never into the record's view, which a receipt's proof
        shows the sender. ``also`` are commands of the node's own handling of the message (an
        inzageverzoek's answer), committed with the settlement or not at all.
        Returns whether this call settled it (False: settled before, or a condition of ``also``
        did not hold). Raises ``ApiError`` not-found when no such message is in the inbox, or,
        ``by_adapter``, when it is one the node handles itself (never handed to adapters).
        Without ``keep_payload`` the stored claims and signed bytes go with the settlement
        (a ``rights.request``: its BSN is kept no longer than it is needed)."""
        ctx = self.ctx
        now = ctx.now()
        event = InboundEvent.ACK if accept else InboundEvent.REJECT
        row = await ctx.store.inbox_message(message_id)
        hidden = by_adapter and row is not None and row.message_type in NODE_HANDLED_TYPES
        if row is None or row.status == InboundState.REFUSED or hidden:
            raise ApiError("not-found", f"no delivered message {message_id} in this node's inbox")
        new = inbound_move(row.status, event)
        if new is None or row.claims is None:
            return False  # settled before: acking or rejecting again changes nothing
        claims = parse_claims(row.claims, catalogue=ctx.catalogue)
        fields = MessageFields.of(
            claims,
            span_id=ctx.rand(8).hex(),  # our operation, in the message's trace
            processing_activity=processing_activity(ctx.config, claims.purpose),
        ).with_digest(jose.b64u_encode(row.digest))
        settled = message_record(
            str(event), fields, at=now, note=note, adapter_reason=adapter_reason or None
        )
        records = [settled]
        if actor is not None:
            records.append(access_record(actor, at=now, fields=fields))
        committed = await ctx.store.commit(
            *also,
            SettleInbox(
                row.sender,
                message_id,
                event,
                adapter_reason,
                now,
                ctx.retention.inbox_purge_after(now) if keep_payload else now,
            ),
            ctx.audit.append(records, now),
            QueueReceipt(
                row.sender,
                message_id,
                receipt_status(new),
                None if accept else "adapter_rejected",
                ReceiptInfo.of(claims, row.roles, row.digest),
                proves=settled,
                now=now,
            ),
        )
        if committed.applied:  # else settled meanwhile: its receipt is queued already
            self.ctx.receipt_wake.set()
        return committed.applied


def _trace_id(claims: dict[str, Any]) -> str | None:
    """The trace id of a message's W3C traceparent (``None`` if it has none)."""
    trace = claims.get("trace")
    return trace.split("-")[1] if isinstance(trace, str) and trace.count("-") == 3 else None
