"""One organisation, one consumer (issue 14 §8): its inbox has one active consumer at a time.

Threat: a second node process for the same organisation (same broker user, its own data
directory: what a naive "two nodes" looks like) silently takes half of the inbox into its own
store, so neither store holds the organisation's case traffic and the adapters of each see half.

The inbox is a single-active-consumer queue (the broker refuses to hand anything to a second
consumer, whatever client it runs), and the transport's :class:`Consumer` does not even register
while another consumer is active: it waits as standby, says so, and takes over when the active one
is gone.
"""

from __future__ import annotations

import logging

import pytest
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

from gateway.broker.transport import BrokerEndpoint, Consumer, Publisher, connect
from gateway.core.broker_topology import inbox_queue, routing_key
from tests.integration._envelopes import fake_envelope, sender_of, soon
from tests.integration._recorder import Recorder
from tests.integration._relay import TcpRelay
from tests.integration._wait import until
from tests.integration.conftest import HOST, PORT, Federation

pytestmark = pytest.mark.broker

MESSAGES = 40

#: Seconds between a standby's checks in these tests (the node's default is seconds).
CHECK_S = 0.1


def _consumer(fed: Federation, connection: AbstractRobustConnection, handler: Recorder) -> Consumer:
    return Consumer(
        connection,
        queue=inbox_queue(fed["zvh"].org),
        handler=handler,
        sender_of=sender_of,
        broker_user_of=fed.broker_user_of,
        standby_check_s=CHECK_S,
    )


async def _publish(fed: Federation, first: int, count: int) -> list[str]:
    publisher = Publisher(await fed.connect("pol"), org=fed["pol"].org, broker_user=fed["pol"].user)
    ids = [f"m{n:04d}" for n in range(first, first + count)]
    async with publisher:
        for n, message_id in zip(range(first, first + count), ids, strict=True):
            await publisher.publish(
                routing_key(fed["zvh"].org, fed["pol"].org),
                fake_envelope(fed["pol"].org, n),
                message_id=message_id,
                expiration=soon(),
            )
    return ids


def _said(records: list[logging.LogRecord], words: str) -> int:
    return sum(1 for r in records if r.name == "gateway.broker" and words in r.getMessage())


@pytest.fixture
def broker_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="gateway.broker")
    return caplog


async def test_a_second_consumer_of_one_inbox_waits_as_standby_and_takes_nothing(
    fed: Federation, broker_log: pytest.LogCaptureFixture
) -> None:
    first, second = Recorder(), Recorder()
    async with (
        _consumer(fed, await fed.connect("zvh"), first) as active,
        _consumer(fed, await fed.connect("zvh"), second) as standby,
    ):
        sent = await _publish(fed, 0, MESSAGES)
        await until(lambda: len(first.deliveries) + len(second.deliveries) >= MESSAGES)
        assert len(second.deliveries) == 0, f"the second took {len(second.deliveries)}"
        assert sorted(map(str, first.message_ids)) == sent
        assert (active.role, standby.role) == ("active", "standby")
    assert _said(broker_log.records, "waits as standby") == 1


async def test_a_naive_second_consumer_gets_nothing_from_a_provisioned_inbox(
    fed: Federation,
) -> None:
    """The broker enforces it: a plain AMQP consumer (an older node, a script) waits too."""
    first = Recorder()
    stolen: list[AbstractIncomingMessage] = []

    async def steal(message: AbstractIncomingMessage) -> None:
        stolen.append(message)
        await message.ack()

    async with _consumer(fed, await fed.connect("zvh"), first):
        naive = await fed.connect_plain("zvh")
        channel = await naive.channel()
        queue = await channel.get_queue(inbox_queue(fed["zvh"].org), ensure=False)
        await queue.consume(steal)
        sent = await _publish(fed, 0, MESSAGES)
        await until(lambda: len(first.deliveries) + len(stolen) >= MESSAGES)
        assert len(stolen) == 0, f"the naive consumer took {len(stolen)}"
        assert sorted(map(str, first.message_ids)) == sent


async def test_the_standby_takes_over_when_the_active_consumer_stops(
    fed: Federation, broker_log: pytest.LogCaptureFixture
) -> None:
    first, second = Recorder(), Recorder()
    active = _consumer(fed, await fed.connect("zvh"), first)
    await active.start()
    async with _consumer(fed, await fed.connect("zvh"), second) as standby:
        assert standby.role == "standby"
        before = await _publish(fed, 0, MESSAGES // 2)
        await until(lambda: len(first.deliveries) >= len(before))
        await active.close()
        await until(lambda: standby.role == "active")
        after = await _publish(fed, MESSAGES // 2, MESSAGES // 2)
        await until(lambda: len(second.deliveries) >= len(after))
    assert sorted(map(str, first.message_ids)) == before
    assert sorted(map(str, second.message_ids)) == after
    assert _said(broker_log.records, "waits as standby") == 1
    assert _said(broker_log.records, "took over") == 1


async def test_a_consumer_back_from_a_dropped_connection_stands_by_when_another_took_over(
    fed: Federation, broker_log: pytest.LogCaptureFixture
) -> None:
    """The robust connection re-registers the consumer by itself after a reconnect; if the other
    process became active meanwhile, the returning one must step back, not share the inbox."""
    first, second = Recorder(), Recorder()
    member = fed["zvh"]
    async with TcpRelay(HOST, PORT) as relay:
        endpoint = BrokerEndpoint(HOST, relay.port, fed.vhost, member.user, member.password)
        via_relay = await connect(endpoint, name="zvgtest-zvh-relayed", reconnect_interval_s=0.2)
        fed.connections.append(via_relay)
        async with (
            _consumer(fed, via_relay, first) as returning,
            _consumer(fed, await fed.connect("zvh"), second) as other,
        ):
            assert (returning.role, other.role) == ("active", "standby")
            relay.accepting = False
            relay.cut()
            await until(lambda: other.role == "active")
            relay.accepting = True
            await until(lambda: returning.role == "standby")
            sent = await _publish(fed, 0, MESSAGES)
            await until(lambda: len(second.deliveries) >= MESSAGES)
            assert sorted(map(str, second.message_ids)) == sent
            assert first.deliveries == []
    assert _said(broker_log.records, "waits as standby") == 2  # the other, then the returning one
