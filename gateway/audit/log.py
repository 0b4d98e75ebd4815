"""The audit log of one node: append records, keep the Merkle tree, sign checkpoints, prove.

Records live in the node's SQLite store, in the same transactions as the state they describe
(:meth:`AuditLog.append` returns a store command to commit with that state), so a record is on
disk before the broker ack or the API answer that depends on it. Each row keeps:

- ``leaf`` and ``view``: the RFC 9162 leaf hash and the leaf view it hashes (no personal data,
  kept for ever);
- ``personal`` and ``salt``: the personal fields and the salt of their commitments, deleted at
  the end of audit retention ("crypto-shredding": proofs stay valid) — when the record's own
  (signed) time is older than the retention period configured now, so ``zvg audit verify`` can
  tell this from an erasure (the ``retention.purge`` record names the cut-off);
- for a record that is evidence of a partner's signed statement (a receipt contradicting an
  earlier one, decision 0043), those signed bytes verbatim in ``audit_evidence``; the record's
  leaf view names their SHA-256 (``detail.evidence_sha256``), and they are deleted with the
  personal part (they hold a case reference).

The in-memory :class:`~gateway.core.merkle.MerkleTree` catches up after every commit (a store
commit hook). On start the tree is rebuilt from the stored leaves and checked against the last
signed checkpoint; a mismatch stops the node (run ``zvg audit verify``). Checkpoints are C2SP
signed notes under the origin ``<federation>/<org>/audit-log``; a node never signs two
inconsistent checkpoints because it only signs roots of its one append-only tree.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit import erasure, search, witnessing
from gateway.core import jose, note
from gateway.core.audit import Record, stored_parts
from gateway.core.commit import SALT_SIZE
from gateway.core.merkle import MerkleTree, leaf_hash
from gateway.core.witness import HeadAgreement, compare_with_log
from gateway.errors import LocalError, RemoteError
from gateway.node.store import (
    AppendAudit,
    AppendEvidence,
    AuditRow,
    KeepWitnessEvidence,
    SaveWitnessHead,
    ShredForErasure,
    SqliteStore,
)
from gateway.node.store.engine import CommitState

__all__ = [
    "AUDIT_SCHEMA",
    "PEER_HEADS_KEPT",
    "SHRED_SCHEMA",
    "AuditLog",
    "StoredCheckpoint",
    "highest_directory_version",
    "shred_up_to",
]

#: Where the retention shred got to (:meth:`AuditLog.shred`); its own constant for the
#: PostgreSQL migration that adds it to older stores (``gateway.node.pg_store``).
SHRED_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_shredded (
    id          INTEGER PRIMARY KEY CHECK (id = 0),
    upto        REAL NOT NULL         -- the shred's last cutoff: records up to it are shredded
);
"""

