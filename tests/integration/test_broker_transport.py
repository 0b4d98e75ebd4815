"""The transport: what a publish puts on the wire, and how decisions are settled
(docs/architecture.md §8).

Threats: metadata leaking in clear AMQP properties; an unroutable or refused message reported as
sent; a decision settled differently from what the node decided; a redelivery the node cannot
tell from a first delivery.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from gateway.broker.transport import (
    BrokerEndpoint,
    Consumer,
    Delivery,
    MessageExpiredError,
    Publisher,
    PublishUnconfirmedError,
    UnroutableError,
    connect,
)
from gateway.core.broker_topology import (
    CONTENT_TYPE,
    BrokerLimits,
    dead_letter_queue,
    inbox_queue,
    routing_key,
)
from gateway.core.decisions import Decision, Deliver, Reject, Retry
from gateway.errors import LocalError, RemoteError
from tests.integration._envelopes import fake_envelope, sender_of, soon
from tests.integration._recorder import Recorder
from tests.integration._wait import WAIT_S, death_reason, drain, get_one, until
from tests.integration.conftest import Federation, MakeFederation

pytestmark = pytest.mark.broker

UNPROVISIONED_OIN = "00000009999999999000"


def _consumer(fed: Federation, connection: object, handler: Recorder, **kw: object) -> Consumer:
    return Consumer(
        connection,  # type: ignore[arg-type]
        queue=inbox_queue(fed["zvh"].org),
        handler=handler,
        sender_of=sender_of,
        broker_user_of=fed.broker_user_of,
        **kw,  # type: ignore[arg-type]
    )


async def _publisher(fed: Federation, name: str = "pol", **kw: object) -> Publisher:
    connection = await fed.connect(name)
    publisher = Publisher(connection, org=fed[name].org, broker_user=fed[name].user, **kw)  # type: ignore[arg-type]
    await publisher.start()
    return publisher


async def test_publish_sets_exactly_the_agreed_properties_and_no_headers(fed: Federation) -> None:
    """No purpose, case or trace may travel in clear: only the five agreed properties."""
    publisher = await _publisher(fed)
    exp = datetime.now(UTC) + timedelta(minutes=10)
    await publisher.publish(
        routing_key(fed["zvh"].org, fed["pol"].org),
        fake_envelope(fed["pol"].org),
        message_id="0190c1c2-7d2e-7000-8000-000000000001",
        expiration=exp,
    )
    message = await get_one(await fed.connect_plain("zvh"), inbox_queue(fed["zvh"].org))
    assert message.user_id == fed["pol"].user
    assert message.message_id == "0190c1c2-7d2e-7000-8000-000000000001"
    assert message.content_type == CONTENT_TYPE
    assert message.delivery_mode == 2
    assert isinstance(message.expiration, float)
    assert 0 < message.expiration <= 600
    # The only header is the one the quorum queue itself adds.
    assert set(message.headers) <= {"x-delivery-count"}
    for absent in ("correlation_id", "reply_to", "type", "app_id", "content_encoding", "timestamp"):
        assert getattr(message, absent) is None, absent


async def test_consumer_acks_deliver_and_hands_over_delivery_facts(fed: Federation) -> None:
    publisher = await _publisher(fed)
    for n in range(3):
        await publisher.publish(
            routing_key(fed["zvh"].org, fed["pol"].org),
            fake_envelope(fed["pol"].org, n),
            message_id=f"m{n}",
            expiration=soon(),
        )
    settled: list[tuple[Delivery, Decision]] = []
    handler = Recorder()
    consumer = _consumer(
        fed, await fed.connect("zvh"), handler, on_settled=lambda d, x: settled.append((d, x))
    )
    async with consumer:
        await until(lambda: len(settled) == 3)
    assert sorted(handler.message_ids) == ["m0", "m1", "m2"]  # type: ignore[type-var]
    first = handler.deliveries[0]
    assert first.user_id == fed["pol"].user
    assert first.routing_key == routing_key(fed["zvh"].org, fed["pol"].org)
    assert (first.redelivered, first.delivery_count) == (False, 0)
    assert all(isinstance(decision, Deliver) for _, decision in settled)
    assert consumer.stats.delivered == 3
    # Acked means gone: nothing left for a second consumer, nothing dead-lettered.
    zvh = await fed.connect_plain("zvh")
    assert await drain(zvh, inbox_queue(fed["zvh"].org)) == []
    assert await drain(zvh, dead_letter_queue(fed["zvh"].org)) == []


async def test_retry_requeues_and_the_redelivery_is_visible(fed: Federation) -> None:
    publisher = await _publisher(fed)
    await publisher.publish(
        routing_key(fed["zvh"].org, fed["pol"].org),
        fake_envelope(fed["pol"].org),
        message_id="m1",
        expiration=soon(),
    )
    handler = Recorder(lambda d: Retry(0) if d.delivery_count == 0 else Deliver())
    consumer = _consumer(fed, await fed.connect("zvh"), handler)
    async with consumer:
        await until(lambda: consumer.stats.delivered == 1)
    assert [(d.redelivered, d.delivery_count) for d in handler.deliveries] == [
        (False, 0),
        (True, 1),
    ]
    assert consumer.stats.retried == 1


async def test_handler_errors_are_settled_not_lost(fed: Federation) -> None:
    """A RemoteError from the handler dead-letters; any other exception requeues."""
    publisher = await _publisher(fed)
    key = routing_key(fed["zvh"].org, fed["pol"].org)
    await publisher.publish(
        key, fake_envelope(fed["pol"].org, 1), message_id="bad", expiration=soon()
    )
    await publisher.publish(
        key, fake_envelope(fed["pol"].org, 2), message_id="bug", expiration=soon()
    )
    seen: list[tuple[str | None, int]] = []

    async def handler(delivery: Delivery) -> Decision:
        seen.append((delivery.message_id, delivery.delivery_count))
        if delivery.message_id == "bad":
            raise RemoteError("bad_signature", "test: signature does not verify")
        if delivery.delivery_count == 0:
            raise RuntimeError("test: a bug in the handler")
        return Deliver()

    consumer = Consumer(
        await fed.connect("zvh"),
        queue=inbox_queue(fed["zvh"].org),
        handler=handler,
        sender_of=sender_of,
        broker_user_of=fed.broker_user_of,
        max_retry_delay_s=0,
    )
    async with consumer:
        await until(lambda: consumer.stats.delivered == 1 and consumer.stats.rejected == 1)
    assert sorted(seen) == [("bad", 0), ("bug", 0), ("bug", 1)]
    dead = await get_one(await fed.connect_plain("zvh"), dead_letter_queue(fed["zvh"].org))
    assert (dead.message_id, death_reason(dead)) == ("bad", "rejected")


async def test_unroutable_publish_fails_loudly(fed: Federation) -> None:
    publisher = await _publisher(fed)
    with pytest.raises(UnroutableError):
        await publisher.publish(
            routing_key(UNPROVISIONED_OIN, fed["pol"].org),
            fake_envelope(fed["pol"].org),
            message_id="m1",
            expiration=soon(),
        )
    assert (publisher.stats.returned, publisher.stats.confirmed) == (1, 0)


async def test_one_message_id_to_several_recipients_reports_each_outcome(fed: Federation) -> None:
    """aiormq matches a basic.return to its publish by message id. One message goes to several
    recipients under one id; a return for one recipient must never be reported for a sibling
    (which would report the unroutable one as sent)."""
    publisher = await _publisher(fed)
    body = fake_envelope(fed["pol"].org)
    recipients = [UNPROVISIONED_OIN, fed["zvh"].org, fed["ggz"].org]
    for round_ in range(5):
        results = await asyncio.gather(
            *(
                publisher.publish(
                    routing_key(r, fed["pol"].org), body, message_id=f"m{round_}", expiration=soon()
                )
                for r in recipients
            ),
            return_exceptions=True,
        )
        assert isinstance(results[0], UnroutableError)
        assert results[1:] == [None, None]
    assert len(await drain(await fed.connect_plain("zvh"), inbox_queue(fed["zvh"].org))) == 5
    assert len(await drain(await fed.connect_plain("ggz"), inbox_queue(fed["ggz"].org))) == 5


async def test_an_expired_envelope_is_not_published(fed: Federation) -> None:
    publisher = await _publisher(fed)
    with pytest.raises(MessageExpiredError):
        await publisher.publish(
            routing_key(fed["zvh"].org, fed["pol"].org),
            fake_envelope(fed["pol"].org),
            message_id="m1",
            expiration=datetime.now(UTC) - timedelta(seconds=1),
        )
    assert await drain(await fed.connect_plain("zvh"), inbox_queue(fed["zvh"].org)) == []


async def test_consumer_cannot_start_on_another_orgs_queue(fed: Federation) -> None:
    consumer = Consumer(
        await fed.connect("pol"),
        queue=inbox_queue(fed["zvh"].org),
        handler=Recorder(),
        sender_of=sender_of,
        broker_user_of=fed.broker_user_of,
    )
    with pytest.raises(LocalError, match="may not read"):
        await consumer.start()


async def test_wrong_password_is_a_local_error(fed: Federation) -> None:
    endpoint = BrokerEndpoint(fed.host, fed.port, fed.vhost, fed["pol"].user, "not-the-password")
    with pytest.raises(LocalError, match="refused the login"):
        await connect(endpoint)


async def test_rejected_decision_is_dead_lettered_with_reason_rejected(fed: Federation) -> None:
    publisher = await _publisher(fed)
    await publisher.publish(
        routing_key(fed["zvh"].org, fed["pol"].org),
        fake_envelope(fed["pol"].org),
        message_id="m1",
        expiration=soon(),
    )
    handler = Recorder(lambda _: Reject("policy_denied", "test: purpose not allowed"))
    consumer = _consumer(fed, await fed.connect("zvh"), handler)
    async with consumer:
        await until(lambda: consumer.stats.rejected == 1)
    dead = await get_one(await fed.connect_plain("zvh"), dead_letter_queue(fed["zvh"].org))
    assert (dead.message_id, death_reason(dead)) == ("m1", "rejected")
    assert dead.user_id == fed["pol"].user


async def test_closing_the_publisher_settles_every_pending_publish(fed: Federation) -> None:
    """Nothing hangs and nothing is reported sent that was not confirmed."""
    publisher = await _publisher(fed)
    key = routing_key(fed["zvh"].org, fed["pol"].org)
    body = fake_envelope(fed["pol"].org)
    pending = [
        asyncio.create_task(publisher.publish(key, body, message_id=f"m{n}", expiration=soon()))
        for n in range(1000)
    ]
    await asyncio.sleep(0)
    await publisher.close()
    async with asyncio.timeout(WAIT_S):
        results = await asyncio.gather(*pending, return_exceptions=True)
    confirmed = sum(r is None for r in results)
    assert all(r is None or isinstance(r, PublishUnconfirmedError) for r in results)
    assert confirmed == publisher.stats.confirmed
    assert confirmed < len(results)
    # Everything reported confirmed is really there.
    stored = await drain(await fed.connect_plain("zvh"), inbox_queue(fed["zvh"].org))
    assert {m.message_id for m in stored} >= {f"m{n}" for n, r in enumerate(results) if r is None}


async def test_a_failing_sender_check_is_retried_then_dead_lettered(
    make_federation: MakeFederation,
) -> None:
    """A bug in the header peek must not strand the message unacked: it is requeued until the
    delivery limit, then dead-lettered, and the consumer keeps working."""
    fed = await make_federation(names=("zvh", "pol"), limits=BrokerLimits(delivery_limit=1))
    publisher = await _publisher(fed)
    await publisher.publish(
        routing_key(fed["zvh"].org, fed["pol"].org),
        fake_envelope(fed["pol"].org),
        message_id="m1",
        expiration=soon(),
    )

    def broken_sender_of(body: bytes) -> str:
        raise RuntimeError("test: a bug in the header peek")

    handler = Recorder()
    consumer = Consumer(
        await fed.connect("zvh"),
        queue=inbox_queue(fed["zvh"].org),
        handler=handler,
        sender_of=broken_sender_of,
        broker_user_of=fed.broker_user_of,
        max_retry_delay_s=0,
    )
    async with consumer:
        dead = await get_one(await fed.connect_plain("zvh"), dead_letter_queue(fed["zvh"].org))
    assert (dead.message_id, death_reason(dead)) == ("m1", "delivery_limit")
    assert consumer.stats.retried == 2
    assert handler.deliveries == []


async def test_queue_depth_is_read_from_the_broker_not_remembered(fed: Federation) -> None:
    """The depth gauge (``zvg_queue_depth``) asked the robust channel for a passive declare, and
    the channel answers that for a queue it already knows from memory: the gauge showed the depth
    at start-up for ever."""
    release = asyncio.Event()

    async def hold(delivery: Delivery) -> Decision:
        await release.wait()
        return Deliver()

    consumer = Consumer(
        await fed.connect("zvh"),
        queue=inbox_queue(fed["zvh"].org),
        handler=hold,
        sender_of=sender_of,
        broker_user_of=fed.broker_user_of,
        prefetch=1,
    )
    async with consumer:
        assert await consumer.message_count() == 0
        publisher = await _publisher(fed)
        for n in range(5):
            await publisher.publish(
                routing_key(fed["zvh"].org, fed["pol"].org),
                fake_envelope(fed["pol"].org, n),
                message_id=f"m{n}",
                expiration=soon(),
            )
        # One is held by the handler (prefetch 1), four wait in the queue.
        depths = [await consumer.message_count()]
        while depths[-1] != 4 and len(depths) < 200:
            await asyncio.sleep(0.05)
            depths.append(await consumer.message_count())
        release.set()
        await until(lambda: consumer.stats.delivered == 5)
        assert depths[-1] == 4, f"depth stayed {sorted(set(depths))}"
