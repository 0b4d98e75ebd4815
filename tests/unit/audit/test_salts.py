"""Salts of audit records from the operating system's randomness, drawn a block at a time.

Threat: two records sharing a salt (one slice handed out twice: by two threads, or by a forked
child that inherited its parent's block), or salts that are not the random source's bytes. A
test's own random source is still asked for each append's salts as before, so stored records
stay byte-identical for the same randomness.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.audit import log as audit_log
from gateway.audit import search
from gateway.audit.log import AUDIT_SCHEMA, AuditLog
from gateway.core.audit import new_record, stored_parts
from gateway.core.commit import SALT_SIZE
from gateway.core.merkle import leaf_hash
from gateway.node.store import SqliteStore

NOW = datetime(2026, 3, 2, 9, 15, tzinfo=UTC)


class CountingUrandom:
    """``os.urandom`` as a counter: each call's bytes are distinct and recorded."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.drawn = b""

    def __call__(self, n: int) -> bytes:
        self.calls.append(n)
        out = bytes((len(self.drawn) + i) * 7 % 251 for i in range(n))
        self.drawn += out
        return out


def test_os_salts_hand_out_each_drawn_byte_once_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = CountingUrandom()
    monkeypatch.setattr(os, "urandom", fake)
    salts = audit_log._OsSalts()
    out = [salts(SALT_SIZE) for _ in range(2 * audit_log._OsSalts.BLOCK // SALT_SIZE + 1)]
    assert fake.calls == [audit_log._OsSalts.BLOCK] * 3  # one system call per 128 salts
    assert b"".join(out) == fake.drawn[: len(out) * SALT_SIZE]
    assert all(len(s) == SALT_SIZE for s in out)
    # A draw that does not fit what is left of the block takes a new block; a draw larger
    # than a block goes to os.urandom directly; nothing is ever handed out twice.
    left = audit_log._OsSalts.BLOCK - SALT_SIZE
    big = salts(left + 1)
    huge = salts(audit_log._OsSalts.BLOCK + 1)
    assert fake.calls[-2:] == [audit_log._OsSalts.BLOCK, audit_log._OsSalts.BLOCK + 1]
    assert big == fake.drawn[-2 * audit_log._OsSalts.BLOCK - 1 :][: left + 1]
    assert huge == fake.drawn[-audit_log._OsSalts.BLOCK - 1 :]


def test_os_salts_are_distinct_across_threads() -> None:
    salts = audit_log._OsSalts()
    got: list[bytes] = []
    lock = threading.Lock()

    def draw() -> None:
        mine = [salts(SALT_SIZE) for _ in range(500)]
        with lock:
            got.extend(mine)

    threads = [threading.Thread(target=draw) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 2000
    assert len(set(got)) == 2000


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork only exists on POSIX")
def test_a_forked_child_does_not_reuse_its_parents_next_salts() -> None:
    audit_log._OS_SALTS(SALT_SIZE)  # the process-wide pool holds a block now
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next salt, to the parent
        try:
            os.write(write, audit_log._OS_SALTS(SALT_SIZE))
        finally:
            os._exit(0)
    os.close(write)
    child = os.read(read, SALT_SIZE)
    os.close(read)
    os.waitpid(pid, 0)
    assert len(child) == SALT_SIZE
    assert audit_log._OS_SALTS(SALT_SIZE) != child


def test_forget_drops_the_block(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = CountingUrandom()
    monkeypatch.setattr(os, "urandom", fake)
    salts = audit_log._OsSalts()
    first = salts(SALT_SIZE)
    salts.forget()
    second = salts(SALT_SIZE)
    assert fake.calls == [audit_log._OsSalts.BLOCK] * 2
    assert first != second
    assert second == fake.drawn[audit_log._OsSalts.BLOCK :][:SALT_SIZE]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(tmp_path / "n.db", schemas=(AUDIT_SCHEMA,))
    yield s
    await s.close()


async def _stored(store: SqliteStore, rand: audit_log.Rand) -> list[tuple[bytes, str, str, bytes]]:
    log = await AuditLog.open(
        store, origin="o.example/x/audit-log", key=None, rand=rand, retention_s=1e6
    )
    records = [
        new_record(name="message.send", status="ok", start_time=NOW, end_time=NOW, case_ref="c1"),
        new_record(name="access", status="ok", start_time=NOW, end_time=NOW, data_subjects=("s",)),
    ]
    await store.commit(log.append(records, NOW))
    await store.commit(log.append(records[:1], NOW))
    rows = store.read("SELECT leaf, view, personal, salt FROM audit_records ORDER BY idx")
    return [(bytes(r[0]), str(r[1]), str(r[2]), bytes(r[3])) for r in rows]


async def test_a_given_random_source_is_asked_for_each_appends_salts(store: SqliteStore) -> None:
    fake = CountingUrandom()
    rows = await _stored(store, fake)
    assert fake.calls == [2 * SALT_SIZE, SALT_SIZE]
    assert [salt for *_, salt in rows] == [
        fake.drawn[i * SALT_SIZE : (i + 1) * SALT_SIZE] for i in range(3)
    ]
    for leaf, view, personal, salt in rows:  # each row is what stored_parts makes of its salt
        record = new_record(
            name="access" if '"access"' in view else "message.send",
            status="ok",
            start_time=NOW,
            end_time=NOW,
            **({"data_subjects": ("s",)} if '"access"' in view else {"case_ref": "c1"}),
        )
        view_bytes, personal_text = stored_parts(record, salt)
        assert (leaf, view, personal) == (
            leaf_hash(view_bytes),
            view_bytes.decode(),
            personal_text,
        )


async def test_os_urandom_salts_come_from_the_pool(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = audit_log._OsSalts()
    monkeypatch.setattr(audit_log, "_OS_SALTS", pool)
    rows = await _stored(store, os.urandom)
    assert pool._used == 3 * SALT_SIZE
    assert [salt for *_, salt in rows] == [
        pool._block[i * SALT_SIZE : (i + 1) * SALT_SIZE] for i in range(3)
    ]


async def test_the_side_tables_are_the_same_with_the_times_given(tmp_path: Path) -> None:
    # The writer thread hands index_rows the POSIX times it stored: the same rows as when
    # index_rows computes them itself.
    records = [
        new_record(
            name="message.send",
            status="ok",
            start_time=NOW,
            end_time=NOW.replace(minute=m),
            purpose="p",
            sender="a",
            recipients=("b", "a"),
            data_subjects=("s1", "s2"),
        )
        for m in (1, 59)
    ] + [new_record(name="key.change", status="ok", start_time=NOW, end_time=NOW, peer="c")]
    tables = ("audit_subjects", "audit_parties", "audit_hourly", "audit_notable", "audit_indexed")
    dumps = []
    for times in (None, [r.end_time.timestamp() for r in records]):
        s = SqliteStore(tmp_path / f"{times is None}.db", schemas=(AUDIT_SCHEMA,))
        try:

            def index(db: sqlite3.Connection, given: list[float] | None = times) -> None:
                search.index_rows(db, records, [0, 1, 2], given)

            await s.run(index)
            dumps.append([sorted(s.read(f"SELECT * FROM {t}")) for t in tables])  # noqa: S608 - fixed names
        finally:
            await s.close()
    assert dumps[0] == dumps[1]
    assert dumps[0][0]  # something was indexed
