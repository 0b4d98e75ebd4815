"""Retention: expire overdue outbound messages, purge payloads and personal audit parts.

Periodically (``retention.purge_interval_seconds``): recipients that never answered before the
message expired become ``expired``; inbox payloads, outbox envelopes and forgotten inbox rows go
when their retention ends; the audit log shreds the personal parts of records past audit
retention. Each pass that changed anything writes one ``retention.purge`` record
(docs/architecture.md §9.6).
"""

from __future__ import annotations

import contextlib

from gateway.core.audit import record_time
from gateway.errors import TransientError
from gateway.node.context import NodeContext
from gateway.node.store import DateOutbox

__all__ = ["Retention"]


class Retention:
    """The retention loop (module docstring)."""

    def __init__(self, ctx: NodeContext) -> None:
        self.ctx = ctx
        self._dated = False

    async def run(self) -> None:
        """Run :meth:`purge_once` every ``purge_interval_seconds`` until stopped."""
        interval = self.ctx.config.retention.purge_interval_seconds
        while not self.ctx.stopping.is_set():
            with contextlib.suppress(TransientError):
                await self.purge_once()
            await self.ctx.pause(interval)

    async def _date_outbox(self) -> None:
        policy = self.ctx.retention
        undated = await self.ctx.store.undated_outbox()
        if undated:
            await self.ctx.store.commit(
                *(DateOutbox(m, policy.outbox_purge_after(exp, final)) for m, exp, final in undated)
            )

    async def purge_once(self) -> tuple[int, int, int, int]:
        """One retention pass. Returns (expired recipients, inbox payloads, outbox envelopes,
        inbox rows forgotten)."""
        if not self._dated:  # entries from before deadlines were stored get theirs, once
            await self._date_outbox()
            self._dated = True
        now = self.ctx.now()
        expired = await self.ctx.store.expire_outbox(now)
        if expired:
            records = [
                self.ctx.record("message.expire", "error", message_id=m, peer=o) for m, o in expired
            ]
            await self.ctx.store.commit(self.ctx.audit.append(records, now))
        inbox, outbox, forgotten = await self.ctx.store.purge(now)
        shredded = await self.ctx.audit.shred(now)
        if inbox or outbox or forgotten or shredded:
            detail: dict[str, int | str] = {
                "inbox_payloads": inbox,
                "outbox_envelopes": outbox,
                "inbox_rows": forgotten,
                "audit_personal_parts": shredded,
            }
            if shredded:  # what zvg audit verify tells from an erasure: records up to this time
                detail["audit_personal_before"] = record_time(self.ctx.audit.personal_cutoff(now))
            record = self.ctx.record("retention.purge", detail=detail)
            await self.ctx.store.commit(self.ctx.audit.append([record], now))
        return len(expired), inbox, outbox, forgotten
