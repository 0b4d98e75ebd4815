"""Provisioning a national federation on the real broker: 250 members into one vhost, timed, with
the broker memory it costs (issue 19 §5, the national rollout of docs/performance.md).

Run: ``.venv/bin/python -m benchmarks.provision [--members 250] [--connections 250] [--broker
private|cluster|shared]`` (as root, with ``rabbitmq-server`` installed, as the tests run; several
minutes). By default it boots a **private** RabbitMQ node for the run (``cluster``: a private
three-member cluster, every quorum queue replicated three times), as the cluster test does
(``tests/integration/_cluster.py``), and removes it afterwards: on the shared broker of a loaded
test machine, importing 500 quorum queues at once made it stop answering new AMQP connections for
minutes, everyone's tests included (``--broker shared`` still does it there). It makes the
definitions of one federation with ``--members`` organisations (fake OINs, broker users
``zvgp<tag>-<i>``) with the same code as ``zvg broker provision`` (a fresh 256-bit password per
member, a salted hash in the definitions), loads them into its own vhost ``zvg-zvgp<tag>`` with
the same :func:`~gateway.broker.provision.apply_definitions` (one ``import_definitions`` and the
checks after it), and measures:

- **build**: making the definitions, password files included (this process's wall time);
- **apply**: loading them into the broker and checking every queue (wall time);
- **queues** made (an inbox and a dead-letter queue per member, quorum) and their memory as
  the broker reports it (``list_queues memory``: the queues' own processes);
- **broker memory** (the Erlang VMs' ``erlang:memory(total)``) idle, with ``--connections``
  AMQP connections open (one channel each, as a node holds one; as the private broker's
  ``guest`` on ``/``, before provisioning), and before and after provisioning, so **memory per
  connection** and **per member** follow;
- whether the import finished within the product's own bound on one ``rabbitmqctl`` call
  (``RABBITMQCTL_TIMEOUT_S``; the benchmark waits up to ``--timeout`` instead);
- whether the broker answers a member's new AMQP connection right after the import;
- a second ``apply`` of the same definitions (what re-provisioning after a directory change
  costs; it changes nothing).

Afterwards the connections are closed and the vhost and its users deleted (one
``rabbitmqctl eval``, as the tests remove theirs), and a private broker is stopped. Prints a
table and writes ``benchmarks/results/provision.json``. On the shared broker, broker-wide
memory moves with other people's tests, so the per-member figures are noisy there; on a private
broker the vhost is all it holds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import tempfile
import time
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

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
from tests.integration import _cluster
from tests.rabbit import Provisioned, remove

MIB = 1024 * 1024
#: How long a member's first connection after the import may take.
ANSWER_WAIT_S = 60.0


def _members(tag: str, count: int) -> list[BrokerMember]:
    """``count`` organisations with distinct OINs (20 digits) and broker users of this run."""
    return [
        BrokerMember(org=f"{99_000_000 + i:020d}", broker_user=f"zvgp{tag}-{i}")
        for i in range(count)
    ]


@dataclass(frozen=True)
class Broker:
    """Where to provision: ``rabbitmqctl`` for each member and the AMQP port of the first."""

    members: tuple[Rabbitmqctl, ...]
    port: int
    name: str
    shared: bool = False

    @property
    def ctl(self) -> Rabbitmqctl:
        return self.members[0]


def _erlang_memory(broker: Broker) -> int:
    """The broker VMs' allocated memory in bytes (``erlang:memory(total)``, all members)."""
    return sum(int(c.run("eval", "erlang:memory(total).").strip()) for c in broker.members)


def _say(text: str) -> None:
    print(text, flush=True)


@contextmanager
def _broker(kind: str) -> Iterator[Broker]:
    """The shared broker on 5672, or a private node or three-member cluster booted for the run
    (``tests/integration/_cluster.py``) and removed afterwards."""
    if kind == "shared":
        yield Broker((Rabbitmqctl(),), 5672, "shared RabbitMQ on 127.0.0.1:5672", shared=True)
        return
    size = 1 if kind == "private" else 3
    _cluster.SIZE = size
    booting = cast(Generator[_cluster.RabbitCluster, None, None], _cluster.run_cluster())
    cluster = next(booting)
    try:
        yield Broker(
            tuple(m.ctl for m in cluster.members),
            cluster.members[0].port,
            f"private RabbitMQ {'node' if size == 1 else f'cluster of {size}'}"
            f" (booted in {cluster.boot_seconds:.0f} s)",
        )
    finally:
        booting.close()


def _queues(ctl: Rabbitmqctl, vhost: str) -> list[dict[str, Any]]:
    return ctl.json("list_queues", "-p", vhost, "name", "type", "memory")


async def _connect_all(port: int, count: int) -> list[aio_pika.abc.AbstractConnection]:
    """``count`` AMQP connections with one channel each (as a node holds one), as the private
    broker's guest user on ``/``, 16 handshakes at a time."""
    gate = asyncio.Semaphore(16)

    async def one() -> aio_pika.abc.AbstractConnection:
        async with gate:
            connection = await aio_pika.connect(
                host="127.0.0.1",
                port=port,
                login="guest",
                password="guest",  # noqa: S106 - the private broker's default user, loopback only
                timeout=60,
            )
            await connection.channel()
            return connection

    return list(await asyncio.gather(*(one() for _ in range(count))))


