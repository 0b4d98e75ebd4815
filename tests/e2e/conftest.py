from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.e2e.harness import (
    Fed,
    make_fed,
    request_from_example,
    running_fed,
    teardown_fed,
    wait_witnessed,
)


@pytest.fixture
async def fed(tmp_path: Path) -> AsyncIterator[Fed]:
    async with running_fed(tmp_path) as federation:
        yield federation


@pytest.fixture
async def exchanged(tmp_path: Path) -> AsyncIterator[tuple[Fed, str]]:
    """Police refer a case to the ZVH, the ZVH acks; both logs cosigned by the partners."""
    fed = make_fed(tmp_path)
    try:
        for key in ("politie", "gemeente", "ggz"):
            await fed.start(key)
        code, doc = await fed.client("politie").send(request_from_example("case.referral"))
        assert code == 202
        items = await fed.client("gemeente").inbox(wait=10)
        assert await fed.client("gemeente").ack(items[0]["message_id"]) == 204
        await fed.client("politie").wait_status(doc["message_id"], "accepted")
        await wait_witnessed(fed)
        yield fed, doc["message_id"]
    finally:
        for key in list(fed.running):
            await fed.stop(key)
        teardown_fed(fed)
