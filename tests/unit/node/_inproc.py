"""In-process nodes behind their real HTTP API, for the API behaviour tests (test_api_*.py).

Each organisation's node is a ``NodeService`` on a temporary SQLite store with its real
``AuditLog`` (tests/node_pair.py), served by the node's own aiohttp app (``build_app``) through
aiohttp's test server, with the readiness of ``gateway.node.runner.Node``. The nodes share one
injected :class:`~tests.node_pair.Clock` and one :class:`~tests.node_pair.MemoryBroker`: no
RabbitMQ, no sleeps. A test waits for events (:meth:`InProcFederation.wait_status`, a
long-poll), and moves time by moving the clock.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from multidict import CIMultiDictProxy
from opentelemetry.sdk.trace.export import SpanExporter

from gateway.broker.transport import Consumer
from gateway.core.directory import SignedDirectory
from gateway.federation import now_utc, read_directory, sign_with, write_directory
from gateway.logs import AccessLog
from gateway.node.api import PROBLEM_JSON, build_app
from gateway.node.preflight import broker_endpoint
from gateway.node.problems import PROBLEM_BASE, PROBLEM_TYPES
from gateway.node.runner import Node
from gateway.testing.federation import FederationFiles
from schemas.catalogue import Catalogue, default_catalogue
from tests.e2e.harness import request_from_example
from tests.node_pair import Clock, InProcessNode, MemoryBroker, open_node

__all__ = ["Answer", "ApiNode", "InProcFederation", "request_from_example"]

#: Makes a new directory version from (the current one, now, the catalogue).
DirectoryChange = Callable[[SignedDirectory, datetime, Catalogue], SignedDirectory]
#: The demo organisations' OINs.
GEM, POL, GGZ = "00000001999000001000", "00000001999000002000", "00000001999000004000"


@dataclass(frozen=True)
class Answer:
    """One HTTP answer of a node's API."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def problem(self, slug: str) -> dict[str, Any]:
        """The RFC 9457 document of a ``slug`` refusal: asserts the media type, the status, the
        stable type and title of docs/api.md, and a detail."""
        assert self.headers.get("Content-Type", "").startswith(PROBLEM_JSON), (
            self.status,
            self.headers.get("Content-Type"),
            self.body[:300],
        )
        doc = self.json()
        status, title = PROBLEM_TYPES[slug]
        assert (self.status, doc["status"]) == (status, status), doc
        assert doc["type"] == PROBLEM_BASE + slug, doc
        assert doc["title"] == title, doc
        assert doc["detail"], doc
        return cast(dict[str, Any], doc)


@dataclass
class ApiNode:
    """One organisation's in-process node and an HTTP client on its API."""

    node: InProcessNode
    client: TestClient[web.Request, web.Application]
    runner: Node

    @property
    def org(self) -> str:
        return self.node.org

    @property
    def token(self) -> str:
        """The adapter token ``write_node_config`` made for this node."""
        return f"token-{self.node.key}-0123456789abcdef0123456789"

    @property
    def auditor(self) -> str:
        """The auditor token ``write_node_config`` made for this node."""
        return self.token + "-auditor"

    async def call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        raw: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        token: str | None = "adapter",
    ) -> Answer:
        """``method path`` with the adapter token (``token="auditor"``, another token, or None
        for none); ``body`` is sent as JSON, ``raw`` as it is (``application/json`` unless
        ``headers`` say otherwise)."""
        sent: dict[str, str] = {}
        if token is not None:
            bearer = {"adapter": self.token, "auditor": self.auditor}.get(token, token)
            sent["Authorization"] = f"Bearer {bearer}"
        data = raw if body is None else json.dumps(body).encode()
        if data is not None:
            sent["Content-Type"] = "application/json"
        sent.update(headers or {})
        async with self.client.request(method, path, data=data, headers=sent) as response:
            return Answer(response.status, response.headers, await response.read())

    async def send(
        self, request: Mapping[str, Any], headers: Mapping[str, str] | None = None
    ) -> str:
        """Send ``request``, which must be accepted; returns the message id."""
        answer = await self.call("POST", "/v1/messages", body=request, headers=headers)
        assert answer.status == 202, answer.body
        return str(answer.json()["message_id"])

    async def status(self, message_id: str) -> list[tuple[str, str, str, str | None]]:
        """(org, role, status, reason) per recipient of a message we sent."""
        answer = await self.call("GET", f"/v1/messages/{message_id}")
        assert answer.status == 200, answer.body
        return [
            (r["org"], r["role"], r["status"], r["reason"]) for r in answer.json()["recipients"]
        ]

    async def inbox(
        self, wait: int = 0, limit: int | None = None, headers: Mapping[str, str] | None = None
    ) -> list[dict[str, Any]]:
        query = f"wait={wait}" + ("" if limit is None else f"&limit={limit}")
        answer = await self.call("GET", f"/v1/inbox?{query}", headers=headers)
        assert answer.status == 200, answer.body
        return cast(list[dict[str, Any]], answer.json()["items"])

    async def settle(self, message_id: str, verb: str = "ack", body: Any = None) -> int:
        """``POST /v1/inbox/{id}/ack`` (or ``reject`` with ``body``); the HTTP status."""
        return (await self.call("POST", f"/v1/inbox/{message_id}/{verb}", body=body)).status


