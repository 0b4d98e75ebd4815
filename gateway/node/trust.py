"""Which directory a node trusts, across restarts (docs/decisions/0020-directory-trust.md,
docs/decisions/0022-directory-trust-survives-restarts.md).

A node keeps the directory version it trusts in three places, all written **before** it uses a
new version: ``<data_dir>/trusted-directory.json`` (written to a temporary file, fsynced,
renamed, folder fsynced), a copy in its store (``meta``) and a ``directory.change`` record in its
audit log (those two in one transaction). On start ``directory.file`` must be the newest of the
remembered copies or reachable from it by the update rules (higher version, threshold of the
remembered authority and of its own), and never older than the highest version any of the three
records: deleting the file does not reopen a rollback, and neither does deleting the store's
copy while the audit log holds the change. A refused rollback is recorded in the audit log
(``directory.change``, status ``rejected``) and stops the node with one line.

Without a remembered copy, ``directory.trust_anchor`` (if set) is the starting point, from which
``file`` must be reachable, else ``directory.file`` is trusted on first use (ops deliver it
through a trusted channel); the audit log's highest version still applies, so only a node with an
empty store falls back to the pin or to first use alone.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit.log import AuditLog, highest_directory_version
from gateway.core import note
from gateway.core.audit import Record, new_record
from gateway.core.directory import TrustedDirectory, parse_signed
from gateway.errors import LocalError, RemoteError
from gateway.node.config import NodeConfig
from gateway.node.datadir import private_dir, write_private
from gateway.node.store import Command, KeepDirectory, Store
from gateway.node.store.writes import stored_directory
from schemas.catalogue import Catalogue

__all__ = [
    "TRUSTED_FILE",
    "RollbackRefused",
    "TrustHistory",
    "change_record",
    "directory_for_reading",
    "load_trusted_directory",
    "make_durable",
    "read_history",
    "record_rollback",
    "remember_directory",
    "settle_at_start",
    "stored_history",
]

TRUSTED_FILE = "trusted-directory.json"


@dataclass(frozen=True)
class TrustHistory:
    """What the node's store says it trusted before (``directory.file`` plays no part)."""

    highest: int = 0
    """The highest version ever trusted: the store's copy or the audit log, 0 for none."""
    stored: bytes | None = None
    """The store's copy of the version it trusts."""


class RollbackRefused(RemoteError):  # noqa: N818 - a refusal, named for what was refused
    """``directory.file`` is older than a version the node already trusts."""

    def __init__(self, file: Path, attempted: int, trusted: int, digest: str) -> None:
        super().__init__(
            "replayed",
            f"{file} is directory version {attempted}, older than version {trusted} that this "
            f"node already trusted: rollback refused (install version {trusted} or newer)",
        )
        self.attempted = attempted
        self.trusted = trusted
        self.digest = digest


def read_history(db: sqlite3.Connection) -> TrustHistory:
    """The node's history from its store (a store job, or a read-only connection)."""
    stored = stored_directory(db)
    return TrustHistory(highest_directory_version(db), stored)


def stored_history(config: NodeConfig) -> TrustHistory:
    """:func:`read_history` for a tool that does not run the node: the store read-only, and no
    history when there is no store yet. A PostgreSQL store (``store.url``) must be at the schema
    version this code needs (:func:`gateway.node.pg_store.pg_history`)."""
    if config.store.url is not None:
        from gateway.node.pg_store import pg_history

        return pg_history(config.store.url)
    if not config.store_path.exists():
        return TrustHistory()
    try:
        db = sqlite3.connect(f"file:{config.store_path}?mode=ro", uri=True)
        try:
            return read_history(db)
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise LocalError(f"{config.store_path}: cannot read the store ({exc})") from None


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise LocalError(f"{path}: cannot read ({exc.strerror})") from None


def _remembered(
    config: NodeConfig, catalogue: Catalogue, history: TrustHistory, now: datetime
) -> TrustedDirectory | None:
    """The newest version the node remembers (its file or its store's copy), if any."""
    copies = []
    path = config.node.data_dir / TRUSTED_FILE
    if path.exists():
        copies.append(_read(path))
    if history.stored is not None:
        copies.append(history.stored)
    known = [
        TrustedDirectory.first(raw, now=now, catalogue=catalogue, allow_expired=True)
        for raw in copies
    ]
    return max(known, key=lambda d: d.version, default=None)


