"""A node's real audit log in a temporary store, filled with the records of a few cases, and a
read-only connection to it as the console opens one."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.audit.log import AUDIT_SCHEMA, AuditLog
from gateway.core.audit import Record, new_record
from gateway.node.store import SqliteStore

ZVH = "00000001001234567000"  # this node (the gemeente running the ZVH)
POLITIE = "00000001003214345000"
GGZ = "00000003273645710000"
NAMES = {ZVH: "Gemeente Veenstad", POLITIE: "Politie Eenheid Veenland", GGZ: "GGZ Veenland"}
NOW = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)


def msg(
    i: int,
    name: str,
    *,
    at: datetime,
    sender: str = ZVH,
    recipients: Sequence[str] = (POLITIE,),
    case_ref: str | None = "Veenstad-2026-031",
    subjects: Sequence[str] = ("sub-c1Ra8Hn4Pe2Ydk",),
    message_type: str = "info.request",
    purpose: str = "ZVH.BEKENDHEID",
    status: str = "ok",
    peer: str | None = None,
    detail: dict[str, int | str] | None = None,
    legal_basis: Sequence[str] = ("WGS",),
) -> Record:
    """A record about message ``i`` (an id derived from it)."""
    return new_record(
        name=name,
        status=status,
        start_time=at,
        end_time=at,
        trace_id=f"{i:032x}",
        message_id=f"0190a0b0-0000-7000-8000-{i:012d}",
        message_type=message_type,
        purpose=purpose,
        legal_basis=tuple(legal_basis),
        sender=sender,
        recipients=tuple(recipients),
        peer=peer,
        detail=detail or {},
        case_ref=case_ref,
        data_subjects=tuple(subjects),
    )


@dataclass
class Log:
    store: SqliteStore
    log: AuditLog
    path: Path

    async def add(self, *records: Record) -> None:
        await self.store.commit(self.log.append(records, NOW))


@pytest.fixture
async def audit(tmp_path: Path) -> AsyncIterator[Log]:
    path = tmp_path / "node.db"
    store = SqliteStore(path, schemas=(AUDIT_SCHEMA,))
    log = await AuditLog.open(
        store, origin="zvh.example/x/audit-log", key=None, rand=os.urandom, retention_s=86400 * 365
    )
    try:
        yield Log(store, log, path)
    finally:
        await store.close()


@pytest.fixture
def reader(audit: Log) -> Iterator[sqlite3.Connection]:
    db = sqlite3.connect(f"file:{audit.path}?mode=ro", uri=True)
    try:
        yield db
    finally:
        db.close()
