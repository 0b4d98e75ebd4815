"""Threat: the node's broker member dies and the node stops exchanging messages, or loses or
doubles one across the switch to another member (issue 19 point 3, decision 0093).

Two journeys. On the shared broker, two TCP relays in front of it stand for two members: the
connection moves to the second when the first dies, and starts on the second when the first is
down (cheap, < 2 s). On a private three-member cluster (``_cluster.py``): both organisations'
connections are on member 1 when it is stopped in the middle of a stream; they must come back on
another member by themselves and every confirmed message must reach the receiver. Copies reach it
only where the transport allows them: a redelivery the broker flags as one, or a publish sent
again because its confirm was lost at the switch; the node's inbox dedupes both by sender and
message id, so each is handed to the adapter once. Any other copy fails the test.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from gateway.broker.cluster import ClusterConnection
from gateway.broker.transport import BrokerEndpoint, Consumer, Delivery, Publisher, connect
from gateway.core.broker_topology import inbox_queue, routing_key
from gateway.core.decisions import Decision, Deliver
from gateway.errors import GatewayError
from tests.integration._cluster import RabbitCluster
from tests.integration._envelopes import fake_envelope, sender_of, soon
from tests.integration._relay import TcpRelay
from tests.integration._wait import get_one, until
from tests.integration.conftest import Federation, provision_federation

pytestmark = [pytest.mark.broker]

#: Confirmed messages before member 1 stops, and after it before the stream stops.
BEFORE, AFTER = 300, 300
IN_FLIGHT = 128


def _on(connection: object) -> ClusterConnection:
    assert isinstance(connection, ClusterConnection)
    return connection


# ------------------------------------------------------------------ two relays, shared broker


async def test_a_connection_moves_to_the_next_member_when_its_member_dies(fed: Federation) -> None:
    async with TcpRelay(fed.host, fed.port) as first, TcpRelay(fed.host, fed.port) as second:
        endpoint = replace(
            fed.endpoint("pol"),
            host="127.0.0.1",
            port=first.port,
            others=(("127.0.0.1", second.port),),
        )
        connection = _on(await connect(endpoint, name="zvgtest-cluster", reconnect_interval_s=0.1))
        fed.connections.append(connection)
        assert (connection.member, connection.switches) == (0, 0)
        key = routing_key(fed["zvh"].org, fed["pol"].org)
        async with Publisher(connection, org=fed["pol"].org, broker_user=fed["pol"].user) as pub:
            await pub.publish(
                key, fake_envelope(fed["pol"].org, 1), message_id="m1", expiration=soon()
            )
            first.accepting = False
            first.cut()
            # Sent again on the restored channel, now through the second member.
            await pub.publish(
                key, fake_envelope(fed["pol"].org, 2), message_id="m2", expiration=soon()
            )
        assert connection.member == 1
        assert connection.switches >= 1
        zvh = await fed.connect("zvh")
        ids = {(await get_one(zvh, inbox_queue(fed["zvh"].org))).message_id for _ in range(2)}
        assert ids == {"m1", "m2"}


async def test_the_first_connection_skips_a_member_that_is_down(fed: Federation) -> None:
    async with TcpRelay(fed.host, fed.port) as down, TcpRelay(fed.host, fed.port) as up:
        down.accepting = False
        endpoint = replace(
            fed.endpoint("pol"), host="127.0.0.1", port=down.port, others=(("127.0.0.1", up.port),)
        )
        connection = _on(await connect(endpoint, name="zvgtest-cluster"))
        fed.connections.append(connection)
        assert connection.member == 1
        assert connection.connected.is_set()


# ------------------------------------------------------------------ a real three-member cluster


@pytest.fixture
async def fed_on_cluster(
    rabbit_cluster: RabbitCluster, tmp_path: Path
) -> AsyncIterator[Federation]:
    """A federation on the private cluster. Not removed: the cluster goes, with all on it, at
    the end of the session (a removal would cost a rabbitmqctl call for nothing)."""
    fed = provision_federation(tmp_path, names=("zvh", "pol"), ctl=rabbit_cluster.ctl)
    try:
        yield fed
    finally:
        for connection in fed.connections:
            await connection.close()


def _cluster_endpoint(cluster: RabbitCluster, fed: Federation, name: str) -> BrokerEndpoint:
    first, *others = cluster.members
    return replace(
        fed.endpoint(name),
        host="127.0.0.1",
        port=first.port,
        others=tuple(("127.0.0.1", m.port) for m in others),
    )


def _republished(records: list[logging.LogRecord]) -> Counter[str]:
    """Message ids the publisher sent again after a lost confirm (from its debug log)."""
    return Counter(
        str(r.args[0])
        for r in records
        if r.name == "gateway.broker"
        and r.msg.startswith("publish of %s interrupted")
        and isinstance(r.args, tuple)
    )


@pytest.mark.slow
async def test_every_confirmed_message_is_handed_on_once_across_a_member_switch(
    rabbit_cluster: RabbitCluster, fed_on_cluster: Federation, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="gateway.broker")
    cluster, fed = rabbit_cluster, fed_on_cluster
    print(f"\ncluster booted in {cluster.boot_seconds:.1f} s")
    inbox = inbox_queue(fed["zvh"].org)
    queues = cluster.ctl.json("list_queues", "-p", fed.vhost, "name", "type", "members")
    row = next(q for q in queues if q["name"] == inbox)
    assert row["type"] == "quorum"
    assert sorted(row["members"]) == sorted(m.node for m in cluster.members)

    zvh = _on(await connect(_cluster_endpoint(cluster, fed, "zvh"), reconnect_interval_s=0.2))
    pol = _on(await connect(_cluster_endpoint(cluster, fed, "pol"), reconnect_interval_s=0.2))
    fed.connections += [zvh, pol]
    assert (zvh.member, pol.member) == (0, 0)

    received: Counter[str | None] = Counter()
    fresh: Counter[str | None] = Counter()  # deliveries the broker did not flag as redeliveries

    async def handler(delivery: Delivery) -> Decision:
        received[delivery.message_id] += 1
        if not delivery.redelivered and delivery.delivery_count == 0:
            fresh[delivery.message_id] += 1
        return Deliver()

    consumer = Consumer(
        zvh, queue=inbox, handler=handler, sender_of=sender_of, broker_user_of=fed.broker_user_of
    )
    publisher = Publisher(pol, org=fed["pol"].org, broker_user=fed["pol"].user)
    key = routing_key(fed["zvh"].org, fed["pol"].org)
    confirmed: set[str] = set()
    failed: dict[str, GatewayError] = {}

    async def send(n: int) -> None:
        message_id = f"m{n:05d}"
        try:
            await publisher.publish(
                key, fake_envelope(fed["pol"].org, n), message_id=message_id, expiration=soon()
            )
        except GatewayError as exc:
            failed[message_id] = exc
        else:
            confirmed.add(message_id)

    sending = asyncio.Event()
    sending.set()
    sent = 0

    async def stream() -> None:
        """Publish without pause until told to stop, so the stream is still running when the
        member stops, however fast or slow the machine."""
        nonlocal sent
        pending: set[asyncio.Task[None]] = set()
        while sending.is_set():
            pending.add(asyncio.create_task(send(sent)))
            sent += 1
            if len(pending) >= IN_FLIGHT:
                _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        await asyncio.gather(*pending)

    async with consumer, publisher:
        streaming = asyncio.create_task(stream())
        await until(lambda: len(confirmed) >= BEFORE, wait_s=60)
        await asyncio.to_thread(cluster.members[0].stop_app)
        stopped_at = len(confirmed)
        await until(lambda: len(confirmed) >= stopped_at + AFTER, wait_s=120)
        sending.clear()
        await streaming
        await until(lambda: confirmed <= received.keys(), wait_s=60)
    await asyncio.to_thread(cluster.members[0].start_app)

    duplicates = sum(count - 1 for count in received.values())
    print(
        f"confirmed {len(confirmed)}/{sent}, received {len(received)} distinct, {duplicates} "
        f"duplicates; publisher {publisher.stats}; consumer {consumer.stats}; members now "
        f"zvh {zvh.member + 1} pol {pol.member + 1}"
    )
    assert not failed, f"{len(failed)} publishes not confirmed: {next(iter(failed.values()))}"
    # Both connections left member 1 for another one.
    assert (zvh.member != 0, pol.member != 0) == (True, True)
    assert min(zvh.switches, pol.switches) >= 1
    assert publisher.stats.republished > 0  # the switch really interrupted the stream
    assert confirmed <= received.keys()
    republished = _republished(caplog.records)
    unexplained = {mid: n for mid, n in fresh.items() if mid is None or n > 1 + republished[mid]}
    assert not unexplained, f"{len(unexplained)} unflagged duplicates: {unexplained}"
