"""Fixtures of the adapters' tests: a node test double per demo organisation."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from gateway.testing.veenstad import ORGS
from tests.adapters.nodefake import FakeNode

ORG = {o.key: o for o in ORGS}


@pytest.fixture
async def ggz_node() -> AsyncIterator[FakeNode]:
    node = FakeNode(ORG["ggz"])
    await node.start()
    yield node
    await node.stop()


@pytest.fixture
async def gemeente_node() -> AsyncIterator[FakeNode]:
    node = FakeNode(ORG["gemeente"])
    await node.start()
    yield node
    await node.stop()


@pytest.fixture
async def politie_node() -> AsyncIterator[FakeNode]:
    node = FakeNode(ORG["politie"])
    await node.start()
    yield node
    await node.stop()
