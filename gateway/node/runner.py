"""``zvg node run``: one process with the local API, the outbox publisher and the inbox consumer.

Start-up order: config → catalogue → directory (trusted, not expired) → production checks (no
example keys or directory) → keys → store and audit log (the log must reproduce its last
checkpoint) → HTTP API → broker (connected in the background; ``/readyz`` says when) → loops.
SIGTERM or SIGINT drains: the consumer stops taking deliveries, the API stops accepting, the
loops finish what is in flight (publishes get a grace period to be confirmed), then the store
closes. Nothing is lost: whatever was not published stays in the outbox for the next start.
Before all of that it takes its data directory's lock: one process per data directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from aiohttp import web

from gateway.broker.provision import read_password_file
from gateway.broker.transport import BrokerEndpoint, Consumer, Publisher, connect, tls_context
from gateway.core import jose
from gateway.core.broker_topology import inbox_queue, vhost_name
from gateway.core.directory import TrustedDirectory
from gateway.core.keys import KeyRing
from gateway.errors import GatewayError, LocalError, TransientError
from gateway.keyfiles import load_audit_key, load_decryption_key, load_signing_key, read_passphrase
from gateway.node.api import build_app
from gateway.node.config import NodeConfig, check_files
from gateway.node.context import NodeKeys, utc_now
from gateway.node.datadir import NODE_UMASK, exposure
from gateway.node.listener import ApiSite
from gateway.node.lock import DataDirLock
from gateway.node.ports import BrokerSlot
from gateway.node.service import NodeService, open_service
from gateway.node.store import MarkReady, SqliteStore
from gateway.node.trust import settle_at_start, trusted_at_start
from gateway.telemetry import Telemetry, setup_telemetry
from schemas.catalogue import Catalogue, default_catalogue, load_catalogue

__all__ = ["EXAMPLE_KIDS_FILE", "Node", "run_node"]

log = logging.getLogger("gateway.node")

EXAMPLE_KIDS_FILE = Path(__file__).resolve().with_name("example_kids.json")
#: Seconds between broker connection attempts while the broker is unreachable.
BROKER_RETRY_S = 2.0
#: Seconds in-flight work gets to finish on SIGTERM.
DRAIN_GRACE_S = 10.0
#: Seconds between checks of the directory file for a newer version.
DIRECTORY_POLL_S = 30.0


def _catalogue(config: NodeConfig) -> Catalogue:
    return (
        load_catalogue(config.directory.catalogue)
        if config.directory.catalogue
        else default_catalogue()
    )


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise LocalError(f"{path}: cannot read ({exc.strerror})") from None


def example_kids() -> frozenset[str]:
    """Key ids of keys_example/ (public demo keys). Fails closed: without the list, production
    mode cannot tell example keys from real ones, so it refuses to start."""
    try:
        kids = json.loads(EXAMPLE_KIDS_FILE.read_text(encoding="utf-8"))["kids"]
    except (OSError, ValueError, KeyError, TypeError):
        raise LocalError(
            f"{EXAMPLE_KIDS_FILE} is missing or unreadable; reinstall zv-gateway"
        ) from None
    if not isinstance(kids, list) or not kids:
        raise LocalError(f"{EXAMPLE_KIDS_FILE} lists no key ids; reinstall zv-gateway")
    return frozenset(str(k) for k in kids)


def production_problems(
    config: NodeConfig, directory: TrustedDirectory, keys: NodeKeys
) -> list[str]:
    """Why this node may not run in production mode (empty when it may)."""
    if config.node.mode != "production":
        return []
    problems = [p for p in check_files(config) if "keys_example" in p]
    known = example_kids()
    own = {keys.signing.kid, *keys.ring.kids, jose.thumbprint(keys.audit.public_key())}
    if own & known:
        problems.append(
            "keys: these are example keys from keys_example/; production mode refuses them"
        )
    if {k.kid for k in directory.payload.authority.keys} & known:
        problems.append(
            "directory: signed by the example authority of keys_example/; production refuses it"
        )
    return problems


def load_keys(config: NodeConfig) -> NodeKeys:
    passphrase = (
        read_passphrase(config.keys.passphrase_file) if config.keys.passphrase_file else None
    )
    signing = load_signing_key(config.keys.signing, passphrase)
    ring = KeyRing([load_decryption_key(p, passphrase) for p in config.keys.encryption])
    audit = load_audit_key(config.keys.audit, passphrase)
    return NodeKeys(signing, ring, audit)


def broker_vhost(config: NodeConfig, directory: TrustedDirectory) -> str:
    """The federation's vhost: ``broker.vhost``, else the URL's path, else ``zvg-<federation>``."""
    path = urlsplit(config.broker.url).path
    return config.broker.vhost or (
        unquote(path[1:]) if len(path) > 1 else vhost_name(directory.payload.federation)
    )


def broker_endpoint(config: NodeConfig, directory: TrustedDirectory) -> BrokerEndpoint:
    """Where and as whom to connect, from ``[broker]`` and the directory."""
    url = urlsplit(config.broker.url)
    if url.scheme not in ("amqp", "amqps"):
        raise LocalError(f"broker.url: scheme must be amqp or amqps, not {url.scheme!r}")
    if url.username or url.password:
        raise LocalError("broker.url: put no credentials in the URL; use broker.password_file")
    member = directory.member(config.node.org)
    user = config.broker.user or (member.broker_user if member else None)
    if user is None:
        raise LocalError("broker.user is not set and this org is not in the directory")
    vhost = broker_vhost(config, directory)
    tls = None
    if url.scheme == "amqps":
        if config.broker.ca_file is None:
            raise LocalError("broker.ca_file is needed for amqps://")
        tls = tls_context(
            str(config.broker.ca_file),
            str(config.broker.cert_file) if config.broker.cert_file else None,
            str(config.broker.key_file) if config.broker.key_file else None,
        )
    password = (
        read_password_file(config.broker.password_file) if config.broker.password_file else None
    )
    if password is None and tls is None:
        raise LocalError("broker.password_file is needed (or client-certificate TLS with amqps://)")
    return BrokerEndpoint(
        host=url.hostname or "127.0.0.1",
        port=url.port or (5671 if tls else 5672),
        vhost=vhost,
        user=user,
        password=password,
        tls=tls,
    )


@dataclass
class Node:
    """A running node (for ``zvg node run``, the demo and the end-to-end tests)."""

    config: NodeConfig
    service: NodeService
    store: SqliteStore
    telemetry: Telemetry
    endpoint: BrokerEndpoint
    #: The node's broker port: not connected until :meth:`_keep_connected` attaches the publisher.
    broker: BrokerSlot
    runner: web.AppRunner | None = None
    connection: Any = None
    consumer: Consumer | None = None
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    _broker_task: asyncio.Task[None] | None = None
    _directory_task: asyncio.Task[None] | None = None
    lock: DataDirLock | None = None

    @classmethod
    async def start(cls, config: NodeConfig, *, telemetry: Telemetry | None = None) -> Node:
        """Start a node; first of all take its data directory's lock (:mod:`gateway.node.lock`),
        so a second process on the same directory refuses before it reads or writes anything."""
        for line in exposure(config.node.data_dir):
            log.warning("%s", line)
        lock = DataDirLock.acquire(config.node.data_dir)
        try:
            node = await cls._start(config, telemetry=telemetry)
        except BaseException:
            lock.release()
            raise
        node.lock = lock
        return node

    @classmethod
    async def _start(cls, config: NodeConfig, *, telemetry: Telemetry | None = None) -> Node:
        catalogue = _catalogue(config)
        keys = load_keys(config)
        directory, history = await trusted_at_start(config, catalogue, keys.audit)
        problems = production_problems(config, directory, keys)
        if problems:
            raise LocalError("; ".join(problems))
        if config.node.org not in {m.oin for m in directory.payload.members}:
            raise LocalError(
                f"node.org {config.node.org} is not a member of directory v{directory.version}"
            )
        endpoint = broker_endpoint(config, directory)
        telemetry = telemetry or setup_telemetry(org=config.node.org, node_id=config.node.node_id)
        broker = BrokerSlot()
        service = await open_service(
            config,
            directory=directory,
            catalogue=catalogue,
            keys=keys,
            telemetry=telemetry,
            broker=broker,
        )
        store = service.audit.store  # the SQLite store the node and its audit log share
        try:
            # durable, then used
            await settle_at_start(config, store, service.audit, directory, history)
            await service.outbox.count_backlog()  # before the API accepts: the 429 limit holds
            node = cls(config, service, store, telemetry, endpoint, broker)
            runner = node.runner = web.AppRunner(build_app(service, node.readiness))
            await runner.setup()
            host, _, port = config.api.listen.rpartition(":")
            site = ApiSite(runner, host.strip("[]"), int(port), config.api)
            await site.start()
        except BaseException:
            await store.close()
            raise
        service.start_loops(node.queue_depth)
        node._broker_task = asyncio.create_task(node._keep_connected(), name="broker")
        node._directory_task = asyncio.create_task(
            node._watch_directory(catalogue), name="directory"
        )
        log.info(
            "node %s (%s) listening on %s", config.node.node_id, config.node.org, config.api.listen
        )
        return node

    async def _keep_connected(self) -> None:
        while True:
            try:
                connection = await connect(self.endpoint, name=f"zvg-{self.config.node.node_id}")
                break
            except TransientError as exc:
                log.warning("broker not reachable (%s); retrying", exc)
                await asyncio.sleep(BROKER_RETRY_S)
            except LocalError as exc:
                log.warning("broker refused the connection: %s", exc)
                await asyncio.sleep(BROKER_RETRY_S * 5)
        self.connection = connection
        publisher = Publisher(
            connection,
            org=self.config.node.org,
            broker_user=self.endpoint.user,
            max_in_flight=self.config.broker.publish_window,
        )
        await publisher.start()
        consumer = Consumer(
            connection,
            queue=inbox_queue(self.config.node.org),
            handler=self.service.inbound.on_delivery,
            sender_of=self.service.inbound.sender_of,
            broker_user_of=self.service.inbound.broker_user_of,
            prefetch=self.config.broker.prefetch,
            on_settled=self.service.inbound.on_settled,
            standby_check_s=self.config.broker.standby_check_seconds,
        )
        await consumer.start()
        self.consumer = consumer
        self.broker.attach(publisher)
        self.service.outbox.wake()
        self.connected.set()
        log.info("connected to the broker as %s", self.endpoint.user)

    async def _watch_directory(self, catalogue: Catalogue) -> None:
        """Load a newer directory version when the file changes (the update rules apply)."""
        path = self.config.directory.file
        # By content, not mtime: a file read while being copied is refused, and the rest of the
        # copy may land within the same mtime tick.
        seen = self.service.directory.raw
        while True:
            await asyncio.sleep(DIRECTORY_POLL_S)
            with contextlib.suppress(OSError, GatewayError):
                raw = path.read_bytes()
                if raw != seen:
                    await self.service.load_directory(raw, catalogue)
                    seen = raw  # not when it could not be made durable: tried again

    async def queue_depth(self) -> int:
        """Messages waiting in this org's broker queue (a passive declare on our channel)."""
        consumer = self.consumer
        if consumer is None:
            raise TransientError("not connected")
        return await consumer.message_count()

    async def readiness(self) -> dict[str, Any]:
        now = utc_now()
        state, left = self.service.directory.status(
            now, timedelta(days=self.config.directory.expiry_warning_days)
        )
        store_ok = True
        try:
            await self.store.commit(MarkReady(now))
        except (GatewayError, OSError):
            store_ok = False
        connection = self.connection
        broker_ok = self.connected.is_set() and connection is not None and not connection.is_closed
        return {
            "broker": {"ok": broker_ok},
            "consumer": self._consumer_readiness(),
            "directory": {
                "ok": state != "expired",
                "version": self.service.directory.version,
                "state": state,
                "days_left": left.days,
            },
            "store": {"ok": store_ok},
        }

    def _consumer_readiness(self) -> dict[str, Any]:
        """Whether this process consumes the organisation's inbox. A standby (another process
        of this organisation consumes it) is not ready: an adapter routed here would receive
        nothing, and receipts for what it sends arrive at the other process (decision 0080)."""
        role = self.consumer.role if self.consumer is not None else "stopped"
        check: dict[str, Any] = {"ok": role == "active", "role": role}
        if role == "standby":
            check["detail"] = (
                "another process of this organisation consumes its inbox; this one takes over "
                "when that one is gone"
            )
        return check

    async def stop(self) -> None:
        """Drain and stop (SIGTERM)."""
        for task in (self._broker_task, self._directory_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self.consumer is not None:
            with contextlib.suppress(Exception):
                await self.consumer.close()
        await self.service.begin_stop()  # long-polls and event streams return now
        if self.runner is not None:
            await self.runner.cleanup()
        await self.service.stop(DRAIN_GRACE_S)
        publisher = self.broker.detach()
        if isinstance(publisher, Publisher):
            with contextlib.suppress(Exception):
                await publisher.close()
        if self.connection is not None:
            with contextlib.suppress(Exception):
                await self.connection.close()
        await self.store.close()
        if self.lock is not None:
            self.lock.release()
        self.telemetry.shutdown()


#: GIL switch interval for node processes (seconds). The store's writer thread waits on SQLite
#: and fsync; with Python's default of 5 ms, every time it wants the GIL back the event loop may
#: hold it that long. 0.5 ms keeps the writer and the loop from stalling each other.
SWITCH_INTERVAL_S = 0.0005


async def run_node(
    config: NodeConfig, *, on_ready: Callable[[Node], Awaitable[None]] | None = None
) -> None:
    """Run until SIGTERM/SIGINT, then drain (``zvg node run``)."""
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    os.umask(NODE_UMASK)  # whatever the process creates is private (docs/ops.md, "Files")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):  # before starting: a stop during start drains too
        loop.add_signal_handler(sig, stop.set)
    node = await Node.start(config)
    if on_ready is not None:
        await on_ready(node)
    try:
        await stop.wait()
    finally:
        log.info("draining")
        await node.stop()
        log.info("stopped")
