"""Node to node, end to end: throughput and latency from ``POST /v1/messages`` at one node to the
message durably in the other node's inbox, against the raw aio-pika ceiling measured in the same
run (issue 6 §9).

Run: ``.venv/bin/python -m benchmarks.e2e [--messages N] [--rounds R] [--rates 50,100,200]
[--seconds S] [--profile DIR [--gil]] [--receipt-entries N]`` (the defaults, 1,000 messages and
3 rounds, take a few minutes) (needs RabbitMQ on 127.0.0.1:5672 and rabbitmqctl, as the tests
do). It provisions a throwaway federation (politie, gemeente, ggz) on its own vhost with the
same code as ``zvg broker provision``, starts the police and municipality nodes as their own
processes (``zvg node run``, like a deployment), and measures:

- **raw ceiling**: aio-pika publishing the police node's real envelope bytes (same size) with
  pipelined confirms (256 in flight, the node's publish window), mandatory, persistent, with the
  node's properties, to GGZ's quorum queue in the same vhost (same policies; no node consumes
  it), while a consumer with prefetch 128 (the node's default) acks them — N messages from the
  first publish to the last ack;
- **node throughput**: N ``POST /v1/messages`` (a ``case.referral``; 32 requests in flight over
  keep-alive connections) to the police node, until all N are committed in the municipality
  node's inbox. Completion is seen on the receiver side by polling its SQLite store read-only
  (a row is visible only once its transaction committed, i.e. after the fsync). The receiver
  sends a signed ``delivered`` receipt for each message, which the police node verifies: that
  work is included, as in real use. Raw and node rounds alternate (the machine is shared);
- **the unavoidable work** per message, after every round: the four JOSE operations (sign and
  encrypt at the sender, decrypt and verify at the receiver) done in this process N times with
  the project's own ``seal`` and ``open_envelope`` on the claims of a message the node really
  sent, with its recipient count and key suite (less the claims model's serialising and
  contract validation, measured apart), plus the AMQP client work of the message and of its
  receipt: twice this client's CPU per message in the raw round (a confirmed persistent publish
  and a consume with ack). Both nodes' CPU per message over this figure is the **CPU ratio**
  (issue 15 §7: target <= 2), one per round, reported as the median;
- **latency**: open-loop ``POST`` s for S seconds at half the node throughput just measured
  (the rate the p99 target is for), then at each ``--rates`` rate; per message the time from
  issuing the ``POST`` to its row being visible in the receiver's store (polled every 2 ms), and
  the ``POST`` round trip alone, both counting any wait for one of the client's 64 connections
  (half the node's ``api.max_connections``: past the node's capacity more would be refused with
  ``503``); the same for raw aio-pika (publish start to consume). Beside the client's ``POST``
  round trip, the sender's own time for it, from its access log: the part of the tail that is
  the node's rather than this client's (which shares the machine's cores).

- **receipts per envelope**: the receiver's receipts over the receipt envelopes it sealed, per
  throughput round and per latency rate (receipts pending together for one sender under one
  purpose and legal basis coalesce: docs/decisions/0006-coalesced-receipts.md).

It prints a table, writes ``benchmarks/results/e2e.json``, and reports each node process's peak
RSS (``VmHWM`` from ``/proc/<pid>/status``) and the CPU time per message of every process in
both kinds of round, the broker's included (its Erlang VM's pid from ``rabbitmqctl eval``),
against the CPU budget the throughput target leaves: ``CPUs / (0.3 x raw msg/s)``. Targets: both
nodes' CPU per message <= 2x the unavoidable work; node throughput >= 0.3x the raw ceiling; p99
< 50 ms at half the measured capacity. ``--profile DIR`` records
both nodes with ``py-spy record`` (raw collapsed stacks) during the first node throughput round.
The vhost and users are deleted afterwards. The two node processes and the means to drive and
watch them are :mod:`benchmarks._pair` (shared with ``benchmarks.overload``); a ``POST``
refused with ``429`` (the sender's outbox is full) is sent again after ``Retry-After``, as an
adapter does, so past the node's capacity the latency includes that wait.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import median
from typing import Any

import aio_pika
import aiohttp
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

from benchmarks import _stores
from benchmarks._pair import (
    HTTP_CONCURRENCY,
    RECEIVER,
    SENDER,
    Bench,
    body,
    node_throughput,
    peak_rss_kib,
    post,
    running_pair,
    settle,
    summary,
)
from benchmarks._report import print_table, write_results
from gateway.broker.provision import password_file, read_password_file
from gateway.broker.transport import BrokerEndpoint, connect
from gateway.core import jose
from gateway.core.broker_topology import (
    CONTENT_TYPE,
    ENVELOPE_EXCHANGE,
    inbox_queue,
    routing_key,
)
from gateway.core.envelope import open_envelope, seal
from gateway.core.keys import (
    DecryptionKey,
    KeyRing,
    SigningKey,
    StaticSenderKeys,
    suite_for_signature_alg,
)
from gateway.node.config import ApiSettings
from gateway.testing.veenstad import org_by_key
from schemas.claims import claims_to_json, parse_claims
from tests.e2e.harness import Fed

SPARE = "ggz"
#: Publishes awaiting a confirm at once (the node's default ``broker.publish_window``).
PUBLISH_WINDOW = 256
#: Raw consumer prefetch (the node's default ``broker.prefetch``).
PREFETCH = 128
#: How often the latency phases look at the receiver's store.
POLL_S = 0.002
TARGET_RATIO = 0.3
TARGET_P99_MS = 50.0
#: Both nodes' CPU per message may be at most this multiple of the unavoidable work.
TARGET_CPU_RATIO = 2.0
#: The latency target holds up to this fraction of the node throughput measured in the run.
HALF_CAPACITY = 0.5
#: In-process repetitions of each JOSE operation per round (for the unavoidable figure).
JOSE_ITERATIONS = 200
#: Connections of the latency phases' client: half the node's ``api.max_connections``, as the
#: adapters of ``benchmarks.overload`` together (a ``POST`` due while all are busy waits).
LATENCY_CONNECTIONS = ApiSettings().max_connections // 2


# ---------------------------------------------------------------------------- raw aio-pika


@dataclass
class Raw:
    publisher: AbstractRobustConnection
    consumer: AbstractRobustConnection
    user: str
    routing: str
    queue: str
    envelope: bytes

    def message(self, i: int) -> aio_pika.Message:
        return aio_pika.Message(
            self.envelope,
            content_type=CONTENT_TYPE,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=f"raw-{i}",
            user_id=self.user,
            expiration=timedelta(hours=1),
        )

    async def pipeline(
        self, n: int, schedule: Callable[[int], Awaitable[None]] | None = None
    ) -> tuple[float, dict[str, float], dict[str, float]]:
        """Publish ``n`` (each after ``schedule(i)`` when given) while consuming them; returns
        (seconds from the first publish to the last ack, publish start per id, consume time)."""
        channel = await self.publisher.channel(publisher_confirms=True, on_return_raises=True)
        exchange = await channel.get_exchange(ENVELOPE_EXCHANGE, ensure=False)
        consume_channel = await self.consumer.channel()
        await consume_channel.set_qos(prefetch_count=PREFETCH)
        queue = await consume_channel.declare_queue(self.queue, passive=True)
        window = asyncio.Semaphore(PUBLISH_WINDOW)
        started: dict[str, float] = {}
        arrived: dict[str, float] = {}
        done = asyncio.Event()

        async def on_message(message: AbstractIncomingMessage) -> None:
            arrived[str(message.message_id)] = time.time()
            await message.ack()
            if len(arrived) >= n:
                done.set()

        async def one(i: int) -> None:
            async with window:
                started[f"raw-{i}"] = time.time()
                await exchange.publish(self.message(i), self.routing, mandatory=True)

        tag = await queue.consume(on_message)
        t0 = time.perf_counter()
        tasks = []
        for i in range(n):
            if schedule is not None:
                await schedule(i)
            tasks.append(asyncio.ensure_future(one(i)))
        await asyncio.gather(*tasks)
        await asyncio.wait_for(done.wait(), timeout=120)
        elapsed = time.perf_counter() - t0
        await queue.cancel(tag)
        await consume_channel.close()
        await channel.close()
        return elapsed, started, arrived


# ---------------------------------------------------------------------------- unavoidable


def _thread_cpu_us(operation: Callable[[], object], iterations: int) -> float:
    """CPU microseconds of this thread per call of ``operation`` (``iterations`` calls)."""
    t0 = time.thread_time()
    for _ in range(iterations):
        operation()
    return (time.thread_time() - t0) / iterations * 1e6


class JoseWork:
    """The four JOSE operations of one message — sign and encrypt at the sender, decrypt and
    verify at the receiver — on the claims of a message the node really sent (taken from the
    receiver's inbox), the same recipient count and the same key suite, with fresh keys, by the
    project's own ``seal`` and ``open_envelope``.

    ``seal`` also serialises the claims model and ``open_envelope`` also validates the claims
    against the contract: both are measured separately (``claims_to_json``, ``parse_claims``) and
    taken off, so ``jose`` is the cryptographic envelope work alone.
    """

    def __init__(self, inner_jws: bytes, envelope: bytes) -> None:
        header_b64, payload_b64, _ = inner_jws.split(b".")
        suite = suite_for_signature_alg(json.loads(jose.b64u_decode(header_b64))["alg"])
        if suite is None:
            raise RuntimeError("the node signed with an algorithm outside the profile")
        self.payload = jose.b64u_decode(payload_b64)
        self.claims = parse_claims(self.payload)
        self.recipient_count = len(json.loads(envelope)["recipients"])
        self.signer = SigningKey.derive(suite, os.urandom)
        own = [DecryptionKey.derive(suite, os.urandom) for _ in range(self.recipient_count)]
        self.recipients = [k.public for k in own]
        self.ring = KeyRing(own[:1])
        self.lookup = StaticSenderKeys({self.claims.sender.org: [self.signer.public]})
        self.sealed = self.seal()
        self.suite = suite.value

    def seal(self) -> bytes:
        return seal(
            self.claims, signing_key=self.signer, recipients=self.recipients, rand=os.urandom
        ).raw

    def open(self) -> object:
        return open_envelope(
            self.sealed,
            keyring=self.ring,
            sender_keys=self.lookup,
            now=self.claims.created_at,
            is_replay=lambda _s, _m: False,
        )

    def measure(self, iterations: int) -> dict[str, float]:
        """CPU µs per operation; ``jose`` = seal + open - claims serialising and validating."""
        cost = {
            "seal": _thread_cpu_us(self.seal, iterations),
            "open": _thread_cpu_us(self.open, iterations),
            "claims_to_json": _thread_cpu_us(lambda: claims_to_json(self.claims), iterations),
            "parse_claims": _thread_cpu_us(lambda: parse_claims(self.payload), iterations),
        }
        cost["jose"] = cost["seal"] + cost["open"] - cost["claims_to_json"] - cost["parse_claims"]
        return cost


# ---------------------------------------------------------------------------- node


async def node_latency(bench: Bench, rate: float, seconds: float) -> dict[str, list[float]]:
    """Open-loop POSTs at ``rate``/s for ``seconds``; per message: POST round trip and POST
    start to committed in the receiver's inbox (ms)."""
    n = int(rate * seconds)
    bodies = [body(i) for i in range(n)]
    issued: dict[str, float] = {}
    post_ms: list[float] = []
    landed: dict[str, float] = {}
    bench.receiver.new_rows()
    connector = aiohttp.TCPConnector(limit=LATENCY_CONNECTIONS)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(message: bytes) -> None:
            start = time.time()
            message_id = await post(session, bench, message)
            post_ms.append((time.time() - start) * 1000)
            issued[message_id] = start

        async def poll() -> None:
            while len(landed) < n:
                now = time.time()
                for message_id, _received in bench.receiver.new_rows():
                    landed[message_id] = now
                await asyncio.sleep(POLL_S)

        poller = asyncio.ensure_future(poll())
        t0 = time.perf_counter()
        tasks = []
        for i, message in enumerate(bodies):
            delay = t0 + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(one(message)))
        await asyncio.gather(*tasks)
        window = (min(issued.values()), time.time())
        await asyncio.wait_for(poller, timeout=120)
    e2e = [(landed[m] - issued[m]) * 1000 for m in issued]
    log = bench.fed.root / f"{SENDER}.log"
    return {"e2e_ms": e2e, "post_ms": post_ms, "post_node_ms": accepted_posts_ms(log, window)}


