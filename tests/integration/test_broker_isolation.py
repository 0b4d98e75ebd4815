"""Threat: one partner reads another's messages, or poses as another (docs/ops/broker.md §2).

Every test acts as a hostile member ("pol") with a plain aio-pika client — a compromised node does
not use our transport — against a throwaway federation provisioned by our own definitions, and
checks that the *broker* refuses. Each refusal has a positive control (the same operation on
its own resources, or with its own identity, works), so a test cannot pass because of a typo.
"""

from __future__ import annotations

import aio_pika
import pytest
from aio_pika.abc import AbstractConnection, AbstractIncomingMessage
from aiormq.exceptions import ChannelAccessRefused, ChannelPreconditionFailed

from gateway.broker.transport import Consumer, Publisher, PublishRefusedError
from gateway.core.broker_topology import (
    CONTENT_TYPE,
    DEAD_LETTER_EXCHANGE,
    ENVELOPE_EXCHANGE,
    WITNESS_CONTENT_TYPE,
    dead_letter_queue,
    inbox_queue,
    routing_key,
)
from gateway.errors import LocalError
from tests.integration._envelopes import fake_envelope, sender_of, soon
from tests.integration._recorder import Recorder
from tests.integration._wait import death_reason, get_one, until
from tests.integration.conftest import Federation

pytestmark = pytest.mark.broker


async def _publish_raw(
    connection: AbstractConnection,
    key: str,
    *,
    exchange: str = ENVELOPE_EXCHANGE,
    user_id: str | None = None,
    body: bytes = b"{}",
    content_type: str = CONTENT_TYPE,
) -> None:
    channel = await connection.channel(on_return_raises=True)
    target = (
        channel.default_exchange
        if exchange == ""
        else await channel.get_exchange(exchange, ensure=False)
    )
    message = aio_pika.Message(body, user_id=user_id, message_id="m", content_type=content_type)
    await target.publish(message, key, timeout=10)
    await channel.close()


async def _ignore(_: AbstractIncomingMessage) -> None:
    return None


async def _seed(fed: Federation) -> None:
    """Put one message from pol into zvh's inbox: something worth stealing."""
    pol = await fed.connect_plain("pol")
    await _publish_raw(pol, routing_key(fed["zvh"].org, fed["pol"].org), user_id=fed["pol"].user)


# ------------------------------------------------------------------------------ reading


@pytest.mark.parametrize("kind", ["inbox", "dead-letter"])
async def test_org_cannot_consume_another_orgs_queue(fed: Federation, kind: str) -> None:
    queue_of = inbox_queue if kind == "inbox" else dead_letter_queue
    pol = await fed.connect_plain("pol")
    channel = await pol.channel()
    queue = await channel.get_queue(queue_of(fed["zvh"].org), ensure=False)
    with pytest.raises(ChannelAccessRefused):
        await queue.consume(_ignore)

    control = await (await pol.channel()).get_queue(queue_of(fed["pol"].org), ensure=False)
    await control.consume(_ignore)


async def test_org_cannot_basic_get_from_another_orgs_queue(fed: Federation) -> None:
    await _seed(fed)
    pol = await fed.connect_plain("pol")
    queue = await (await pol.channel()).get_queue(inbox_queue(fed["zvh"].org), ensure=False)
    with pytest.raises(ChannelAccessRefused):
        await queue.get(fail=False)

    zvh = await fed.connect_plain("zvh")
    message = await get_one(zvh, inbox_queue(fed["zvh"].org))
    assert message.user_id == fed["pol"].user  # still there, for its owner only


async def test_org_cannot_purge_another_orgs_queue(fed: Federation) -> None:
    await _seed(fed)
    pol = await fed.connect_plain("pol")
    queue = await (await pol.channel()).get_queue(inbox_queue(fed["zvh"].org), ensure=False)
    with pytest.raises(ChannelAccessRefused):
        await queue.purge()

    zvh = await fed.connect_plain("zvh")
    await get_one(zvh, inbox_queue(fed["zvh"].org))  # the message survived


@pytest.mark.parametrize("owner", ["zvh", "pol"])
async def test_org_cannot_delete_any_queue(fed: Federation, owner: str) -> None:
    """Not another org's queue, and not its own either (configure is ``^$``)."""
    await _seed(fed)
    pol = await fed.connect_plain("pol")
    queue = await (await pol.channel()).get_queue(inbox_queue(fed[owner].org), ensure=False)
    with pytest.raises(ChannelAccessRefused):
        await queue.delete(if_unused=False, if_empty=False)

    zvh = await fed.connect_plain("zvh")
    await get_one(zvh, inbox_queue(fed["zvh"].org))


async def test_org_cannot_bind_its_queue_to_see_other_traffic(fed: Federation) -> None:
    """Binding its own inbox with ``#`` would copy every envelope to it."""
    pol = await fed.connect_plain("pol")
    queue = await (await pol.channel()).get_queue(inbox_queue(fed["pol"].org), ensure=False)
    with pytest.raises(ChannelAccessRefused):
        await queue.bind(ENVELOPE_EXCHANGE, "#")


# ------------------------------------------------------------------------------ posing as another


async def test_org_cannot_publish_with_another_orgs_user_id(fed: Federation) -> None:
    pol = await fed.connect_plain("pol")
    key = routing_key(fed["zvh"].org, fed["pol"].org)
    with pytest.raises(ChannelPreconditionFailed):
        await _publish_raw(pol, key, user_id=fed["ggz"].user)
    await _publish_raw(pol, key, user_id=fed["pol"].user)  # control: its own user_id works


