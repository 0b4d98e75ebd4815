"""Threats: ciphertext kept longer than needed, poison messages looping, silent drops (DESIGN §8).

Policies, not queue arguments, carry the limits; these tests provision tiny limits to reach them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gateway.broker.transport import Consumer, Publisher, PublishNackedError
from gateway.core.broker_topology import BrokerLimits, dead_letter_queue, inbox_queue, routing_key
from gateway.core.decisions import Retry
from tests.integration._envelopes import fake_envelope, sender_of, soon
from tests.integration._recorder import Recorder
from tests.integration._wait import death_reason, drain, get_one
from tests.integration.conftest import MakeFederation

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