async def _answers(port: int, vhost: str, member: BrokerMember | None, secrets_dir: Path) -> str:
    """Whether the broker completes a new AMQP handshake as ``member`` (``None``: guest) right
    after the import (``answered in N s``), or not within :data:`ANSWER_WAIT_S`."""
    login, password = "guest", "guest"  # the private broker's default user
    if member is not None:
        login = member.broker_user
        password = read_password_file(member_password_file(secrets_dir, member.org))
    t0 = time.perf_counter()
    try:
        connection = await aio_pika.connect(
            host="127.0.0.1",
            port=port,
            login=login,
            password=password,
            virtualhost=vhost,
            timeout=ANSWER_WAIT_S,
        )
    except (TimeoutError, OSError, aio_pika.exceptions.AMQPError) as exc:
        return f"no answer within {ANSWER_WAIT_S:.0f} s ({type(exc).__name__})"
    await connection.close()
    return f"answered in {time.perf_counter() - t0:.1f} s"


def run(
    broker: Broker, members_count: int, connections: int, product_timeout: float
) -> dict[str, Any]:
    ctl = broker.ctl
    tag = secrets.token_hex(3)
    federation = f"zvgp{tag}"
    vhost = vhost_name(federation)
    members = _members(tag, members_count)
    connect_s, memory_idle, memory_connected = 0.0, _erlang_memory(broker), 0
    if connections:  # first: the broker's own guest user on "/" (a private broker only)

        async def hold() -> tuple[float, int]:
            t = time.perf_counter()
            opened = await _connect_all(broker.port, connections)
            elapsed = time.perf_counter() - t
            await asyncio.sleep(2)  # let the broker settle its per-connection state
            used = _erlang_memory(broker)
            for connection in opened:
                await connection.close()
            return elapsed, used

        connect_s, memory_connected = asyncio.run(hold())
        _say(f"{connections} connections opened in {connect_s:.1f} s")
        time.sleep(2)
    with tempfile.TemporaryDirectory(prefix="zvg-provision-") as tmp:
        secrets_dir = Path(tmp) / "secrets"
        provisioned = Provisioned(
            tag, federation, {m.broker_user: m.broker_user for m in members}, secrets_dir
        )
        memory_before = _erlang_memory(broker)
        t0 = time.perf_counter()
        definitions = build_definitions(federation, members, secrets_dir=secrets_dir)
        build_s = time.perf_counter() - t0
        try:
            t0 = time.perf_counter()
            apply_definitions(definitions, ctl=ctl)
            apply_s = time.perf_counter() - t0
            _say(f"applied {members_count} members in {apply_s:.1f} s")
            memory_provisioned = _erlang_memory(broker)
            queues = _queues(ctl, vhost)
            t0 = time.perf_counter()
            apply_definitions(definitions, ctl=ctl)
            reapply_s = time.perf_counter() - t0
            _say(f"applied again in {reapply_s:.1f} s")
            answered = asyncio.run(_answers(broker.port, vhost, members[0], secrets_dir))
            _say(f"a member's new connection after the import: {answered}")
            guest = asyncio.run(_answers(broker.port, "/", None, secrets_dir))
            _say(f"guest's new connection on / after the import: {guest}")
        finally:
            if broker.shared:  # a private broker goes, with all on it, when the run ends
                remove(ctl, [provisioned], wait=True)
    queue_bytes = sum(int(q.get("memory") or 0) for q in queues)
    return {
        "broker": broker.name,
        "members": members_count,
        "vhost_queues": len(queues),
        "queue_types": sorted({str(q.get("type")) for q in queues}),
        "definitions_bytes": len(json.dumps(definitions)),
        "build_seconds": build_s,
        "apply_seconds": apply_s,
        "reapply_seconds": reapply_s,
        "member_connection_after_import": answered,
        "guest_connection_after_import": guest,
        "product_rabbitmqctl_timeout_seconds": product_timeout,
        "queues_memory_bytes": queue_bytes,
        "broker_memory_before_bytes": memory_before,
        "broker_memory_provisioned_bytes": memory_provisioned,
        "broker_memory_per_member_bytes": (memory_provisioned - memory_before) / members_count,
        "queue_memory_per_member_bytes": queue_bytes / members_count,
        "connections": connections,
        "connect_seconds": connect_s,
        "broker_memory_idle_bytes": memory_idle,
        "broker_memory_connected_bytes": memory_connected,
        "broker_memory_per_connection_bytes": (
            (memory_connected - memory_idle) / connections if connections else 0.0
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--members", type=int, default=250)
    parser.add_argument(
        "--broker",
        choices=("private", "cluster", "shared"),
        default="private",
        help="a private node (default), a private three-member cluster, or the shared broker",
    )
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
    with _broker(args.broker) as broker:
        _say(f"provisioning on the {broker.name}")
        data = run(broker, args.members, args.connections, product_timeout)
        data["load"] = "shared 2-core machine, loaded by other engineers' test runs"
        # Written before a private broker is stopped (stopping 500 quorum queues takes a while).
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
            ("a member's connection after it", data["member_connection_after_import"]),
            ("guest's connection after it", data["guest_connection_after_import"]),
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
