"""The values the metrics gauges report, refreshed every few seconds from the store, and the
counters' series seeded at 0 (docs/decisions/0087-prometheus-metrics-conventions.md)."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import get_args

from gateway.core.directory import TrustedDirectory
from gateway.core.witness import RefusalCode
from gateway.errors import TransientError
from gateway.node.context import NodeContext
from schemas.catalogue import Catalogue
from schemas.reasons import REJECT_REASONS

__all__ = ["GAUGE_INTERVAL_S", "run_gauges", "seed_counters"]

#: Seconds between refreshes of the metrics gauges.
GAUGE_INTERVAL_S = 5.0

#: ``zvg_audit_alarm_total{kind}`` and ``zvg_receipts_contradictions_total{kind}`` values.
ALARM_KINDS = ("inconsistent", "bad_proof", "forked", "truncated")
CONTRADICTION_KINDS = ("status", "content")


def _flows(catalogue: Catalogue) -> Iterator[tuple[str, str]]:
    for purpose in catalogue.purposes:
        for message_type in purpose.message_types:
            yield message_type, purpose.code


def seed_counters(ctx: NodeContext) -> None:
    """Show every counter series known in advance at 0: per (type, purpose) of the catalogue
    the ordinary outcome each way, per coarse reason and partner the refusals, per partner the
    alarms and contradictions. Bounded by the catalogue and the directory (13 reasons times
    the partners at most); partners that join later are seeded with their directory version."""
    t = ctx.telemetry
    peers = [m.oin for m in ctx.directory.payload.members if m.oin != ctx.org]
    flows = list(_flows(ctx.catalogue))
    t.messages.seed(
        {"direction": d, "type": mt, "purpose": p, "outcome": o}
        for mt, p in flows
        for d, o in (("out", "queued"), ("in", "delivered"))
    )
    t.rejections.seed(
        {"stage": "receive", "reason": r, "sender": s}
        for r in sorted(REJECT_REASONS)
        for s in (*peers, "unknown")
    )
    t.receipts_ignored.seed({"reason": r} for r in sorted(REJECT_REASONS))
    t.receipt_contradictions.seed(
        {"kind": k, "peer": p} for k in CONTRADICTION_KINDS for p in peers
    )
    t.witness.seed({"outcome": o} for o in ("cosigned", *get_args(RefusalCode)))
    t.audit_alarm.seed({"kind": k, "partner": p} for k in ALARM_KINDS for p in peers)


def _expiries(directory: TrustedDirectory, org: str) -> list[tuple[float, Mapping[str, str]]]:
    member = directory.member(org)
    keys = member.keys if member is not None else ()
    return [
        (k.not_after.timestamp(), {"kid": k.kid, "use": k.use})
        for k in keys
        if k.status == "active"
    ]


async def run_gauges(
    ctx: NodeContext, queue_depth: Callable[[], Awaitable[int]] | None = None
) -> None:
    """Refresh the gauges (given ``queue_depth``, the broker queue's too) and seed the counters
    for each directory version until the node stops."""
    snapshot: dict[str, float] = {}
    t = ctx.telemetry

    def value(key: str) -> Callable[[], list[tuple[float, Mapping[str, str]]]]:
        return lambda: [(snapshot[key], {})] if key in snapshot else []

    t.gauges["zvg.outbox.pending"] = value("outbox_pending")
    t.gauges["zvg.outbox.age"] = value("outbox_age")
    t.gauges["zvg.inbox.waiting"] = value("inbox_waiting")
    t.gauges["zvg.queue.depth"] = value("queue_depth")
    t.gauges["zvg.receipts.awaited"] = value("receipts_awaited")
    t.gauges["zvg.receipts.awaited.age"] = value("receipts_awaited_age")
    t.gauges["zvg.witness.conflicts"] = value("witness_conflicts")
    limit = float(ctx.config.limits.max_outbox_backlog)
    t.gauges["zvg.outbox.backlog_limit"] = lambda: [(limit, {})]
    t.gauges["zvg.directory.expiry_timestamp"] = lambda: [
        (ctx.directory.payload.expires.timestamp(), {})
    ]
    t.gauges["zvg.key.expiry_timestamp"] = lambda: _expiries(ctx.directory, ctx.org)
    seeded = -1
    while not ctx.stopping.is_set():
        if ctx.directory.version != seeded:
            seeded = ctx.directory.version
            seed_counters(ctx)
        with contextlib.suppress(TransientError):
            snapshot.update(await ctx.store.gauges(ctx.now()))
        if queue_depth is not None:
            with contextlib.suppress(Exception):
                snapshot["queue_depth"] = float(await queue_depth())
        await ctx.pause(GAUGE_INTERVAL_S)
