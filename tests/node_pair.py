"""Nodes in one process with no RabbitMQ: services of demo organisations, each with its own
temporary store and audit log, and envelopes carried between them by hand or by a broker in
memory.

What crosses between nodes is exactly what a broker would carry — sealed envelope bytes with the
sender's broker user as AMQP ``user_id`` — handed to the receiving service's ``on_delivery``.
Two ways to move it:

- by hand (:meth:`InProcessNode.carry_to`, :meth:`InProcessNode.seal_receipts`), with no loops
  running: tests that play a partner signing statements it should not (its own keys, its own
  machinery);
- by :class:`MemoryBroker`, the publisher port in memory: the node's own outbox and receipt
  loops run, publish through it, and it hands every confirmed message to the recipient's
  ``on_delivery`` (tests/unit/node/_inproc.py puts the HTTP API on top).

Time is the injected :class:`Clock` (``NodeService(clock=...)``); waiting is for events (a
store commit, a publish, a settlement), never for a time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export import SpanExporter

from gateway.audit.inspect import open_readonly, query
from gateway.broker.transport import Delivery, MessageExpiredError
from gateway.core.broker_topology import CONTENT_TYPE, routing_key, split_routing_key
from gateway.core.decisions import Decision, Retry
from gateway.core.delivery import OutboundEvent
from gateway.errors import LocalError
from gateway.node.config import NodeConfig, load_config
from gateway.node.context import utc_now
from gateway.node.ports import BrokerSlot
from gateway.node.preflight import load_keys
from gateway.node.service import NodeService, coordinate, open_service
from gateway.node.store import PendingReceipt, SetStatus, SqliteStore
from gateway.node.store.postgres import PgConnection
from gateway.node.trust import load_trusted_directory
from gateway.telemetry import Telemetry, setup_telemetry
from gateway.testing.federation import FederationFiles, create_demo_federation
from gateway.testing.nodes import write_node_config
from gateway.testing.veenstad import org_by_key
from schemas.catalogue import default_catalogue

__all__ = [
    "Clock",
    "InProcessNode",
    "MemoryBroker",
    "MemoryPublisher",
    "Published",
    "Settled",
    "make_federation",
    "open_node",
    "reopen_node",
]

ROOT = Path(__file__).resolve().parents[1]
#: Bound on every wait for an event: only stops a hang, never a timed assert.
HANG_S = 60.0


class Clock:
    """The nodes' injected clock (``NodeService(clock=...)``): it stands still until a test
    moves it, so nothing a test checks depends on how fast the machine is."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or utc_now()

    def __call__(self) -> datetime:
        return self.now

    def move(self, **delta: float) -> datetime:
        """Move forward by ``timedelta(**delta)``; returns the new time."""
        self.now += timedelta(**delta)
        return self.now


def make_federation(root: Path, orgs: tuple[str, ...] = ("politie", "gemeente")) -> FederationFiles:
    """A fresh demo federation (keys, signed directory) for ``orgs``."""
    return create_demo_federation(
        root,
        now=datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1),
        lifetime=timedelta(days=30),
        catalogue=default_catalogue(),
        rand=os.urandom,
        orgs=orgs,
    )


