"""Exactly once to the adapter across crashes (issue 6 §8): ``kill -9`` of the receiving node in
the middle of 1,000 messages, and a broker restart in the middle of a stream. Every message ends
up in the adapter's hands exactly once: acked with 204 once, never handed out again after that.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import Fed, make_fed, request_from_example, teardown_fed
from tests.integration._private_node import TlsNode, run_private_node

pytestmark = [pytest.mark.broker, pytest.mark.slow]

MESSAGES = 1_000


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
    fed = make_fed(tmp_path, ("gemeente", "politie"))
    try:
        yield fed
    finally:
        for key in list(fed.running):
            await fed.stop(key)
        teardown_fed(fed)


async def test_kill_9_of_the_receiver_mid_stream(two_nodes: Fed) -> None:
    fed = two_nodes
    await fed.start("politie")
    fed.spawn("gemeente")
    await _wait_ready(fed, "gemeente")
    pol, gem = fed.client("politie"), fed.client("gemeente")
    some_acked = asyncio.Event()
    sending = asyncio.create_task(pol.send_many(_requests(MESSAGES)))
    draining = asyncio.create_task(gem.drain(MESSAGES, seconds=240, milestone=(100, some_acked)))
    await asyncio.wait_for(some_acked.wait(), timeout=120)
    assert not sending.done(), "the kill must land mid-stream"
    fed.kill("gemeente")  # SIGKILL: no drain, no cleanup
    await asyncio.sleep(1.0)
    fed.spawn("gemeente")
    sent = await sending
    acked, duplicates = await draining
    assert len(set(sent)) == MESSAGES
    assert duplicates == 0
    assert acked == set(sent), f"{len(set(sent) - acked)} missing"


@pytest.fixture(scope="module")
def tls_node() -> Iterator[TlsNode]:
    yield from run_private_node()


async def test_broker_restart_mid_stream(tls_node: TlsNode, tmp_path: Path) -> None:
    fed = make_fed(tmp_path, ("gemeente", "politie"), tls_node=tls_node)
    try:
        await fed.start("politie")
        await fed.start("gemeente")
        pol, gem = fed.client("politie"), fed.client("gemeente")
        sending = asyncio.create_task(pol.send_many(_requests(MESSAGES // 2)))
        draining = asyncio.create_task(gem.drain(MESSAGES // 2, seconds=240))
        await asyncio.sleep(1.5)
        assert not sending.done(), "the restart must land mid-stream"
        tls_node.ctl.run("stop_app")
        await asyncio.sleep(2.0)
        tls_node.ctl.run("start_app")
        sent = await sending
        acked, duplicates = await draining
        assert duplicates == 0
        assert acked == set(sent), f"{len(set(sent) - acked)} missing"
    finally:
        for key in list(fed.running):
            await fed.stop(key)
        teardown_fed(fed)
