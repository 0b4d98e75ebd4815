"""The audit log's tree keeps bounded memory: old tiles are read back from the stored records.

Before: the log kept every node of its Merkle tree in memory, 64 bytes per record for the life of
the log — a node writing 40,000 records a day grew by ~2.5 MiB a day, for ever, and read every
leaf into one list at start. Now only the recent tiles' low levels stay (``MerkleTree`` with a
leaf source); a proof of an old record reads its tile back and checks it against the kept tile
root, so a stored leaf altered since the tree was built is refused, not proved.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit.log import AUDIT_SCHEMA, AuditLog
from gateway.core import note
from gateway.core.audit import new_record
from gateway.core.merkle import TILE_HEIGHT, MerkleTree
from gateway.errors import LocalError
from gateway.node.store import SqliteStore
from tests.audit_logs import open_log

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
#: The log keeps the low levels of 2 complete tiles here (64 in a node); these are 10 tiles.
KEEP = 2
RECORDS = (10 << TILE_HEIGHT) + 10
#: 64 bytes per leaf of the kept tiles and the current one, 64 per tile above them.
BOUND = (KEEP + 1) * (64 << TILE_HEIGHT) + 64 * (RECORDS >> TILE_HEIGHT) + 64 * 10


@pytest.fixture(autouse=True)
def _keep_two_tiles(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(AuditLog, "TREE_KEEP_TILES", KEEP)


async def test_an_old_records_proof_is_read_back_checked_and_the_tree_stays_small(
    tmp_path: Path,
) -> None:
    path = tmp_path / "n.db"
    store = SqliteStore(path, schemas=(AUDIT_SCHEMA,))
    try:
        log = await open_log(store, key=Ed25519PrivateKey.generate())
        record = new_record(name="message.send", status="ok", start_time=NOW, end_time=NOW)
        await store.commit(log.append([record] * RECORDS, NOW))
        checkpoint = await log.checkpoint()
        assert checkpoint is not None
        assert checkpoint.size == RECORDS
        leaves = [bytes(r[0]) for r in store.read("SELECT leaf FROM audit_records ORDER BY idx")]
        full = MerkleTree(leaves)
        views = log.views([5, 300, RECORDS - 1])
        for index in (5, RECORDS - 1):
            proof = note.parse_tlog_proof(log.tlog_proof(index, views[index], checkpoint))
            assert list(proof.inclusion_proof) == full.inclusion_proof(index, RECORDS)
        kept = sum(len(level) for level in log._tree._levels)
        assert kept <= BOUND < 64 * RECORDS // 3, kept

        with sqlite3.connect(path) as db:  # a stored leaf of an old tile altered
            db.execute("UPDATE audit_records SET leaf = ? WHERE idx = 300", (bytes(32),))
        with pytest.raises(LocalError, match="do not hash to the tree's node"):
            log.tlog_proof(300, views[300], checkpoint)
    finally:
        await store.close()


async def test_a_reopened_log_rebuilds_the_same_tree_within_the_same_bound(tmp_path: Path) -> None:
    path = tmp_path / "n.db"
    store = SqliteStore(path, schemas=(AUDIT_SCHEMA,))
    key = Ed25519PrivateKey.generate()
    try:
        log = await open_log(store, key=key)
        record = new_record(name="message.send", status="ok", start_time=NOW, end_time=NOW)
        await store.commit(log.append([record] * RECORDS, NOW))
        first = await log.checkpoint()
    finally:
        await store.close()
    store = SqliteStore(path, schemas=(AUDIT_SCHEMA,))
    try:
        again = await open_log(store, key=key)
        assert first is not None
        assert again.latest == first  # the root checked at open
        assert again._tree.consistency_proof(100, RECORDS) == MerkleTree(
            bytes(r[0]) for r in store.read("SELECT leaf FROM audit_records ORDER BY idx")
        ).consistency_proof(100, RECORDS)
        assert sum(len(level) for level in again._tree._levels) <= BOUND
    finally:
        await store.close()