@dataclass
class InProcessNode:
    """One organisation's service on a temporary store, plus what a test wants to look at."""

    key: str
    config: NodeConfig
    service: NodeService
    store: SqliteStore
    telemetry: Telemetry
    metrics: InMemoryMetricReader
    broker: BrokerSlot
    carried: set[tuple[str, str]] = field(default_factory=set)

    @property
    def org(self) -> str:
        return self.service.org

    @property
    def broker_user(self) -> str:
        user = self.service.inbound.broker_user_of(self.org)
        assert user is not None
        return user

    async def send_example(self, name: str = "case.referral") -> str:
        """Send ``tests/examples/<name>.json`` as an adapter would; returns the message id."""
        claims = json.loads((ROOT / "tests" / "examples" / f"{name}.json").read_text("utf-8"))
        fills = ("spec", "message_id", "created_at", "expires_at", "sender", "trace", "log_anchor")
        request = {k: v for k, v in claims.items() if k not in fills}
        request["sender_role"] = claims["sender"]["role"]
        message_id, _ = await self.service.outbound.send(
            json.dumps(request).encode(), client="test"
        )
        return message_id

    async def pending_receipts(self) -> list[PendingReceipt]:
        return await self.store.take_pending_receipts(1000)

    async def seal_receipts(self, pending: list[PendingReceipt] | None = None) -> None:
        """Seal receipts now (what the receipt loop does), the pending ones or those given."""
        batch = await self.pending_receipts() if pending is None else pending
        if batch:
            await self.service.receipts.seal(batch)

    async def carry_to(self, other: InProcessNode) -> list[Decision]:
        """Hand every envelope this node has not yet carried to ``other`` to ``other``'s inbound
        pipeline, as the broker would (user_id = our broker user); the broker's confirm is
        recorded as a publish. Returns ``other``'s decisions."""
        decisions = []
        for p in await self.store.pending_publishes(10_000):
            if p.org != other.org or (p.message_id, p.org) in self.carried:
                continue
            self.carried.add((p.message_id, p.org))
            decisions.append(
                await other.service.inbound.on_delivery(self.delivery(p.envelope, other))
            )
            published = SetStatus(
                p.message_id, p.org, OutboundEvent.PUBLISHED, None, datetime.now(UTC)
            )
            await self.store.commit(published)
        return decisions

    def delivery(self, body: bytes, recipient: InProcessNode, message_id: str = "m") -> Delivery:
        """``body`` as the broker would deliver it from us to ``recipient``."""
        return Delivery(
            body=body,
            message_id=message_id,
            user_id=self.broker_user,
            routing_key=routing_key(recipient.org, self.org),
            redelivered=False,
            delivery_count=0,
        )

    def audit(self, **filters: Any) -> list[dict[str, Any]]:
        """This node's audit records matching ``filters`` (those of ``zvg audit query``:
        ``operation=``, ``message_id=``, ...), oldest first: index, view, personal part."""
        if self.config.store.url is not None:
            with psycopg.connect(self.config.store.url, autocommit=True) as conn:
                return query(PgConnection(conn), **filters)  # type: ignore[arg-type]  # sqlite3's subset
        with open_readonly(self.config.store_path) as db:
            return query(db, **filters)

    def audit_names(self, message_id: str) -> list[str]:
        """Names of this node's audit records about ``message_id``, in log order."""
        return [r["view"]["name"] for r in self.audit(message_id=message_id)]

    def metric(self, name: str) -> list[tuple[dict[str, Any], float]]:
        """(attributes, value) of every data point of the metric ``name`` collected now."""
        data = self.metrics.get_metrics_data()
        points: list[tuple[dict[str, Any], float]] = []
        if data is None:
            return points
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        points += [
                            (dict(p.attributes or {}), float(p.value))  # type: ignore[union-attr]  # sum points; histograms lack .value
                            for p in metric.data.data_points
                        ]
        return points

    async def close(self) -> None:
        await self.service.stop(grace=HANG_S)  # the loops a MemoryBroker started, if any
        await self.store.close()
        self.telemetry.shutdown()


async def open_node(
    fed: FederationFiles,
    key: str,
    folder: Path,
    *,
    clock: Callable[[], datetime] = utc_now,
    directory_file: Path | None = None,
    span_exporter: SpanExporter | None = None,
    **settings: Any,
) -> InProcessNode:
    """The service of demo organisation ``key`` on a fresh store in ``folder`` (no loops run),
    on ``clock``, trusting ``directory_file`` (default: the federation's), its spans going to
    ``span_exporter`` (default: none are recorded).

    ``settings`` are appended to its ``node.toml`` as ``section.name = value`` lines
    (``limits__inbox_page_max=2``)."""
    keys = folder / "keys"
    shutil.copytree(fed.keys_dir(key), keys)
    for pem in keys.glob("*.pem"):
        pem.chmod(0o600)
    password = folder / "broker.password"
    password.write_text("not-used-in-process-0123456789\n", "utf-8")
    password.chmod(0o600)
    files = write_node_config(
        folder / "node.toml",
        org=org_by_key(key),
        keys_dir=keys,
        directory=directory_file or fed.directory,
        data_dir=folder / "data",
        broker_url="amqp://127.0.0.1:5672/zvg-veenstad",
        password_file=password,
        listen="127.0.0.1:8400",
        token=f"token-{key}-0123456789abcdef0123456789",
        catalogue=default_catalogue(),
    )
    if settings:
        sections: dict[str, list[str]] = {}
        for name, value in settings.items():
            section, _, option = name.partition("__")
            sections.setdefault(section, []).append(f"{option} = {json.dumps(value)}")
        text = files.config.read_text("utf-8")
        for section, lines in sections.items():
            header = f"[{section}]\n"
            if header in text:
                text = text.replace(header, header + "\n".join(lines) + "\n", 1)
            else:
                text += f"\n{header}" + "\n".join(lines) + "\n"
        files.config.write_text(text, "utf-8")
    return await _open_config(
        key, load_config(files.config), clock=clock, span_exporter=span_exporter
    )


