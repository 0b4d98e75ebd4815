"""The inbox for adapters: long-poll, event stream, ack and reject (docs/architecture.md).

Messages wait in the store's inbox until the adapter settles them; settling queues the matching
receipt (``accepted`` or ``rejected``) in the same transaction. Handing a message out the first
time writes a ``message.deliver`` record, and an ``access`` record for the actor who asked.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from datetime import timedelta

from gateway.core.audit import Actor, Record
from gateway.node.context import NodeContext
from gateway.node.problems import ApiError
from gateway.node.records import b64, claims_fields, receipt_info
from gateway.node.store import QueueReceipt, SettleInbox
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
        deadline = asyncio.get_running_loop().time() + wait
        while True:
            rows = await self.ctx.store.take_inbox(limit)
            if rows or wait <= 0:
                break
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0 or self.ctx.stopping.is_set():
                break
            async with self.ctx.inbox_changed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.ctx.inbox_changed.wait(), timeout=remaining)
        if not rows:
            return []
        now = self.ctx.now()
        first = [r for r in rows if r.handed_out == 0]
        claims = {r.message_id: strictjson.loads(r.claims) for r in rows}
        records = [
            self.ctx.record(
                "message.deliver",
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
                    actor=actor,
                    message_id=r.message_id,
                    case_ref=claims[r.message_id]["case_ref"],
                )
                for r in first
            ]
        if records:
            await self.ctx.store.commit(self.ctx.audit.append(records, now))
        return [
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

    async def record_access(self, actor: Actor, message_ids: Sequence[str]) -> None:
        """Access records for messages shown to an actor (the event stream, once per message)."""
        now = self.ctx.now()
        records = [self.ctx.record("access", actor=actor, message_id=m) for m in message_ids]
        await self.ctx.store.commit(self.ctx.audit.append(records, now))

    async def wait(self, seconds: float) -> None:
        """Return when the inbox changed or after ``seconds`` (server-sent events)."""
        async with self.ctx.inbox_changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.ctx.inbox_changed.wait(), timeout=seconds)

    async def settle(
        self,
        message_id: str,
        *,
        accept: bool,
        adapter_reason: str | None = None,
        actor: Actor | None = None,
    ) -> None:
        """Ack (accept) or reject a delivered message; queues the matching receipt. Idempotent.
        Raises ``ApiError`` not-found when no such message is in the inbox."""
        now = self.ctx.now()
        status = "accepted" if accept else "rejected"
        reason = None if accept else "adapter_rejected"
        purge_after = now + timedelta(days=self.ctx.config.retention.inbox_after_ack_days)

        row = await self.ctx.store.inbox_message(message_id)
        if row is None or row.status == "refused":
            raise ApiError("not-found", f"no delivered message {message_id} in this node's inbox")
        if row.status != "delivered" or row.claims is None:
            return  # settled before: acking or rejecting again changes nothing
        claims = parse_claims(row.claims, catalogue=self.ctx.catalogue)
        fields = claims_fields(claims)
        fields["digest"] = b64(row.digest)
        if adapter_reason:
            fields["detail"] = {"adapter_reason": adapter_reason}
        records: list[Record] = [
            self.ctx.record("adapter.ack" if accept else "adapter.reject", **fields)
        ]
        if actor is not None:
            records.append(
                self.ctx.record(
                    "access",
                    actor=actor,
                    message_id=message_id,
                    trace_id=fields["trace_id"],
                    case_ref=claims.case_ref,
                )
            )
        info = receipt_info(claims, row.roles, row.digest)
        committed = await self.ctx.store.commit(
            SettleInbox(row.sender, message_id, status, adapter_reason, now, purge_after),
            self.ctx.audit.append(records, now),
            QueueReceipt(row.sender, message_id, status, reason, info, proves=records[0], now=now),
        )
        if committed.applied:  # else settled meanwhile: its receipt is queued already
            self.ctx.receipt_wake.set()
