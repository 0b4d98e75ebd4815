"""Provisioning a national federation on the real broker: 250 members into one vhost, timed, with
the broker memory it costs (issue 19 §5, the national rollout of docs/performance.md).

Run: ``.venv/bin/python -m benchmarks.provision [--members 250] [--connections 250]`` (needs
RabbitMQ on 127.0.0.1:5672 and ``rabbitmqctl``, as the tests do; about a minute). It makes the
definitions of one federation with ``--members`` organisations (fake OINs, broker users
``zvgp<tag>-<i>``) with the same code as ``zvg broker provision`` (a fresh 256-bit password per
member, a salted hash in the definitions), loads them into its own vhost ``zvg-zvgp<tag>`` with
the same :func:`~gateway.broker.provision.apply_definitions` (one ``import_definitions`` and the
checks after it), and measures:

- **build**: making the definitions, password files included (this process's wall time);
- **apply**: loading them into the broker and checking every queue (wall time);
- **queues** made (an inbox and a dead-letter queue per member, quorum) and their memory as
  the broker reports it (``list_queues memory``: the queues' own processes);
- **broker memory** (the Erlang VM's ``erlang:memory(total)``) before, after provisioning, and
  after opening ``--connections`` AMQP connections as members (one per member, one channel
  each, as a node holds one), so **memory per member** and **per connection** follow;
- whether the import finished within the product's own bound on one ``rabbitmqctl`` call
  (``RABBITMQCTL_TIMEOUT_S``; the benchmark waits up to ``--timeout`` instead);
- a second ``apply`` of the same definitions (what re-provisioning after a directory change
  costs; it changes nothing).

Afterwards the connections are closed and the vhost and its users deleted (one
``rabbitmqctl eval``, as the tests remove theirs). Prints a table and writes
``benchmarks/results/provision.json``. The broker is shared with other people's tests while
this runs: broker-wide memory moves with them, so the per-member figures are the difference of
two readings and noisy; the queues' own memory is per vhost and exact.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

import aio_pika

from benchmarks._report import print_table, write_results
from gateway.broker import provision as provisioning
from gateway.broker.provision import (
    Rabbitmqctl,
    apply_definitions,
    build_definitions,
    read_password_file,
)
from gateway.broker.provision import password_file as member_password_file
from gateway.core.broker_topology import BrokerMember, vhost_name
from tests.rabbit import Provisioned, remove

MIB = 1024 * 1024


def _members(tag: str, count: int) -> list[BrokerMember]:
    """``count`` organisations with distinct OINs (20 digits) and broker users of this run."""
    return [
        BrokerMember(org=f"{99_000_000 + i:020d}", broker_user=f"zvgp{tag}-{i}")
        for i in range(count)
    ]


def _erlang_memory(ctl: Rabbitmqctl) -> int:
    """The broker VM's allocated memory in bytes (``erlang:memory(total)``)."""
    return int(ctl.run("eval", "erlang:memory(total).").strip())


def _queues(ctl: Rabbitmqctl, vhost: str) -> list[dict[str, Any]]:
    return ctl.json("list_queues", "-p", vhost, "name", "type", "memory")


async def _connect_all(
    vhost: str, members: list[BrokerMember], secrets_dir: Path, count: int
) -> list[aio_pika.abc.AbstractConnection]:
    """One AMQP connection (with one channel) per member, 16 handshakes at a time."""
    gate = asyncio.Semaphore(16)

    async def one(member: BrokerMember) -> aio_pika.abc.AbstractConnection:
        password = read_password_file(member_password_file(secrets_dir, member.org))
        async with gate:
            connection = await aio_pika.connect(
                host="127.0.0.1",
                port=5672,
                login=member.broker_user,
                password=password,
                virtualhost=vhost,
            )
            await connection.channel()
            return connection

    return list(await asyncio.gather(*(one(m) for m in members[:count])))