async def reopen_node(node: InProcessNode) -> InProcessNode:
    """``node``'s organisation again, on its config, data directory and store, as after a
    restart (close ``node`` first)."""
    return await _open_config(node.key, node.config, clock=node.service.clock)


async def _open_config(
    key: str,
    config: NodeConfig,
    *,
    clock: Callable[[], datetime],
    span_exporter: SpanExporter | None = None,
) -> InProcessNode:
    catalogue = default_catalogue()
    directory = load_trusted_directory(config, catalogue, remember=True)
    node_keys = load_keys(config)
    reader = InMemoryMetricReader()
    telemetry = setup_telemetry(
        org=config.node.org,
        node_id=config.node.node_id,
        env={},
        span_exporter=span_exporter,
        metric_readers=[reader],
    )
    broker = BrokerSlot()  # not connected until a MemoryBroker attaches the node
    service = await open_service(
        config,
        directory=directory,
        catalogue=catalogue,
        keys=node_keys,
        telemetry=telemetry,
        broker=broker,
        clock=clock,
    )
    return InProcessNode(key, config, service, service.audit.store, telemetry, reader, broker)


# ---------------------------------------------------------------------- the broker in memory


@dataclass(frozen=True)
class Published:
    """A message the broker confirmed: from whom to whom, its AMQP message id and content type."""

    sender: str
    recipient: str
    message_id: str
    content_type: str


@dataclass(frozen=True)
class Settled:
    """A delivery to ``org``'s node and the decision its ``on_delivery`` returned."""

    org: str
    delivery: Delivery
    decision: Decision


@dataclass(frozen=True)
class _Queued:
    delivery: Delivery
    expiration: datetime


class MemoryPublisher:
    """The publisher port the node uses (``gateway.broker.transport.Publisher.publish``), in
    memory: ``publish`` returns once the broker has the message (the confirm), refuses a routing
    key that names another sender and an envelope whose ``expiration`` has passed on the broker's
    clock (``MessageExpiredError``, as the real publisher does)."""

    def __init__(self, broker: MemoryBroker, org: str, user: str) -> None:
        self.broker = broker
        self.org = org
        self.user = user

    @property
    def connected(self) -> bool:
        return not self.broker.is_closed

    async def publish(
        self,
        routing: str,
        body: bytes,
        *,
        message_id: str,
        expiration: datetime,
        content_type: str = CONTENT_TYPE,
    ) -> None:
        recipient, sender = split_routing_key(routing)
        if sender != self.org:
            raise LocalError("routing key names another organisation as sender")
        if expiration <= self.broker.clock():
            raise MessageExpiredError(f"message {message_id} expired before it was confirmed")
        delivery = Delivery(
            body=body,
            message_id=message_id,
            user_id=self.user,
            routing_key=routing,
            redelivered=False,
            delivery_count=0,
            content_type=content_type,
        )
        self.broker.route(recipient, delivery, expiration)


