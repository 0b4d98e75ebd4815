"""Threats: ciphertext kept longer than needed, poison messages looping, silent drops
(docs/ops/broker.md).

Policies, not queue arguments, carry the limits; these tests provision tiny limits to reach them.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import aio_pika
import pytest

from gateway.broker.transport import Consumer, Publisher, PublishNackedError
from gateway.core.broker_topology import BrokerLimits, dead_letter_queue, inbox_queue, routing_key
from gateway.core.decisions import Retry
from tests.integration._envelopes import fake_envelope, sender_of, soon
from tests.integration._recorder import Recorder
from tests.integration._wait import WAIT_S, death_reason, drain, get_one
from tests.integration.conftest import Federation, MakeFederation

pytestmark = pytest.mark.broker


async def test_expired_message_lands_in_the_dead_letter_queue_as_expired(
    make_federation: MakeFederation,
) -> None:
    fed = await make_federation(names=("zvh", "pol"))
    publisher = Publisher(await fed.connect("pol"), org=fed["pol"].org, broker_user=fed["pol"].user)
    async with publisher:
        await publisher.publish(
            routing_key(fed["zvh"].org, fed["pol"].org),
            fake_envelope(fed["pol"].org),
            message_id="short-lived",
            expiration=datetime.now(UTC) + timedelta(milliseconds=200),
        )
    zvh = await fed.connect_plain("zvh")
    dead = await get_one(zvh, dead_letter_queue(fed["zvh"].org))
    assert (dead.message_id, death_reason(dead)) == ("short-lived", "expired")
    assert await drain(zvh, inbox_queue(fed["zvh"].org)) == []


async def test_expiry_is_capped_by_the_policy_ttl(make_federation: MakeFederation) -> None:
    """A sender asking for a long ``exp`` does not make the broker keep ciphertext longer."""
    fed = await make_federation(names=("zvh", "pol"), limits=BrokerLimits(message_ttl_ms=200))
    publisher = Publisher(await fed.connect("pol"), org=fed["pol"].org, broker_user=fed["pol"].user)
    async with publisher:
        await publisher.publish(
            routing_key(fed["zvh"].org, fed["pol"].org),
            fake_envelope(fed["pol"].org),
            message_id="wants-a-week",
            expiration=soon(7 * 24 * 3600),
        )
    dead = await get_one(await fed.connect_plain("zvh"), dead_letter_queue(fed["zvh"].org))
    assert (dead.message_id, death_reason(dead)) == ("wants-a-week", "expired")


async def test_message_retried_past_the_delivery_limit_lands_there_as_delivery_limit(
    make_federation: MakeFederation,
) -> None:
    fed = await make_federation(names=("zvh", "pol"), limits=BrokerLimits(delivery_limit=2))
    publisher = Publisher(await fed.connect("pol"), org=fed["pol"].org, broker_user=fed["pol"].user)
    async with publisher:
        await publisher.publish(
            routing_key(fed["zvh"].org, fed["pol"].org),
            fake_envelope(fed["pol"].org),
            message_id="poison",
            expiration=soon(),
        )
    handler = Recorder(lambda _: Retry(0))
    consumer = Consumer(
        await fed.connect("zvh"),
        queue=inbox_queue(fed["zvh"].org),
        handler=handler,
        sender_of=sender_of,
        broker_user_of=fed.broker_user_of,
    )
    async with consumer:
        dead = await get_one(await fed.connect_plain("zvh"), dead_letter_queue(fed["zvh"].org))
    assert (dead.message_id, death_reason(dead)) == ("poison", "delivery_limit")
    # Handed out delivery_limit + 1 times, each visibly a redelivery after the first.
    assert [d.delivery_count for d in handler.deliveries] == [0, 1, 2]
    assert [d.redelivered for d in handler.deliveries] == [False, True, True]


async def test_full_queue_nacks_the_publish_and_drops_nothing(
    make_federation: MakeFederation,
) -> None:
    fed = await make_federation(names=("zvh", "pol"), limits=BrokerLimits(max_length=3))
    publisher = Publisher(await fed.connect("pol"), org=fed["pol"].org, broker_user=fed["pol"].user)
    confirmed, nacked = [], []
    async with publisher:
        for n in range(8):
            message_id = f"m{n}"
            try:
                await publisher.publish(
                    routing_key(fed["zvh"].org, fed["pol"].org),
                    fake_envelope(fed["pol"].org, n),
                    message_id=message_id,
                    expiration=soon(),
                )
            except PublishNackedError:
                nacked.append(message_id)
            else:
                confirmed.append(message_id)
    assert nacked, "the broker never refused a publish to a full queue"
    assert publisher.stats.nacked == len(nacked)
    stored = await drain(await fed.connect_plain("zvh"), inbox_queue(fed["zvh"].org))
    # Every confirmed message is there (nothing dropped at the head); no nacked one is.
    assert [m.message_id for m in stored] == confirmed


async def _reject_all(connection: aio_pika.abc.AbstractConnection, queue: str) -> int:
    """What the node's consumer does with junk: nack each ready message without requeue
    (dead-letter). A consumer, not basic.get: inboxes are single-active-consumer quorum queues,
    which refuse basic.get."""
    channel = await connection.channel()
    try:
        declared = await channel.declare_queue(queue, passive=True)
        ready = int(declared.declaration_result.message_count or 0)
        if not ready:
            return 0
        await channel.set_qos(prefetch_count=ready)
        q = await channel.get_queue(queue, ensure=False)
        rejected = 0
        async with asyncio.timeout(WAIT_S), q.iterator() as messages:
            async for message in messages:
                await message.reject(requeue=False)
                rejected += 1
                if rejected >= ready:
                    break
        return rejected
    finally:
        await channel.close()


def _depths(fed: Federation) -> dict[str, int]:
    """Messages per queue as the broker counts them, including dead letters still waiting in
    their source queue for the dead-letter queue to take them (basic.get does not show those).
    The broker refreshes these figures every few seconds."""
    rows = fed.ctl.json("list_queues", "-p", fed.vhost, "name", "messages")
    return {str(r["name"]): int(r["messages"]) for r in rows}


async def test_a_full_dead_letter_queue_never_blocks_legitimate_delivery(
    make_federation: MakeFederation,
) -> None:
    """Threat: a member floods a partner's inbox with junk the partner dead-letters. Once the
    partner's dead-letter queue is full, junk must still leave the inbox and a legitimate
    message must still get in (issue 14 point 7; docs/decisions/0039)."""
    limits = BrokerLimits(max_length=10, dead_letter_max_length=5)
    fed = await make_federation(names=("zvh", "pol"), limits=limits)
    zvh, pol = fed["zvh"], fed["pol"]
    key = routing_key(zvh.org, pol.org)
    plain = await fed.connect_plain("zvh")
    publisher = Publisher(await fed.connect("pol"), org=pol.org, broker_user=pol.user)
    junk_refused = rejected = 0
    async with publisher:
        for n in range(60):  # 12 times the dead-letter bound, 6 times the inbox bound
            try:
                await publisher.publish(
                    key, fake_envelope(pol.org, n), message_id=f"junk-{n}", expiration=soon()
                )
            except PublishNackedError:
                junk_refused += 1
            if n % 10 == 9:
                rejected += await _reject_all(plain, inbox_queue(zvh.org))
        assert rejected > limits.dead_letter_max_length  # the dead-letter queue is full
        # The legitimate message, published as the sender's outbox does: a nack is retried.
        nacks = 0
        deadline = asyncio.get_running_loop().time() + WAIT_S
        while True:
            try:
                await publisher.publish(
                    key, fake_envelope(pol.org, 999), message_id="legit", expiration=soon()
                )
                break
            except PublishNackedError:
                nacks += 1
                assert asyncio.get_running_loop().time() < deadline, (
                    f"the legitimate message was refused {nacks} times in {WAIT_S:.0f} s "
                    f"({junk_refused} of 60 junk publishes refused, {rejected} dead-lettered): "
                    "the full dead-letter queue keeps junk in the inbox"
                )
                await asyncio.sleep(0.2)
    message = await get_one(plain, inbox_queue(zvh.org))
    assert message.message_id == "legit"
    # The junk left the inbox; the dead-letter queue holds at most its bound (newest first).
    async with asyncio.timeout(60):
        while True:
            depths = _depths(fed)
            if depths[inbox_queue(zvh.org)] == 0:
                break
            await asyncio.sleep(1)
    assert depths[dead_letter_queue(zvh.org)] <= limits.dead_letter_max_length
