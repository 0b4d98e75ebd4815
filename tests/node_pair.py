"""Two nodes in one process with no broker and no HTTP: a sender and a recipient service, each
with its own temporary store and audit log, and envelopes carried between them by hand.

What crosses between the two is exactly what a broker would carry — sealed envelope bytes with
the sender's broker user as AMQP ``user_id`` — handed to the receiving service's
``on_delivery``. Tests use it to play a partner that signs statements it should not (its own
keys, its own machinery), without standing up a federation.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from gateway.audit.log import AUDIT_SCHEMA, AuditLog
from gateway.broker.transport import Delivery
from gateway.core.broker_topology import routing_key
from gateway.core.decisions import Decision
from gateway.node.config import NodeConfig, load_config
from gateway.node.runner import load_keys
from gateway.node.service import NodeService
from gateway.node.store import PendingReceipt, SqliteStore
from gateway.node.trust import load_trusted_directory
from gateway.telemetry import Telemetry, setup_telemetry
from gateway.testing.federation import FederationFiles, create_demo_federation
from gateway.testing.nodes import write_node_config
from gateway.testing.veenstad import org_by_key
from schemas.catalogue import default_catalogue

__all__ = ["InProcessNode", "make_federation", "open_node"]

ROOT = Path(__file__).resolve().parents[1]


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
    carried: set[tuple[str, str]] = field(default_factory=set)

    @property
    def org(self) -> str:
        return self.service.org

    @property
    def broker_user(self) -> str:
        user = self.service.broker_user_of(self.org)
        assert user is not None
        return user

    async def send_example(self, name: str = "case.referral") -> str:
        """Send ``tests/examples/<name>.json`` as an adapter would; returns the message id."""
        claims = json.loads((ROOT / "tests" / "examples" / f"{name}.json").read_text("utf-8"))
        fills = ("spec", "message_id", "created_at", "expires_at", "sender", "trace", "log_anchor")
        request = {k: v for k, v in claims.items() if k not in fills}
        request["sender_role"] = claims["sender"]["role"]
        message_id, _ = await self.service.send(json.dumps(request).encode(), client="test")
        return message_id

    async def pending_receipts(self) -> list[PendingReceipt]:
        return await self.store.take_pending_receipts(1000)

    async def seal_receipts(self, pending: list[PendingReceipt] | None = None) -> None:
        """Seal receipts now (what the receipt loop does), the pending ones or those given."""
        batch = await self.pending_receipts() if pending is None else pending
        if batch:
            await self.service._seal_receipts(batch)

    async def carry_to(self, other: InProcessNode) -> list[Decision]:
        """Hand every envelope this node has not yet carried to ``other`` to ``other``'s inbound
        pipeline, as the broker would (user_id = our broker user); the broker's confirm is
        recorded as a publish. Returns ``other``'s decisions."""
        decisions = []
        for p in await self.store.pending_publishes(10_000):
            if p.org != other.org or (p.message_id, p.org) in self.carried:
                continue
            self.carried.add((p.message_id, p.org))
            decisions.append(await other.service.on_delivery(self.delivery(p.envelope, other)))
            await self.store.set_status(p.message_id, p.org, "sent", None, datetime.now(UTC))
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
        await self.store.close()
        self.telemetry.shutdown()


async def open_node(fed: FederationFiles, key: str, folder: Path, **settings: Any) -> InProcessNode:
    """The service of demo organisation ``key`` on a fresh store in ``folder`` (no loops run).

    ``settings`` are appended to its ``node.toml`` as ``section.name = value`` lines."""
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
        directory=fed.directory,
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
    config = load_config(files.config)
    catalogue = default_catalogue()
    directory = load_trusted_directory(config, catalogue, remember=True)
    node_keys = load_keys(config)
    reader = InMemoryMetricReader()
    telemetry = setup_telemetry(
        org=config.node.org, node_id=config.node.node_id, env={}, metric_readers=[reader]
    )
    store = SqliteStore(config.store_path, schemas=(AUDIT_SCHEMA,))
    audit = await AuditLog.open(
        store,
        origin=directory.audit_origin(config.node.org),
        key=node_keys.audit,
        rand=os.urandom,
        retention_s=config.retention.audit_personal_days * 86400,
    )
    service = NodeService(
        config=config,
        store=store,
        audit=audit,
        directory=directory,
        catalogue=catalogue,
        keys=node_keys,
        telemetry=telemetry,
    )
    return InProcessNode(key, config, service, store, telemetry, reader)
