"""Threat: a confirmed message is lost when connections drop (docs/architecture.md §8, §9.1).

The broker cuts every connection of the test's vhost (``rabbitmqctl close_all_connections -p``,
so other people's connections on the shared broker are untouched) twice in the middle of a
stream of 5,000 messages. Publisher and consumer must reconnect by themselves; every publish must
end confirmed (republished when its confirm was lost), and every confirmed message must reach
the consumer — at least once: duplicates are allowed, counted and reported.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from gateway.broker.transport import Consumer, Delivery, Publisher
from gateway.core.broker_topology import inbox_queue, routing_key
from gateway.core.decisions import Decision, Deliver
from gateway.errors import GatewayError
from tests.integration._envelopes import fake_envelope, sender_of, soon
from tests.integration._wait import until
from tests.integration.conftest import Federation

pytestmark = [pytest.mark.broker, pytest.mark.slow]

MESSAGES = 5_000
BODY_BYTES = 1_024


async def test_every_confirmed_message_arrives_across_dropped_connections(
    fed: Federation,
) -> None:
    received: Counter[str | None] = Counter()

    async def handler(delivery: Delivery) -> Decision:
        received[delivery.message_id] += 1
        return Deliver()

    consumer = Consumer(
        await fed.connect("zvh"),
        queue=inbox_queue(fed["zvh"].org),
        handler=handler,
        sender_of=sender_of,
        broker_user_of=fed.broker_user_of,
    )
    publisher = Publisher(await fed.connect("pol"), org=fed["pol"].org, broker_user=fed["pol"].user)
    key = routing_key(fed["zvh"].org, fed["pol"].org)
    confirmed: set[str] = set()
    failed: dict[str, GatewayError] = {}

    async def send(n: int) -> None:
        message_id = f"m{n:05d}"
        body = fake_envelope(fed["pol"].org, n, pad_to=BODY_BYTES)
        try:
            await publisher.publish(key, body, message_id=message_id, expiration=soon())
        except GatewayError as exc:
            failed[message_id] = exc
        else:
            confirmed.add(message_id)

    async with consumer, publisher:
        stream = [asyncio.create_task(send(n)) for n in range(MESSAGES)]
        for fraction in (0.25, 0.6):
            await until(lambda f=fraction: len(confirmed) >= MESSAGES * f, wait_s=60)  # type: ignore[misc]
            await asyncio.to_thread(fed.close_connections)
        await asyncio.gather(*stream)
        await until(lambda: confirmed <= received.keys(), wait_s=60)

    duplicates = sum(count - 1 for count in received.values())
    print(  # the figures the report quotes (pytest -s)
        f"\nconfirmed {len(confirmed)}/{MESSAGES}, received {len(received)} distinct, "
        f"{duplicates} duplicates; publisher {publisher.stats}; consumer {consumer.stats}"
    )
    assert not failed, f"{len(failed)} publishes not confirmed: {next(iter(failed.values()))}"
    assert len(confirmed) == MESSAGES
    assert confirmed <= received.keys()
    # The drops really hit the stream: something was republished or redelivered.
    assert publisher.stats.republished + consumer.stats.redeliveries > 0
