"""The values the metrics gauges report, refreshed every few seconds from the store."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable

from gateway.errors import TransientError
from gateway.node.context import NodeContext

__all__ = ["GAUGE_INTERVAL_S", "run_gauges"]

#: Seconds between refreshes of the metrics gauges.
GAUGE_INTERVAL_S = 5.0


async def run_gauges(
    ctx: NodeContext, queue_depth: Callable[[], Awaitable[int]] | None = None
) -> None:
    """Refresh the outbox, inbox and (given ``queue_depth``) broker queue gauges until the node
    stops."""
    snapshot: dict[str, float] = {}
    t = ctx.telemetry
    t.gauges["zvg.outbox.pending"] = lambda: [(snapshot.get("outbox_pending", 0.0), {})]
    t.gauges["zvg.outbox.age"] = lambda: [(snapshot.get("outbox_age", 0.0), {})]
    t.gauges["zvg.inbox.waiting"] = lambda: [(snapshot.get("inbox_waiting", 0.0), {})]
    t.gauges["zvg.queue.depth"] = lambda: (
        [(snapshot["queue_depth"], {})] if "queue_depth" in snapshot else []
    )
    while not ctx.stopping.is_set():
        with contextlib.suppress(TransientError):
            snapshot.update(await ctx.store.gauges(ctx.now()))
        if queue_depth is not None:
            with contextlib.suppress(Exception):
                snapshot["queue_depth"] = float(await queue_depth())
        await ctx.pause(GAUGE_INTERVAL_S)
