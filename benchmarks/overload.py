"""Overload: the sender node offered twice its capacity for a minute stays flat in memory, refuses
what it cannot take with ``429`` and loses nothing it accepted (issue 15 §8).

Run: ``.venv/bin/python -m benchmarks.overload [--factor 2] [--seconds 60]
[--capacity-messages 1000]`` (needs RabbitMQ on 127.0.0.1:5672 and rabbitmqctl, as the tests
do). With the two node processes of :mod:`benchmarks._pair` (police sends, the municipality
receives; default settings, so ``limits.max_outbox_backlog`` 1024 and ``broker.publish_window``
256) it:

1. **measures the capacity**: N ``POST /v1/messages`` until all N are committed in the
   receiver's inbox, in messages a second — the baseline of this run — with as many in flight
   as the overload's adapters have connections (64: with fewer, the rate the ``POST`` round trip
   allows on a busy machine is measured, not the node's). The faster of two rounds counts: a
   round slowed by other work on the shared machine would make the offer too small to overload
   the node;
2. **offers ``factor`` x capacity for ``seconds``**, open loop: message ``i`` is due at
   ``i / rate`` whatever the node answered before. The messages come from 8 adapters in turn,
   each with a pool of 8 connections (a message due while they are all busy waits for one),
   and each honours ``Retry-After``: after a ``429`` (or a ``503``) it sends nothing until that
   many seconds have passed, and the messages due meanwhile are counted as *deferred* (a real
   adapter keeps them and sends them later; this load does not, so that the offer stays
   fixed);
3. samples each node process's resident memory (``VmRSS``) every second, from before the
   overload until the end, with the idle value before the overload as the baseline;
4. after the load stops, waits until every accepted message is in the receiver's inbox.

It prints and writes ``benchmarks/results/overload.json``: the capacity, the offered rate,
accepted / refused (429) / deferred / other answers, the rates accepted and delivered during
the load as ratios to the capacity, the sender's backlog (unconfirmed publishes, sampled with
the RSS) against ``limits.max_outbox_backlog``, RSS min and max per node (and the ratio to its
baseline), and ``lost`` = accepted - delivered. Targets: RSS flat and at most 150 MiB per node;
lost 0. The machine is shared (2 CPUs for the broker, both nodes and this client, and other
people's work): the load average is recorded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp

from benchmarks._pair import (
    RECEIVER,
    SENDER,
    Bench,
    body,
    node_throughput,
    post_answer,
    rss_kib,
    running_pair,
    settle,
    summary,
)
from benchmarks._report import print_table, write_results
from gateway.node.config import Limits

#: Adapters the offered messages come from, in turn; each honours its own ``Retry-After``.
ADAPTERS = 8
#: Connections each adapter keeps to the node (together half the node's ``api.max_connections``,
#: 128): a message due while all are busy waits in its adapter, as with any HTTP client pool.
POOL = 8
#: Capacity rounds; the capacity is the fastest (see the module docstring).
CAPACITY_ROUNDS = 2
#: Seconds between RSS samples.
SAMPLE_S = 1.0
#: Longest wait for the accepted messages to arrive after the load (only stops a hang).
DRAIN_LIMIT_S = 900.0
TARGET_RSS_MIB = 150.0
#: The sender's unconfirmed publishes: what ``limits.max_outbox_backlog`` bounds.
UNCONFIRMED = "SELECT count(*) FROM outbox_recipients WHERE published = 0"


@dataclass
class Offer:
    """What the offered load got back."""

    due: int = 0
    accepted: list[str] = field(default_factory=list)
    refused: int = 0
    deferred: int = 0
    other: Counter[str] = field(default_factory=Counter)
    accepted_ms: list[float] = field(default_factory=list)
    refused_ms: list[float] = field(default_factory=list)
    in_flight: int = 0
    most_in_flight: int = 0


class Watch:
    """Samples both nodes' RSS every second and collects the message ids that reach the
    receiver's inbox, until stopped."""

    def __init__(self, bench: Bench) -> None:
        self.bench = bench
        self.rss: dict[str, list[int]] = {key: [] for key in bench.pids}
        self.backlog: list[int] = []
        self.landed: set[str] = set()
        self.phase_starts: dict[str, int] = {}
        self._stop = asyncio.Event()
        bench.receiver.new_rows()

    def mark(self, phase: str) -> None:
        """Remember at which sample ``phase`` begins."""
        self.phase_starts[phase] = len(next(iter(self.rss.values())))

    def collect(self) -> None:
        self.landed.update(m for m, _ in self.bench.receiver.new_rows())

    async def run(self) -> None:
        while not self._stop.is_set():
            for key, pid in self.bench.pids.items():
                self.rss[key].append(rss_kib(pid))
            self.backlog.append(self.bench.sender_store.scalar(UNCONFIRMED))
            self.collect()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=SAMPLE_S)

    def stop(self) -> None:
        self._stop.set()


