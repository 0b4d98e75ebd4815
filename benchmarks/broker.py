"""Broker throughput: raw aio-pika vs the zv-gateway transport, same run, same vhost settings.

Run: ``.venv/bin/python -m benchmarks.broker [--messages N] [--rounds R]`` (needs RabbitMQ on
127.0.0.1:5672 and rabbitmqctl, as the tests do). It provisions a throwaway federation with
``gateway.broker.provision`` (quorum queues, policies, per-org users — exactly what nodes get),
then, for 4 KiB persistent messages, alternates per round:

- **publish**: N publishes from one connection, at most 256 awaiting a confirm (raw: aio-pika
  ``Exchange.publish`` behind a semaphore, mandatory, ``on_return_raises``, the same properties;
  transport: :meth:`Publisher.publish`, which adds argument checks, TTL from ``exp``, per-id
  serialisation and reconnect handling);
- **consume**: drain those N with manual acks at prefetch 64 (raw: a callback that acks;
  transport: :class:`Consumer` with the ``user_id`` check and a handler returning ``Deliver``).

The order alternates per round (this machine is shared and its load drifts); it reports the
median throughput and the median client CPU time per message of each phase, the transport/raw
throughput ratio of the medians and the median of the per-round (back-to-back) ratios (target
≥ 0.8), and writes ``benchmarks/results/broker.json``. The vhost and users are deleted
afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import subprocess
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import median
from typing import Any

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

from benchmarks._report import print_table, write_results
from gateway.broker.provision import Rabbitmqctl, build_definitions, ensure_password
from gateway.broker.transport import (
    DEFAULT_PREFETCH,
    MAX_IN_FLIGHT,
    BrokerEndpoint,
    Consumer,
    Delivery,
    Publisher,
    connect,
)
from gateway.core.broker_topology import (
    CONTENT_TYPE,
    ENVELOPE_EXCHANGE,
    BrokerMember,
    inbox_queue,
    routing_key,
    vhost_name,
)
from gateway.core.decisions import Decision, Deliver

BODY_BYTES = 4096
RECIPIENT, SENDER = "00000001823288444000", "00000001003214345000"
PHASES = ("raw_publish", "transport_publish", "raw_consume", "transport_consume")


def _body(sender: str) -> bytes:
    head = json.dumps({"sender": sender, "pad": ""}).encode()
    return json.dumps({"sender": sender, "pad": "x" * (BODY_BYTES - len(head))}).encode()


def _sender_of(body: bytes) -> str:
    return str(json.loads(body)["sender"])


class _Clock:
    """Wall time and this process's CPU time over one phase."""

    def __enter__(self) -> _Clock:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *_: object) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu

    def figures(self, n: int) -> tuple[float, float]:
        """(messages per second, client CPU microseconds per message)."""
        return n / self.wall, self.cpu / n * 1e6


async def _raw_publish(
    connection: AbstractRobustConnection, user: str, n: int
) -> tuple[float, float]:
    channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
    exchange = await channel.get_exchange(ENVELOPE_EXCHANGE, ensure=False)
    window = asyncio.Semaphore(MAX_IN_FLIGHT)
    body, key = _body(SENDER), routing_key(RECIPIENT, SENDER)
    ttl = timedelta(hours=1)

    async def one(i: int) -> None:
        async with window:
            message = aio_pika.Message(
                body,
                content_type=CONTENT_TYPE,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=f"raw-{i}",
                user_id=user,
                expiration=ttl,
            )
            await exchange.publish(message, key, mandatory=True)

    with _Clock() as clock:
        await asyncio.gather(*(one(i) for i in range(n)))
    await channel.close()
    return clock.figures(n)


async def _transport_publish(
    connection: AbstractRobustConnection, user: str, n: int
) -> tuple[float, float]:
    publisher = Publisher(connection, org=SENDER, broker_user=user)
    body, key = _body(SENDER), routing_key(RECIPIENT, SENDER)
    exp = datetime.now(UTC) + timedelta(hours=1)
    async with publisher:
        with _Clock() as clock:
            await asyncio.gather(
                *(
                    publisher.publish(key, body, message_id=f"t-{i}", expiration=exp)
                    for i in range(n)
                )
            )
    return clock.figures(n)


async def _raw_consume(connection: AbstractRobustConnection, n: int) -> tuple[float, float]:
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=DEFAULT_PREFETCH)
    queue = await channel.declare_queue(inbox_queue(RECIPIENT), passive=True)
    done = asyncio.Event()
    count = 0

    async def on_message(message: AbstractIncomingMessage) -> None:
        nonlocal count
        await message.ack()
        count += 1
        if count == n:
            done.set()

    with _Clock() as clock:
        tag = await queue.consume(on_message)
        await done.wait()
    await queue.cancel(tag)
    await channel.close()
    return clock.figures(n)


