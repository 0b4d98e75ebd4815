"""Threat: the node's broker member dies and the node stays on it (issue 19 point 3, decision
0093).

On the shared broker, two TCP relays in front of it stand for two members of a cluster: a
connection moves to the second when the first dies (and a publish interrupted by the move is
confirmed through the second), and the first connection skips a first member that is down. Cheap
(about a second each). The journey on a real three-member cluster, with nodes, is
``tests/e2e/test_broker_cluster.py``.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from gateway.broker.cluster import ClusterConnection
from gateway.broker.transport import Publisher, connect
from gateway.core.broker_topology import inbox_queue, routing_key
from tests.integration._envelopes import fake_envelope, soon
from tests.integration._relay import TcpRelay
from tests.integration._wait import get_one
from tests.integration.conftest import Federation

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
        publisher = Publisher(
            connection, org=fed["pol"].org, broker_user=fed["pol"].user, republish_deadline_s=20
        )
        async with publisher as pub:
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
