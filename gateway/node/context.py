"""What the loops of one node share: its configuration, collaborators, clock and wake-ups.

One :class:`NodeContext` per node, built by :class:`gateway.node.service.NodeService`; every
loop (outbound, inbound, inbox, receipts, retention, witnessing, gauges) holds it. The directory
in it is replaced when a newer version is trusted (``NodeService.load_directory``), so loops read
``ctx.directory`` each time instead of keeping their own reference.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit.log import AuditLog
from gateway.core.audit import Record, new_record
from gateway.core.directory import TrustedDirectory
from gateway.core.envelope import EnvelopeLimits
from gateway.core.keys import KeyRing, SigningKey
from gateway.core.outbound import SenderContext
from gateway.core.retention import RetentionPolicy
from gateway.errors import LocalError
from gateway.node.config import NodeConfig
from gateway.node.ports import BrokerPort
from gateway.node.store import Store, StoreFailedClosedError, StoreUnavailableError
from gateway.telemetry import Telemetry
from schemas.catalogue import Catalogue

__all__ = ["Changes", "NodeContext", "NodeKeys", "utc_now"]


log = logging.getLogger("gateway.node")


@dataclass(frozen=True)
class NodeKeys:
    """The node's private keys: message signing, the decryption ring, the audit-log key."""

    signing: SigningKey
    ring: KeyRing
    audit: Ed25519PrivateKey


def utc_now() -> datetime:
    return datetime.now(UTC)


class Changes:
    """Wakes whoever waits for a change, without losing one that happens between looking and
    waiting: take a :meth:`ticket` *before* reading, then wait on it. Every :meth:`changed` sets
    the tickets handed out so far, so a change after the read has set the ticket by the time its
    holder waits (a condition variable would have notified nobody then). After :meth:`close`
    every ticket is set: nobody waits any more."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self._closed = False

    def ticket(self) -> asyncio.Event:
        """Set by the next :meth:`changed` (take it before reading what may change)."""
        return self._event

    def changed(self) -> None:
        """Wake every holder of a ticket taken before now."""
        self._event.set()
        if not self._closed:
            self._event = asyncio.Event()

    def close(self) -> None:
        """Wake every holder, and leave every later ticket set."""
        self._closed = True
        self._event.set()


class NodeContext:
    """The shared state of one organisation's node (module docstring)."""

    def __init__(
        self,
        *,
        config: NodeConfig,
        store: Store,
        audit: AuditLog,
        directory: TrustedDirectory,
        catalogue: Catalogue,
        keys: NodeKeys,
        telemetry: Telemetry,
        broker: BrokerPort,
        clock: Callable[[], datetime] = utc_now,
        rand: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.config = config
        self.org = config.node.org
        self.store = store
        self.audit = audit
        self.directory = directory
        self.catalogue = catalogue
        self.keys = keys
        self.telemetry = telemetry
        self.broker = broker
        self.clock = clock
        self.rand = rand
        lim = config.limits
        self.envelope_limits = EnvelopeLimits(
            max_envelope_bytes=lim.max_envelope_bytes,
            max_iat_age=timedelta(seconds=lim.max_age_seconds),
            max_future_skew=timedelta(seconds=lim.max_clock_skew_seconds),
        )
        member = directory.member(self.org)
        if member is None:
            raise LocalError(f"{self.org} is not a member of directory v{directory.version}")
        self.roles = member.roles
        #: What the node puts into every message it sends (gateway.core.outbound).
        self.sender = SenderContext(
            org=self.org,
            node_id=config.node.node_id,
            roles=tuple(member.roles),
            purpose_defaults=config.purposes,
            default_ttl_seconds=lim.default_ttl_seconds,
            catalogue=catalogue,
        )
        #: Every retention deadline the node writes (gateway.core.retention).
        self.retention = RetentionPolicy.of(
            max_age_seconds=lim.max_age_seconds,
            max_clock_skew_seconds=lim.max_clock_skew_seconds,
            inbox_after_ack_days=config.retention.inbox_after_ack_days,
            outbox_after_final_days=config.retention.outbox_after_final_days,
        )
        #: Events worth counting that have no metric of their own (tests and ops read them).
        self.counters: dict[str, int] = {}
        self.outbox_wake = asyncio.Event()
        self.receipt_wake = asyncio.Event()
        #: The inbox got a message, or the node is stopping (long-polls, event streams).
        self.inbox_changed = Changes()
        self.stopping = asyncio.Event()
        #: Set while this process leads its organisation's processes: it signs checkpoints,
        #: asks for cosignatures and seals receipts. At once on SQLite (one process); on a
        #: shared PostgreSQL store by the leader's lease (``Store.coordinate``, decision 0109).
        self.leading = asyncio.Event()
        if not getattr(store, "shared", False):
            self.leading.set()
        self._tasks: set[asyncio.Task[None]] = set()

    def now(self) -> datetime:
        return self.clock()

    def count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

    def record(self, name: str, status: str = "ok", **fields: Any) -> Record:
        """An audit record at the node's current time (unless the fields give the times).

        Every record carries a trace id and a span id (Logboek Dataverwerkingen): the caller
        passes the message's trace where it knows it; the span is this operation's own, fresh
        unless given; a record with no trace to join starts its own (docs/decisions/0098)."""
        now = self.now()
        fields.setdefault("start_time", now)
        fields.setdefault("end_time", now)
        if not fields.get("trace_id"):
            fields["trace_id"] = self.rand(16).hex()
        if not fields.get("span_id"):
            fields["span_id"] = self.rand(8).hex()
        return new_record(name=name, status=status, **fields)

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        """Run ``coro`` as a task the node waits for (a grace period) when it stops."""
        task: asyncio.Task[None] = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_log_end)

    async def lead(self) -> bool:
        """Wait until this process leads (at once when it does); False when the node stops
        first."""
        if not self.leading.is_set():
            waits = [asyncio.ensure_future(e.wait()) for e in (self.leading, self.stopping)]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()
        return self.leading.is_set() and not self.stopping.is_set()

    def heard(self, what: str) -> None:
        """Another process committed a change (``inbox``, ``receipt``; ``*``: anything)."""
        if what in ("inbox", "*"):
            self.inbox_changed.changed()
        if what in ("receipt", "*"):
            self.receipt_wake.set()

    async def pause(self, seconds: float) -> None:
        """Sleep ``seconds``, or less when the node begins to stop."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), timeout=seconds)

    async def begin_stop(self) -> None:
        """Stop taking new work: loops end, long-polls and event streams return at once."""
        self.stopping.set()
        self.inbox_changed.close()

    async def stop(self, grace: float) -> None:
        """Stop the loops; in-flight tasks get ``grace`` seconds, then are cancelled."""
        await self.begin_stop()
        self.outbox_wake.set()
        self.receipt_wake.set()
        tasks = list(self._tasks)
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)


def _log_end(task: asyncio.Task[None]) -> None:
    """Take the exception a node task ended with (else asyncio logs it, with a traceback, when
    the task is collected): a store failure is one warning line (the node is restarted for it:
    /healthz fails), anything else an error with its traceback."""
    if task.cancelled() or (exc := task.exception()) is None:
        return
    if isinstance(exc, StoreFailedClosedError | StoreUnavailableError):
        log.warning("the %s task stopped: the store is unavailable (%s)", task.get_name(), exc)
    else:
        log.error("the %s task stopped", task.get_name(), exc_info=exc)
