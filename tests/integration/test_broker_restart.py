"""Threat: a broker restart loses confirmed messages or leaves nodes disconnected
(docs/ops/broker.md §5).

The shared broker must not be restarted, so this restarts the private TLS node
(tests/integration/_private_node.py: ``rabbitmqctl -n <private node> stop_app`` / ``start_app``)
in the middle of a stream. Quorum queues keep confirmed messages on disk; the robust connections
must come back by themselves, unconfirmed publishes be sent again, and every confirmed message
reach the consumer. Duplicates reach the handler only where the transport's guarantees allow
them: a redelivery the broker marks as one (a settlement lost across the reconnect), or a second
copy of a publish that was sent again because its confirm was lost. Any other duplicate fails.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.broker.transport import Consumer, Delivery, Publisher, connect
from gateway.core.broker_topology import inbox_queue, routing_key
from gateway.core.decisions import Decision, Deliver
from gateway.errors import GatewayError
from tests.integration._envelopes import fake_envelope, sender_of, soon
from tests.integration._private_node import TlsNode, cert_endpoint
from tests.integration._wait import until
from tests.integration.conftest import Federation, provision_federation, remove_federation

pytestmark = [pytest.mark.broker, pytest.mark.slow]

#: Confirmed messages before the restart, and after it before the stream stops.
BEFORE, AFTER = 600, 600
#: Publishes in flight at once (the publisher's own window bounds what is unconfirmed).
IN_FLIGHT = 256


@pytest.fixture
async def fed_on_private_node(tls_node: TlsNode, tmp_path: Path) -> AsyncIterator[Federation]:
    fed = provision_federation(tmp_path, names=("zvh", "pol"), ctl=tls_node.ctl)
    try:
        yield fed
    finally:
        for connection in fed.connections:
            await connection.close()
        remove_federation(fed)


def _republished(records: list[logging.LogRecord]) -> Counter[str]:
    """Message ids the publisher sent again after a lost confirm (from its debug log)."""
    return Counter(
        str(r.args[0])
        for r in records
        if r.name == "gateway.broker"
        and r.msg.startswith("publish of %s interrupted")
        and isinstance(r.args, tuple)
    )


async def test_every_confirmed_message_arrives_across_a_broker_restart(
    tls_node: TlsNode, fed_on_private_node: Federation, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="gateway.broker")
    fed = fed_on_private_node
    zvh = await connect(cert_endpoint(tls_node, fed.vhost, fed["zvh"].user))
    pol = await connect(cert_endpoint(tls_node, fed.vhost, fed["pol"].user))
    fed.connections += [zvh, pol]
    received: Counter[str | None] = Counter()
    # Deliveries the broker did not mark as redeliveries, per message id.
    fresh: Counter[str | None] = Counter()

    async def handler(delivery: Delivery) -> Decision:
        received[delivery.message_id] += 1
        if not delivery.redelivered and delivery.delivery_count == 0:
            fresh[delivery.message_id] += 1
        return Deliver()

    consumer = Consumer(
        zvh,
        queue=inbox_queue(fed["zvh"].org),
        handler=handler,
        sender_of=sender_of,
        broker_user_of=fed.broker_user_of,
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
        """Publish without pause until told to stop: however fast or slow the machine, the
        stream is still running when the broker stops (a fixed batch could be confirmed in full
        before ``stop_app`` takes effect, and the restart would interrupt nothing)."""
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
        await asyncio.to_thread(tls_node.ctl.run, "stop_app")
        await asyncio.to_thread(tls_node.ctl.run, "start_app")
        restarted_at = len(confirmed)
        await until(lambda: len(confirmed) >= restarted_at + AFTER, wait_s=60)
        sending.clear()
        await streaming
        await until(lambda: confirmed <= received.keys(), wait_s=60)

    duplicates = sum(count - 1 for count in received.values())
    print(
        f"\nconfirmed {len(confirmed)}/{sent}, received {len(received)} distinct, "
        f"{duplicates} duplicates; publisher {publisher.stats}; consumer {consumer.stats}"
    )
    assert not failed, f"{len(failed)} publishes not confirmed: {next(iter(failed.values()))}"
    assert confirmed <= received.keys()
    assert publisher.stats.republished > 0  # the restart really interrupted the stream
    # A duplicate the broker did not flag is only allowed for a publish that went out again.
    republished = _republished(caplog.records)
    unexplained = {mid: n for mid, n in fresh.items() if mid is None or n > 1 + republished[mid]}
    assert not unexplained, f"{len(unexplained)} unflagged duplicates: {unexplained}"
