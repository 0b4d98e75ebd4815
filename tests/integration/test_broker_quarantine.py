"""Threat: a flooding member keeps publishing and ops have no quick, recorded way to stop it.

``zvg broker quarantine ORG`` revokes the member's write permission and topic permission on the
federation's vhost (its node can still read its own queues), closes its open connections and
records it in the node's audit log; ``zvg broker release ORG`` restores exactly what provisioning
grants. Against the real RabbitMQ, with a throwaway demo federation provisioned by the same code
as ``zvg broker provision`` (tests/e2e/harness.py), the member acting with a plain AMQP client.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from aio_pika.abc import AbstractConnection, AbstractIncomingMessage
from aiormq.exceptions import ChannelAccessRefused
from click.testing import CliRunner, Result

from gateway.audit.inspect import open_readonly, query
from gateway.broker.provision import read_password_file
from gateway.broker.transport import Publisher, PublishRefusedError, connect
from gateway.cli import cli
from gateway.core.broker_topology import (
    CONTENT_TYPE,
    ENVELOPE_EXCHANGE,
    inbox_queue,
    permissions_for,
    routing_key,
    topic_write_pattern,
)
from gateway.core.directory import TrustedDirectory
from gateway.node.config import load_config
from gateway.node.preflight import broker_endpoint
from schemas.catalogue import default_catalogue
from tests.e2e.harness import Fed, make_fed, teardown_fed
from tests.integration._envelopes import soon
from tests.integration._wait import WAIT_S

pytestmark = pytest.mark.broker


_OPEN: list[AbstractConnection] = []


@pytest.fixture
async def demo(tmp_path: Path) -> AsyncIterator[Fed]:
    fed = make_fed(tmp_path, ("gemeente", "politie"))
    try:
        yield fed
    finally:
        for key in list(fed.running):
            await fed.stop(key)
        while _OPEN:
            connection = _OPEN.pop()
            if not connection.is_closed:
                await connection.close()
        teardown_fed(fed)


async def zvg(*args: str | Path) -> Result:
    """Run ``zvg`` as ops would (in a thread: the command runs its own event loop)."""
    return await asyncio.to_thread(CliRunner().invoke, cli, [str(a) for a in args])


def _directory(fed: Fed) -> TrustedDirectory:
    return TrustedDirectory.first(
        fed.files.directory.read_bytes(),
        now=datetime.now(UTC),
        catalogue=default_catalogue(),
    )


async def _connect(fed: Fed, key: str) -> AbstractConnection:
    config = load_config(fed.nodes[key].config)
    assert config.broker.password_file is not None
    connection = await aio_pika.connect(
        host="127.0.0.1",
        port=5672,
        login=fed.users[list(fed.nodes).index(key)],
        password=read_password_file(config.broker.password_file),
        virtualhost=fed.vhost,
    )
    _OPEN.append(connection)
    return connection


async def _publish(connection: AbstractConnection, fed: Fed) -> None:
    """One confirmed publish from politie to the ZVH, as a node would (its own user_id)."""
    channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
    try:
        exchange = await channel.get_exchange(ENVELOPE_EXCHANGE, ensure=False)
        pol, zvh = fed.nodes["politie"].org, fed.nodes["gemeente"].org
        message = aio_pika.Message(
            b"{}", user_id=fed.users[1], message_id="m", content_type=CONTENT_TYPE
        )
        await exchange.publish(message, routing_key(zvh.oin, pol.oin), timeout=WAIT_S)
    finally:
        if not channel.is_closed:
            await channel.close()


def _records(fed: Fed, operation: str) -> list[dict[str, Any]]:
    """The ZVH node's audit records of ``operation`` (none while it has no store)."""
    path = fed.nodes["gemeente"].data_dir / "node.db"
    if not path.exists():
        return []
    with open_readonly(path) as db:
        return query(db, operation=operation)