async def test_publisher_reports_a_refused_user_id(fed: Federation) -> None:
    """A node misconfigured with another org's broker user fails loudly, as a local error."""
    connection = await fed.connect("pol")
    async with Publisher(connection, org=fed["pol"].org, broker_user=fed["ggz"].user) as publisher:
        with pytest.raises(PublishRefusedError):
            await publisher.publish(
                routing_key(fed["zvh"].org, fed["pol"].org),
                fake_envelope(fed["pol"].org),
                message_id="m1",
                expiration=soon(),
            )


async def test_org_cannot_publish_with_a_routing_key_naming_another_sender(
    fed: Federation,
) -> None:
    orgs = {name: m.org for name, m in fed.members.items()}
    pol = await fed.connect_plain("pol")
    hostile = [
        "{zvh}.{ggz}",  # names ggz as the sender
        "{pol}.{ggz}",  # to itself, as ggz
        "{zvh}.{pol}.x",  # a third segment
        "x.{pol}",  # not an OIN as recipient
        "#",  # a wildcard is a literal key on publish; still refused
        "{zvh}.{pol}{pol}",
    ]
    for key in hostile:
        with pytest.raises(ChannelAccessRefused):
            await _publish_raw(pol, key.format(**orgs), user_id=fed["pol"].user)
    await _publish_raw(pol, routing_key(orgs["zvh"], orgs["pol"]), user_id=fed["pol"].user)


async def test_publisher_refuses_a_routing_key_naming_another_sender_before_sending(
    fed: Federation,
) -> None:
    connection = await fed.connect("pol")
    async with Publisher(connection, org=fed["pol"].org, broker_user=fed["pol"].user) as publisher:
        with pytest.raises(LocalError):
            await publisher.publish(
                routing_key(fed["zvh"].org, fed["ggz"].org),
                fake_envelope(fed["ggz"].org),
                message_id="m1",
                expiration=soon(),
            )
        assert publisher.stats.confirmed == 0


async def test_org_cannot_publish_to_any_other_exchange(fed: Federation) -> None:
    """Not the default exchange (straight into a queue by name), nor any other exchange."""
    pol = await fed.connect_plain("pol")
    key = routing_key(fed["zvh"].org, fed["pol"].org)
    for exchange in ["amq.direct", "amq.topic", "amq.fanout", "amq.headers", DEAD_LETTER_EXCHANGE]:
        with pytest.raises(ChannelAccessRefused):
            await _publish_raw(pol, key, exchange=exchange, user_id=fed["pol"].user)
    with pytest.raises(ChannelAccessRefused):
        await _publish_raw(pol, inbox_queue(fed["zvh"].org), exchange="", user_id=fed["pol"].user)


# ------------------------------------------------------------------------------ topology changes


async def test_org_cannot_declare_queues(fed: Federation) -> None:
    pol = await fed.connect_plain("pol")
    for name in ["zvg.inbox.x", inbox_queue(fed["pol"].org) + "x", ""]:
        channel = await pol.channel()
        with pytest.raises(ChannelAccessRefused):
            await channel.declare_queue(name, durable=name != "", exclusive=name == "")


async def test_org_cannot_declare_exchanges(fed: Federation) -> None:
    pol = await fed.connect_plain("pol")
    channel = await pol.channel()
    with pytest.raises(ChannelAccessRefused):
        await channel.declare_exchange("zvg.shadow", aio_pika.ExchangeType.TOPIC)


# ------------------------------------------------------------------------------ consumer side


@pytest.mark.parametrize(
    ("case", "claimed_sender", "user_id", "content_type"),
    [
        ("no user_id: RabbitMQ accepts that", "pol", None, CONTENT_TYPE),
        ("envelope claims another member", "ggz", "pol", CONTENT_TYPE),
        ("envelope claims a non-member", "nobody", "pol", CONTENT_TYPE),
        ("not an envelope at all", None, "pol", CONTENT_TYPE),
        ("an envelope without its content type", "pol", "pol", "application/json"),
        ("witness traffic without user_id", "pol", None, WITNESS_CONTENT_TYPE),
    ],
)
async def test_consumer_dead_letters_what_its_user_id_does_not_vouch_for(
    fed: Federation, case: str, claimed_sender: str | None, user_id: str | None, content_type: str
) -> None:
    orgs = {name: m.org for name, m in fed.members.items()} | {"nobody": "00000009999999999000"}
    body = b"\x00not json" if claimed_sender is None else fake_envelope(orgs[claimed_sender])
    pol = await fed.connect_plain("pol")
    key = routing_key(fed["zvh"].org, fed["pol"].org)
    await _publish_raw(
        pol,
        key,
        user_id=fed[user_id].user if user_id else None,
        body=body,
        content_type=content_type,
    )
    await _publish_raw(pol, key, user_id=fed["pol"].user, body=fake_envelope(fed["pol"].org))

    handler = Recorder()
    consumer = Consumer(
        await fed.connect("zvh"),
        queue=inbox_queue(fed["zvh"].org),
        handler=handler,
        sender_of=sender_of,
        broker_user_of=fed.broker_user_of,
    )
    async with consumer:
        await until(lambda: consumer.stats.delivered + consumer.stats.rejected == 2)
    assert len(handler.deliveries) == 1, case  # only the genuine one reached the node
    assert handler.deliveries[0].user_id == fed["pol"].user
    dead = await get_one(await fed.connect_plain("zvh"), dead_letter_queue(fed["zvh"].org))
    assert dead.body == body
    assert death_reason(dead) == "rejected"
