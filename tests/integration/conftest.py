"""Fixtures for broker tests against the real RabbitMQ on 127.0.0.1:5672.

Every test gets its own throwaway federation: a random vhost (``zvg-t-<hex>``) and random broker
users (``zvgtest-<hex>-<name>``), provisioned in batches and always deleted afterwards (vhost and
users, nothing else: the broker is shared with other people's tests; see ``tests/rabbit.py``).
Connections a test opens through :meth:`Federation.connect` are closed first.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aio_pika
import pytest
from aio_pika.abc import AbstractRobustConnection

from gateway.broker.provision import Rabbitmqctl, ensure_password
from gateway.broker.transport import BrokerEndpoint, connect
from gateway.core.broker_topology import DEFAULT_LIMITS, BrokerLimits
from tests.rabbit import Kind, OnBroker, Provisioned, provision, remove, shared_pool

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
class Federation(OnBroker):
    """A provisioned throwaway federation on the shared broker."""

    provisioned: Provisioned
    members: dict[str, Member]
    ctl: Rabbitmqctl
    private: bool
    """On a private broker node (provisioned and removed on its own, not from the pool)."""
    host: str = HOST
    port: int = PORT
    connections: list[AbstractRobustConnection] = field(default_factory=list)

    @property
    def secrets_dir(self) -> Path:
        return self.provisioned.secrets_dir

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
    """A random federation: from the shared pool, or provisioned on the private node ``ctl``."""
    kind = Kind("t", "zvgtest", tuple((n, OINS[n]) for n in names), limits)
    made = shared_pool().take(kind) if ctl is None else provision(ctl, kind, tmp)
    return Federation(
        provisioned=made,
        members={
            n: Member(n, OINS[n], made.users[n], ensure_password(made.secrets_dir, OINS[n]))
            for n in names
        },
        ctl=ctl or shared_pool().ctl,
        private=ctl is not None,
    )


def remove_federation(fed: Federation) -> None:
    """Delete the federation's vhost and users (with the pool's next batch, unless private)."""
    if fed.private:
        remove(fed.ctl, [fed.provisioned], wait=True)
    else:
        shared_pool().release(fed.provisioned)


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
