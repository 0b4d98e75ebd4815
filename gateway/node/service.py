"""One organisation's node, composed of thin loops around the pure core.

The core decides (contract, policy, envelope, Merkle log); the loops move bytes and remember
outcomes in the store, always writing the audit records in the same transaction as the state
they describe (docs/architecture.md §9.6):

- :class:`~gateway.node.outbound.Outbound` and :class:`~gateway.node.outbox.Outbox`: the
  API's ``send`` and the outbox publisher;
- :class:`~gateway.node.inbound.Inbound`: the consumer's ``on_delivery`` into the inbox;
- :class:`~gateway.node.inbox.Inbox`: what adapters read, ack and reject;
- :class:`~gateway.node.receipts.ReceiptSealer` and
  :class:`~gateway.node.receipts_in.IncomingReceipts`: receipts out and in;
- :class:`~gateway.node.retention.Retention`; :class:`~gateway.audit.witness_loop.Witnessing`;
  the gauges (:func:`~gateway.node.gauges.run_gauges`).

:class:`NodeService` builds them from a config, the opened store and audit log, the trusted
directory, the keys and a broker port (:mod:`gateway.node.ports`), and starts and stops them.
The runner (``gateway.node.runner``), ``build_app`` and the tests use it as the one entry point.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from datetime import datetime

from gateway.audit.log import AuditLog
from gateway.audit.witness_loop import Witnessing
from gateway.core.directory import TrustedDirectory
from gateway.errors import LocalError, RemoteError, TransientError
from gateway.node.config import NodeConfig
from gateway.node.contactpunt import Contactpunt
from gateway.node.context import NodeContext, NodeKeys, utc_now
from gateway.node.gauges import run_gauges
from gateway.node.inbound import Inbound
from gateway.node.inbox import Inbox
from gateway.node.ldv_otlp import LdvOtlp
from gateway.node.outbound import Outbound
from gateway.node.outbox import Outbox
from gateway.node.pg_store import open_store
from gateway.node.ports import BrokerPort
from gateway.node.receipts import ReceiptSealer
from gateway.node.receipts_in import IncomingReceipts
from gateway.node.refusals import Refusals
from gateway.node.retention import Retention
from gateway.node.rights import RightsDesk
from gateway.node.rights_import import import_rights_files
from gateway.node.trust import change_record, make_durable
from gateway.telemetry import Telemetry
from schemas.catalogue import Catalogue

__all__ = ["NodeKeys", "NodeService", "open_service", "utc_now"]

log = logging.getLogger("gateway.node")


class NodeService:
    """One organisation's node: its loops (module docstring), built but not started."""

    def __init__(self, ctx: NodeContext) -> None:
        self.ctx = ctx
        self.config = ctx.config
        self.org = ctx.org
        self.roles = ctx.roles
        self.store = store = ctx.store
        self.audit = audit = ctx.audit
        self.telemetry = telemetry = ctx.telemetry
        self.counters = ctx.counters
        #: Dead-lettered envelopes, summarised per sender per interval (gateway.node.refusals).
        self.refusals = Refusals(
            directory=lambda: ctx.directory,
            telemetry=telemetry,
            write=lambda records, now: store.commit(audit.append(records, now)),
            clock=ctx.now,
        )
        self.outbox = Outbox(ctx)
        self.outbound = Outbound(ctx, self.outbox)
        self.inbox = Inbox(ctx)
        self.receipts = ReceiptSealer(ctx, self.outbox)
        self.witnessing = Witnessing(ctx)
        #: Inzageverzoeken: answered, deferred and released, started and collected.
        self.contactpunt = Contactpunt(ctx, self.outbound)
        self.rights = RightsDesk(ctx, self.outbound, self.inbox, self.contactpunt)
        self.inbound = Inbound(
            ctx,
            receipts=IncomingReceipts(ctx),
            witness=self.witnessing.on_delivery,
            refusals=self.refusals,
            rights=self.rights.on_message,
        )
        self.retention = Retention(ctx)
        #: The audit records as OTLP spans to the organisation's Logboek, when configured.
        self.ldv_otlp = LdvOtlp(ctx) if ctx.config.audit.ldv_otlp.endpoint else None

    @property
    def directory(self) -> TrustedDirectory:
        """The directory version the node trusts now."""
        return self.ctx.directory

    @property
    def clock(self) -> Callable[[], datetime]:
        return self.ctx.clock

    @clock.setter
    def clock(self, clock: Callable[[], datetime]) -> None:
        self.ctx.clock = clock

    @property
    def stopping(self) -> bool:
        return self.ctx.stopping.is_set()

    async def load_directory(self, raw: bytes, catalogue: Catalogue) -> bool:
        """Trust a newer directory version (update rules of gateway.core.directory): made durable
        (file, store copy, ``directory.change`` record) before it is used. Returns False (and logs
        why) when the file does not qualify; raises when it could not be made durable (the node
        keeps the version it had)."""
        ctx = self.ctx
        if raw == ctx.directory.raw:
            return False
        now = ctx.now()
        try:
            new = ctx.directory.update(raw, now=now, catalogue=catalogue)
        except (RemoteError, LocalError) as exc:
            log.warning("directory update refused: %s", exc)
            return False
        record = change_record(new, ctx.directory.version, now)
        try:  # durable before used: a restart must never fall back behind it
            await make_durable(self.config, self.store, self.audit, new, record, now)
        except (LocalError, TransientError) as exc:
            log.error("directory version %d not trusted yet: %s", new.version, exc)  # noqa: TRY400 - one line, the reason is ours
            raise
        ctx.directory = new
        log.info("trusting directory version %d", new.version)
        return True

    def start_loops(self, queue_depth: Callable[[], Awaitable[int]] | None = None) -> None:
        """Start the coordination with other processes on the same store (decision 0109), the
        outbox, receipt, retention, rights (inzageverzoeken left unhandled in the inbox, decision
        0116), witnessing, refusal and gauge loops, and the LDV OTLP sender when configured."""
        ctx = self.ctx
        ctx.spawn(coordinate(ctx), "coordination")
        ctx.spawn(self.outbox.run(), "outbox")
        ctx.spawn(self.receipts.run(), "receipts")
        ctx.spawn(self.retention.run(), "retention")
        ctx.spawn(self.rights.run(), "rights")
        ctx.spawn(self.witnessing.run(), "checkpoints")
        ctx.spawn(
            self.refusals.run(ctx.config.audit.refusal_interval_seconds, ctx.stopping), "refusals"
        )
        ctx.spawn(run_gauges(ctx, queue_depth), "gauges")
        if self.ldv_otlp is not None:
            self.ldv_otlp.start()

    async def begin_stop(self) -> None:
        """Stop taking new work: loops end, long-polls and event streams return at once."""
        await self.ctx.begin_stop()

    async def stop(self, grace: float = 10.0) -> None:
        """Stop the loops; in-flight publishes get ``grace`` seconds to be confirmed."""
        await self.ctx.stop(grace)
        if self.ldv_otlp is not None:
            await asyncio.to_thread(self.ldv_otlp.close, grace)


