"""Exactly once to the adapter across a broker member's death (issue 19 point 3, decision 0093).

Two nodes (police sending, the municipality receiving) run on the private three-member cluster
(``tests/integration/_cluster.py``) with every member in ``broker.urls``. In the middle of a
paced stream (as in ``test_crash_recovery.py``: the sender runs at most a window ahead of the
receiving adapter's acks, and the stop is triggered by a number of acks), the member both nodes
are connected to is stopped. Both must come back on another member by themselves, and every
message must end in the receiving adapter's hands exactly once: acked once, never handed out
again, none missing. (Across the switch the publisher sends again what was not confirmed, the
outbox what it gave up on, the broker redelivers what was not acked; the receiving node's inbox
dedupes by sender and message id.) The receiver's inbox is checked to be a quorum queue with a
replica on each of the three members.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.broker.cluster import ClusterConnection
from gateway.core.broker_topology import inbox_queue
from tests.e2e.harness import Fed, Progress, make_fed, request_from_example
from tests.integration._cluster import RabbitCluster

pytestmark = [pytest.mark.broker, pytest.mark.slow]

MESSAGES = 100
WINDOW = 40
#: Acks after which the member is stopped: by then at most STOP_AT + WINDOW were sent.
STOP_AT = 20


@pytest.fixture
async def fed_on_cluster(rabbit_cluster: RabbitCluster, tmp_path: Path) -> AsyncIterator[Fed]:
    """A two-node federation on the cluster. Its vhost and users are not removed: the cluster
    goes, with all on it, at the end of the session (removing them costs a rabbitmqctl call)."""
    fed = make_fed(tmp_path, ("gemeente", "politie"), cluster=rabbit_cluster)
    try:
        yield fed
    finally:
        for key in list(fed.running):
            await fed.stop(key)


def _member(fed: Fed, key: str) -> int:
    connection = fed.running[key].connection
    assert isinstance(connection, ClusterConnection)
    return connection.member


async def test_every_message_reaches_the_adapter_once_when_the_nodes_member_dies(
    rabbit_cluster: RabbitCluster, fed_on_cluster: Fed
) -> None:
    fed = fed_on_cluster
    inbox = inbox_queue(fed.nodes["gemeente"].org.oin)
    queues = rabbit_cluster.ctl.json("list_queues", "-p", fed.vhost, "name", "type", "members")
    row = next(q for q in queues if q["name"] == inbox)
    assert row["type"] == "quorum"
    assert sorted(row["members"]) == sorted(m.node for m in rabbit_cluster.members)
    await fed.start("politie")
    await fed.start("gemeente")
    on = _member(fed, "politie")
    assert _member(fed, "gemeente") == on
    pol, gem = fed.client("politie"), fed.client("gemeente")
    progress, stop_now, stopped = Progress(), asyncio.Event(), asyncio.Event()
    requests = [
        request_from_example("case.referral", case_ref=f"Veenstad-2026-{i:04d}")
        for i in range(MESSAGES)
    ]
    sending = asyncio.create_task(pol.send_many(requests, pace=(progress, WINDOW)))
    draining = asyncio.create_task(
        gem.drain(
            MESSAGES, seconds=240, milestone=(STOP_AT, stop_now), progress=progress, hold=stopped
        )
    )
    await asyncio.wait_for(stop_now.wait(), timeout=120)
    assert progress.sent <= STOP_AT + WINDOW < MESSAGES, "the stop must land mid-stream"
    member = rabbit_cluster.members[on]
    await asyncio.to_thread(member.stop_app)
    stopped.set()
    try:
        sent = await sending
        acked, duplicates = await draining
    finally:
        await asyncio.to_thread(member.start_app)
    assert len(set(sent)) == MESSAGES
    assert duplicates == 0
    assert acked == set(sent), f"{len(set(sent) - acked)} missing"
    # Both nodes left the stopped member for another one, by themselves.
    assert on not in (_member(fed, "politie"), _member(fed, "gemeente"))
