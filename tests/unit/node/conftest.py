"""Realistic node files for the config, CLI and store tests: a fresh demo federation (made by the
same code as the demo) and a ``node.toml`` written by ``write_node_config``; and
``inproc``, the demo federation's nodes in this process behind their HTTP API, on one injected
clock and a broker in memory (tests/unit/node/_inproc.py), for the API behaviour tests."""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.node.config import load_config
from gateway.node.runner import Node
from gateway.testing.federation import FederationFiles, create_demo_federation
from gateway.testing.nodes import NodeFiles, write_node_config
from gateway.testing.veenstad import org_by_key
from schemas.catalogue import default_catalogue
from tests.e2e.harness import free_port
from tests.node_pair import InProcessNode, make_federation, open_node
from tests.pg import STORES, schema_url
from tests.unit.node._inproc import InProcFederation

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE_KEYS = ROOT / "keys_example"
TOKEN = "token-politie-unit-0123456789abcdef0123456789"

#: ``pytestmark`` of a module whose in-process tests (``inproc``) run on both stores.
BOTH_STORES = pytest.mark.parametrize("inproc", STORES, indirect=True)


@dataclass(frozen=True)
class NodeSetup:
    """A written node.toml and the federation it belongs to."""

    fed: FederationFiles
    node: NodeFiles

    @property
    def config(self) -> Path:
        return self.node.config

    def edit(self, old: str, new: str) -> None:
        """Replace ``old`` (which must occur) with ``new`` in the config file."""
        text = self.config.read_text("utf-8")
        assert old in text, old
        self.config.write_text(text.replace(old, new, 1), "utf-8")

    def append(self, text: str) -> None:
        self.config.write_text(self.config.read_text("utf-8") + "\n" + text + "\n", "utf-8")


@pytest.fixture(scope="session")
def veenstad(tmp_path_factory: pytest.TempPathFactory) -> FederationFiles:
    """One demo federation of politie, gemeente and ggz for the whole session (read only)."""
    return make_federation(
        tmp_path_factory.mktemp("veenstad") / "federation", ("politie", "gemeente", "ggz")
    )


@pytest.fixture
async def inproc(
    request: pytest.FixtureRequest, tmp_path: Path, veenstad: FederationFiles
) -> AsyncIterator[InProcFederation]:
    """The ``veenstad`` federation's nodes in this process: ``await inproc.start("politie")``
    serves one behind its HTTP API, connected to the broker in memory. Their stores are SQLite
    files; a module with ``pytestmark = BOTH_STORES`` runs each of its tests on SQLite and on
    PostgreSQL (a schema per node in the worker's database, tests/pg.py)."""
    stores: Callable[[str], str] | None = None
    if getattr(request, "param", "sqlite") == "postgres":
        url = request.getfixturevalue("pg_url")
        stores = functools.partial(schema_url, url)
    federation = InProcFederation(veenstad, tmp_path, store_url=stores)
    try:
        yield federation
    finally:
        await federation.close()


@pytest.fixture(scope="session")
def federation(tmp_path_factory: pytest.TempPathFactory) -> FederationFiles:
    """One demo federation (politie and gemeente) for the whole session; tests copy from it."""
    return create_demo_federation(
        tmp_path_factory.mktemp("fed") / "federation",
        now=datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1),
        lifetime=timedelta(days=30),
        catalogue=default_catalogue(),
        rand=os.urandom,
        orgs=("politie", "gemeente"),
    )


