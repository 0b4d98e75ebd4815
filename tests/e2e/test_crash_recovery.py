"""Exactly once to the adapter across crashes (issue 6 §8): ``kill -9`` of the receiving node in
the middle of a stream, and a broker restart in the middle of a stream. Every message ends
up in the adapter's hands exactly once: acked with 204 once, never handed out again after that.

The crash lands mid-stream on any machine (issue 14 §9): the sender runs at most a window of
messages ahead of what the receiving adapter acked, and the crash is triggered by a number of
acks, so when it comes most of the stream is still to be sent, however fast or loaded the machine.
The streams are short (a few hundred messages): what they prove — messages sent before, across
and after the crash, each in the adapter's hands exactly once — needs a stream that outlasts the
crash on both sides, not a long one.
An ack whose answer the crash swallowed is sent again (acks are idempotent on the node).
"""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from gateway.node.runner import Node
from tests.e2e.harness import (
    Client,
    Fed,
    Progress,
    free_port,
    make_fed,
    request_from_example,
    running_fed,
    teardown_fed,
)
from tests.integration._private_node import TlsNode

pytestmark = [pytest.mark.broker, pytest.mark.slow]

MESSAGES = 200
#: How far the sender may run ahead of the receiving adapter's acks (messages); above the
#: sender's 16 concurrent requests, so the crash finds messages in every stage of the path.
WINDOW = 40
#: Acks after which the crash is triggered: by then at most KILL_AT + WINDOW were sent.
KILL_AT = 20


def _requests(n: int) -> list[dict[str, object]]:
    return [
        request_from_example("case.referral", case_ref=f"Veenstad-2026-{i:04d}") for i in range(n)
    ]


async def _wait_ready(fed: Fed, key: str) -> None:
    client = fed.client(key)
    for _ in range(300):
        try:
            code, _ = await client.request("GET", "/readyz")
        except Exception:  # noqa: BLE001 - not listening yet
            code = 0
        if code == 200:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{key} did not become ready")


@pytest.fixture
async def two_nodes(tmp_path: Path) -> AsyncIterator[Fed]:
    async with running_fed(tmp_path, ("gemeente", "politie")) as fed:
        yield fed


async def test_kill_9_of_the_receiver_mid_stream(two_nodes: Fed) -> None:
    fed = two_nodes
    await fed.start("politie")
    fed.spawn("gemeente")
    await _wait_ready(fed, "gemeente")
    pol, gem = fed.client("politie"), fed.client("gemeente")
    progress, kill_now, killed = Progress(), asyncio.Event(), asyncio.Event()
    sending = asyncio.create_task(pol.send_many(_requests(MESSAGES), pace=(progress, WINDOW)))
    draining = asyncio.create_task(
        gem.drain(
            MESSAGES, seconds=240, milestone=(KILL_AT, kill_now), progress=progress, hold=killed
        )
    )
    await asyncio.wait_for(kill_now.wait(), timeout=120)
    # The adapter holds at exactly KILL_AT acks, and the sender never runs more than WINDOW ahead.
    assert progress.acked == KILL_AT
    assert progress.sent <= KILL_AT + WINDOW < MESSAGES, "the kill must land mid-stream"
    assert not sending.done()
    # Written right after the start, before the node handles any delivery (decision 0120).
    assert "start-up heap frozen" in (fed.root / "gemeente.log").read_text()
    fed.kill("gemeente")  # SIGKILL: no drain, no cleanup
    fed.spawn("gemeente")
    killed.set()
    sent = await sending
    acked, duplicates = await draining
    assert len(set(sent)) == MESSAGES
    assert duplicates == 0
    assert acked == set(sent), f"{len(set(sent) - acked)} missing"