@dataclass
class InProcFederation:
    """The demo federation's nodes in this process, on one clock and one broker in memory."""

    files: FederationFiles
    root: Path
    clock: Clock = field(default_factory=Clock)
    broker: MemoryBroker = field(init=False)
    nodes: dict[str, ApiNode] = field(default_factory=dict)
    #: The ``store.url`` of organisation ``key``'s node (None: its SQLite file).
    store_url: Callable[[str], str] | None = None

    def __post_init__(self) -> None:
        self.broker = MemoryBroker(self.clock)

    async def start(
        self,
        key: str,
        *,
        connect: bool = True,
        directory: Path | None = None,
        clock: Callable[[], datetime] | None = None,
        spans: SpanExporter | None = None,
        **settings: Any,
    ) -> ApiNode:
        """Open demo organisation ``key``'s node and serve its API; with ``connect``, attach it
        to the broker (its loops and consumer run). The node runs on the federation's clock
        unless given its own ``clock``; its spans go to ``spans``; ``settings`` as for
        ``open_node``."""
        if self.store_url is not None and "store__url" not in settings:
            settings["store__url"] = self.store_url(key)
        node = await open_node(
            self.files,
            key,
            self.root / key,
            clock=clock or self.clock,
            directory_file=directory,
            span_exporter=spans,
            **settings,
        )
        service = node.service
        runner = Node(
            node.config,
            service,
            node.store,
            node.telemetry,
            broker_endpoint(node.config, service.directory),
            node.broker,
        )
        # The node's access log (gateway.node.listener serves with it), not aiohttp's.
        server = TestServer(build_app(service, runner.readiness), access_log_class=AccessLog)
        client = TestClient(server)
        await client.start_server()
        api = self.nodes[key] = ApiNode(node, client, runner)
        self.broker.watch(node)
        if connect:
            self.connect(key)
        return api

    def connect(self, key: str) -> None:
        """Attach ``key``'s node to the broker, as ``runner.Node`` does once connected."""
        api = self.nodes[key]
        self.broker.attach(api.node)
        api.runner.connection = self.broker
        # Readiness asks the consumer for its role only; the broker's consumer is active.
        api.runner.consumer = cast(Consumer, _ActiveConsumer())
        api.runner.connected.set()

    def newer_directory(self, path: Path, change: DirectoryChange) -> Path:
        """A newer version of the federation's directory, made by ``change(current, now,
        catalogue)`` and signed by the demo authority's quorum, written to ``path``."""
        catalogue = default_catalogue()
        current = read_directory(self.files.directory, catalogue)
        newer = change(current, now_utc(), catalogue)
        for name in ("zvh-manager", "privacy-officer"):
            newer = sign_with(newer, self.files.authority_dir / f"{name}.key.pem", None)
        return write_directory(newer, path)

    async def wait_status(self, key: str, message_id: str, *statuses: str) -> None:
        """Until every recipient of ``message_id`` (sent by ``key``) has one of ``statuses``."""
        api = self.nodes[key]

        async def reached() -> bool:
            return all(s in statuses for _o, _r, s, _x in await api.status(message_id))

        await self.broker.until(reached, f"{message_id} at {key} reached {statuses}")

    async def close(self) -> None:
        for api in self.nodes.values():
            await api.node.service.begin_stop()  # long-polls and event streams return now
            await api.client.close()
        await self.broker.close()
        for api in self.nodes.values():
            await api.node.close()


@dataclass(frozen=True)
class _ActiveConsumer:
    role: str = "active"