async def _transport_consume(
    connection: AbstractRobustConnection, broker_user_of: Callable[[str], str | None], n: int
) -> tuple[float, float]:
    done = asyncio.Event()
    count = 0

    async def handler(_: Delivery) -> Decision:
        nonlocal count
        count += 1
        if count == n:
            done.set()
        return Deliver()

    consumer = Consumer(
        connection,
        queue=inbox_queue(RECIPIENT),
        handler=handler,
        sender_of=_sender_of,
        broker_user_of=broker_user_of,
    )
    with _Clock() as clock:
        await consumer.start()
        await done.wait()
        # The last ack goes out right after the handler returns; count it in.
        while consumer.stats.delivered < n:  # noqa: ASYNC110 - a counter, no event to wait on
            await asyncio.sleep(0)
    await consumer.close()
    return clock.figures(n)


async def _delete(federation: str, users: list[str]) -> None:
    commands = [["delete_vhost", vhost_name(federation)], *(["delete_user", u] for u in users)]
    for command in commands:
        process = await asyncio.create_subprocess_exec(
            "rabbitmqctl",
            "-q",
            *command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        await process.wait()


async def run(messages: int, rounds: int) -> dict[str, Any]:
    """Provision, measure ``rounds`` alternating rounds of ``messages`` each, clean up."""
    tag = secrets.token_hex(4)
    federation = f"bench-{tag}"
    users = {RECIPIENT: f"zvgbench-{tag}-zvh", SENDER: f"zvgbench-{tag}-pol"}
    members = [BrokerMember(org, user) for org, user in users.items()]
    results: dict[str, list[tuple[float, float]]] = {phase: [] for phase in PHASES}
    with tempfile.TemporaryDirectory() as tmp:
        secrets_dir = Path(tmp)
        definitions = build_definitions(federation, members, secrets_dir=secrets_dir)
        Rabbitmqctl().run("import_definitions", "--format", "json", stdin=json.dumps(definitions))
        try:

            def endpoint(org: str) -> BrokerEndpoint:
                password = ensure_password(secrets_dir, org)
                return BrokerEndpoint(
                    "127.0.0.1", 5672, vhost_name(federation), users[org], password
                )

            sender = await connect(endpoint(SENDER))
            recipient = await connect(endpoint(RECIPIENT))
            try:
                for round_ in range(rounds):
                    for kind in ("raw", "transport") if round_ % 2 == 0 else ("transport", "raw"):
                        if kind == "raw":
                            published = await _raw_publish(sender, users[SENDER], messages)
                            consumed = await _raw_consume(recipient, messages)
                        else:
                            published = await _transport_publish(sender, users[SENDER], messages)
                            consumed = await _transport_consume(recipient, users.get, messages)
                        results[f"{kind}_publish"].append(published)
                        results[f"{kind}_consume"].append(consumed)
            finally:
                await sender.close()
                await recipient.close()
        finally:
            await _delete(federation, list(users.values()))
    return {
        "messages_per_round": messages,
        "round_count": rounds,
        "body_bytes": BODY_BYTES,
        "max_in_flight": MAX_IN_FLIGHT,
        "prefetch": DEFAULT_PREFETCH,
        "queue_type": "quorum",
        "rounds": {
            phase: [{"msgs_per_s": rate, "client_cpu_us_per_msg": cpu} for rate, cpu in runs]
            for phase, runs in results.items()
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--messages", type=int, default=4_000, help="messages per round")
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    data = asyncio.run(run(args.messages, args.rounds))
    rate = {p: median(r["msgs_per_s"] for r in data["rounds"][p]) for p in PHASES}
    cpu = {p: median(r["client_cpu_us_per_msg"] for r in data["rounds"][p]) for p in PHASES}
    ratios = {op: rate[f"transport_{op}"] / rate[f"raw_{op}"] for op in ("publish", "consume")}
    # Each round measures raw and transport back to back, under the same load: the median of the
    # per-round ratios is steadier than the ratio of medians on a shared, noisy machine.
    paired = {
        op: median(
            t["msgs_per_s"] / r["msgs_per_s"]
            for t, r in zip(
                data["rounds"][f"transport_{op}"], data["rounds"][f"raw_{op}"], strict=True
            )
        )
        for op in ("publish", "consume")
    }
    print(
        f"{args.messages:,} x {BODY_BYTES} B persistent messages per round, median of "
        f"{args.rounds} rounds (alternating order), quorum queue, {MAX_IN_FLIGHT} in flight, "
        f"prefetch {DEFAULT_PREFETCH}\n"
    )
    rows = []
    for op, label in (("publish", "publish with confirms"), ("consume", "consume with ack")):
        raw, ours = f"raw_{op}", f"transport_{op}"
        rows.append([label, rate[raw], rate[ours], ratios[op], paired[op], cpu[raw], cpu[ours]])
    print_table(
        [
            "operation",
            "raw msg/s",
            "zv-gateway msg/s",
            "ratio",
            "paired ratio",
            "raw CPU us/msg",
            "zv-gateway CPU us/msg",
        ],
        rows,
    )
    print("\ntarget: zv-gateway keeps >= 0.80 of the raw aio-pika throughput")
    write_results(
        "broker",
        {
            **data,
            "median_msgs_per_s": rate,
            "median_client_cpu_us_per_msg": cpu,
            "ratios": ratios,
            "paired_ratios": paired,
            "target_ratio": 0.8,
        },
    )


if __name__ == "__main__":
    main()
