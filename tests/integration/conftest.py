"""Fixtures for broker tests against the real RabbitMQ on 127.0.0.1:5672.

Every test gets its own throwaway federation: a random vhost (``zvg-t-<hex>``) and random broker
users (``zvgtest-<hex>-<name>``), provisioned with one ``rabbitmqctl import_definitions`` and
always deleted afterwards (vhost and users, nothing else: the broker is shared with other
people's tests). Connections a test opens through :meth:`Federation.connect` are closed first.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aio_pika
import pytest
from aio_pika.abc import AbstractRobustConnection

from gateway.broker.provision import Rabbitmqctl, build_definitions, ensure_password
from gateway.broker.transport import BrokerEndpoint, connect
from gateway.core.broker_topology import DEFAULT_LIMITS, BrokerLimits, BrokerMember, vhost_name
from tests.integration._private_node import TlsNode, run_private_node
from tests.rabbit import remove_vhost

HOST = "127.0.0.1"
PORT = 5672

# Made-up 20-digit OINs for the demo federation's partners (docs/demo.md: ZVH Veenstad).
OINS = {
    "zvh": "00000001823288444000",  # Gemeente Veenstad / Zorg- en Veiligheidshuis
    "pol": "00000001003214345000",  # Politie basisteam Veenstad
    "ggz": "00000003271247974000",  # GGZ Veenland
    "om": "00000001002255667000",  # Openbaar Ministerie arrondissement Veenstad
}


@dataclass(frozen=True)
class Member:
    """One provisioned test organisation."""

    name: str
    org: str
    user: str
    password: str = field(repr=False)


@dataclass
class Federation:
    """A provisioned throwaway federation on the shared broker."""

    federation: str
    vhost: str
    members: dict[str, Member]
    secrets_dir: Path
    ctl: Rabbitmqctl
    host: str = HOST
    port: int = PORT
    connections: list[AbstractRobustConnection] = field(default_factory=list)

    def __getitem__(self, name: str) -> Member:
        return self.members[name]

    def endpoint(self, name: str) -> BrokerEndpoint:
        m = self.members[name]
        return BrokerEndpoint(self.host, self.port, self.vhost, m.user, m.password)

    def broker_user_of(self, org: str) -> str | None:
        return next((m.user for m in self.members.values() if m.org == org), None)

    async def connect(self, name: str) -> AbstractRobustConnection:
        """A robust connection as member ``name`` (closed by the fixture)."""
        connection = await connect(self.endpoint(name), name=f"zvgtest-{name}")
        self.connections.append(connection)
        return connection

    async def connect_plain(self, name: str) -> aio_pika.abc.AbstractConnection:
        """A plain (non-robust) aio-pika connection, to act as a hostile client would."""
        m = self.members[name]
        connection = await aio_pika.connect(
            host=self.host,
            port=self.port,
            login=m.user,
            password=m.password,
            virtualhost=self.vhost,
        )
        self.connections.append(connection)  # type: ignore[arg-type]
        return connection

    async def admin(self) -> aio_pika.abc.AbstractConnection:
        """A guest connection to the test vhost, for test setup and inspection only."""
        self.ctl.run("set_permissions", "-p", self.vhost, "guest", ".*", ".*", ".*")
        connection = await aio_pika.connect(host=self.host, port=self.port, virtualhost=self.vhost)
        self.connections.append(connection)  # type: ignore[arg-type]
        return connection

    def close_connections(self) -> None:
        """Cut every connection to this vhost (and only this vhost)."""
        self.ctl.run("close_all_connections", "-p", self.vhost, "zvg test: simulated failure")


MakeFederation = Callable[..., Awaitable[Federation]]


def provision_federation(
    tmp: Path,
    *,
    names: tuple[str, ...] = ("zvh", "pol", "ggz"),
    limits: BrokerLimits = DEFAULT_LIMITS,
    ctl: Rabbitmqctl | None = None,
) -> Federation:
    """Provision a random federation with one ``import_definitions`` call."""
    ctl = ctl or Rabbitmqctl()
    tag = secrets.token_hex(4)
    federation = f"t-{tag}"
    members = [BrokerMember(OINS[n], f"zvgtest-{tag}-{n}") for n in names]
    secrets_dir = tmp / f"secrets-{tag}"
    definitions = build_definitions(federation, members, secrets_dir=secrets_dir, limits=limits)
    fed = Federation(
        federation=federation,
        vhost=vhost_name(federation),
        members={
            n: Member(n, m.org, m.broker_user, ensure_password(secrets_dir, m.org))
            for n, m in zip(names, members, strict=True)
        },
        secrets_dir=secrets_dir,
        ctl=ctl,
    )
    try:
        ctl.run("import_definitions", "--format", "json", stdin=json.dumps(definitions))
    except BaseException:
        remove_federation(fed, wait=True)
        raise
    return fed


def remove_federation(fed: Federation, *, wait: bool = False) -> None:
    """Delete the federation's vhost and users (in the background unless ``wait``)."""
    remove_vhost(fed.ctl, fed.vhost, [m.user for m in fed.members.values()], wait=wait)


async def _close_all(fed: Federation) -> None:
    for connection in reversed(fed.connections):
        if not connection.is_closed:
            await connection.close()
    fed.connections.clear()


@pytest.fixture
async def make_federation(tmp_path: Path) -> AsyncIterator[MakeFederation]:
    """Factory: ``await make_federation(limits=..., names=(...))`` → a provisioned federation."""
    made: list[Federation] = []

    async def make(
        *, names: tuple[str, ...] = ("zvh", "pol", "ggz"), limits: BrokerLimits = DEFAULT_LIMITS
    ) -> Federation:
        fed = provision_federation(tmp_path, names=names, limits=limits)
        made.append(fed)
        return fed

    try:
        yield make
    finally:
        for fed in made:
            try:
                await _close_all(fed)
            finally:
                remove_federation(fed)


@pytest.fixture
async def fed(make_federation: MakeFederation) -> Federation:
    """A provisioned federation with the default limits and members zvh, pol, ggz."""
    return await make_federation()


@pytest.fixture(scope="session")
def tls_node() -> Iterator[TlsNode]:
    """A private RabbitMQ node with the example TLS config, shared by the tests that need it."""
    yield from run_private_node()