async def offer(bench: Bench, rate: float, seconds: float) -> Offer:
    """Open-loop POSTs at ``rate`` a second for ``seconds`` (see the module docstring)."""
    result = Offer(due=int(rate * seconds))
    paused_until = [0.0] * ADAPTERS
    async with contextlib.AsyncExitStack() as stack:
        sessions = [
            await stack.enter_async_context(
                aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=POOL))
            )
            for _ in range(ADAPTERS)
        ]

        async def one(adapter: int, message: bytes) -> None:
            result.in_flight += 1
            result.most_in_flight = max(result.most_in_flight, result.in_flight)
            start = time.perf_counter()
            try:
                status, doc, retry_after = await post_answer(sessions[adapter], bench, message)
            except aiohttp.ClientError as exc:
                result.other[type(exc).__name__] += 1
                return
            finally:
                result.in_flight -= 1
            ms = (time.perf_counter() - start) * 1000
            if status == 202:
                result.accepted.append(str(doc["message_id"]))
                result.accepted_ms.append(ms)
                return
            if status == 429:
                result.refused += 1
                result.refused_ms.append(ms)
            else:
                result.other[str(status)] += 1
            if retry_after is not None:  # 429, or 503 from the node's connection cap
                wait = time.perf_counter() + float(retry_after)
                paused_until[adapter] = max(paused_until[adapter], wait)

        tasks = []
        t0 = time.perf_counter()
        for i in range(result.due):
            delay = t0 + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            adapter = i % ADAPTERS
            if time.perf_counter() < paused_until[adapter]:
                result.deferred += 1
                continue
            tasks.append(asyncio.ensure_future(one(adapter, body(i))))
        await asyncio.gather(*tasks)
    return result


async def run(factor: float, seconds: float, capacity_messages: int) -> dict[str, Any]:
    load_before = os.getloadavg()
    async with running_pair("zvg-bench-overload-") as bench:
        data = await _measure(bench, factor, seconds, capacity_messages)
    data["load_average"] = {"before": load_before[0], "after": os.getloadavg()[0]}
    return data