class AnswerDroppingProxy:
    """An HTTP proxy in front of a node that, for the first ``POST /v1/inbox/{id}/ack``, lets the
    node settle the message and then closes the connection instead of answering (a crash, a
    load balancer timeout or a network cut between the ack and its answer)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.listen = f"127.0.0.1:{free_port()}"
        self.dropped: list[str] = []
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> AnswerDroppingProxy:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._session = aiohttp.ClientSession()
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        host, _, port = self.listen.rpartition(":")
        await web.TCPSite(self._runner, host, int(port)).start()
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in {"host"}}
        async with self._session.request(
            request.method,
            self.upstream + request.path_qs,
            data=await request.read(),
            headers=headers,
        ) as answer:
            body = await answer.read()
            status, content_type = answer.status, answer.content_type
        if request.method == "POST" and request.path.endswith("/ack") and not self.dropped:
            self.dropped.append(request.path)
            assert request.transport is not None
            request.transport.close()  # the node has settled it; the client never hears so
        return web.Response(status=status, body=body, content_type=content_type)


def _count(node: Node, sql: str, *args: object) -> int:
    def job(db: sqlite3.Connection) -> Any:
        return db.execute(sql, args).fetchone()[0]

    return int(node.store.run_sync(job))


async def test_an_ack_whose_answer_was_lost_is_sent_again_and_settles_once(
    two_nodes: Fed,
) -> None:
    fed = two_nodes
    await fed.start("politie")
    gem = await fed.start("gemeente")
    pol = fed.client("politie")
    code, doc = await pol.send(request_from_example("case.referral"))
    assert code == 202, doc
    message_id = doc["message_id"]
    async with AnswerDroppingProxy(fed.nodes["gemeente"].url) as proxy:
        through = Client(dataclasses.replace(fed.nodes["gemeente"], listen=proxy.listen))
        acked, duplicates = await through.drain(1, seconds=30)
    assert proxy.dropped == [f"/v1/inbox/{message_id}/ack"], "the answer was really lost"
    assert (acked, duplicates) == ({message_id}, 0)
    # The node settled it once: one ack record, one `accepted` receipt, and it is not handed out.
    await pol.wait_status(message_id, "accepted")
    assert await fed.client("gemeente").inbox(wait=0) == []
    ack_records = "SELECT count(*) FROM audit_records WHERE name='adapter.ack' AND message_id=?"
    assert _count(gem, ack_records, message_id) == 1
    receipts = "SELECT count(*) FROM receipts_out WHERE message_id=? AND status='accepted'"
    assert _count(gem, receipts, message_id) == 1


async def test_broker_restart_mid_stream(tls_node: TlsNode, tmp_path: Path) -> None:
    fed = make_fed(tmp_path, ("gemeente", "politie"), tls_node=tls_node)
    try:
        await fed.start("politie")
        await fed.start("gemeente")
        pol, gem = fed.client("politie"), fed.client("gemeente")
        progress, restart_now, stopped = Progress(), asyncio.Event(), asyncio.Event()
        sending = asyncio.create_task(pol.send_many(_requests(MESSAGES), pace=(progress, WINDOW)))
        draining = asyncio.create_task(
            gem.drain(
                MESSAGES,
                seconds=240,
                milestone=(KILL_AT, restart_now),
                progress=progress,
                hold=stopped,
            )
        )
        await asyncio.wait_for(restart_now.wait(), timeout=120)
        # The adapter holds at KILL_AT acks until the broker is down, so the restart lands
        # mid-stream however fast the machine; then the stream flows again while the broker is
        # down (sends wait in the outbox) and through its start.
        await asyncio.to_thread(tls_node.ctl.run, "stop_app")
        assert progress.acked == KILL_AT
        assert progress.sent <= KILL_AT + WINDOW < MESSAGES, "the restart must land mid-stream"
        stopped.set()
        await asyncio.to_thread(tls_node.ctl.run, "start_app")
        sent = await sending
        acked, duplicates = await draining
        assert duplicates == 0
        assert acked == set(sent), f"{len(set(sent) - acked)} missing"
    finally:
        for key in list(fed.running):
            await fed.stop(key)
        teardown_fed(fed)