async def open_service(
    config: NodeConfig,
    *,
    directory: TrustedDirectory,
    catalogue: Catalogue,
    keys: NodeKeys,
    telemetry: Telemetry,
    broker: BrokerPort,
    clock: Callable[[], datetime] = utc_now,
    rand: Callable[[int], bytes] = os.urandom,
) -> NodeService:
    """A node on its store: opens the store (``config.store_path``) and the audit log, and builds
    the loops (not started). The caller closes ``service.store`` when done."""
    store = open_store(config)
    try:
        audit = await AuditLog.open(
            store,
            origin=directory.audit_origin(config.node.org),
            key=keys.audit,
            rand=rand,
            retention_s=config.retention.audit_personal_days * 86400,
        )
        await import_rights_files(config.node.data_dir, store)  # decision 0116
        return NodeService(
            NodeContext(
                config=config,
                store=store,
                audit=audit,
                directory=directory,
                catalogue=catalogue,
                keys=keys,
                telemetry=telemetry,
                broker=broker,
                clock=clock,
                rand=rand,
            )
        )
    except BaseException:
        await store.close()
        raise


async def coordinate(ctx: NodeContext) -> None:
    """Lead, and hear the other processes, until the node stops (decision 0109). On a store
    no other process writes (SQLite) this process leads at once; on a shared PostgreSQL store
    by the leader's lease, and commits of the others wake this one's long-polls and loops."""
    url = getattr(ctx.store, "url", None)
    if not getattr(ctx.store, "shared", False) or not isinstance(url, str):
        ctx.leading.set()
        return
    from gateway.node.store.pg_lead import coordinate as pg_coordinate  # the postgres extra

    await pg_coordinate(url, ctx.leading, ctx.heard, ctx.stopping)
