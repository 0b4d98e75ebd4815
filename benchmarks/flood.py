"""Flood size at which a partner's inbox refuses a legitimate message (issue 14, point 7).

Run: ``.venv/bin/python -m benchmarks.flood [--sizes 1024,65536,262144]`` (needs RabbitMQ on
127.0.0.1:5672 and rabbitmqctl, as the tests do). It provisions a throwaway federation with
``gateway.broker.provision`` and the **default** limits (exactly what ``zvg broker provision``
gives a federation: ``max_length`` 50,000 messages and ``max_length_bytes`` 256 MiB per inbox,
``overflow: reject-publish``), then, for each junk size, acts as a flooding member whose
recipient does not consume (offline, or slower than the flood — the worst case):

1. publishes junk of that size under a legal routing key with our own :class:`Publisher`
   (confirms, 256 in flight) until the broker nacks (the inbox is full);
2. publishes one legitimate 4 KiB message and records whether the broker refused it;
3. purges the inbox for the next size.

It prints, per size, how many junk messages (and bytes) the inbox took before it refused, which
bound was hit, the flood's publish rate, and whether the legitimate message was refused; writes
``benchmarks/results/flood.json``; deletes the vhost and users. While a recipient's node keeps
up with the flood (it refuses junk at thousands a second, tests/e2e/test_flood.py), the inbox
never fills; these figures are what a flood needs when it does not.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks._report import print_table, write_results
from gateway.broker.provision import Rabbitmqctl, build_definitions, ensure_password
from gateway.broker.transport import (
    MAX_IN_FLIGHT,
    BrokerEndpoint,
    Publisher,
    PublishNackedError,
    connect,
)
from gateway.core.broker_topology import (
    DEFAULT_LIMITS,
    BrokerMember,
    inbox_queue,
    routing_key,
    vhost_name,
)
from gateway.errors import GatewayError

RECIPIENT, SENDER = "00000001823288444000", "00000001003214345000"
LEGIT_BYTES = 4096
DEFAULT_SIZES = (1024, 65536, 262144)


async def _flood(publisher: Publisher, size: int) -> tuple[int, float]:
    """Publish junk of ``size`` bytes until the broker nacks; (confirmed count, seconds)."""
    key = routing_key(RECIPIENT, SENDER)
    exp = datetime.now(UTC) + timedelta(hours=1)
    body = secrets.token_bytes(size)
    confirmed = 0
    n = 0
    start = time.perf_counter()
    while True:
        batch = range(n, n + MAX_IN_FLIGHT)
        n += MAX_IN_FLIGHT
        results = await asyncio.gather(
            *(publisher.publish(key, body, message_id=f"junk-{i}", expiration=exp) for i in batch),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, PublishNackedError):
                continue
            if isinstance(result, BaseException):
                raise result
            confirmed += 1
        if any(isinstance(r, PublishNackedError) for r in results):
            return confirmed, time.perf_counter() - start


async def _legitimate(publisher: Publisher) -> bool:
    """True when the broker refused (nacked) one legitimate message."""
    try:
        await publisher.publish(
            routing_key(RECIPIENT, SENDER),
            secrets.token_bytes(LEGIT_BYTES),
            message_id="legitimate",
            expiration=datetime.now(UTC) + timedelta(hours=1),
        )
    except PublishNackedError:
        return True
    return False


async def run(sizes: tuple[int, ...]) -> dict[str, Any]:
    tag = secrets.token_hex(4)
    federation = f"bench-{tag}"
    users = {RECIPIENT: f"zvgbench-{tag}-zvh", SENDER: f"zvgbench-{tag}-pol"}
    members = [BrokerMember(org, user) for org, user in users.items()]
    ctl = Rabbitmqctl()
    vhost = vhost_name(federation)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        secrets_dir = Path(tmp)
        definitions = build_definitions(federation, members, secrets_dir=secrets_dir)
        ctl.run("import_definitions", "--format", "json", stdin=json.dumps(definitions))
        try:
            password = ensure_password(secrets_dir, SENDER)
            endpoint = BrokerEndpoint("127.0.0.1", 5672, vhost, users[SENDER], password)
            connection = await connect(endpoint)
            try:
                async with Publisher(connection, org=SENDER, broker_user=users[SENDER]) as pub:
                    for size in sizes:
                        junk, seconds = await _flood(pub, size)
                        refused = await _legitimate(pub)
                        by_count = junk * size < DEFAULT_LIMITS.max_length_bytes - size
                        rows.append(
                            {
                                "junk_bytes": size,
                                "junk_messages_taken": junk,
                                "junk_mib_taken": junk * size / 2**20,
                                "bound_hit": "max_length" if by_count else "max_length_bytes",
                                "flood_msgs_per_s": junk / seconds,
                                "flood_seconds": seconds,
                                "legitimate_refused": refused,
                            }
                        )
                        ctl.run("purge_queue", "-p", vhost, inbox_queue(RECIPIENT))
            finally:
                await connection.close()
        finally:
            for command in (["delete_vhost", vhost], *(["delete_user", u] for u in users.values())):
                with contextlib.suppress(GatewayError):
                    ctl.run(*command)
    version = ctl.run("version").strip()
    return {
        "rabbitmq": version,
        "max_length": DEFAULT_LIMITS.max_length,
        "max_length_bytes": DEFAULT_LIMITS.max_length_bytes,
        "overflow": "reject-publish",
        "legitimate_bytes": LEGIT_BYTES,
        "max_in_flight": MAX_IN_FLIGHT,
        "sizes": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--sizes",
        default=",".join(str(s) for s in DEFAULT_SIZES),
        help="junk message sizes in bytes, comma-separated",
    )
    args = parser.parse_args()
    sizes = tuple(int(s) for s in args.sizes.split(","))
    data = asyncio.run(run(sizes))
    print(
        f"RabbitMQ {data['rabbitmq']}, default inbox bounds: max_length {data['max_length']:,}, "
        f"max_length_bytes {data['max_length_bytes'] // 2**20} MiB, overflow reject-publish; "
        "the recipient does not consume\n"
    )
    print_table(
        [
            "junk size B",
            "junk taken",
            "MiB",
            "bound hit",
            "flood msg/s",
            "seconds",
            "legitimate refused",
        ],
        [
            [
                r["junk_bytes"],
                r["junk_messages_taken"],
                r["junk_mib_taken"],
                r["bound_hit"],
                r["flood_msgs_per_s"],
                r["flood_seconds"],
                "yes" if r["legitimate_refused"] else "NO",
            ]
            for r in data["sizes"]
        ],
    )
    write_results("flood", data)


if __name__ == "__main__":
    main()