async def _measure(
    bench: Bench, factor: float, seconds: float, capacity_messages: int
) -> dict[str, Any]:
    await node_throughput(bench, 200)  # warm-up: imports, first checkpoint, connections
    await settle(bench)
    rounds = []
    for _ in range(CAPACITY_ROUNDS):
        elapsed = await node_throughput(bench, capacity_messages, ADAPTERS * POOL)
        rounds.append(capacity_messages / elapsed)
        await settle(bench)
    capacity = max(rounds)
    rate = factor * capacity
    watch = Watch(bench)
    sampler = asyncio.ensure_future(watch.run())
    try:
        await asyncio.sleep(3 * SAMPLE_S)
        watch.mark("overload")
        t0 = time.perf_counter()
        got = await offer(bench, rate, seconds)
        offered_s = time.perf_counter() - t0
        watch.collect()
        watch.mark("drain")
        landed_during_load = len(watch.landed)
        t1 = time.perf_counter()
        accepted = set(got.accepted)
        while not accepted <= watch.landed and time.perf_counter() - t1 < DRAIN_LIMIT_S:
            await asyncio.sleep(0.2)
            watch.collect()
        drain_s = time.perf_counter() - t1
        await settle(bench, DRAIN_LIMIT_S)  # receipts too: the outbox is empty again
    finally:
        watch.stop()
        await sampler
    unconfirmed = bench.sender_store.scalar(UNCONFIRMED)
    delivered = len(accepted & watch.landed)
    start = watch.phase_starts["overload"]
    rss: dict[str, Any] = {}
    for key, series in watch.rss.items():
        baseline = max(series[:start])
        loaded = series[start:]
        rss[key] = {
            "baseline_mib": baseline / 1024,
            "min_mib": min(loaded) / 1024,
            "max_mib": max(loaded) / 1024,
            "max_to_baseline": max(loaded) / baseline,
            "series_mib": [round(v / 1024, 1) for v in series],
        }
    return {
        "capacity_messages": capacity_messages,
        "capacity_msgs_per_s": capacity,
        "capacity_rounds_msgs_per_s": rounds,
        "factor": factor,
        "offered_msgs_per_s": rate,
        "offered_seconds": seconds,
        "offer_took_seconds": offered_s,
        "adapters": ADAPTERS,
        "connections_per_adapter": POOL,
        "due": got.due,
        "accepted": len(got.accepted),
        "refused_429": got.refused,
        "deferred_by_retry_after": got.deferred,
        "other_answers": dict(got.other),
        "accepted_msgs_per_s": len(got.accepted) / offered_s,
        "accepted_to_capacity": len(got.accepted) / offered_s / capacity,
        "delivered_during_load_msgs_per_s": landed_during_load / offered_s,
        "delivered_during_load_to_capacity": landed_during_load / offered_s / capacity,
        "post_ms": {
            "accepted": summary(got.accepted_ms),
            "refused": summary(got.refused_ms),
        },
        "most_posts_in_flight_or_queued_in_adapters": got.most_in_flight,
        "delivered": delivered,
        "lost": len(got.accepted) - delivered,
        "drain_seconds": drain_s,
        "unconfirmed_publishes_after": unconfirmed,
        "max_outbox_backlog": Limits().max_outbox_backlog,
        "sender_backlog_max": max(watch.backlog),
        "sender_backlog_series": watch.backlog,
        "rss": rss,
        "rss_phase_starts": watch.phase_starts,
        "rss_sample_seconds": SAMPLE_S,
        "cpus": os.cpu_count(),
        "measured": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--factor", type=float, default=2.0, help="offered rate / capacity")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the overload")
    parser.add_argument(
        "--capacity-messages", type=int, default=1000, help="messages per capacity round"
    )
    args = parser.parse_args()
    data = asyncio.run(run(args.factor, args.seconds, args.capacity_messages))
    load = data["load_average"]
    print(
        f"\ncapacity {data['capacity_msgs_per_s']:.0f} msg/s (fastest of "
        f"{', '.join(f'{r:.0f}' for r in data['capacity_rounds_msgs_per_s'])}; "
        f"{data['capacity_messages']:,} messages a round, POST -> receiver inbox); "
        f"offered {data['factor']:g}x = "
        f"{data['offered_msgs_per_s']:.0f} msg/s for {data['offered_seconds']:.0f} s from "
        f"{ADAPTERS} adapters; {data['cpus']} CPUs shared by the broker, both nodes, this "
        f"client and others; load average {load['before']:.1f} before, {load['after']:.1f} after\n"
    )
    print_table(
        ["due", "accepted", "refused 429", "deferred", "other answers"],
        [
            [
                data["due"],
                data["accepted"],
                data["refused_429"],
                data["deferred_by_retry_after"],
                sum(data["other_answers"].values()),
            ]
        ],
    )
    print()
    print_table(
        ["during the load", "msg/s", "x capacity"],
        [
            ["accepted", data["accepted_msgs_per_s"], data["accepted_to_capacity"]],
            [
                "delivered to the receiver's inbox",
                data["delivered_during_load_msgs_per_s"],
                data["delivered_during_load_to_capacity"],
            ],
        ],
    )
    print()
    print_table(
        ["node", "RSS idle MiB", "RSS min MiB", "RSS max MiB", "max / idle"],
        [
            [
                key,
                data["rss"][key]["baseline_mib"],
                data["rss"][key]["min_mib"],
                data["rss"][key]["max_mib"],
                data["rss"][key]["max_to_baseline"],
            ]
            for key in (SENDER, RECEIVER)
        ],
    )
    worst = max(data["rss"][key]["max_mib"] for key in (SENDER, RECEIVER))
    print(
        f"\ndelivered {data['delivered']:,} of {data['accepted']:,} accepted "
        f"{data['drain_seconds']:.1f} s after the load stopped; lost {data['lost']}; "
        f"unconfirmed publishes left {data['unconfirmed_publishes_after']}; the sender's "
        f"backlog peaked at {data['sender_backlog_max']:,} "
        f"(limit {data['max_outbox_backlog']:,})\n"
        f"targets: RSS <= {TARGET_RSS_MIB:.0f} MiB per node (max {worst:.0f} MiB); lost 0 "
        f"(lost {data['lost']})"
    )
    write_results("overload", {**data, "targets": {"rss_mib": TARGET_RSS_MIB, "lost": 0}})


if __name__ == "__main__":
    main()