def load_trusted_directory(
    config: NodeConfig,
    catalogue: Catalogue,
    *,
    history: TrustHistory | None = None,
    remember: bool = False,
) -> TrustedDirectory:
    """The directory to run with (module docstring); ``history`` is the store's (read with
    :func:`stored_history` when not given). With ``remember``, the result becomes the remembered
    version. Raises :class:`RollbackRefused`, ``RemoteError`` (signatures, expiry, replay) or
    ``LocalError``."""
    if history is None:
        history = stored_history(config)
    now = datetime.now(UTC)
    raw = _read(config.directory.file)
    base = _remembered(config, catalogue, history, now)
    if base is None and config.directory.trust_anchor is not None:
        base = TrustedDirectory.first(
            _read(config.directory.trust_anchor), now=now, catalogue=catalogue
        )
    floor = max(history.highest, base.version if base is not None else 0)
    attempted = parse_signed(raw, catalogue=catalogue)
    if attempted.version < floor:
        raise RollbackRefused(config.directory.file, attempted.version, floor, attempted.digest())
    if base is None:
        trusted = TrustedDirectory.first(raw, now=now, catalogue=catalogue)
    elif base.raw == raw:
        trusted = base.require_not_expired(now)
    else:
        trusted = base.update(raw, now=now, catalogue=catalogue)
    if remember:
        remember_directory(config, trusted)
    return trusted


def directory_for_reading(config: NodeConfig, catalogue: Catalogue) -> TrustedDirectory:
    """The directory for tools that only read the node's state (``zvg audit``): the one the node
    would start on, or — when it refuses a rollback — the newest version it trusted, so that
    officers can still read the log that records the refusal."""
    history = stored_history(config)
    try:
        return load_trusted_directory(config, catalogue, history=history)
    except RollbackRefused:
        newest = _remembered(config, catalogue, history, datetime.now(UTC))
        if newest is None:
            raise
        return newest


def remember_directory(config: NodeConfig, trusted: TrustedDirectory) -> None:
    """Write ``trusted`` as the remembered version, durably and 0600: after a crash the file
    holds the old or the new bytes, and the new ones once this returns
    (:func:`gateway.node.datadir.write_private`)."""
    private_dir(config.node.data_dir)
    write_private(config.node.data_dir / TRUSTED_FILE, trusted.raw)


def change_record(trusted: TrustedDirectory, from_version: int, now: datetime) -> Record:
    """The ``directory.change`` audit record of starting to trust ``trusted``."""
    return new_record(
        name="directory.change",
        status="ok",
        start_time=now,
        end_time=now,
        policy_version=trusted.version,
        digest=trusted.signed.digest(),  # an opaque field: hex digits are not searched for BSNs
        detail={"from_version": from_version},
    )


async def make_durable(
    config: NodeConfig,
    store: Store,
    audit: AuditLog,
    trusted: TrustedDirectory,
    record: Record | None,
    now: datetime,
) -> None:
    """Remember ``trusted`` everywhere before the caller uses it: the file (fsynced with its
    folder), then the store's copy and ``record`` in one transaction. Raises ``LocalError`` or
    ``TransientError`` when it cannot; the caller then keeps the version it had."""
    try:
        await asyncio.to_thread(remember_directory, config, trusted)
    except OSError as exc:
        raise LocalError(
            f"cannot write directory version {trusted.version} to "
            f"{config.node.data_dir / TRUSTED_FILE} ({exc.strerror}); not using it yet"
        ) from None
    commands: list[Command] = [KeepDirectory(trusted.raw)]
    if record is not None:
        commands.append(audit.append([record], now))
    await store.commit(*commands)


async def settle_at_start(
    config: NodeConfig,
    store: Store,
    audit: AuditLog,
    trusted: TrustedDirectory,
    history: TrustHistory,
) -> None:
    """Make the version the node starts on durable before it is used, recording a
    ``directory.change`` when it is newer than any version the store knew (or the first)."""
    now = datetime.now(UTC)
    record = (
        change_record(trusted, history.highest, now) if trusted.version > history.highest else None
    )
    path = config.node.data_dir / TRUSTED_FILE
    in_file = path.read_bytes() if path.exists() else None
    if record is not None or history.stored != trusted.raw or in_file != trusted.raw:
        await make_durable(config, store, audit, trusted, record, now)


async def record_rollback(
    config: NodeConfig,
    catalogue: Catalogue,
    audit_key: Ed25519PrivateKey,
    refused: RollbackRefused,
) -> None:
    """Append the refused version to the audit log (the node's next checkpoint covers it);
    ``zvg node run`` then refuses to start (:mod:`gateway.node.preflight`)."""
    federation = parse_signed(_read(config.directory.file), catalogue=catalogue).payload.federation
    from gateway.node.pg_store import open_store

    now = datetime.now(UTC)
    store = open_store(config)
    try:
        audit = await AuditLog.open(
            store,
            origin=note.audit_log_origin(f"{federation}.zvg", config.node.org),
            key=audit_key,
            rand=os.urandom,
            retention_s=config.retention.audit_personal_days * 86400,
        )
        record = new_record(
            name="directory.change",
            status="rejected",
            start_time=now,
            end_time=now,
            policy_version=refused.attempted,
            reason=refused.reason,
            digest=refused.digest,
            detail={"trusted_version": refused.trusted},
        )
        await store.commit(audit.append([record], now))
    finally:
        await store.close()