async def test_a_quarantined_member_cannot_publish_until_released(demo: Fed) -> None:
    fed = demo
    pol = fed.nodes["politie"].org.oin
    config = fed.nodes["gemeente"].config
    assert fed.users[1].endswith("politie")
    zvh = await fed.start("gemeente")  # the node whose ops act keeps running meanwhile
    # The member's node: our transport on a robust connection (it reconnects by itself).
    endpoint = broker_endpoint(load_config(fed.nodes["politie"].config), _directory(fed))
    node_connection = await connect(endpoint)
    _OPEN.append(node_connection)
    node = Publisher(node_connection, org=pol, broker_user=fed.users[1])
    await node.start()
    key = routing_key(fed.nodes["gemeente"].org.oin, pol)
    await node.publish(key, b"{}", message_id="n0", expiration=soon())
    before = await _connect(fed, "politie")
    await _publish(before, fed)  # control: a provisioned member publishes
    closed = asyncio.Event()
    before.close_callbacks.add(lambda *_: closed.set())

    done = await zvg("broker", "quarantine", pol, "--config", config)
    assert done.exit_code == 0, done.output
    assert fed.users[1] in done.output
    # Its open connection is closed by the broker (a channel could keep cached permissions).
    await asyncio.wait_for(closed.wait(), WAIT_S)
    quarantined = await _connect(fed, "politie")
    with pytest.raises(ChannelAccessRefused):
        await _publish(quarantined, fed)
    # Still allowed to read its own inbox: receiving continues (a consumer, since inboxes are
    # single-active-consumer queues; the ZVH node's witnessing traffic waits there).
    channel = await quarantined.channel()
    queue = await channel.get_queue(inbox_queue(pol), ensure=False)

    async def put_back(message: AbstractIncomingMessage) -> None:
        await message.nack(requeue=True)

    consumer_tag = await queue.consume(put_back)  # raises ChannelAccessRefused if not allowed
    await queue.cancel(consumer_tag)
    await quarantined.close()
    with pytest.raises(PublishRefusedError):  # the node's outbox would keep it and retry
        await node.publish(key, b"{}", message_id="n1", expiration=soon())
    (record,) = _records(fed, "broker.quarantine")
    view = record["view"]
    assert isinstance(view, dict)
    assert (view["peer"], view["detail"]["broker_user"], view["detail"]["vhost"]) == (
        pol,
        fed.users[1],
        fed.vhost,
    )

    done = await zvg("broker", "release", pol, "--config", config)
    assert done.exit_code == 0, done.output
    after = await _connect(fed, "politie")
    await _publish(after, fed)
    await after.close()
    await node.publish(key, b"{}", message_id="n1", expiration=soon())  # no restart needed
    await node.close()
    # Exactly what provisioning grants, nothing more.
    rows = fed.ctl.json("list_permissions", "-p", fed.vhost)
    (perms,) = [r for r in rows if r["user"] == fed.users[1]]
    granted = permissions_for(pol)
    assert (perms["configure"], perms["write"], perms["read"]) == (
        granted.configure,
        granted.write,
        granted.read,
    )
    rows = fed.ctl.json("list_topic_permissions", "-p", fed.vhost)
    (topic,) = [r for r in rows if r["user"] == fed.users[1]]
    assert (topic["exchange"], topic["write"], topic["read"]) == (
        ENVELOPE_EXCHANGE,
        topic_write_pattern(pol),
        "^$",
    )
    assert len(_records(fed, "broker.release")) == 1
    # The running node takes the records written beside it into its tree at its next commit,
    # and its next checkpoint covers them: the log still verifies end to end.
    await zvh.store.run(lambda _db: None)
    checkpoint = await zvh.service.audit.checkpoint()
    assert checkpoint is not None
    assert checkpoint.size > max(int(r["index"]) for r in _records(fed, "broker.release"))
    verified = await zvg("audit", "verify", "--config", config)
    # 3: every check passed; the records are not witnessed yet (the partner's node is not running).
    assert verified.exit_code == 3, verified.output
    assert "verified, each reproduced from the records" in verified.output


@pytest.mark.parametrize(
    ("who", "expected"),
    [("00000009999999999000", "not a member"), ("gemeente", "own organisation")],
)
async def test_quarantine_refuses_a_non_member_and_the_node_itself(
    demo: Fed, who: str, expected: str
) -> None:
    org = demo.nodes[who].org.oin if who in demo.nodes else who
    done = await zvg("broker", "quarantine", org, "--config", demo.nodes["gemeente"].config)
    assert done.exit_code == 2
    assert expected in done.output
    assert done.output.count("\n") == 1
    assert _records(demo, "broker.quarantine") == []
