from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.e2e.harness import Fed, exchanged_fed, running_fed


@pytest.fixture
async def fed(tmp_path: Path) -> AsyncIterator[Fed]:
    async with running_fed(tmp_path) as federation:
        yield federation


@pytest.fixture
async def exchanged(tmp_path: Path) -> AsyncIterator[tuple[Fed, str]]:
    """Police refer a case to the ZVH, the ZVH acks; both logs cosigned by the partners."""
    async with exchanged_fed(tmp_path) as done:
        yield done
