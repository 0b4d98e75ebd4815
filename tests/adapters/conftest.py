"""Fixtures of the adapters' tests: a node test double per demo organisation, and the third-party
servers (``tests/adapters/thirdparty.py``), one of each per session: tests/conftest.py keeps their
users on one pytest-xdist worker, so each starts once (Prism alone takes ≈ 5 s of CPU)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from gateway.testing.veenstad import ORGS
from tests.adapters.nodefake import FakeNode
from tests.adapters.thirdparty import SERVERS, ensure_node_modules, server_process

ORG = {o.key: o for o in ORGS}
ZAKEN_API_SPEC = Path(__file__).resolve().parent / "zgw" / "zaken-api.yaml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def fhir_url() -> Iterator[str]:
    """A FHIR R4 server (tests reset it with ``POST /$test-reset`` before use)."""
    ensure_node_modules()
    with server_process(["node", "fhir-server.mjs", "0"], r"listening (\d+)", SERVERS) as port:
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="session")
def zaken_url() -> Iterator[str]:
    """A Zaken API mock (Prism) serving the VNG OpenAPI document; it keeps no state."""
    prism = ensure_node_modules() / ".bin" / "prism"
    args = [str(prism), "mock", "-h", "127.0.0.1", "-p", str(free_port()), str(ZAKEN_API_SPEC)]
    with server_process(args, r"Prism is listening on http://127\.0\.0\.1:(\d+)", SERVERS) as p:
        yield f"http://127.0.0.1:{p}/api/v1"


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
