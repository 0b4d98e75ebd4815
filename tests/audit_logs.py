"""Real audit-log stores for the tamper tests, built in-process without a broker.

A node's store is written by the node's own :class:`~gateway.audit.log.AuditLog` (records,
signed checkpoints), and the partners cosign its checkpoints through the same witnessing code a
running partner uses (:func:`gateway.audit.witnessing.witness`, then
:meth:`AuditLog.add_cosignature`). Tests then rewrite the SQLite file as an attacker would and
run ``zvg audit verify`` on it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from gateway.audit import witnessing
from gateway.audit.log import AUDIT_SCHEMA, AuditLog
from gateway.core import note
from gateway.core.audit import Record, leaf_of, new_record
from gateway.core.directory import TrustedDirectory
from gateway.core.merkle import MerkleTree
from gateway.core.witness import AddCheckpointRequest, Cosigned, LogHead
from gateway.keyfiles import load_audit_key
from gateway.node.config import load_config
from gateway.node.ports import BrokerSlot
from gateway.node.preflight import load_keys
from gateway.node.service import NodeService, open_service
from gateway.node.store import SqliteStore
from gateway.node.trust import load_trusted_directory
from gateway.telemetry import setup_telemetry
from gateway.testing.federation import FederationFiles, create_demo_federation
from gateway.testing.nodes import NodeFiles, write_node_config
from gateway.testing.veenstad import org_by_key
from schemas.catalogue import default_catalogue
from tests import stores

ORGS = ("gemeente", "politie", "ggz")
"""The node whose log is tampered with (the ZVH, run by the gemeente) and its two partners."""

CASE_REF = "Veenstad-2026-031"
SUBJECT = "sub-c1Ra8Hn4Pe2Ydk"


async def open_log(
    store: SqliteStore,
    *,
    key: Ed25519PrivateKey | None = None,
    retention_s: float = 1e6,
    origin: str = "o.example/x/audit-log",
) -> AuditLog:
    """An audit log on ``store`` (made with ``schemas=(AUDIT_SCHEMA,)``), salts from the OS."""
    return await AuditLog.open(
        store, origin=origin, key=key, rand=os.urandom, retention_s=retention_s
    )


def make_federation(root: Path) -> FederationFiles:
    """A demo federation of :data:`ORGS` (the directory's default witness threshold: both
    partners)."""
    return create_demo_federation(
        root,
        now=datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1),
        lifetime=timedelta(days=30),
        catalogue=default_catalogue(),
        rand=os.urandom,
        orgs=ORGS,
    )


def record(index: int, now: datetime) -> Record:
    """A ``message.receive`` record with personal fields (case reference, a pseudonym)."""
    return new_record(
        name="message.receive",
        status="ok",
        start_time=now,
        end_time=now,
        message_id=f"0190a0b0-0000-7000-8000-{index:012d}",
        message_type="case.referral",
        purpose="ZVH.AANMELDING",
        sender="00000001999000002000",
        recipients=("00000001999000001000",),
        case_ref=CASE_REF,
        data_subjects=(SUBJECT,),
    )


@dataclass
class AuditNode:
    """One node's files and the keys a test needs to play the partners or the attacker."""

    node: NodeFiles
    directory: TrustedDirectory
    partner_keys: dict[str, Ed25519PrivateKey]
    heads: dict[str, LogHead] = field(default_factory=dict)

    @property
    def config(self) -> Path:
        return self.node.config

    @property
    def db_path(self) -> Path:
        return self.node.data_dir / "node.db"

    @property
    def org(self) -> str:
        return self.node.org.oin

    @property
    def origin(self) -> str:
        return self.directory.audit_origin(self.org)

    def audit_key(self) -> Ed25519PrivateKey:
        return load_audit_key(load_config(self.config).keys.audit)

    async def open_log(self) -> tuple[SqliteStore, AuditLog]:
        """The node's store and log, as the node opens them."""
        config = load_config(self.config)
        store = SqliteStore(config.store_path, schemas=(AUDIT_SCHEMA,))
        log = await AuditLog.open(
            store,
            origin=self.origin,
            key=self.audit_key(),
            rand=os.urandom,
            retention_s=config.retention.audit_personal_days * 86400,
        )
        return store, log

    async def service(self, reader: InMemoryMetricReader | None = None) -> NodeService:
        """The node's service on its store, without a broker (nothing is published); close
        ``service.store`` when done."""
        config = load_config(self.config)
        telemetry = setup_telemetry(
            org=self.org,
            node_id=config.node.node_id,
            env={},
            metric_readers=[reader] if reader is not None else [],
        )
        return await open_service(
            config,
            directory=self.directory,
            catalogue=default_catalogue(),
            keys=load_keys(config),
            telemetry=telemetry,
            broker=BrokerSlot(),
        )

    def cosigned_head(self, partner: str) -> bytes:
        """The checkpoint ``partner`` last cosigned, with its cosignature (what it holds)."""
        head = self.heads[partner]
        line = note.cosign_checkpoint(
            note.parse_note(head.checkpoint).text,
            name=self.directory.witness_name(org_by_key(partner).oin),
            key=self.partner_keys[partner],
            timestamp=head.cosigned_at,
        )
        return note.add_signatures(head.checkpoint, [line])

    async def cosign(self, log: AuditLog, partner: str, now: datetime) -> int:
        """``partner`` cosigns the log's latest checkpoint as a running partner would (from the
        size it cosigned before, with a consistency proof). Returns the size cosigned."""
        latest = log.latest
        assert latest is not None
        oin = org_by_key(partner).oin
        head = self.heads.get(partner)
        old = head.size if head else 0
        request = AddCheckpointRequest(
            old, tuple(log.consistency_proof(old, latest.size) if old else ()), latest.note
        )
        result = witnessing.witness(
            request,
            peer=self.org,
            directory=self.directory,
            head=head,
            key=self.partner_keys[partner],
            our_org=oin,
            now=now,
        )
        assert isinstance(result, Cosigned), result
        new_head = result.state.head(self.origin)
        assert new_head is not None
        self.heads[partner] = new_head
        (cosigner,) = witnessing.cosigner_verifiers(self.directory, [oin], now)
        own = note.ed25519_verifier(self.origin, self.audit_key().public_key())
        assert await log.add_cosignature(
            oin, latest.size, result.cosignature_line, cosigner, own, now
        )
        return latest.size

    async def grow(
        self,
        records: int,
        *,
        cosigners: Sequence[str] = ("politie", "ggz"),
        now: datetime | None = None,
    ) -> int:
        """Append ``records`` records, sign a checkpoint and have ``cosigners`` cosign it.
        Returns the log's size."""
        now = now or datetime.now(UTC)
        store, log = await self.open_log()
        try:
            start = log.size
            await store.commit(log.append([record(start + i, now) for i in range(records)], now))
            return await self.witness(log, cosigners)
        finally:
            await store.close()

    async def witness(self, log: AuditLog, cosigners: Sequence[str] = ("politie", "ggz")) -> int:
        """Sign a checkpoint of the whole log and have ``cosigners`` cosign it (now)."""
        await log.checkpoint()
        for partner in cosigners:
            await self.cosign(log, partner, datetime.now(UTC))
        return log.size