class MemoryBroker:
    """The federation's broker in memory, for nodes in one process.

    :meth:`attach` gives a node a :class:`MemoryPublisher`, runs its outbox and receipt loops
    (``service.outbox.run``, ``service.receipts.run``) and a consumer that hands what is queued for
    the node's organisation to ``on_delivery``, one message at a time, and then tells the node
    how it was settled (``on_settled``). A message whose expiration passed on :attr:`clock`
    before it was consumed is dropped (the queue's TTL). A ``Retry`` decision holds the message
    until :meth:`redeliver_held`. Every message goes where its routing key says; an organisation
    with no node attached keeps its queue until one is.

    The consumer's sender check (AMQP ``user_id`` against the envelope's sender) belongs to
    ``gateway.broker.transport.Consumer`` and is tested there; every publisher here is honest.

    :meth:`until` waits for a condition, re-checked after every event: a commit in an attached
    node's store, a publish, a settlement.
    """

    def __init__(self, clock: Callable[[], datetime], *, prefetch: int = 1) -> None:
        self.clock = clock
        #: Deliveries one node handles at once (the AMQP consumer's prefetch; tests keep 1, so
        #: deliveries are settled in queue order).
        self.prefetch = prefetch
        self.published: list[Published] = []
        self.settled: list[Settled] = []
        self.dropped: list[Delivery] = []
        self.queues: defaultdict[str, list[_Queued]] = defaultdict(list)
        self.held: defaultdict[str, list[_Queued]] = defaultdict(list)
        self.paused: set[str] = set()
        self.errors: list[BaseException] = []
        #: What readiness looks at (``runner.Node.connection``): this connection is up.
        self.is_closed = False
        self._nodes: dict[str, InProcessNode] = {}
        self._consumers: list[asyncio.Task[None]] = []
        self._changed = asyncio.Event()
        self._closing = False
        self._watched: set[SqliteStore] = set()

    # ------------------------------------------------------------------ events

    def _bump(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def until(self, check: Callable[[], Awaitable[bool]], what: str) -> None:
        """Return when ``check()`` is true; it is asked now and after every event."""
        try:
            async with asyncio.timeout(HANG_S):
                while True:
                    if self.errors:
                        raise self.errors[0]
                    changed = self._changed
                    if await check():
                        return
                    await changed.wait()
        except TimeoutError:
            raise AssertionError(f"never happened: {what}") from None

    # ------------------------------------------------------------------ nodes

    def watch(self, node: InProcessNode) -> None:
        """Count every commit in ``node``'s store as an event for :meth:`until` (also while
        the node is not attached)."""
        if node.store in self._watched:
            return
        self._watched.add(node.store)
        loop = asyncio.get_running_loop()

        def committed(_db: object) -> None:  # on the store's writer thread
            loop.call_soon_threadsafe(self._bump)

        node.store.on_commit(committed)

    def attach(self, node: InProcessNode) -> None:
        """Connect ``node``: its publisher, its loops and its consumer start now."""
        loop = asyncio.get_running_loop()
        self.watch(node)
        node.broker.attach(MemoryPublisher(self, node.org, node.broker_user))
        self._nodes[node.org] = node
        service = node.service
        service.ctx.spawn(coordinate(service.ctx), "coordination")
        service.ctx.spawn(service.outbox.run(), "outbox")
        service.ctx.spawn(service.receipts.run(), "receipts")
        self._consumers.append(loop.create_task(self._consume(node), name=f"consume {node.org}"))
        service.outbox.wake()
        self._bump()

    def pause(self, org: str) -> None:
        """``org``'s consumer takes nothing until :meth:`resume` (its queue fills)."""
        self.paused.add(org)

    def resume(self, org: str) -> None:
        self.paused.discard(org)
        self._bump()

    def redeliver_held(self, org: str) -> None:
        """Give the messages ``org``'s node asked to retry back to its queue (redelivered)."""
        held, self.held[org] = self.held[org], []
        self.queues[org] += [
            _Queued(
                dataclasses.replace(
                    q.delivery, redelivered=True, delivery_count=q.delivery.delivery_count + 1
                ),
                q.expiration,
            )
            for q in held
        ]
        self._bump()

    def route(self, recipient: str, delivery: Delivery, expiration: datetime) -> None:
        _, sender = split_routing_key(delivery.routing_key)
        self.queues[recipient].append(_Queued(delivery, expiration))
        self.published.append(
            Published(sender, recipient, delivery.message_id or "", delivery.content_type)
        )
        self._bump()

    def settled_at(self, org: str) -> list[Decision]:
        """The decisions ``org``'s node returned, in order."""
        return [s.decision for s in self.settled if s.org == org]

    async def _consume(self, node: InProcessNode) -> None:
        org = node.org
        in_flight: set[asyncio.Task[bool]] = set()

        def done(task: asyncio.Task[bool]) -> None:
            in_flight.discard(task)
            self._bump()

        while not self._closing:
            changed = self._changed
            queue = self.queues[org]
            if not queue or org in self.paused or len(in_flight) >= self.prefetch:
                await changed.wait()
                continue
            queued = queue.pop(0)
            if queued.expiration <= self.clock():
                self.dropped.append(queued.delivery)
                self._bump()
                continue
            if self.prefetch == 1:
                if not await self._handle(node, queued):
                    return
                continue
            task = asyncio.get_running_loop().create_task(self._handle(node, queued))
            in_flight.add(task)
            task.add_done_callback(done)
        await asyncio.gather(*in_flight)

    async def _handle(self, node: InProcessNode, queued: _Queued) -> bool:
        """Hand one delivery to ``node`` and settle it; False when the handler raised."""
        org = node.org
        try:
            decision = await node.service.inbound.on_delivery(queued.delivery)
            node.service.inbound.on_settled(queued.delivery, decision)
        except Exception as exc:  # noqa: BLE001 - shown to the test by until(), not lost
            self.errors.append(exc)
            self._bump()
            return False
        if isinstance(decision, Retry):
            self.held[org].append(queued)
        self.settled.append(Settled(org, queued.delivery, decision))
        self._bump()
        return True

    async def close(self) -> None:
        """Stop the consumers once the delivery each has in hand is settled (a handler cancelled
        mid-write is not what a drain does); the nodes' loops stop with ``InProcessNode.close``."""
        self._closing = True
        self._bump()
        consumers, self._consumers = self._consumers, []
        await asyncio.gather(*consumers)