def accepted_posts_ms(log: Path, window: tuple[float, float]) -> list[float]:
    """The sender's own time for each ``POST /v1/messages`` it answered ``202`` within
    ``window`` (epoch seconds), in ms, from its access log (``duration_seconds``: from the
    request's handling to its answer, by the event loop's clock — whole milliseconds under
    uvloop). Beside the client's round trip it shows how much of the tail the node's own."""
    start, end = window
    found = []
    for line in log.read_text("utf-8", "replace").splitlines():
        if '"POST"' not in line or '"/v1/messages"' not in line:
            continue
        entry = json.loads(line)
        logged = datetime.fromisoformat(entry["time"]).timestamp()
        if entry.get("status") == 202 and start - 0.001 <= logged <= end + 0.001:
            found.append(float(entry["duration_seconds"]) * 1000)
    return found


async def raw_latency(raw: Raw, rate: float, seconds: float) -> list[float]:
    n = int(rate * seconds)
    t0 = time.perf_counter()

    async def schedule(i: int) -> None:
        delay = t0 + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)

    _, started, arrived = await raw.pipeline(n, schedule)
    return [(arrived[m] - started[m]) * 1000 for m in started]


# ---------------------------------------------------------------------------- orchestration


def _endpoint(fed: Fed, key: str) -> BrokerEndpoint:
    org = org_by_key(key)
    user = next(u for u in fed.users if u.endswith(f"-{key}"))
    password = read_password_file(password_file(fed.provisioned.secrets_dir, org.oin))
    return BrokerEndpoint("127.0.0.1", 5672, fed.vhost, user, password)


