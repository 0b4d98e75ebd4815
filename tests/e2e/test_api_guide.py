"""docs/api.md works as written: every ```sh block runs, in order, in one bash session (as a
reader pasting them into a terminal) against a real two-node federation, exits cleanly and prints
what the ```text block under it says (``…`` matches any text within a line).

The test plays the other side of the story: an adapter at the ZVH (gemeente) acks the police's
referral and answers with a ``case.status`` and a ``plan.task``, which the guide then receives,
acks and rejects. The guide sets only ``NODE`` and ``TOKEN`` from outside.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import Client, Fed, make_fed, teardown_fed
from tests.guides import Block, run_api_guide, zvh_answers

pytestmark = [pytest.mark.broker, pytest.mark.slow]


async def _zvh_adapter(zvh: Client, stop: asyncio.Event) -> None:
    """The other side: ack what arrives at the ZVH and answer a referral (tests/guides.py)."""
    while not stop.is_set():
        for item in await zvh.inbox(wait=1):
            mid = item["message_id"]
            assert await zvh.ack(mid) == 204
            if item["claims"]["message_type"] != "case.referral":
                continue
            for answer in zvh_answers(mid):
                code, doc = await zvh.send(answer)
                assert code == 202, doc


async def _inbox_waiting(fed: Fed, key: str, n: int) -> None:
    store = fed.running[key].store
    for _ in range(300):
        waiting = await store.run(
            lambda db: db.execute("SELECT count(*) FROM inbox WHERE status='delivered'").fetchone()[
                0
            ]
        )
        if waiting >= n:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{key} never had {n} messages waiting")


@pytest.fixture
async def federation(tmp_path: Path) -> AsyncIterator[Fed]:
    fed = make_fed(tmp_path, ("gemeente", "politie"))
    try:
        await fed.start("gemeente")
        await fed.start("politie")
        yield fed
    finally:
        for key in list(fed.running):
            await fed.stop(key)
        teardown_fed(fed)


async def test_every_example_in_the_api_guide_works(federation: Fed, tmp_path: Path) -> None:
    fed = federation
    work = tmp_path / "reader"
    work.mkdir()
    stop = asyncio.Event()
    zvh = asyncio.create_task(_zvh_adapter(fed.client("gemeente"), stop))

    async def before(block: Block) -> None:
        if "/v1/inbox?wait=30" in block.code:
            await _inbox_waiting(fed, "politie", 2)

    try:
        failures = await run_api_guide(
            work, fed.nodes["politie"].url, fed.nodes["politie"].token, before
        )
    finally:
        stop.set()
        await asyncio.gather(zvh, return_exceptions=True)
    assert not failures, "\n\n".join(failures)
    # The story happened: the referral was accepted, the plan task rejected by the police adapter.
    gem = fed.client("gemeente")
    statuses: dict[str, Any] = {}
    for row in fed.running["gemeente"].store.run_sync(
        lambda db: db.execute(
            "SELECT message_id, message_type FROM outbox WHERE message_type != 'receipt'"
        ).fetchall()
    ):
        statuses[row[1]] = await gem.wait_status(
            row[0], "accepted" if row[1] == "case.status" else "rejected"
        )
    assert set(statuses) == {"case.status", "plan.task"}
    assert statuses["plan.task"]["recipients"][0]["reason"] == "adapter_rejected"
