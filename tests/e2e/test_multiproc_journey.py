"""Two node processes of one organisation on one PostgreSQL store, one killed (decision 0109).

Threats: a message delivered to the organisation lost or handed to its adapter twice when one of
its processes dies (``kill -9``) in the middle of the traffic; a message sent through the
process that died never published; receipts no longer sealed when the leader died (nobody leads,
or failover takes longer than 10 s); the audit log forked or broken by two writers.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway.audit.log import AuditLog
from gateway.cli import cli
from gateway.node.pg_store import VERSION
from gateway.node.store.postgres import PostgresStore
from tests.e2e.harness import Client, Fed, request_from_example, running_fed
from tests.e2e.test_drain import _log
from tests.pg import schema_url

pytestmark = [pytest.mark.broker, pytest.mark.slow, pytest.mark.postgres]

#: Bound on waits for a node process to answer or change state (not a timed assert).
WAIT_S = 120
#: The leader's failover bound (issue 19).
FAILOVER_S = 10.0
LEADS = "this process leads"


@pytest.fixture
async def fed(tmp_path: Path) -> AsyncIterator[Fed]:
    async with running_fed(tmp_path, ("gemeente", "politie")) as fed:
        yield fed


def _lead_times(fed: Fed, key: str) -> list[datetime]:
    return [
        datetime.fromisoformat(r["time"]) for r in _log(fed, key) if r["message"].startswith(LEADS)
    ]


async def _until(what: str, check: object) -> None:
    """Poll ``check()`` (a cheap read of a log file or an API) until true, at most WAIT_S."""
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while not await check():  # type: ignore[operator]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(0.1)


async def _ready(client: Client) -> bool:
    try:
        code, _body = await client.request("GET", "/readyz")
    except Exception:  # noqa: BLE001 - not listening yet
        return False
    return code == 200


async def _take(client: Client, n: int, acked: dict[str, str], via: str) -> int:
    """Act as an adapter on ``client`` until ``n`` more messages are acked (``acked``: message id
    → the API it was acked through); how many were handed out again after their ack."""
    goal, again = len(acked) + n, 0
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while len(acked) < goal:
        assert asyncio.get_running_loop().time() < deadline, f"only {len(acked)} of {goal}"
        for item in await client.inbox(wait=2, limit=goal - len(acked)):
            mid = item["message_id"]
            if mid in acked:
                again += 1
                continue
            assert await client.ack(mid) == 204
            acked[mid] = via
    return again


async def _send(client: Client, name: str, cases: range) -> set[str]:
    ids = set()
    for i in cases:
        code, doc = await client.send(request_from_example(name, case_ref=f"Veenstad-2026-{i:04d}"))
        assert code == 202, doc
        ids.add(doc["message_id"])
    return ids


async def test_two_processes_on_postgresql_lose_nothing_when_one_is_killed(
    fed: Fed, pg_url: str
) -> None:
    url = schema_url(pg_url, f"e2e_{fed.provisioned.tag}".replace("-", "_"))
    config = fed.nodes["gemeente"].config
    # The killed process's claims on what it was publishing lapse after claim_seconds (30 s by
    # default); short here, with scans every second well inside it, so the journey does not wait.
    config.write_text(
        config.read_text("utf-8")
        + f'\n[store]\nurl = "{url}"\nclaim_seconds = 4\n[limits]\noutbox_retry_seconds = 1\n',
        "utf-8",
    )
    twin = fed.twin("gemeente")  # its own port and data directory, the same store
    await fed.start("politie")
    fed.spawn("gemeente")
    fed.spawn(twin)
    pol, gem, gem2 = fed.client("politie"), fed.client("gemeente"), fed.client(twin)
    # both ready: on a shared store a standby consumer serves the same inbox (decision 0109)
    await _until("both processes ready", lambda: _ready(gem))
    await _until("both processes ready", lambda: _ready(gem2))

    async def one_leads() -> bool:
        return len(_lead_times(fed, "gemeente")) + len(_lead_times(fed, twin)) == 1

    await _until("one process leads", one_leads)
    leader, survivor = ("gemeente", twin) if _lead_times(fed, "gemeente") else (twin, "gemeente")
    to_survivor = fed.client(survivor)

    # traffic to the organisation, read and acked through both processes' APIs
    first = await _send(pol, "case.referral", range(20))
    acked: dict[str, str] = {}
    assert await _take(gem, 10, acked, "a") == 0
    assert await _take(gem2, 10, acked, "b") == 0
    assert set(acked) == first
    assert sorted(acked.values()).count("a") == 10, "each through the API it was taken from"
    # and from it, sent through both processes' APIs
    sent = await _send(gem, "case.status", range(10)) | await _send(
        gem2, "case.status", range(10, 20)
    )

    # the leader dies mid-traffic: more is on its way in both directions
    more = await _send(pol, "case.referral", range(20, 40))
    sent |= await _send(fed.client(leader), "case.status", range(20, 25))
    killed_at = datetime.now().astimezone()
    fed.kill(leader, signal.SIGKILL)
    sent |= await _send(to_survivor, "case.status", range(25, 30))

    async def survivor_leads() -> bool:
        return bool(_lead_times(fed, survivor))

    await _until("the survivor leads", survivor_leads)
    failover = (_lead_times(fed, survivor)[0] - killed_at).total_seconds()
    assert failover <= FAILOVER_S, f"failover took {failover:.1f} s"

    # every message to the organisation once, through the survivor
    assert await _take(to_survivor, len(more), acked, "c") == 0, "none handed out twice"
    assert set(acked) == first | more
    assert await to_survivor.inbox(wait=0) == []
    # every message from it once at the partner, and its receipts back
    got, dup_p = await pol.drain(len(sent), seconds=WAIT_S)
    assert (got, dup_p) == (sent, 0)
    for mid in sent:
        await to_survivor.wait_status(mid, "accepted", seconds=WAIT_S)
    for mid in first | more:  # the survivor sealed the receipts of what arrived before, too
        await pol.wait_status(mid, "accepted", seconds=WAIT_S)

    # one audit tree: gap-free, and it reproduces the last checkpoint a leader signed
    store = PostgresStore(url, version=VERSION)
    try:
        # open() rebuilds the tree and refuses one that does not reproduce the checkpoint
        log = await AuditLog.open(
            store, origin="verify", key=None, rand=os.urandom, retention_s=86400.0
        )
        count, top = store.read("SELECT count(*), max(idx) FROM audit_records")[0]
        assert count == top + 1 == log.size
        assert log.latest is not None
    finally:
        await store.close()
    # and zvg audit verify reads the PostgreSQL store (exit 3: the newest records are not
    # cosigned yet; the survivor may have appended more since the count above)
    verified = await asyncio.to_thread(
        CliRunner().invoke, cli, ["audit", "verify", "--config", str(config)]
    )
    assert verified.exit_code in (0, 3), verified.output
    records = re.search(r"records: (\d+) verified", verified.output)
    assert records is not None, verified.output
    assert int(records[1]) >= count
    errors = [r for r in _log(fed, survivor) if r["level"] in ("error", "critical")]
    assert errors == []
    print(f"\nfailover of the leader after kill -9: {failover:.2f} s")