def _profile(pid: int, out: Path, seconds: float, gil: bool) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            str(Path(sys.executable).parent / "py-spy"),
            "record",
            "--pid",
            str(pid),
            "--format",
            "raw",
            "--rate",
            "250",
            *(["--gil"] if gil else []),
            "--duration",
            str(int(seconds)),
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def run(
    messages: int,
    rounds: int,
    rates: list[float],
    seconds: float,
    profile: Path | None,
    gil: bool = False,
    receipt_entries: int | None = None,
) -> dict[str, Any]:
    load_before = os.getloadavg()
    async with running_pair("zvg-bench-e2e-", (SPARE,), receipt_entries) as bench:
        data = await _measure(bench, messages, rounds, rates, seconds, profile, gil)
    # The machine is shared: say how busy it was (1-minute load average).
    data["load_average"] = {"before": load_before[0], "after": os.getloadavg()[0]}
    return data


async def _measure(
    bench: Bench,
    messages: int,
    rounds: int,
    rates: list[float],
    seconds: float,
    profile: Path | None,
    gil: bool,
) -> dict[str, Any]:
    fed = bench.fed
    # Warm up (imports, first checkpoint, connections) and take a real envelope for raw and
    # its signed claims (from the receiver's inbox) for the unavoidable JOSE work.
    await node_throughput(bench, 200)
    await settle(bench)
    message_id, envelope = bench.sender_store.db.execute(
        "SELECT message_id, envelope FROM outbox WHERE message_type='case.referral' LIMIT 1"
    ).fetchone()
    bench.envelope = bytes(envelope)
    inner_jws = bytes(
        bench.receiver.db.execute(
            "SELECT inner_jws FROM inbox WHERE message_id = ?", (message_id,)
        ).fetchone()[0]
    )
    jose_work = JoseWork(inner_jws, bench.envelope)
    #: per round: CPU µs of the JOSE operations (and their parts), measured in this process
    jose_us: list[dict[str, float]] = []
    publisher = await connect(_endpoint(fed, SENDER), name="bench-raw-pub")
    consumer = await connect(_endpoint(fed, SPARE), name="bench-raw-con")
    raw = Raw(
        publisher,
        consumer,
        _endpoint(fed, SENDER).user,
        routing_key(org_by_key(SPARE).oin, org_by_key(SENDER).oin),
        inbox_queue(org_by_key(SPARE).oin),
        bench.envelope,
    )
    throughput: dict[str, list[float]] = {"raw": [], "node": []}
    #: per process: (user, system) CPU microseconds per message, per node round
    cpu_us: dict[str, list[tuple[float, float]]] = {
        k: [] for k in (SENDER, RECEIVER, "bench", "broker")
    }
    #: the same for the raw rounds: this client and the broker
    raw_cpu_us: dict[str, list[tuple[float, float]]] = {"bench": [], "broker": []}
    watched = {**bench.pids, "bench": os.getpid(), "broker": _broker_pid(fed)}
    #: receipts per receipt envelope, per node round (sealed until the pipeline settled)
    coalesced: list[float] = []

    def per_message(
        before: dict[str, tuple[float, float]], into: dict[str, list[tuple[float, float]]]
    ) -> None:
        for k, rows in into.items():
            user, system = _cpu(watched[k])
            rows.append(
                ((user - before[k][0]) / messages * 1e6, (system - before[k][1]) / messages * 1e6)
            )

    try:
        await raw.pipeline(500)  # warm-up
        jose_work.measure(JOSE_ITERATIONS // 4)  # warm-up
        for round_ in range(rounds):
            order = ("raw", "node") if round_ % 2 == 0 else ("node", "raw")
            for kind in order:
                before = {k: _cpu(pid) for k, pid in watched.items()}
                if kind == "raw":
                    elapsed, _, _ = await raw.pipeline(messages)
                    per_message(before, raw_cpu_us)
                else:
                    profilers = []
                    if profile is not None and round_ == 0:
                        profilers = [
                            _profile(pid, profile / f"{key}.txt", 60, gil)
                            for key, pid in bench.pids.items()
                        ]
                    sealed = _receipts_sent(bench)
                    elapsed = await node_throughput(bench, messages)
                    for p in profilers:
                        p.send_signal(signal.SIGINT)
                        p.wait(timeout=30)
                    # Until the receiver's inbox holds all N; receipts still in flight are
                    # the next round's (every round leaves about the same tail).
                    per_message(before, cpu_us)
                    await settle(bench)
                    coalesced.append(_per_envelope(sealed, _receipts_sent(bench)))
                throughput[kind].append(messages / elapsed)
            # Between rounds, nothing else runs: the JOSE work in this process, on one core.
            jose_us.append(jose_work.measure(JOSE_ITERATIONS))
        # The latency target holds up to half the capacity this run measured.
        half = round(HALF_CAPACITY * median(throughput["node"]))
        latency: dict[str, Any] = {}
        for rate in [half, *(r for r in rates if r != half)]:
            sealed = _receipts_sent(bench)
            node = await node_latency(bench, rate, seconds)
            await settle(bench)
            per_envelope = _per_envelope(sealed, _receipts_sent(bench))
            raw_ms = await raw_latency(raw, rate, seconds)
            latency[str(int(rate))] = {
                "half_capacity": rate == half,
                "receipts_per_envelope": per_envelope,
                "node_e2e_ms": summary(node["e2e_ms"]),
                "node_post_ms": summary(node["post_ms"]),
                "node_post_server_ms": summary(node["post_node_ms"]),
                "raw_ms": summary(raw_ms),
            }
    finally:
        await publisher.close()
        await consumer.close()
    rss = {key: peak_rss_kib(pid) for key, pid in bench.pids.items()}
    # The unavoidable work per message, round by round: the four JOSE operations plus the AMQP
    # client work of two confirmed persistent messages (the message and its receipt), each
    # published, consumed and acknowledged: twice this client's CPU per message in the raw round.
    unavoidable = [
        j["jose"] + 2 * (r[0] + r[1]) for j, r in zip(jose_us, raw_cpu_us["bench"], strict=True)
    ]
    nodes = [
        sum(cpu_us[k][i][0] + cpu_us[k][i][1] for k in (SENDER, RECEIVER)) for i in range(rounds)
    ]
    return {
        "messages_per_round": messages,
        "round_count": rounds,
        "envelope_bytes": len(bench.envelope),
        "http_concurrency": HTTP_CONCURRENCY,
        "latency_connections": LATENCY_CONNECTIONS,
        "publish_window": PUBLISH_WINDOW,
        "prefetch": PREFETCH,
        "throughput_rounds": throughput,
        "cpu_us_per_msg": {
            k: [{"user": u, "system": sy} for u, sy in v] for k, v in cpu_us.items()
        },
        "raw_cpu_us_per_msg": {
            k: [{"user": u, "system": sy} for u, sy in v] for k, v in raw_cpu_us.items()
        },
        "jose_us_per_msg": jose_us,
        "jose_iterations": JOSE_ITERATIONS,
        "jose_suite": jose_work.suite,
        "jose_recipients": jose_work.recipient_count,
        "unavoidable_us_per_msg": unavoidable,
        "nodes_cpu_us_per_msg": nodes,
        "cpu_ratio_rounds": [n / u for n, u in zip(nodes, unavoidable, strict=True)],
        "receipts_per_envelope_rounds": coalesced,
        "half_capacity_rate": half,
        "latency": latency,
        "latency_seconds_per_rate": seconds,
        "peak_rss_kib": rss,
        "cpus": os.cpu_count(),
        "measured": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _receipts_sent(bench: Bench) -> tuple[int, int]:
    """(receipts, receipt envelopes) the receiver has sealed so far: several receipts share an
    envelope when they coalesce (docs/decisions/0006-coalesced-receipts.md)."""
    receipts, envelopes = bench.receiver.db.execute(
        "SELECT count(*), count(DISTINCT receipt_id) FROM receipts_out"
    ).fetchone()
    return int(receipts), int(envelopes)


def _per_envelope(before: tuple[int, int], after: tuple[int, int]) -> float:
    receipts, envelopes = after[0] - before[0], after[1] - before[1]
    return receipts / envelopes if envelopes else 0.0


def _broker_pid(fed: Fed) -> int:
    """The operating-system process id of the RabbitMQ node (its Erlang VM)."""
    return int(fed.ctl.run("eval", "list_to_integer(os:getpid()).").strip())


def _cpu(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text("ascii").rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def _store_rounds(args: argparse.Namespace) -> None:
    """``--stores``: messages/s and CPU per message per store and processes per organisation."""
    setups, skipped = _stores.plan(args.stores, args.processes)
    for line in skipped:
        print(line)
    data = asyncio.run(_stores.measure(setups, args.messages, args.rounds, args.private_broker))
    data["not_run"] = skipped
    load = data["load_average"]
    print(
        f"\n{args.messages:,} messages per round, median of {args.rounds} rounds, the setups"
        f" alternating; {data['cpus']} CPUs shared with other work (load average"
        f" {load['before']:.1f} before, {load['after']:.1f} after)\n"
    )
    rows = []
    for name, result in data["setups"].items():
        cpu = result["cpu_us_per_msg"]
        total = sum(cpu.values())
        result["cpu_us_per_msg_total"] = total
        result["cores_at_msgs_per_s"] = _stores.sizing(total)
        to_one = result["ratio_to_one_process_rounds"]
        rows.append(
            [
                name,
                result["msgs_per_s"],
                median(result["ratio_to_first_rounds"]),
                median(to_one) if to_one else "-",
                cpu["sender"] + cpu["receiver"],
                cpu["broker"],
                cpu.get("database", "-"),
                total,
                result["cores_at_msgs_per_s"]["100"],
            ]
        )
    print_table(
        [
            "setup",
            "msg/s",
            "ratio (paired)",
            "to 1 process (paired)",
            "nodes us/msg",
            "broker us/msg",
            "database us/msg",
            "all us/msg",
            "cores at 100 msg/s",
        ],
        rows,
    )
    # Each node process apart: with two per organisation, which one carries what (the active
    # consumer and the leader, decision 0109).
    keys = sorted({k for r in data["setups"].values() for k in r["node_cpu_us_per_msg"]})
    print()
    print_table(
        ["setup", *(f"{key} us/msg" for key in keys)],
        [
            [name, *(r["node_cpu_us_per_msg"].get(key, "-") for key in keys)]
            for name, r in data["setups"].items()
        ],
    )
    write_results("e2e-stores", data)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000, help="messages per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--rates",
        default="",
        help="latency rounds at these messages/s too (comma-separated), besides half capacity",
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per rate")
    parser.add_argument("--profile", type=Path, default=None, help="py-spy output folder")
    parser.add_argument(
        "--receipt-entries",
        type=int,
        default=None,
        help="the nodes' limits.receipt_entries (1: no coalesced receipts; default: the node's)",
    )
    parser.add_argument(
        "--gil", action="store_true", help="profile only the thread holding the GIL"
    )
    parser.add_argument(
        "--stores",
        default="",
        help="instead: the store rounds (benchmarks/_stores.py) on these stores, e.g."
        " sqlite,postgres; writes e2e-stores.json",
    )
    parser.add_argument(
        "--private-broker",
        action="store_true",
        help="with --stores: on a RabbitMQ node booted for the run (as root), not the shared one",
    )
    parser.add_argument(
        "--processes",
        default="1",
        help="with --stores: node processes per organisation, e.g. 1,2 (2: PostgreSQL only,"
        " both on one database, decision 0109; SQLite keeps one)",
    )
    args = parser.parse_args()
    if args.stores:
        _store_rounds(args)
        return
    rates = [float(r) for r in args.rates.split(",") if r]
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    data = asyncio.run(
        run(
            args.messages,
            args.rounds,
            rates,
            args.seconds,
            args.profile,
            args.gil,
            args.receipt_entries,
        )
    )
    data["receipt_entries"] = args.receipt_entries
    raw, node = (median(data["throughput_rounds"][k]) for k in ("raw", "node"))
    paired = median(
        n / r
        for n, r in zip(
            data["throughput_rounds"]["node"], data["throughput_rounds"]["raw"], strict=True
        )
    )
    cpu, raw_cpu = (
        {
            k: (median(r["user"] for r in v), median(r["system"] for r in v))
            for k, v in data[key].items()
        }
        for key in ("cpu_us_per_msg", "raw_cpu_us_per_msg")
    )
    cpu_us = median(data["nodes_cpu_us_per_msg"])
    unavoidable = median(data["unavoidable_us_per_msg"])
    cpu_ratio = median(data["cpu_ratio_rounds"])
    jose_parts = {
        k: median(j[k] for j in data["jose_us_per_msg"]) for k in data["jose_us_per_msg"][0]
    }
    raw_client = sum(raw_cpu["bench"])
    suite = f"{data['jose_suite']}, {data['jose_recipients']} recipient(s)"
    load = data["load_average"]
    print(
        f"\n{args.messages:,} messages per round, median of {args.rounds} rounds (alternating); "
        f"envelope {data['envelope_bytes']:,} B; {os.cpu_count()} CPUs shared by the broker, "
        f"both nodes and this client; load average {load['before']:.1f} before, "
        f"{load['after']:.1f} after\n"
    )
    print_table(
        ["throughput", "msg/s", "ratio to raw", "paired ratio", "node CPU us/msg (both)"],
        [
            ["raw aio-pika publish+consume", raw, 1.0, 1.0, "-"],
            ["node POST -> receiver inbox", node, node / raw, paired, cpu_us],
        ],
    )
    print()
    print_table(
        ["CPU us per message (user + system)", "us", "x unavoidable"],
        [
            [f"both nodes ({SENDER} + {RECEIVER})", cpu_us, cpu_ratio],
            ["unavoidable = JOSE + 2 x AMQP client", unavoidable, 1.0],
            [
                f"  JOSE: sign, encrypt, decrypt, verify ({suite})",
                jose_parts["jose"],
                "-",
            ],
            ["    seal (incl. claims_to_json)", jose_parts["seal"], "-"],
            ["    open_envelope (incl. parse_claims)", jose_parts["open"], "-"],
            ["    claims_to_json (taken off)", jose_parts["claims_to_json"], "-"],
            ["    parse_claims (taken off)", jose_parts["parse_claims"], "-"],
            ["  AMQP client: confirmed publish + consume/ack, x2", 2 * raw_client, "-"],
        ],
    )
    print(
        f"(ratio: median of the per-round ratios {[round(r, 2) for r in data['cpu_ratio_rounds']]})"
    )
    print()
    rows = []
    for rate, lat in data["latency"].items():
        rows.append(
            [
                f"{int(rate)} (half capacity)" if lat["half_capacity"] else int(rate),
                lat["node_e2e_ms"]["p50"],
                lat["node_e2e_ms"]["p99"],
                lat["node_e2e_ms"]["max"],
                lat["node_post_ms"]["p50"],
                lat["node_post_ms"]["p99"],
                lat.get("node_post_server_ms", {}).get("p99", "-"),
                lat["raw_ms"]["p50"],
                lat["raw_ms"]["p99"],
                lat.get("receipts_per_envelope", "-"),
            ]
        )
    print_table(
        [
            "rate msg/s",
            "e2e p50 ms",
            "e2e p99 ms",
            "e2e max ms",
            "POST p50 ms",
            "POST p99 ms",
            "node's own POST p99 ms",
            "raw p50 ms",
            "raw p99 ms",
            "receipts/envelope",
        ],
        rows,
    )
    print(
        "receipts per receipt envelope in the throughput rounds: "
        f"{[round(r, 1) for r in data.get('receipts_per_envelope_rounds', [])]}"
    )
    print()
    print_table(
        ["process", "peak RSS MiB", "CPU us/msg user", "CPU us/msg system"],
        [
            [
                key,
                data["peak_rss_kib"][key] / 1024 if key in data["peak_rss_kib"] else "-",
                *cpu[key],
            ]
            for key in (SENDER, RECEIVER, "bench")
        ],
    )
    print()
    # The CPU budget: at the target rate every CPU second of the machine has to cover
    # TARGET_RATIO x raw messages, for everything that runs (broker, nodes, client).
    budget = data["cpus"] * 1e6 / (TARGET_RATIO * raw)
    print_table(
        ["CPU us per message", "raw round", "node round"],
        [
            [name, sum(raw_cpu[key]) if key in raw_cpu else "-", sum(cpu[key])]
            for name, key in (
                ("broker (RabbitMQ)", "broker"),
                ("this client", "bench"),
                (f"{SENDER} node", SENDER),
                (f"{RECEIVER} node", RECEIVER),
            )
        ]
        + [
            [
                "all processes",
                sum(map(sum, raw_cpu.values())),
                sum(map(sum, cpu.values())),
            ],
            [f"budget at {TARGET_RATIO}x raw ({data['cpus']} CPUs)", "-", budget],
        ],
    )
    half = data["half_capacity_rate"]
    p99 = data["latency"][str(half)]["node_e2e_ms"]["p99"]
    print(
        f"\ntargets: both nodes' CPU <= {TARGET_CPU_RATIO:.0f}x unavoidable (measured "
        f"{cpu_ratio:.2f}x); throughput >= {TARGET_RATIO}x raw (measured {node / raw:.2f}x, "
        f"paired {paired:.2f}x); p99 < {TARGET_P99_MS:.0f} ms at half capacity, {half}/s "
        f"(measured {p99:.1f} ms)"
    )
    write_results(
        "e2e",
        {
            **data,
            "median_msgs_per_s": {"raw": raw, "node": node},
            "ratio": node / raw,
            "paired_ratio": paired,
            "cpu_ratio": cpu_ratio,
            "p99_ms_at_half_capacity": p99,
            "targets": {
                "ratio": TARGET_RATIO,
                "cpu_ratio": TARGET_CPU_RATIO,
                "p99_ms_at_half_capacity": TARGET_P99_MS,
            },
        },
    )


if __name__ == "__main__":
    main()
