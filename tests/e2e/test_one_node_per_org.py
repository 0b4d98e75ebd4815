"""One organisation, one consumer; one data directory, one process (issue 14 §8).

Threats: a second node process for the same organisation with its own data directory (same
broker user: what a naive "two nodes" looks like) took half of the inbox into its own store, so
each store — and each node's adapters — held half of the organisation's case traffic; a second
process on the *same* data directory runs two writers on one store and one audit log.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.node.lock import LOCK_FILE
from gateway.node.trust import TRUSTED_FILE
from tests.e2e.harness import (
    ROOT,
    Client,
    Fed,
    request_from_example,
    running_fed,
)
from tests.e2e.test_drain import _log

pytestmark = [pytest.mark.broker, pytest.mark.slow]

#: Bound on waits for a node process to answer or change state (not a timed assert).
WAIT_S = 120


@pytest.fixture
async def two_orgs(tmp_path: Path) -> AsyncIterator[Fed]:
    async with running_fed(tmp_path, ("gemeente", "politie")) as fed:
        yield fed


async def _readiness(client: Client, want: str) -> tuple[int, dict[str, Any]]:
    """Poll /readyz until the consumer check says ``want``; the last (status, body)."""
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while True:
        try:
            code, body = await client.request("GET", "/readyz")
        except Exception:  # noqa: BLE001 - not listening yet
            code, body = 0, None
        if isinstance(body, dict) and body["checks"].get("consumer", {}).get("role") == want:
            return code, body
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"/readyz never said {want}: {code} {body}")
        await asyncio.sleep(0.2)


async def _send(client: Client, first: int, count: int) -> set[str]:
    ids = set()
    for i in range(first, first + count):
        code, doc = await client.send(
            request_from_example("case.referral", case_ref=f"Veenstad-2026-{i:04d}")
        )
        assert code == 202, doc
        ids.add(doc["message_id"])
    return ids


def _said(fed: Fed, key: str, words: str) -> int:
    return sum(1 for record in _log(fed, key) if words in record["message"])


async def test_a_second_node_process_for_one_organisation_waits_as_standby(
    two_orgs: Fed,
) -> None:
    fed = two_orgs
    await fed.start("politie")
    await fed.start("gemeente")
    twin = fed.twin("gemeente")
    fed.spawn(twin)
    pol, gem, gem2 = fed.client("politie"), fed.client("gemeente"), fed.client(twin)

    code, ready = await _readiness(gem2, "standby")
    assert code == 503  # no adapter may be routed to it: it receives nothing
    assert ready["ready"] is False
    assert ready["checks"]["broker"]["ok"] is True
    assert ready["checks"]["consumer"]["ok"] is False
    assert (await fed.running["gemeente"].readiness())["consumer"]["role"] == "active"

    first = await _send(pol, 0, 20)
    acked, duplicates = await gem.drain(len(first), seconds=WAIT_S)
    assert (acked, duplicates) == (first, 0)
    assert await gem2.inbox(wait=0) == []  # the standby's store holds none of them
    assert _said(fed, twin, "waits as standby") == 1

    await fed.stop("gemeente")
    code, ready = await _readiness(gem2, "active")
    assert code == 200, ready
    assert _said(fed, twin, "took over") == 1

    second = await _send(pol, 20, 10)
    acked, duplicates = await gem2.drain(len(second), seconds=WAIT_S)
    assert (acked, duplicates) == (second, 0)
    assert await gem2.inbox(wait=0) == []
    assert _said(fed, twin, "waits as standby") == 1  # said once, not at every check


async def test_a_second_process_on_the_same_data_directory_refuses_to_start(
    two_orgs: Fed,
) -> None:
    fed = two_orgs
    await fed.start("gemeente")
    node = fed.nodes["gemeente"]
    # Its own API port (a second unit file, say): only the data directory is shared.
    twin = fed.nodes[fed.twin("gemeente", same_data_dir=True)]
    remembered = node.data_dir / TRUSTED_FILE
    before = remembered.stat().st_mtime_ns
    second = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "gateway.cli", "node", "run", "--config", str(twin.config)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=WAIT_S,
        check=False,
    )
    assert second.returncode == 2, second.stderr
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("zvg: error: ")
    assert str(node.data_dir / LOCK_FILE) in lines[0]
    assert f"pid {os.getpid()}" in lines[0]
    # It touched nothing of the running node's, which still works.
    assert remembered.stat().st_mtime_ns == before
    code, _ = await fed.client("gemeente").request("GET", "/readyz")
    assert code == 200
