"""``zvg node run``: one process with the local API, the outbox publisher and the inbox consumer.

Start-up order: config → the checks of ``zvg node check-config`` (:mod:`gateway.node.preflight`:
files, catalogue, keys, directory (trusted, not expired), production checks, this node in the
directory, purposes, broker settings) → store and audit log (the log must reproduce its last
checkpoint) → HTTP API → the officer console when enabled (its own listener) → broker
(connected in the background; ``/readyz`` says when) → loops.
SIGTERM or SIGINT drains: the consumer stops taking deliveries, the API stops accepting, the
loops finish what is in flight (publishes get a grace period to be confirmed), then the store
closes. Nothing is lost: whatever was not published stays in the outbox for the next start.
Before all of that it takes its data directory's lock: one process per data directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from aiohttp import web

from gateway.broker.transport import BrokerEndpoint, Consumer, Publisher, connect
from gateway.core.broker_topology import inbox_queue
from gateway.errors import GatewayError, LocalError, TransientError
from gateway.node.api import build_app
from gateway.node.config import NodeConfig
from gateway.node.context import utc_now
from gateway.node.datadir import NODE_UMASK, exposure
from gateway.node.heap import YOUNG_THRESHOLD, freeze_start_up_heap
from gateway.node.listener import ApiSite
from gateway.node.lock import DataDirLock
from gateway.node.ports import BrokerSlot
from gateway.node.preflight import PreflightError, preflight
from gateway.node.service import NodeService, open_service
from gateway.node.store import MarkReady, SqliteStore
from gateway.node.trust import record_rollback, settle_at_start
from gateway.telemetry import Telemetry, setup_telemetry
from schemas.catalogue import Catalogue

__all__ = ["Node", "run_node"]

log = logging.getLogger("gateway.node")

#: Seconds between broker connection attempts while the broker is unreachable.
BROKER_RETRY_S = 2.0
#: Seconds in-flight work gets to finish on SIGTERM.
DRAIN_GRACE_S = 10.0
#: Seconds between checks of the directory file for a newer version.
DIRECTORY_POLL_S = 30.0


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
    #: The officer console's listener, when ``[console]`` enables it (gateway.console).
    console: web.AppRunner | None = None
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
        found = preflight(config)  # the checks of `zvg node check-config` (decision 0084)
        if found.rollback is not None:  # recorded even when something else stops it too
            refused = found.rollback
            await record_rollback(config, refused.catalogue, refused.audit_key, refused.refused)
            found.raise_problems()  # the line of check-config, which warns of the rollback
            raise PreflightError([f"{refused.refused.detail}; the node does not start"])
        checked = found.passed()
        catalogue, keys, directory = checked.catalogue, checked.keys, checked.directory
        history, endpoint = checked.history, checked.endpoint
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
        api: web.AppRunner | None = None
        try:
            # durable, then used
            await settle_at_start(config, store, service.audit, directory, history)
            await service.outbox.count_backlog()  # before the API accepts: the 429 limit holds
            node = cls(config, service, store, telemetry, endpoint, broker)
            runner = api = node.runner = web.AppRunner(build_app(service, node.readiness))
            await runner.setup()
            host, _, port = config.api.listen.rpartition(":")
            site = ApiSite(runner, host.strip("[]"), int(port), config.api)
            await site.start()
            if config.console.enabled:  # its packages (the console extra) only when enabled
                from gateway.console.app import start_console

                node.console = await start_console(service)
        except BaseException:
            if api is not None:  # the console's listener did not start: nor does the API's
                await api.cleanup()
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
        nothing, and receipts for what it sends arrive at the other process (decision 0080) —
        unless the processes share a PostgreSQL store (decision 0109)."""
        role = self.consumer.role if self.consumer is not None else "stopped"
        # On a store the organisation's processes share (decision 0109) a standby serves the
        # same inbox and receipts as the consuming process: an adapter may be routed to it.
        shared = role == "standby" and self.store.shared
        check: dict[str, Any] = {"ok": role == "active" or shared, "role": role}
        if shared:
            check["detail"] = (
                "another process of this organisation consumes its inbox into the shared store;"
                " this one serves the same inbox and takes over when that one is gone"
            )
        elif role == "standby":
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
        if self.console is not None:
            await self.console.cleanup()
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
    frozen = freeze_start_up_heap()
    log.info(
        "start-up heap frozen (%d objects); young collections every %d", frozen, YOUNG_THRESHOLD
    )
    if on_ready is not None:
        await on_ready(node)
    try:
        await stop.wait()
    finally:
        log.info("draining")
        await node.stop()
        log.info("stopped")
