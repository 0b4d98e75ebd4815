"""The node's store (``SqliteStore``): the rules the crash-safety and status guarantees rest on.

Threats: a late or replayed receipt moving a status backwards (``accepted`` → ``delivered``);
one bad job in a group commit undoing the durable writes of the others (a 202 or a broker ack
for something that is not on disk); a redelivered envelope stored twice (reaching the adapter
twice); a double ack sending two receipts; retention deleting what status and audit need.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
import threading
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import TransientError
from gateway.node.store import (
    FINAL_STATUSES,
    STATUS_RANK,
    InboxEntry,
    OutboxEntry,
    SqliteStore,
    Store,
    receipt_in_job,
)

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
GEM, POL, GGZ, OM = (f"00000001999000{n}000" for n in ("001", "002", "004", "003"))
MID = "019cbd58-c2a0-7000-8000-000000000001"
MID2 = "019cbd58-c2a0-7000-8000-000000000002"


def _satisfies_protocol(store: SqliteStore) -> Store:
    # mypy --strict checks this assignment: SqliteStore implements every method of Store with a
    # compatible signature (a PostgreSQL store must do the same).
    checked: Store = store
    return checked


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(tmp_path / "node.db")
    try:
        yield s
    finally:
        await s.close()


def _outbox(message_id: str = MID, recipients: tuple[str, ...] = (GEM,)) -> OutboxEntry:
    return OutboxEntry(
        message_id=message_id,
        message_type="case.referral",
        purpose="ZVH.AANMELDING",
        case_ref="Veenstad-2026-031",
        in_reply_to=None,
        created_at=T0,
        expires_at=T0 + timedelta(days=3),
        digest=b"d" * 32,
        envelope=b'{"protected":"..."}',
        recipients=tuple((org, ("ZVH",)) for org in recipients),
    )


def _inbox(
    sender: str = POL,
    message_id: str = MID,
    status: str = "delivered",
    digest: bytes = b"d" * 32,
    forget_after: datetime = T0 + timedelta(days=7),
) -> InboxEntry:
    delivered = status == "delivered"
    return InboxEntry(
        sender=sender,
        message_id=message_id,
        digest=digest,
        message_type="case.referral",
        roles=("ZVH",),
        received_at=T0,
        expires_at=T0 + timedelta(days=3),
        forget_after=forget_after,
        status=status,
        reason=None if delivered else "policy_denied",
        claims=b'{"body":{}}' if delivered else None,
        inner_jws=b"eyJ.eyJ.sig" if delivered else None,
    )


def _count(store: SqliteStore, sql: str, *args: object) -> int:
    return int(store.run_sync(lambda db: db.execute(sql, args).fetchone()[0]))


async def _status(store: SqliteStore, org: str = GEM, message_id: str = MID) -> str:
    row = await store.message(message_id)
    assert row is not None
    return next(r.status for r in row.recipients if r.org == org)


def test_sqlite_store_satisfies_the_store_protocol(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "node.db")
    assert _satisfies_protocol(store) is store
    asyncio.run(store.close())


def test_the_store_file_is_private(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "node.db")
    asyncio.run(store.close())
    assert (tmp_path / "node.db").stat().st_mode & 0o777 == 0o600


# ---------------------------------------------------------------------------- status order


def test_final_statuses_share_the_top_rank() -> None:
    assert {"accepted", "rejected", "expired"} == FINAL_STATUSES
    assert STATUS_RANK["queued"] < STATUS_RANK["sent"] < STATUS_RANK["delivered"]
    assert all(STATUS_RANK[s] > STATUS_RANK["delivered"] for s in FINAL_STATUSES)


@pytest.mark.parametrize(
    ("arrivals", "final"),
    [
        (["sent", "delivered", "accepted"], "accepted"),
        (["accepted", "delivered"], "accepted"),
        (["delivered", "sent"], "delivered"),
        (["accepted", "sent"], "accepted"),
        (["rejected", "delivered", "accepted"], "rejected"),
        (["delivered", "accepted", "rejected"], "accepted"),
        (["expired", "sent"], "expired"),
        (["sent", "sent", "queued"], "sent"),
    ],
    ids=lambda v: "-".join(v) if isinstance(v, list) else v,
)
async def test_a_status_never_moves_backwards(
    store: SqliteStore, arrivals: list[str], final: str
) -> None:
    await store.add_outbox(_outbox(), T0)
    changes = []
    for i, status in enumerate(arrivals):
        changes.append(await store.set_status(MID, GEM, status, None, T0 + timedelta(seconds=i)))
    assert await _status(store) == final
    # Exactly the moves up the ranking changed anything.
    rank, expected = 0, []
    for status in arrivals:
        expected.append(STATUS_RANK[status] > rank)
        rank = max(rank, STATUS_RANK[status])
    assert changes == expected


@pytest.mark.parametrize("receipt", ["delivered", "accepted", "rejected"])
async def test_a_signed_receipt_overrides_an_expiry_the_sender_assumed(
    store: SqliteStore, receipt: str
) -> None:
    # The sender marks 'sent' recipients expired when exp passes without an answer; if it was
    # offline meanwhile, the recipient's receipts arrive only afterwards. They are signed
    # evidence of what happened; the expiry was a guess. (docs/decisions/0045)
    await store.add_outbox(_outbox(), T0)
    await store.set_status(MID, GEM, "sent", None, T0)
    assert await store.expire_outbox(T0 + timedelta(days=3)) == [(MID, GEM)]
    ran: list[int] = []
    changed = await store.set_status(
        MID, GEM, receipt, None, T0 + timedelta(days=4), extra=lambda _db: ran.append(1)
    )
    assert (changed, ran) == (True, [1]), "the receipt and its audit record are kept"
    assert await _status(store) == receipt
    assert not await store.set_status(MID, GEM, "expired", None, T0 + timedelta(days=5))
    assert not await store.set_status(MID, GEM, "sent", None, T0 + timedelta(days=5))
    assert await _status(store) == receipt


async def test_an_ignored_status_runs_no_extra_job(store: SqliteStore) -> None:
    await store.add_outbox(_outbox(), T0)
    await store.set_status(MID, GEM, "accepted", None, T0)
    ran = []
    changed = await store.set_status(
        MID, GEM, "delivered", None, T0, extra=lambda _db: ran.append(1)
    )
    assert (changed, ran) == (False, [])


async def test_a_status_for_an_unknown_message_or_org_changes_nothing(store: SqliteStore) -> None:
    await store.add_outbox(_outbox(), T0)
    assert not await store.set_status(MID2, GEM, "delivered", None, T0)
    assert not await store.set_status(MID, OM, "delivered", None, T0)
    assert await _status(store) == "queued"


async def test_final_at_is_set_once_every_recipient_is_final(store: SqliteStore) -> None:
    await store.add_outbox(_outbox(recipients=(GEM, GGZ)), T0)

    def final_at() -> float | None:
        return store.run_sync(  # type: ignore[no-any-return]
            lambda db: db.execute("SELECT final_at FROM outbox").fetchone()[0]
        )

    await store.set_status(MID, GEM, "accepted", None, T0)
    assert final_at() is None
    await store.set_status(MID, GGZ, "rejected", "adapter_rejected", T0 + timedelta(hours=1))
    assert final_at() == (T0 + timedelta(hours=1)).timestamp()
    row = await store.message(MID)
    assert row is not None
    assert [(r.org, r.status, r.reason) for r in row.recipients] == [
        (GEM, "accepted", None),
        (GGZ, "rejected", "adapter_rejected"),
    ]


async def test_expire_outbox_marks_only_unanswered_recipients(store: SqliteStore) -> None:
    await store.add_outbox(_outbox(recipients=(GEM, GGZ, OM)), T0)
    receipt = _outbox(MID2, recipients=(POL,))
    await store.add_outbox(OutboxEntry(**{**receipt.__dict__, "message_type": "receipt"}), T0)
    await store.set_status(MID, GEM, "delivered", None, T0)
    await store.set_status(MID, GGZ, "sent", None, T0)
    assert await store.expire_outbox(T0 + timedelta(days=3) - timedelta(seconds=1)) == []
    expired = await store.expire_outbox(T0 + timedelta(days=3))
    assert set(expired) == {(MID, GGZ), (MID, OM)}, "receipts are never expired"
    assert [await _status(store, org) for org in (GEM, GGZ, OM)] == [
        "delivered",
        "expired",
        "expired",
    ]
    assert await store.expire_outbox(T0 + timedelta(days=4)) == [], "once"


async def test_pending_publishes_are_the_queued_unpublished_ones(store: SqliteStore) -> None:
    await store.add_outbox(_outbox(recipients=(GEM, GGZ)), T0)
    assert {p.org for p in await store.pending_publishes(10)} == {GEM, GGZ}
    await store.set_status(MID, GEM, "sent", None, T0)
    assert [p.org for p in await store.pending_publishes(10)] == [GGZ]
    await store.set_status(MID, GGZ, "delivered", None, T0)  # the receipt overtook the confirm
    assert await store.pending_publishes(10) == []


# ---------------------------------------------------------------------------- group commit


async def test_one_failing_job_does_not_undo_the_others_in_its_group(store: SqliteStore) -> None:
    # Hold the writer thread so that every job below lands in one group commit.
    gate, holding = threading.Event(), threading.Event()

    def hold(_db: sqlite3.Connection) -> None:
        holding.set()
        gate.wait(10)

    held = asyncio.ensure_future(store.run(hold))
    await asyncio.to_thread(holding.wait, 10)

    def write(value: str, fail: bool = False) -> Callable[[sqlite3.Connection], str]:
        def job(db: sqlite3.Connection) -> str:
            db.execute("INSERT INTO meta VALUES (?, 'x')", (value,))
            if fail:
                raise RuntimeError("this job fails after writing")
            return value

        return job

    commits: list[int] = []
    store.on_commit(lambda _db: commits.append(1))
    jobs: list[Coroutine[Any, Any, object]] = [
        store.add_outbox(_outbox(), T0),
        store.run(write("before")),
        store.run(write("failing", fail=True)),
        store.add_inbox(_inbox()),
        store.run(write("before")),  # a constraint violation
        store.run(write("after")),
    ]
    futures = [asyncio.ensure_future(j) for j in jobs]
    await asyncio.sleep(0)  # every task takes its first step: its job joins the queue
    gate.set()
    await held
    results: list[object] = list(await asyncio.gather(*futures, return_exceptions=True))
    assert results[0] is None
    assert results[1] == "before"
    assert isinstance(results[2], RuntimeError)
    assert results[3] is True
    assert isinstance(results[4], sqlite3.IntegrityError)
    assert results[5] == "after"
    assert len(commits) == 2, "the held job's commit, then one group commit for all six"
    assert sorted(
        store.run_sync(lambda db: [r[0] for r in db.execute("SELECT key FROM meta")])
    ) == [
        "after",
        "before",
    ], "the failing job's own write was rolled back, nothing else"
    assert await store.message(MID) is not None
    assert await store.seen(POL, MID) is not None


async def test_a_failing_extra_job_undoes_its_own_write(store: SqliteStore) -> None:
    def boom(_db: sqlite3.Connection) -> None:
        raise RuntimeError("the audit append failed")

    with pytest.raises(RuntimeError):
        await store.add_inbox(_inbox(), extra=boom)
    assert await store.seen(POL, MID) is None, "no inbox row without its audit records"
    with pytest.raises(RuntimeError):
        await store.add_outbox(_outbox(), T0, extra=boom)
    assert await store.message(MID) is None, "no 202 without the audit records"


async def test_a_closed_store_refuses_new_work(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "node.db")
    await store.close()
    with pytest.raises(TransientError):
        await store.run(lambda _db: None)


async def test_work_survives_a_reopen(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "node.db")
    await store.add_outbox(_outbox(), T0)
    await store.add_inbox(_inbox())
    await store.close()
    again = SqliteStore(tmp_path / "node.db")
    try:
        assert await again.message(MID) is not None
        assert await again.seen(POL, MID) is not None
        assert [p.message_id for p in await again.pending_publishes(10)] == [MID]
    finally:
        await again.close()


def _posix_locks(path: Path) -> set[tuple[str, int, str]]:
    """The POSIX locks this process holds on ``path``: (kind, start, end), from /proc/locks."""
    inode = path.stat().st_ino
    held: set[tuple[str, int, str]] = set()
    for line in Path("/proc/locks").read_text("ascii").splitlines():
        fields = line.split()
        if fields[1] == "->":  # a process waiting for the lock above it
            continue
        kind, pid, device_inode, start, end = fields[3:8]
        if (
            fields[1] == "POSIX"
            and int(pid) == os.getpid()
            and int(device_inode.rsplit(":", 1)[1]) == inode
        ):
            held.add((kind, int(start), end))
    return held


@pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads the process's locks from /proc/locks"
)
async def test_opening_the_store_again_in_one_process_keeps_the_live_stores_sqlite_locks(
    tmp_path: Path,
) -> None:
    """Bug (a "Fatal Python error: Bus error" in the store's writer thread): opening a store set
    the mode of ``node.db``, ``-wal`` and ``-shm`` through a descriptor of its own, and closing
    any descriptor of a file drops every POSIX lock the process holds on it -- SQLite's too.
    With the store already open in the process (a node restarted in-process, a tool or test
    opening the store beside it), the next process to open the database found the wal-index
    unlocked, took the live store for gone and truncated the ``-shm`` under its memory map."""
    path = tmp_path / "node.db"
    live = SqliteStore(path)
    try:
        await live.add_outbox(_outbox(), T0)  # the store reads and writes through its wal-index
        held = {name: _posix_locks(tmp_path / name) for name in ("node.db", "node.db-shm")}
        assert all(held.values()), held  # SQLite's locks: what other processes go by
        again = SqliteStore(path)
        try:
            assert await again.message(MID) is not None
            dropped = {name: locks - _posix_locks(tmp_path / name) for name, locks in held.items()}
            assert not any(dropped.values()), f"the second open dropped the live store's {dropped}"
        finally:
            await again.close()
        await live.add_outbox(_outbox(MID2), T0)
        assert all(locks <= _posix_locks(tmp_path / name) for name, locks in held.items())
    finally:
        await live.close()


# ---------------------------------------------------------------------------- inbox


async def test_add_inbox_is_idempotent_per_sender_and_message_id(store: SqliteStore) -> None:
    ran: list[str] = []
    assert await store.add_inbox(_inbox(), extra=lambda _db: ran.append("first"))
    assert not await store.add_inbox(_inbox(), extra=lambda _db: ran.append("again"))
    assert not await store.add_inbox(
        _inbox(digest=b"e" * 32), extra=lambda _db: ran.append("other content")
    )
    assert ran == ["first"], "a duplicate writes no audit record and queues no receipt"
    assert [r.message_id for r in await store.inbox_waiting(10)] == [MID]
    seen = await store.seen(POL, MID)
    assert seen is not None
    assert seen.digest == b"d" * 32, "the first content stays"
    # Another sender may use the same message id: the key is (sender, message id).
    assert await store.add_inbox(_inbox(sender=GGZ))
    assert _count(store, "SELECT count(*) FROM inbox") == 2


async def test_concurrent_duplicates_store_one_row(store: SqliteStore) -> None:
    results = await asyncio.gather(*(store.add_inbox(_inbox()) for _ in range(8)))
    assert sorted(results) == [False] * 7 + [True]


async def test_inbox_waiting_counts_hand_outs(store: SqliteStore) -> None:
    await store.add_inbox(_inbox())
    await store.add_inbox(_inbox(message_id=MID2, status="refused"))
    first = await store.inbox_waiting(10)
    again = await store.inbox_waiting(10)
    assert [(r.message_id, r.handed_out) for r in first] == [(MID, 0)]
    assert [(r.message_id, r.handed_out) for r in again] == [(MID, 1)]


async def test_settle_inbox_is_idempotent(store: SqliteStore) -> None:
    await store.add_inbox(_inbox())
    calls: list[str] = []
    purge = T0 + timedelta(days=30)

    def extra(_db: sqlite3.Connection, sender: str) -> None:
        calls.append(sender)

    assert await store.settle_inbox(MID, "accepted", None, T0, purge, extra=extra) == POL
    later = T0 + timedelta(hours=1)
    assert await store.settle_inbox(MID, "accepted", None, later, purge, extra=extra) == POL
    assert (
        await store.settle_inbox(MID, "rejected", "other", later, purge + timedelta(1), extra=extra)
        == POL
    )
    assert calls == [POL], "one audit record, one receipt"
    row = store.run_sync(
        lambda db: db.execute(
            "SELECT status, reason, settled_at, purge_after FROM inbox"
        ).fetchone()
    )
    assert tuple(row) == ("accepted", None, T0.timestamp(), purge.timestamp())
    assert await store.inbox_waiting(10) == []


async def test_settle_of_an_unknown_or_refused_message_is_none(store: SqliteStore) -> None:
    await store.add_inbox(_inbox(status="refused"))
    ran: list[str] = []
    for mid in (MID, MID2):
        assert (
            await store.settle_inbox(
                mid, "accepted", None, T0, T0, extra=lambda _db, s: ran.append(s)
            )
            is None
        )
    assert ran == []


async def test_a_failing_settle_extra_leaves_the_message_waiting(store: SqliteStore) -> None:
    await store.add_inbox(_inbox())

    def boom(_db: sqlite3.Connection, _sender: str) -> None:
        raise RuntimeError("receipt could not be queued")

    with pytest.raises(RuntimeError):
        await store.settle_inbox(MID, "accepted", None, T0, T0, extra=boom)
    assert [r.message_id for r in await store.inbox_waiting(10)] == [MID]


# ---------------------------------------------------------------------------- retention


async def test_purge_keeps_what_status_and_audit_need(store: SqliteStore) -> None:
    await store.add_outbox(_outbox(), T0)
    await store.set_status(MID, GEM, "sent", None, T0)
    await store.set_status(MID, GEM, "delivered", None, T0)
    await store.run(receipt_in_job(MID, GEM, "accepted", b"receipt-jws", T0))
    await store.set_status(MID, GEM, "accepted", None, T0 + timedelta(hours=1))
    await store.add_inbox(_inbox(sender=GGZ, message_id=MID2, forget_after=T0 + timedelta(days=40)))
    await store.settle_inbox(MID2, "accepted", None, T0, T0 + timedelta(days=30))
    week = 7 * 86400.0

    # Not yet: the payloads stay until their time.
    assert await store.purge(T0 + timedelta(days=7), week) == (0, 0, 0)
    assert await store.purge(T0 + timedelta(days=30), week) == (1, 1, 0)
    # What the payloads were is gone ...
    assert store.run_sync(lambda db: db.execute("SELECT envelope FROM outbox").fetchone()) == (
        None,
    )
    assert store.run_sync(
        lambda db: db.execute("SELECT claims, inner_jws FROM inbox").fetchone()
    ) == (None, None)
    # ... what status, dedupe and evidence need stays.
    row = await store.message(MID)
    assert row is not None
    assert (row.case_ref, row.digest, row.recipients[0].status) == (
        "Veenstad-2026-031",
        b"d" * 32,
        "accepted",
    )
    seen = await store.seen(GGZ, MID2)
    assert seen is not None
    assert (seen.digest, seen.status) == (b"d" * 32, "accepted")
    assert _count(store, "SELECT count(*) FROM receipts_in") == 1
    assert await store.pending_publishes(10) == []
    assert await store.purge(T0 + timedelta(days=40), week) == (0, 0, 1), "forget_after passed"
    assert await store.seen(GGZ, MID2) is None
    assert await store.message(MID) is not None, "the sender's status is kept for ever"


async def test_purge_never_touches_a_message_the_adapter_has_not_taken(store: SqliteStore) -> None:
    await store.add_inbox(_inbox())
    assert await store.purge(T0 + timedelta(days=3650), 0) == (0, 0, 0)
    assert [r.message_id for r in await store.inbox_waiting(10)] == [MID]


async def test_purge_of_an_unanswered_message_waits_for_expiry(store: SqliteStore) -> None:
    await store.add_outbox(_outbox(), T0)
    await store.set_status(MID, GEM, "sent", None, T0)
    day = 86400.0
    expiry = T0 + timedelta(days=3)
    assert await store.purge(expiry + timedelta(hours=23), day) == (0, 0, 0)
    assert await store.purge(expiry + timedelta(days=1), day) == (0, 1, 0)