def make_node(tmp: Path, fed: FederationFiles, key: str = "gemeente") -> AuditNode:
    """``key``'s node files in ``tmp`` (no records yet) and its partners' audit keys."""
    catalogue = default_catalogue()
    org = org_by_key(key)
    node = write_node_config(
        tmp / key / "node.toml",
        org=org,
        keys_dir=fed.keys_dir(key),
        directory=fed.directory,
        data_dir=tmp / key / "data",
        broker_url="amqp://127.0.0.1:5672/zvg-unused",
        password_file=None,
        listen="127.0.0.1:8443",
        token=f"token-{key}-0123456789abcdef0123456789",
        catalogue=catalogue,
    )
    directory = load_trusted_directory(load_config(node.config), catalogue)
    partners = {
        k: load_audit_key(fed.keys_dir(k) / f"{org_by_key(k).oin}.audit.key.pem")
        for k in ORGS
        if k != key
    }
    return AuditNode(node, directory, partners)


async def witnessed_node(
    tmp: Path, fed: FederationFiles, sizes: Sequence[int] = (4, 8, 12)
) -> AuditNode:
    """A node whose log grew to each of ``sizes`` in turn, every checkpoint cosigned by both
    partners: a healthy, fully witnessed log of ``sizes[-1]`` records."""
    node = make_node(tmp, fed)
    size = 0
    for target in sizes:
        size = await node.grow(target - size)
    return node


def alarms(reader: InMemoryMetricReader) -> dict[tuple[str, str], int]:
    """The metric ``zvg.audit.alarm`` as {(kind, partner): count}, the series a running node
    seeds at 0 left out (docs/decisions/0087-prometheus-metrics-conventions.md)."""
    data = reader.get_metrics_data()
    out: dict[tuple[str, str], int] = {}
    for rm in data.resource_metrics if data else ():
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name == "zvg.audit.alarm":
                    for point in metric.data.data_points:
                        attrs = dict(point.attributes or {})
                        value = getattr(point, "value", 0)
                        if value:
                            out[(str(attrs["kind"]), str(attrs["partner"]))] = int(value)
    return out


# --------------------------------------------------------------------- what an attacker does


def fork_and_resign(node: AuditNode, index: int = 6) -> None:
    """Record ``index`` rewritten, the tree rebuilt and every checkpoint re-signed with the
    node's own audit key (its cosignatures dropped: nobody else can make them)."""
    key = node.audit_key()
    with stores.connect(node.db_path) as db:
        view_text = db.execute("SELECT view FROM audit_records WHERE idx = ?", (index,)).fetchone()
        view = json.loads(view_text[0])
        view["status"] = "rejected"
        db.execute(
            "UPDATE audit_records SET view = ?, leaf = ? WHERE idx = ?",
            (json.dumps(view, separators=(",", ":")), leaf_of(view), index),
        )
        tree = MerkleTree(
            bytes(r[0]) for r in db.execute("SELECT leaf FROM audit_records ORDER BY idx")
        )
        for (size,) in db.execute("SELECT size FROM audit_checkpoints").fetchall():
            root = tree.root(size)
            signed = note.sign_checkpoint(note.Checkpoint(node.origin, size, root), key=key)
            db.execute(
                "UPDATE audit_checkpoints SET root = ?, note = ? WHERE size = ?",
                (root, signed, size),
            )


def truncate(node: AuditNode, size: int) -> None:
    """The records from ``size`` on deleted, with the checkpoints above them."""
    with stores.connect(node.db_path) as db:
        db.execute("DELETE FROM audit_records WHERE idx >= ?", (size,))
        db.execute("DELETE FROM audit_checkpoints WHERE size > ?", (size,))