def write_setup(
    tmp: Path,
    fed: FederationFiles,
    *,
    mode: str = "production",
    keys_dir: Path | None = None,
    directory: Path | None = None,
    secret: bool = True,
) -> NodeSetup:
    """A node.toml for politie in ``tmp`` with a broker password file and, unless ``keys_dir`` is
    given (then used in place), its own copy of the federation's keys (mode 0600)."""
    if keys_dir is None:
        keys = tmp / "keys"
        shutil.copytree(fed.keys_dir("politie"), keys)
        for pem in keys.glob("*.pem"):
            pem.chmod(0o600)
    else:
        keys = keys_dir
    password = tmp / "broker.password"
    password.write_text("not-a-real-password\n", "utf-8")
    password.chmod(0o600 if secret else 0o644)
    node = write_node_config(
        tmp / "node.toml",
        org=org_by_key("politie"),
        keys_dir=keys,
        directory=directory or fed.directory,
        data_dir=tmp / "data",
        broker_url="amqp://127.0.0.1:5672/zvg-veenstad",
        password_file=password,
        listen="127.0.0.1:8400",
        token=TOKEN,
        catalogue=default_catalogue(),
        mode=mode,
    )
    return NodeSetup(fed, node)


@pytest.fixture
def setup(tmp_path: Path, federation: FederationFiles) -> NodeSetup:
    """A valid production-mode node.toml with fresh (non-example) keys."""
    return write_setup(tmp_path, federation)


@pytest.fixture
def make_setup(tmp_path: Path, federation: FederationFiles) -> Callable[..., NodeSetup]:
    counter = iter(range(1_000))

    def make(**kw: object) -> NodeSetup:
        folder = tmp_path / f"n{next(counter)}"
        folder.mkdir()
        return write_setup(folder, federation, **kw)  # type: ignore[arg-type]

    return make


#: A broker URL nothing listens on: the in-process nodes below never reach a broker, so the API
#: tests need no RabbitMQ (the node keeps retrying in the background, as it would in production).
NO_BROKER = "amqp://127.0.0.1:1/zvg-veenstad"


class StartNode:
    """Starts the ``setup`` node in-process on a free loopback port, without a broker.

    The first call may pass ``[api]`` and ``[limits]`` settings, which are written into node.toml
    (so they go through the real loader): ``await start_node(api={"max_connections": 2})``.
    Later calls start the same node again (a restart); :meth:`stop` stops one."""

    def __init__(self, setup: NodeSetup) -> None:
        self.setup = setup
        self.running: list[Node] = []
        self.starts = 0

    async def __call__(
        self, api: Mapping[str, object] | None = None, limits: Mapping[str, object] | None = None
    ) -> Node:
        setup = self.setup
        if not self.starts:
            setup.edit('url = "amqp://127.0.0.1:5672/zvg-veenstad"', f'url = "{NO_BROKER}"')
            lines = [f'listen = "127.0.0.1:{free_port()}"']
            lines += [f"{k} = {v!r}" for k, v in (api or {}).items()]
            setup.edit('listen = "127.0.0.1:8400"', "\n".join(lines))
            if limits:
                setup.append("[limits]\n" + "\n".join(f"{k} = {v!r}" for k, v in limits.items()))
        elif api or limits:
            raise ValueError("settings can only be given on the first start")
        self.starts += 1
        node = await Node.start(load_config(setup.config))
        self.running.append(node)
        return node

    async def stop(self, node: Node) -> None:
        self.running.remove(node)
        await node.stop()


@pytest.fixture
async def start_node(setup: NodeSetup) -> AsyncIterator[StartNode]:
    """A :class:`StartNode` for ``setup``; stops whatever is still running afterwards."""
    starter = StartNode(setup)
    try:
        yield starter
    finally:
        for node in list(starter.running):
            with contextlib.suppress(Exception):
                await starter.stop(node)


@pytest.fixture
async def pair(
    tmp_path: Path, federation: FederationFiles
) -> AsyncIterator[tuple[InProcessNode, InProcessNode]]:
    """Politie (the sender) and the gemeente's ZVH (the recipient), services in this process
    on their own temporary stores, no loops running (tests/node_pair.py)."""
    pol = await open_node(federation, "politie", tmp_path / "pol")
    zvh = await open_node(federation, "gemeente", tmp_path / "zvh")
    try:
        yield pol, zvh
    finally:
        await pol.close()
        await zvh.close()