AUDIT_SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS audit_records (
    idx          INTEGER PRIMARY KEY,
    leaf         BLOB NOT NULL,
    view         TEXT NOT NULL,
    personal     TEXT,
    salt         BLOB,
    name         TEXT NOT NULL,
    time         REAL NOT NULL,
    trace_id     TEXT,
    message_id   TEXT,
    case_ref     TEXT,
    purge_after  REAL
);
CREATE INDEX IF NOT EXISTS audit_by_message ON audit_records (message_id);
CREATE INDEX IF NOT EXISTS audit_by_trace ON audit_records (trace_id);
CREATE TABLE IF NOT EXISTS audit_checkpoints (
    size        INTEGER PRIMARY KEY,
    root        BLOB NOT NULL,
    note        BLOB NOT NULL,       -- the signed note, with cosignatures as they arrive
    created_at  REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS witness_heads (
    origin      TEXT PRIMARY KEY,    -- a peer's log we witness: the last size we cosigned
    size        INTEGER NOT NULL,
    root        BLOB NOT NULL,
    checkpoint  BLOB NOT NULL,
    cosigned_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS peer_cosigned (
    peer        TEXT PRIMARY KEY,    -- a peer witnessing our log: the last size it cosigned
    size        INTEGER NOT NULL,
    updated_at  REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS peer_heads (
    peer        TEXT NOT NULL,       -- a peer witnessing our log, answering "what did you cosign"
    nonce       TEXT NOT NULL,       -- of the request it answers (the node's or zvg audit verify's)
    size        INTEGER NOT NULL,    -- 0: it never cosigned our log
    checkpoint  BLOB,                -- that checkpoint with the peer's cosignature (verified)
    received_at REAL NOT NULL,
    PRIMARY KEY (peer, nonce)
);
CREATE TABLE IF NOT EXISTS audit_evidence (
    idx         INTEGER PRIMARY KEY,  -- the record this is evidence for
    sha256      BLOB NOT NULL UNIQUE, -- of evidence; the record's view names it
    evidence    BLOB NOT NULL         -- a partner's signed bytes, verbatim
);
CREATE TABLE IF NOT EXISTS witness_evidence (
    id          INTEGER PRIMARY KEY,
    origin      TEXT NOT NULL,
    code        TEXT NOT NULL,
    evidence    TEXT NOT NULL,
    created_at  REAL NOT NULL
);
"""
    + SHRED_SCHEMA
    + search.SEARCH_SCHEMA
)

Rand = Callable[[int], bytes]


class _OsSalts:
    """``os.urandom`` for salts, drawn :attr:`BLOCK` bytes at a time and handed out in slices.

    Every slice is fresh kernel randomness handed out once (under a lock), so salts are as
    unpredictable and as independent as with one ``os.urandom`` call each; what changes is the
    cost: ``os.urandom`` is a ``getrandom`` system call that also lets go of the GIL, and a
    node busy in its store's writer thread pays for taking it back on every call (one call per
    record before; one per :attr:`BLOCK` bytes now). A forked child forgets the block (it would
    hand out the parent's next salts again) and starts with a fresh one."""

    BLOCK = 4096  # 128 salts

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._block = b""
        self._used = 0

    def __call__(self, n: int) -> bytes:
        with self._lock:
            if self._used + n > len(self._block):
                if n > self.BLOCK:
                    return os.urandom(n)
                self._block, self._used = os.urandom(self.BLOCK), 0
            out = self._block[self._used : self._used + n]
            self._used += n
            return out

    def forget(self) -> None:
        """In a forked child: drop the parent's block (and a lock another thread may hold)."""
        self._lock = threading.Lock()
        self._block, self._used = b"", 0


_OS_SALTS = _OsSalts()
os.register_at_fork(after_in_child=_OS_SALTS.forget)

PEER_HEADS_KEPT = 16
"""Answers kept per peer in ``peer_heads`` (the newest): enough for the node's own question and
a few ``zvg audit verify --witnesses`` runs at once; a peer answering unasked cannot grow the
store."""


@dataclass(frozen=True)
class StoredCheckpoint:
    size: int
    root: bytes
    note: bytes


class AuditLog:
    """One node's audit log. Create with :meth:`open` (async: it reads the store)."""

    #: Complete tiles of 256 records whose low tree levels stay in memory (about 16 KiB each):
    #: proofs of the last ~16,000 records — every receipt's — never read back from the store.
    TREE_KEEP_TILES = 64

    def __init__(
        self,
        store: SqliteStore,
        *,
        origin: str,
        key: Ed25519PrivateKey | None,
        rand: Rand,
        retention_s: float,
    ) -> None:
        self.store = store
        self.origin = origin
        self._key = key
        # Salts only: with the operating system's randomness, drawn a block at a time (_OsSalts);
        # any other source (a test's) is asked for each append's salts as it is.
        self._salts: Rand = _OS_SALTS if rand is os.urandom else rand
        self._retention_s = retention_s
        self._tree = MerkleTree(source=self._stored_leaves, keep_tiles=self.TREE_KEEP_TILES)
        self._tree_lock = threading.Lock()
        self._checkpoint_lock = asyncio.Lock()
        self.latest: StoredCheckpoint | None = None

    @classmethod
    async def open(  # the store must have been created with schemas=(AUDIT_SCHEMA,)
        cls,
        store: SqliteStore,
        *,
        origin: str,
        key: Ed25519PrivateKey | None,
        rand: Rand,
        retention_s: float,
    ) -> AuditLog:
        """Load the log: rebuild the tree and check it against the last signed checkpoint.

        ``key=None`` gives a handle that appends but never signs (for ops tools that record
        what they did while the node may be running: the node's own commits pick the records
        up, and its next checkpoint covers them).

        Raises :class:`LocalError` when the stored records do not reproduce that checkpoint's
        root (the log was altered; ``zvg audit verify`` finds where)."""
        log = cls(store, origin=origin, key=key, rand=rand, retention_s=retention_s)

        def load(db: sqlite3.Connection) -> tuple[MerkleTree, StoredCheckpoint | None]:
            # The checkpoint first: another process on a shared store may append and sign in
            # between (each statement sees what is committed when it starts), and the records
            # read after it cover it.
            row = db.execute(
                "SELECT size, root, note FROM audit_checkpoints ORDER BY size DESC LIMIT 1"
            ).fetchone()
            latest = (
                None if row is None else StoredCheckpoint(int(row[0]), bytes(row[1]), bytes(row[2]))
            )
            # Streamed into a tree that keeps only recent low levels: memory stays bounded
            # however long the log (gateway.core.merkle.MerkleTree, "Bounded memory").
            tree = MerkleTree(source=log._stored_leaves, keep_tiles=cls.TREE_KEEP_TILES)
            tree.extend(
                bytes(r[0]) for r in db.execute("SELECT leaf FROM audit_records ORDER BY idx")
            )
            return tree, latest

        tree, latest = await store.run(load)
        await store.run(search.catch_up)  # a log written before the console's indexes
        log._tree = tree
        if latest is not None and (
            latest.size > log._tree.size or log._tree.root(latest.size) != latest.root
        ):
            raise LocalError(
                f"the audit log does not reproduce its checkpoint of size {latest.size}: "
                "records were altered or lost; run: zvg audit verify"
            )
        log.latest = latest
        store.on_commit(log._catch_up)
        store.on_command(AppendAudit, _append_rows)
        store.on_command(AppendEvidence, _append_evidence)
        store.on_command(SaveWitnessHead, witnessing.save_head)
        store.on_command(KeepWitnessEvidence, witnessing.keep_evidence)
        store.on_command(ShredForErasure, erasure.shred_for_erasure)
        return log

    # ------------------------------------------------------------------ appending

    @property
    def size(self) -> int:
        with self._tree_lock:
            return self._tree.size

    def append(self, records: Sequence[Record], now: datetime) -> AppendAudit:
        """The command that appends ``records`` (commit it with the state it describes).

        Salts come from the log's random source (one draw for all of them; ``os.urandom`` is
        drawn a block at a time, see :class:`_OsSalts`). The rows are built here,
        in the caller's thread; applying the command only assigns indexes and inserts, so the
        store's writer thread spends its time in SQLite (which releases the GIL), not in Python.
        """
        purge_after = now.timestamp() + self._retention_s
        rows = []
        # One draw from the random source for all the records' salts (independent slices).
        salts = self._salts(SALT_SIZE * len(records))
        for i, record in enumerate(records):
            salt = salts[i * SALT_SIZE : (i + 1) * SALT_SIZE]
            view_bytes, personal = stored_parts(record, salt)
            rows.append(
                AuditRow(
                    record,
                    leaf_hash(view_bytes),
                    view_bytes.decode("utf-8"),
                    personal,
                    salt,
                    purge_after,
                )
            )
        return AppendAudit(tuple(rows))

    def append_evidence(self, record: Record, evidence: bytes, now: datetime) -> AppendEvidence:
        """The command that appends ``record`` and keeps ``evidence`` (a partner's signed bytes)
        verbatim beside it. Once only: a commit with it writes nothing (``applied=False``) when
        these exact bytes are kept already.

        Raises :class:`LocalError` when the record's ``detail`` does not name the evidence's
        digest as ``evidence_sha256`` (base64url SHA-256): the leaf must commit to the bytes."""
        digest = hashlib.sha256(evidence).digest()
        if record.detail.get("evidence_sha256") != jose.b64u_encode(digest):
            raise LocalError("an evidence record must name its evidence's SHA-256")
        return AppendEvidence(self.append([record], now), digest, evidence)

    def record_index(
        self, message_id: str, name: str, *, peer: str | None = None, status: str | None = None
    ) -> int | None:
        """The index of the latest ``name`` record about ``message_id`` (with that ``peer`` and
        ``detail.status``, when given), or ``None``. Reads committed records."""
        sql = "SELECT idx FROM audit_records WHERE message_id=? AND name=?"
        params: list[str] = [message_id, name]
        if peer is not None:
            sql += " AND json_extract(view, '$.peer') = ?"
            params.append(peer)
        if status is not None:
            sql += " AND json_extract(view, '$.detail.status') = ?"
            params.append(status)
        rows = self.store.read(sql + " ORDER BY idx DESC LIMIT 1", tuple(params))
        return int(rows[0][0]) if rows else None

    def _stored_leaves(self, lo: int, hi: int) -> list[bytes]:
        """The stored leaf hashes ``lo .. hi - 1`` (the tree reads an old tile back)."""
        rows = self.store.read(
            "SELECT leaf FROM audit_records WHERE idx >= ? AND idx < ? ORDER BY idx", (lo, hi)
        )
        return [bytes(r[0]) for r in rows]

    def _catch_up(self, db: sqlite3.Connection) -> None:
        with self._tree_lock:
            rows = db.execute(
                "SELECT idx, leaf FROM audit_records WHERE idx >= ? ORDER BY idx",
                (self._tree.size,),
            ).fetchall()
            self._extend(rows)

    def _extend(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Append committed leaves ``(idx, leaf)`` from the tree's size on (under the lock)."""
        for idx, leaf in rows:
            if idx < self._tree.size:  # appended meanwhile by the commit hook
                continue
            if idx != self._tree.size:
                raise LocalError(f"audit log gap at index {self._tree.size}")
            self._tree.append(bytes(leaf))

    def _refresh(self) -> None:
        """Catch up with what other processes on a shared store appended and signed (decision
        0109): the latest checkpoint first, then the records, which cover it."""
        row = self.store.read(
            "SELECT size, root, note FROM audit_checkpoints ORDER BY size DESC LIMIT 1"
        )
        if row and (self.latest is None or int(row[0][0]) > self.latest.size):
            self.latest = StoredCheckpoint(int(row[0][0]), bytes(row[0][1]), bytes(row[0][2]))
        rows = self.store.read(
            "SELECT idx, leaf FROM audit_records WHERE idx >= ? ORDER BY idx", (self.size,)
        )
        with self._tree_lock:
            self._extend(rows)

    # ------------------------------------------------------------------ checkpoints and proofs

    async def checkpoint(self, *, min_size: int = 1) -> StoredCheckpoint | None:
        """The latest checkpoint, signing a new one first if the tree grew past it and is at
        least ``min_size`` large. ``None`` for an empty log."""
        async with self._checkpoint_lock:
            if self.store.shared:
                self._refresh()
            else:
                # The tree takes a commit's leaves in a hook after the COMMIT, when readers
                # already see them: a job queued behind every earlier commit waits out their
                # hooks, so the checkpoint covers all a caller could have seen committed.
                await self.store.run(_nothing)
            with self._tree_lock:
                size = self._tree.size
                root = self._tree.root(size) if size else b""
            if size == 0 or size < min_size:
                return self.latest
            if self.latest is not None and self.latest.size >= size:
                return self.latest
            if self._key is None:
                raise LocalError("this audit log handle has no key: only the node signs")
            signed = note.sign_checkpoint(note.Checkpoint(self.origin, size, root), key=self._key)
            now = datetime.now(UTC).timestamp()

            def save(db: sqlite3.Connection) -> None:
                db.execute(  # the same bytes when another process signed this size first
                    "INSERT OR IGNORE INTO audit_checkpoints (size, root, note, created_at)"
                    " VALUES (?,?,?,?)",
                    (size, root, signed, now),
                )

            await self.store.run(save)
            self.latest = StoredCheckpoint(size, root, signed)
            return self.latest

    def personal_cutoff(self, now: datetime) -> datetime:
        """Records with a time up to this have passed audit retention (the setting as it is now,
        for old and new records alike)."""
        return now - timedelta(seconds=self._retention_s)

    async def shred(self, now: datetime) -> int:
        """Delete the personal parts (case reference, pseudonyms, actor), their salts and kept
        evidence of the records at or before :meth:`personal_cutoff`; the leaf views and every
        proof stay valid.
        Returns how many records were shredded."""
        cutoff = self.personal_cutoff(now).timestamp()
        return await self.store.run(lambda db: shred_up_to(db, cutoff))

    async def peer_sizes(self) -> dict[str, int]:
        """Per peer witnessing our log: the size it last cosigned."""

        def job(db: sqlite3.Connection) -> dict[str, int]:
            return {str(p): int(s) for p, s in db.execute("SELECT peer, size FROM peer_cosigned")}

        return await self.store.run(job)

    async def set_peer_size(self, peer: str, size: int, now: datetime) -> None:
        def job(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT OR REPLACE INTO peer_cosigned (peer, size, updated_at) VALUES (?,?,?)",
                (peer, size, now.timestamp()),
            )

        await self.store.run(job)

    async def add_cosignature(
        self,
        peer: str,
        size: int,
        line: str,
        cosigner: note.NoteVerifier,
        log_key: note.NoteVerifier,
        now: datetime,
    ) -> bool:
        """Attach a peer's cosignature to our checkpoint of ``size`` after verifying it; records
        that the peer cosigned. False (nothing stored) when it does not verify."""

        def job(db: sqlite3.Connection) -> bytes | None:
            row = db.execute("SELECT note FROM audit_checkpoints WHERE size=?", (size,)).fetchone()
            if row is None:
                return None
            try:
                signed = note.add_signatures(bytes(row[0]), [line])
                note.open_checkpoint(
                    signed, log_keys=[log_key], cosigners=[cosigner], quorum=1, now=now
                )
            except (RemoteError, LocalError):
                return None
            db.execute("UPDATE audit_checkpoints SET note=? WHERE size=?", (signed, size))
            db.execute(
                "INSERT OR REPLACE INTO peer_cosigned (peer, size, updated_at) VALUES (?,?,?)",
                (peer, size, now.timestamp()),
            )
            return signed

        signed = await self.store.run(job)
        if signed is None:
            return False
        if self.latest is not None and self.latest.size == size:
            self.latest = StoredCheckpoint(size, self.latest.root, signed)
        return True

    def compare(self, checkpoint: note.Checkpoint) -> HeadAgreement:
        """How a (verified) checkpoint of this log that a witness holds relates to the records
        now: ``consistent``, ``truncated`` or ``forked`` (``compare_with_log``). On a shared
        store the tree first catches up: another process may have appended and signed more."""
        if self.store.shared:
            self._refresh()
        with self._tree_lock:
            return compare_with_log(self._tree, checkpoint)

    async def save_peer_head(
        self, peer: str, nonce: str, verified: note.VerifiedCheckpoint | None, now: datetime
    ) -> None:
        """Keep a peer's answer to "which checkpoint of our log did you cosign" (``None``: none)
        for ``zvg audit verify --witnesses``, which reads it by nonce."""
        size = verified.checkpoint.size if verified is not None else 0
        signed = verified.note.raw if verified is not None else None

        def job(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT OR REPLACE INTO peer_heads (peer, nonce, size, checkpoint, received_at)"
                " VALUES (?,?,?,?,?)",
                (peer, nonce, size, signed, now.timestamp()),
            )
            db.execute(
                "DELETE FROM peer_heads WHERE peer = ? AND nonce NOT IN (SELECT nonce FROM"
                " peer_heads WHERE peer = ? ORDER BY received_at DESC LIMIT ?)",
                (peer, peer, PEER_HEADS_KEPT),
            )

        await self.store.run(job)

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        with self._tree_lock:
            return self._tree.consistency_proof(old_size, new_size)

    async def send_trace(self, message_id: str) -> str:
        """The trace id of this log's ``message.send`` record of ``message_id`` ('' if none)."""
        return await self.store.run(partial(search.send_trace, message_id=message_id))

    def views(self, indexes: Sequence[int]) -> dict[int, str]:
        """The stored leaf views of some records (read on the store's read connection)."""
        marks = ",".join("?" * len(indexes))
        rows = self.store.read(
            f"SELECT idx, view FROM audit_records WHERE idx IN ({marks})",  # noqa: S608 - only ?s
            tuple(indexes),
        )
        return {int(i): str(v) for i, v in rows}

    def tlog_proof(self, index: int, view: str, checkpoint: StoredCheckpoint) -> bytes:
        """A C2SP tlog-proof of record ``index`` in ``checkpoint``; ``extra`` carries the
        record's leaf view (canonical JSON, no personal data) so the reader can check what the
        leaf says and recompute its hash."""
        with self._tree_lock:
            proof = self._tree.inclusion_proof(index, checkpoint.size)
        return note.format_tlog_proof(
            note.TlogProof(index, tuple(proof), checkpoint.note, extra=view.encode("utf-8"))
        )


def highest_directory_version(db: sqlite3.Connection) -> int:
    """The highest directory version the log records as trusted (an ``ok`` ``directory.change``;
    refused versions do not count), 0 when none."""
    row = db.execute(
        "SELECT max(json_extract(view, '$.policy_version')) FROM audit_records"
        " WHERE name = 'directory.change' AND json_extract(view, '$.status') = 'ok'"
    ).fetchone()
    return int(row[0]) if row is not None and row[0] is not None else 0


def _append_rows(db: sqlite3.Connection, command: AppendAudit, state: CommitState) -> bool:
    start = db.execute("SELECT coalesce(max(idx) + 1, 0) FROM audit_records").fetchone()[0]
    rows = command.rows
    indexes = list(range(start, start + len(rows)))
    records = [row.record for row in rows]
    times = [record.end_time.timestamp() for record in records]  # for the side tables too
    db.executemany(
        "INSERT INTO audit_records (idx, leaf, view, personal, salt, name, time,"
        " trace_id, message_id, case_ref, purge_after) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        [
            (
                i,
                row.leaf,
                row.view,
                row.personal,
                row.salt,
                record.name,
                t,
                record.trace_id,
                record.message_id,
                record.case_ref,
                row.purge_after,
            )
            for i, row, record, t in zip(indexes, rows, records, times, strict=True)
        ],
    )
    search.index_rows(db, records, indexes, times)
    state.appended(records, indexes)
    return True


def _append_evidence(db: sqlite3.Connection, command: AppendEvidence, state: CommitState) -> bool:
    if db.execute("SELECT 1 FROM audit_evidence WHERE sha256=?", (command.sha256,)).fetchone():
        return False
    _append_rows(db, command.append, state)
    db.execute(
        "INSERT INTO audit_evidence (idx, sha256, evidence) VALUES (?,?,?)",
        (state.indexes[-1], command.sha256, command.evidence),
    )
    return True


def _nothing(_db: sqlite3.Connection) -> None:
    """A store job that writes nothing: it runs once the jobs before it and their hooks ran."""


def shred_up_to(db: sqlite3.Connection, cutoff: float) -> int:
    """Shred the personal parts of the records with a time up to ``cutoff`` (POSIX seconds) that
    the last run left (:meth:`AuditLog.shred`); in the caller's transaction. Returns how many.

    Only records after the last run's cutoff are read: every record up to it was shredded then,
    and a record's time is when it was written, never before a cutoff already past (a longer
    retention set since moves the cutoff back: nothing to do)."""
    row = db.execute("SELECT upto FROM audit_shredded WHERE id = 0").fetchone()
    since = -1.0 if row is None else float(row[0])
    if cutoff <= since:
        return 0
    search.forget_subjects(db, cutoff, since)
    db.execute(
        "DELETE FROM audit_evidence WHERE idx IN"
        " (SELECT idx FROM audit_records WHERE time > ? AND time <= ?)",
        (since, cutoff),
    )
    shredded = db.execute(
        "UPDATE audit_records SET personal=NULL, salt=NULL, case_ref=NULL"
        " WHERE time > ? AND time <= ? AND personal IS NOT NULL",
        (since, cutoff),
    ).rowcount
    db.execute(
        "INSERT INTO audit_shredded (id, upto) VALUES (0, ?)"
        " ON CONFLICT (id) DO UPDATE SET upto = excluded.upto",  # SQLite's and PG's upsert
        (cutoff,),
    )
    return int(shredded)