def run(members_count: int, connections: int, product_timeout: float) -> dict[str, Any]:
    ctl = Rabbitmqctl()
    tag = secrets.token_hex(3)
    federation = f"zvgp{tag}"
    vhost = vhost_name(federation)
    members = _members(tag, members_count)
    with tempfile.TemporaryDirectory(prefix="zvg-provision-") as tmp:
        secrets_dir = Path(tmp) / "secrets"
        provisioned = Provisioned(
            tag, federation, {m.broker_user: m.broker_user for m in members}, secrets_dir
        )
        memory_before = _erlang_memory(ctl)
        t0 = time.perf_counter()
        definitions = build_definitions(federation, members, secrets_dir=secrets_dir)
        build_s = time.perf_counter() - t0
        try:
            t0 = time.perf_counter()
            apply_definitions(definitions, ctl=ctl)
            apply_s = time.perf_counter() - t0
            memory_provisioned = _erlang_memory(ctl)
            queues = _queues(ctl, vhost)
            t0 = time.perf_counter()
            apply_definitions(definitions, ctl=ctl)
            reapply_s = time.perf_counter() - t0
            opened: list[aio_pika.abc.AbstractConnection] = []
            connect_s = 0.0
            memory_connected = memory_provisioned
            if connections:

                async def hold() -> tuple[float, int]:
                    t = time.perf_counter()
                    opened.extend(await _connect_all(vhost, members, secrets_dir, connections))
                    elapsed = time.perf_counter() - t
                    await asyncio.sleep(2)  # let the broker settle its per-connection state
                    used = _erlang_memory(ctl)
                    for connection in opened:
                        await connection.close()
                    return elapsed, used

                connect_s, memory_connected = asyncio.run(hold())
        finally:
            remove(ctl, [provisioned], wait=True)
    queue_bytes = sum(int(q.get("memory") or 0) for q in queues)
    return {
        "members": members_count,
        "vhost_queues": len(queues),
        "queue_types": sorted({str(q.get("type")) for q in queues}),
        "definitions_bytes": len(json.dumps(definitions)),
        "build_seconds": build_s,
        "apply_seconds": apply_s,
        "reapply_seconds": reapply_s,
        "product_rabbitmqctl_timeout_seconds": product_timeout,
        "queues_memory_bytes": queue_bytes,
        "broker_memory_before_bytes": memory_before,
        "broker_memory_provisioned_bytes": memory_provisioned,
        "broker_memory_per_member_bytes": (memory_provisioned - memory_before) / members_count,
        "queue_memory_per_member_bytes": queue_bytes / members_count,
        "connections": connections,
        "connect_seconds": connect_s,
        "broker_memory_connected_bytes": memory_connected,
        "broker_memory_per_connection_bytes": (
            (memory_connected - memory_provisioned) / connections if connections else 0.0
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--members", type=int, default=250)
    parser.add_argument(
        "--connections", type=int, default=250, help="members that connect (0: none)"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=1800.0,
        help="seconds one rabbitmqctl call may take (the product's bound is"
        f" {provisioning.RABBITMQCTL_TIMEOUT_S:.0f} s)",
    )
    args = parser.parse_args()
    # Measure how long the import takes, rather than stop at the product's bound.
    product_timeout = provisioning.RABBITMQCTL_TIMEOUT_S
    provisioning.RABBITMQCTL_TIMEOUT_S = args.timeout
    if not 1 <= args.members <= 10_000 or not 0 <= args.connections <= args.members:
        parser.error("--members must be 1..10000 and --connections 0..members")
    data = run(args.members, args.connections, product_timeout)
    data["load"] = "shared 2-core machine, loaded by other engineers' test runs"
    path = write_results("provision", data)
    print_table(
        ["measure", "value"],
        [
            ("members (one vhost)", data["members"]),
            ("queues made (quorum)", f"{data['vhost_queues']} {data['queue_types']}"),
            ("definitions", f"{data['definitions_bytes'] / 1024:.0f} KiB"),
            ("build (passwords, hashes)", f"{data['build_seconds']:.2f} s"),
            ("apply (import + checks)", f"{data['apply_seconds']:.2f} s"),
            ("apply again (no change)", f"{data['reapply_seconds']:.2f} s"),
            ("product's rabbitmqctl bound", f"{product_timeout:.0f} s"),
            ("queues' memory", f"{data['queues_memory_bytes'] / MIB:.1f} MiB"),
            ("per member: queues", f"{data['queue_memory_per_member_bytes'] / 1024:.0f} KiB"),
            (
                "per member: broker total",
                f"{data['broker_memory_per_member_bytes'] / 1024:.0f} KiB",
            ),
            ("connections opened", f"{data['connections']} in {data['connect_seconds']:.1f} s"),
            (
                "per connection: broker",
                f"{data['broker_memory_per_connection_bytes'] / 1024:.0f} KiB",
            ),
        ],
    )
    print(f"({path.name}: the machine is shared and loaded; broker-wide figures are noisy)")


if __name__ == "__main__":
    main()
