"""CPU per message of each node, in one process with no broker, against the JOSE work of the
same message measured in the same run (issue 15, point 7).

    .venv/bin/python -m benchmarks.node_cpu [--messages N] [--rounds N] [--profile FILE]

Two in-process nodes (police sends, municipality receives; ``tests/node_pair.py``) on their own
temporary SQLite stores and real audit logs, with the broker in memory (``MemoryBroker``): the
nodes' own outbox, receipt and consumer loops run (each node handling up to its default AMQP
prefetch of deliveries at once, as its consumer does), without HTTP and AMQP. Each round has three
phases, so every CPU second belongs to one node (``time.process_time``: this process, the
stores' writer threads included):

1. the sender accepts ``N`` messages (``Outbound.send``, 32 at a time, as an adapter's worker
   pool would) and its outbox publishes them (both consumers paused);
2. the receiver consumes them, seals a receipt for each and publishes it;
3. the sender consumes the receipts.

The unavoidable figure is what ``benchmarks.e2e`` counts, less the AMQP client work: the four
JOSE operations of one message (sign + encrypt, decrypt + verify: ``JoseWork``), measured after
every round in this process on the claims of a message the nodes really exchanged. Beside it,
sealing and opening one of the receipt envelopes they exchanged (claims included): the
per-envelope work that coalesced receipts share among several messages (decision 0006; the
receiver seals what is pending, so this is usually a coalesced envelope here). Results go to
benchmarks/results/node_cpu.json: µs per message per node and each node / the JOSE work.
``--profile FILE`` writes a cProfile of the event loop thread over all rounds (``pstats``).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import functools
import json
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from benchmarks._report import print_table, write_results
from benchmarks.e2e import JoseWork
from gateway.broker.transport import DEFAULT_PREFETCH
from gateway.core.envelope import open_envelope
from gateway.node.context import utc_now
from tests.e2e.harness import request_from_example
from tests.node_pair import InProcessNode, MemoryBroker, make_federation, open_node

SENDER, RECEIVER = "politie", "gemeente"
#: Sends in flight at once (an adapter's worker pool; lets the store group its commits).
CONCURRENCY = 32
JOSE_ITERATIONS = 200
#: Deliveries each node handles at once (the node's default AMQP prefetch).
PREFETCH = DEFAULT_PREFETCH


def _body(i: int) -> bytes:
    return json.dumps(
        request_from_example("case.referral", case_ref=f"Veenstad-2026-{i % 10_000:04d}")
    ).encode()


async def _cpu(step: Callable[[], Awaitable[None]], loop_cpu: list[float]) -> float:
    """CPU seconds of this process during ``step`` (appends the event loop thread's share)."""
    t0, l0 = time.process_time(), time.thread_time()
    await step()
    loop_cpu.append(time.thread_time() - l0)
    return time.process_time() - t0


class Pair:
    def __init__(self, broker: MemoryBroker, sender: InProcessNode, receiver: InProcessNode):
        self.broker = broker
        self.sender = sender
        self.receiver = receiver
        self.sent = 0
        self._seen = self._seen_settled = 0
        self._published: dict[str, int] = {}
        self._settled_by: dict[str, int] = {}
        #: receipt envelopes the receiver published so far (fewer than messages when coalesced)
        self.receipt_envelopes = 0

    def _count(self, source: str) -> int:
        """Messages published by ``source`` so far (counted incrementally: ``until`` asks after
        every event, and the benchmark's own work must stay out of the figures)."""
        published = self.broker.published
        for p in published[self._seen :]:
            self._published[p.sender] = self._published.get(p.sender, 0) + 1
        self._seen = len(published)
        return self._published.get(source, 0)

    def _settled(self, org: str) -> int:
        settled = self.broker.settled
        for s in settled[self._seen_settled :]:
            self._settled_by[s.org] = self._settled_by.get(s.org, 0) + 1
        self._seen_settled = len(settled)
        return self._settled_by.get(org, 0)

    async def send(self, bodies: list[bytes]) -> None:
        n = len(bodies)
        queue = iter(bodies)

        async def worker() -> None:
            for body in queue:
                await self.sender.service.outbound.send(body, client="bench")

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        target = self.sent + n
        sender_org = self.sender.org
        await self.broker.until(
            lambda: _true(self._count(sender_org) >= target), "messages published"
        )
        self.sent = target

    async def receive(self) -> None:
        self.broker.resume(self.receiver.org)
        target = self.sent
        org = self.receiver.org

        def done() -> bool:
            # Every message has its receipt sealed, and every receipt envelope is published
            # (under load several receipts share one: docs/decisions/0006-coalesced-receipts.md).
            [(sealed, envelopes)] = self.receiver.store.read(
                "SELECT count(*), count(DISTINCT receipt_id) FROM receipts_out"
            )
            return int(sealed) >= target and self._count(org) >= int(envelopes)

        await self.broker.until(lambda: _true(done()), "receipts published")
        self.receipt_envelopes = self._count(org)
        self.broker.pause(self.receiver.org)

    async def take_receipts(self) -> None:
        self.broker.resume(self.sender.org)
        target = self.receipt_envelopes
        await self.broker.until(
            lambda: _true(self._settled(self.sender.org) >= target),
            "receipts settled",
        )
        self.broker.pause(self.sender.org)


async def _true(value: bool) -> bool:
    return value


async def run(messages: int, rounds: int, profile: Path | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="zvg-bench-node-cpu-") as tmp:
        root = Path(tmp)
        fed = make_federation(root / "federation", (SENDER, RECEIVER))
        broker = MemoryBroker(clock=utc_now, prefetch=PREFETCH)
        sender = await open_node(fed, SENDER, _mkdir(root / SENDER))
        receiver = await open_node(fed, RECEIVER, _mkdir(root / RECEIVER))
        pair = Pair(broker, sender, receiver)
        try:
            for node in (sender, receiver):
                broker.pause(node.org)
                broker.attach(node)
            # Warm-up (imports, caches, first commits), not counted.
            await pair.send([_body(i) for i in range(CONCURRENCY)])
            await pair.receive()
            await pair.take_receipts()
            jose = _jose_work(sender, receiver)
            jose.measure(JOSE_ITERATIONS // 4)
            receipt = _receipt_work(sender, receiver)
            profiler = cProfile.Profile() if profile else None
            per_round: list[dict[str, float]] = []
            for _ in range(rounds):
                if profiler:
                    profiler.enable()
                bodies = [_body(pair.sent + i) for i in range(messages)]
                loop_cpu: list[float] = []
                s1 = await _cpu(functools.partial(pair.send, bodies), loop_cpu)
                r = await _cpu(pair.receive, loop_cpu)
                s2 = await _cpu(pair.take_receipts, loop_cpu)
                if profiler:
                    profiler.disable()
                cost = jose.measure(JOSE_ITERATIONS)
                receipt_cost = receipt.measure(JOSE_ITERATIONS)
                sender_us = (s1 + s2) / messages * 1e6
                receiver_us = r / messages * 1e6
                per_round.append(
                    {
                        "sender_us": sender_us,
                        "sender_send_us": s1 / messages * 1e6,
                        "sender_receipt_us": s2 / messages * 1e6,
                        "receiver_us": receiver_us,
                        "both_us": sender_us + receiver_us,
                        # the rest is the stores' writer threads (SQLite, commits)
                        "event_loop_us": sum(loop_cpu) / messages * 1e6,
                        "jose_us": cost["jose"],
                        # sealing and opening one receipt, claims included (per envelope)
                        "receipt_seal_open_us": receipt_cost["seal"] + receipt_cost["open"],
                        "ratio": (sender_us + receiver_us) / cost["jose"],
                    }
                )
            if profiler and profile:
                profiler.dump_stats(str(profile))
        finally:
            await broker.close()
            await sender.close()
            await receiver.close()
    return {"messages": messages, "rounds": per_round}


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


def _receipt_work(sender: InProcessNode, receiver: InProcessNode) -> JoseWork:
    """The same JOSE operations on a receipt envelope the receiver really sealed (once per
    envelope: a coalesced one, with an entry per message, when several were pending)."""
    [(envelope,)] = receiver.store.read(
        "SELECT envelope FROM outbox WHERE message_type='receipt' ORDER BY rowid DESC LIMIT 1"
    )
    ctx = sender.service.ctx
    verified = open_envelope(
        bytes(envelope),
        keyring=ctx.keys.ring,
        sender_keys=ctx.directory.signing_key,
        now=utc_now(),
        is_replay=lambda _s, _m: False,
    )
    return JoseWork(verified.inner_jws, bytes(envelope))


def _jose_work(sender: InProcessNode, receiver: InProcessNode) -> JoseWork:
    """The JOSE work of a message the pair really exchanged (its envelope and signed claims)."""
    [(message_id, inner)] = receiver.store.read(
        "SELECT message_id, inner_jws FROM inbox ORDER BY seq DESC LIMIT 1"
    )
    [(envelope,)] = sender.store.read(
        "SELECT envelope FROM outbox WHERE message_id=?", (message_id,)
    )
    return JoseWork(bytes(inner), bytes(envelope))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=300, help="messages per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", type=Path, help="write a cProfile of the rounds here")
    args = parser.parse_args()
    data = asyncio.run(run(args.messages, args.rounds, args.profile))
    rounds = data["rounds"]
    rows = [
        (
            i + 1,
            r["sender_us"],
            r["receiver_us"],
            r["both_us"],
            r["jose_us"],
            r["ratio"],
        )
        for i, r in enumerate(rounds)
    ]
    print_table(["round", "sender µs", "receiver µs", "both µs", "JOSE µs", "both / JOSE"], rows)
    median = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    print(
        f"\nmedian: sender {median['sender_us']:,.0f} µs "
        f"(send {median['sender_send_us']:,.0f} + receipt {median['sender_receipt_us']:,.0f}), "
        f"receiver {median['receiver_us']:,.0f} µs, JOSE {median['jose_us']:,.0f} µs, "
        f"both / JOSE {median['ratio']:.2f}"
    )
    # Shared machines only ever slow a round down: the least loaded round is the best estimate.
    # Each figure's least disturbed measurement, and their ratio.
    best = {k: min(r[k] for r in rounds) for k in rounds[0]}
    best["ratio"] = best["both_us"] / best["jose_us"]
    print(
        f"best: sender {best['sender_us']:,.0f} µs, receiver {best['receiver_us']:,.0f} µs, "
        f"JOSE {best['jose_us']:,.0f} µs, both / JOSE {best['ratio']:.2f}; "
        f"a receipt's seal + open {best['receipt_seal_open_us']:,.0f} µs"
    )
    write_results("node_cpu", {**data, "median": median, "best": best})


if __name__ == "__main__":
    main()
