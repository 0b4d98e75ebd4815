from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import Fed, make_fed, teardown_fed
from tests.rabbit import finish_removals


@pytest.fixture
async def fed(tmp_path: Path) -> AsyncIterator[Fed]:
    federation = make_fed(tmp_path)
    try:
        yield federation
    finally:
        for key in list(federation.running):
            await federation.stop(key)
        teardown_fed(federation)


@pytest.fixture(scope="session", autouse=True)
def _finish_removals() -> Iterator[None]:
    yield
    finish_removals()
