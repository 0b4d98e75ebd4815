"""Session-wide fixtures for every test folder."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.rabbit import finish_removals


@pytest.fixture(scope="session", autouse=True)
def _finish_removals() -> Iterator[None]:
    """Throwaway vhosts and users are provisioned and removed in batches (``tests/rabbit.py``);
    remove what is left and wait for every removal before the session ends, so no test object is
    left on the shared broker."""
    yield
    finish_removals()
