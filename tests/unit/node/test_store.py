"""The node's store (``SqliteStore``; ``PostgresStore`` too, where a test takes the ``store``
fixture): the rules the crash-safety and status guarantees rest on.

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
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from gateway.core.audit import new_record
from gateway.core.delivery import InboundEvent, OutboundEvent, receipt_event
from gateway.core.receipts import ReceiptInfo
from gateway.errors import LocalError, TransientError
from gateway.node.store import (
    Command,
    Committed,
    DateOutbox,
    InboxEntry,
    InsertInbox,
    InsertOutbox,
    KeepReceipt,
    OutboxEntry,
    QueueReceipt,
    SetStatus,
    SettleInbox,
    SqliteStore,
    Store,
)
from tests.pg import store

__all__ = ["store"]  # fixtures: each test taking ``store`` runs on both stores

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
GEM, POL, GGZ, OM = (f"00000001999000{n}000" for n in ("001", "002", "004", "003"))
MID = "019cbd58-c2a0-7000-8000-000000000001"
MID2 = "019cbd58-c2a0-7000-8000-000000000002"


def _satisfies_protocol(store: SqliteStore) -> Store:
    # mypy --strict checks this assignment: SqliteStore implements every method of Store with a
    # compatible signature (a PostgreSQL store must do the same).
    checked: Store = store
    return checked


#: The outbox retention of these tests: envelopes go a week after expiry or final answers.
WEEK = timedelta(days=7)


def _outbox(
    message_id: str = MID,
    recipients: tuple[str, ...] = (GEM,),
    purge_after: datetime = T0 + timedelta(days=3) + WEEK,
) -> OutboxEntry:
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
        purge_after=purge_after,
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


async def _add_outbox(store: SqliteStore, entry: OutboxEntry, *also: Command) -> bool:
    return (await store.commit(InsertOutbox(entry, T0), *also)).applied


async def _set(
    store: SqliteStore,
    message_id: str,
    org: str,
    status: str,
    reason: str | None,
    now: datetime,
    *also: Command,
) -> bool:
    move = SetStatus(message_id, org, _event(status), reason, now)
    return (await store.commit(move, *also)).applied


def _event(status: str) -> OutboundEvent:
    """The event that moves a recipient to ``status`` (the broker's confirm, the expiry, or a
    receipt)."""
    if status == "sent":
        return OutboundEvent.PUBLISHED
    if status == "expired":
        return OutboundEvent.EXPIRED
    return receipt_event(status)


async def _add_inbox(store: SqliteStore, entry: InboxEntry, *also: Command) -> bool:
    return (await store.commit(InsertInbox(entry), *also)).applied


async def _settle(
    store: SqliteStore,
    message_id: str,
    status: str,
    reason: str | None,
    now: datetime,
    purge_after: datetime,
    *also: Command,
) -> bool:
    event = InboundEvent.ACK if status == "accepted" else InboundEvent.REJECT
    settle = SettleInbox(POL, message_id, event, reason, now, purge_after)
    return (await store.commit(settle, *also)).applied


def _evidence(label: str, org: str = GEM, message_id: str = MID) -> KeepReceipt:
    """A command whose effect a test can see (a row in receipts_in)."""
    return KeepReceipt(message_id, org, label, label.encode(), T0)


def _unprovable() -> QueueReceipt:
    """A command that fails: it proves an audit record its commit does not append."""
    record = new_record(name="message.receive", status="ok", start_time=T0, end_time=T0)
    info = ReceiptInfo("P", (), "case", "ZVH", "ZVH", MID, "0" * 32, "digest")
    return QueueReceipt(POL, MID, "delivered", None, info, proves=record, now=T0)


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


@pytest.mark.parametrize(
    ("arrivals", "final", "changes"),
    [
        (["sent", "delivered", "accepted"], "accepted", [True, True, True]),
        (["accepted", "delivered"], "accepted", [True, False]),
        (["delivered", "sent"], "delivered", [True, False]),
        (["accepted", "sent"], "accepted", [True, False]),
        (["rejected", "delivered", "accepted"], "rejected", [True, False, False]),
        (["delivered", "accepted", "rejected"], "accepted", [True, True, False]),
        (["expired", "sent"], "expired", [True, False]),
        (["sent", "sent"], "sent", [True, False]),
    ],
    ids=lambda v: "-".join(map(str, v)) if isinstance(v, list) else v,
)
async def test_a_status_never_moves_backwards(
    store: SqliteStore, arrivals: list[str], final: str, changes: list[bool]
) -> None:
    await _add_outbox(store, _outbox())
    moved = []
    for i, status in enumerate(arrivals):
        moved.append(await _set(store, MID, GEM, status, None, T0 + timedelta(seconds=i)))
    assert await _status(store) == final
    assert moved == changes, "exactly the moves the transition table allows changed anything"


@pytest.mark.parametrize("receipt", ["delivered", "accepted", "rejected"])
async def test_a_signed_receipt_overrides_an_expiry_the_sender_assumed(
    store: SqliteStore, receipt: str
) -> None:
    # The sender marks 'sent' recipients expired when exp passes without an answer; if it was
    # offline meanwhile, the recipient's receipts arrive only afterwards. They are signed
    # evidence of what happened; the expiry was a guess. (docs/decisions/0045)
    await _add_outbox(store, _outbox())
    await _set(store, MID, GEM, "sent", None, T0)
    assert await store.expire_outbox(T0 + timedelta(days=3)) == [(MID, GEM)]
    changed = await _set(store, MID, GEM, receipt, None, T0 + timedelta(days=4), _evidence(receipt))
    kept = _count(store, "SELECT count(*) FROM receipts_in")
    assert (changed, kept) == (True, 1), "the receipt and its audit record are kept"
    assert await _status(store) == receipt
    assert not await _set(store, MID, GEM, "expired", None, T0 + timedelta(days=5))
    assert not await _set(store, MID, GEM, "sent", None, T0 + timedelta(days=5))
    assert await _status(store) == receipt


async def test_an_ignored_status_writes_nothing_of_its_commit(store: SqliteStore) -> None:
    await _add_outbox(store, _outbox())
    await _set(store, MID, GEM, "accepted", None, T0)
    changed = await _set(store, MID, GEM, "delivered", None, T0, _evidence("delivered"))
    assert (changed, _count(store, "SELECT count(*) FROM receipts_in")) == (False, 0)


async def test_a_status_for_an_unknown_message_or_org_changes_nothing(store: SqliteStore) -> None:
    await _add_outbox(store, _outbox())
    assert not await _set(store, MID2, GEM, "delivered", None, T0)
    assert not await _set(store, MID, OM, "delivered", None, T0)
    assert await _status(store) == "queued"


async def test_final_at_is_set_once_every_recipient_is_final(store: SqliteStore) -> None:
    await _add_outbox(store, _outbox(recipients=(GEM, GGZ)))

    def final_at() -> float | None:
        return store.run_sync(  # type: ignore[no-any-return]
            lambda db: db.execute("SELECT final_at FROM outbox").fetchone()[0]
        )

    await _set(store, MID, GEM, "accepted", None, T0)
    assert final_at() is None
    await _set(store, MID, GGZ, "rejected", "adapter_rejected", T0 + timedelta(hours=1))
    assert final_at() == (T0 + timedelta(hours=1)).timestamp()
    row = await store.message(MID)
    assert row is not None
    assert [(r.org, r.status, r.reason) for r in row.recipients] == [
        (GEM, "accepted", None),
        (GGZ, "rejected", "adapter_rejected"),
    ]


async def test_expire_outbox_marks_only_unanswered_recipients(store: SqliteStore) -> None:
    await _add_outbox(store, _outbox(recipients=(GEM, GGZ, OM)))
    receipt = _outbox(MID2, recipients=(POL,))
    await _add_outbox(store, OutboxEntry(**{**receipt.__dict__, "message_type": "receipt"}))
    await _set(store, MID, GEM, "delivered", None, T0)
    await _set(store, MID, GGZ, "sent", None, T0)
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
    await _add_outbox(store, _outbox(recipients=(GEM, GGZ)))
    assert {p.org for p in await store.pending_publishes(10)} == {GEM, GGZ}
    await _set(store, MID, GEM, "sent", None, T0)
    assert [p.org for p in await store.pending_publishes(10)] == [GGZ]
    await _set(store, MID, GGZ, "delivered", None, T0)  # the receipt overtook the confirm
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
        store.commit(InsertOutbox(_outbox(), T0)),
        store.run(write("before")),
        store.run(write("failing", fail=True)),
        store.commit(InsertInbox(_inbox())),
        store.run(write("before")),  # a constraint violation
        store.run(write("after")),
    ]
    futures = [asyncio.ensure_future(j) for j in jobs]
    await asyncio.sleep(0)  # every task takes its first step: its job joins the queue
    gate.set()
    await held
    results: list[object] = list(await asyncio.gather(*futures, return_exceptions=True))
    assert results[0] == Committed(True)
    assert results[1] == "before"
    assert isinstance(results[2], RuntimeError)
    assert results[3] == Committed(True)
    # the engine's own constraint error reaches the job's caller
    assert isinstance(results[4], sqlite3.IntegrityError | psycopg.errors.UniqueViolation)
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


async def test_a_group_of_commits_without_savepoints_is_run_again_with_them_when_one_fails(
    store: SqliteStore,
) -> None:
    # A group of commits of commands first runs without savepoints; one failing commit (an
    # exception) and one whose condition does not hold (a duplicate inbox entry) roll it back,
    # and it runs again with savepoints: the others are written once, those two not at all.
    _counting_statements_needs_sqlite(store)
    assert await _add_inbox(store, _inbox(message_id=MID2))
    gate, holding = threading.Event(), threading.Event()

    def hold(_db: sqlite3.Connection) -> None:
        holding.set()
        gate.wait(10)

    held = asyncio.ensure_future(store.run(hold))
    await asyncio.to_thread(holding.wait, 10)
    commits: list[int] = []
    store.on_commit(lambda _db: commits.append(1))
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)  # the writer's connection (test only)
    jobs: list[Coroutine[Any, Any, object]] = [
        store.commit(_evidence("first")),
        store.commit(InsertOutbox(_outbox(), T0), _unprovable()),
        store.commit(InsertInbox(_inbox(message_id=MID2))),
        store.commit(_evidence("last")),
    ]
    futures = [asyncio.ensure_future(j) for j in jobs]
    await asyncio.sleep(0)
    gate.set()
    await held
    results: list[object] = list(await asyncio.gather(*futures, return_exceptions=True))
    store._db.set_trace_callback(None)
    assert results[0] == Committed(True, ())
    assert isinstance(results[1], LocalError)
    assert results[2] == Committed(False)
    assert results[3] == Committed(True, ())
    assert len(commits) == 2, "the held job's commit, then the group's once (the retry)"
    assert await store.message(MID) is None, "the failing commit wrote nothing"
    assert _count(store, "SELECT count(*) FROM receipts_in") == 2, "the others, once each"
    assert statements.count("ROLLBACK") == 1, "the group without savepoints was undone once"
    assert "SAVEPOINT j0" in statements, "then run again with savepoints"


async def test_a_group_of_commits_that_all_hold_runs_without_savepoints(
    store: SqliteStore,
) -> None:
    _counting_statements_needs_sqlite(store)
    gate, holding = threading.Event(), threading.Event()

    def hold(_db: sqlite3.Connection) -> None:
        holding.set()
        gate.wait(10)

    held = asyncio.ensure_future(store.run(hold))
    await asyncio.to_thread(holding.wait, 10)
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)  # the writer's connection (test only)
    futures = [asyncio.ensure_future(store.commit(_evidence(label))) for label in ("a", "b", "c")]
    await asyncio.sleep(0)
    gate.set()
    await held
    assert await asyncio.gather(*futures) == [Committed(True, ())] * 3
    store._db.set_trace_callback(None)
    assert _count(store, "SELECT count(*) FROM receipts_in") == 3
    assert not [s for s in statements if "SAVEPOINT" in s or "ROLLBACK" in s]
    assert statements.count("COMMIT") == 2, "the held job's commit and the group's"


async def test_a_failing_job_alone_in_its_group_writes_nothing_and_the_store_goes_on(
    store: SqliteStore,
) -> None:
    # A group of one job runs without a savepoint: its failure rolls the whole transaction back.
    commits: list[int] = []
    store.on_commit(lambda _db: commits.append(1))

    def failing(db: sqlite3.Connection) -> None:
        db.execute("INSERT INTO meta VALUES ('alone', 'x')")
        raise RuntimeError("this job fails after writing")

    with pytest.raises(RuntimeError):
        await store.run(failing)
    assert commits == [], "a failed job alone commits nothing (no commit hook ran)"
    assert store.run_sync(lambda db: db.execute("SELECT key FROM meta").fetchall()) == []
    assert await store.commit(InsertInbox(_inbox())) == Committed(True)
    assert await store.seen(POL, MID) is not None
    assert commits == [1, 1], "the read above and the insert each committed"


async def test_a_failing_command_undoes_its_whole_commit(store: SqliteStore) -> None:
    with pytest.raises(LocalError):
        await _add_inbox(store, _inbox(), _unprovable())
    assert await store.seen(POL, MID) is None, "no inbox row without its audit records"
    with pytest.raises(LocalError):
        await _add_outbox(store, _outbox(), _unprovable())
    assert await store.message(MID) is None, "no 202 without the audit records"


async def test_a_closed_store_refuses_new_work(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "node.db")
    await store.close()
    with pytest.raises(TransientError):
        await store.run(lambda _db: None)


async def test_work_survives_a_reopen(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "node.db")
    await _add_outbox(store, _outbox())
    await _add_inbox(store, _inbox())
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
        # the store reads and writes through its wal-index
        await live.commit(InsertOutbox(_outbox(), T0))
        held = {name: _posix_locks(tmp_path / name) for name in ("node.db", "node.db-shm")}
        assert all(held.values()), held  # SQLite's locks: what other processes go by
        again = SqliteStore(path)
        try:
            assert await again.message(MID) is not None
            dropped = {name: locks - _posix_locks(tmp_path / name) for name, locks in held.items()}
            assert not any(dropped.values()), f"the second open dropped the live store's {dropped}"
        finally:
            await again.close()
        await live.commit(InsertOutbox(_outbox(MID2), T0))
        assert all(locks <= _posix_locks(tmp_path / name) for name, locks in held.items())
    finally:
        await live.close()


# ---------------------------------------------------------------------------- inbox


async def test_add_inbox_is_idempotent_per_sender_and_message_id(store: SqliteStore) -> None:
    assert await _add_inbox(store, _inbox(), _evidence("first"))
    assert not await _add_inbox(store, _inbox(), _evidence("again"))
    assert not await _add_inbox(store, _inbox(digest=b"e" * 32), _evidence("other content"))
    kept = store.run_sync(lambda db: [r[0] for r in db.execute("SELECT status FROM receipts_in")])
    assert kept == ["first"], "a duplicate writes no audit record and queues no receipt"
    assert [r.message_id for r in await store.take_inbox(10)] == [MID]
    seen = await store.seen(POL, MID)
    assert seen is not None
    assert seen.digest == b"d" * 32, "the first content stays"
    # Another sender may use the same message id: the key is (sender, message id).
    assert await _add_inbox(store, _inbox(sender=GGZ))
    assert _count(store, "SELECT count(*) FROM inbox") == 2


async def test_concurrent_duplicates_store_one_row(store: SqliteStore) -> None:
    results = await asyncio.gather(*(_add_inbox(store, _inbox()) for _ in range(8)))
    assert sorted(results) == [False] * 7 + [True]


async def test_inbox_waiting_counts_hand_outs(store: SqliteStore) -> None:
    await _add_inbox(store, _inbox())
    await _add_inbox(store, _inbox(message_id=MID2, status="refused"))
    first = await store.take_inbox(10)
    again = await store.take_inbox(10)
    assert [(r.message_id, r.handed_out) for r in first] == [(MID, 0)]
    assert [(r.message_id, r.handed_out) for r in again] == [(MID, 1)]


async def test_settle_inbox_is_idempotent(store: SqliteStore) -> None:
    await _add_inbox(store, _inbox())
    purge = T0 + timedelta(days=30)
    assert await _settle(store, MID, "accepted", None, T0, purge, _evidence("first"))
    later = T0 + timedelta(hours=1)
    assert not await _settle(store, MID, "accepted", None, later, purge, _evidence("again"))
    assert not await _settle(
        store, MID, "rejected", "other", later, purge + timedelta(1), _evidence("other")
    )
    kept = store.run_sync(lambda db: [r[0] for r in db.execute("SELECT status FROM receipts_in")])
    assert kept == ["first"], "one audit record, one receipt"
    row = store.run_sync(
        lambda db: db.execute(
            "SELECT status, reason, settled_at, purge_after FROM inbox"
        ).fetchone()
    )
    assert tuple(row) == ("accepted", None, T0.timestamp(), purge.timestamp())
    assert await store.take_inbox(10) == []
    message = await store.inbox_message(MID)
    assert message is not None
    assert (message.sender, message.status, message.roles) == (POL, "accepted", ("ZVH",))


async def test_settle_of_an_unknown_or_refused_message_writes_nothing(store: SqliteStore) -> None:
    await _add_inbox(store, _inbox(status="refused"))
    for mid in (MID, MID2):
        assert not await _settle(
            store, mid, "accepted", None, T0, T0, _evidence("x", message_id=mid)
        )
    assert _count(store, "SELECT count(*) FROM receipts_in") == 0
    refused = await store.inbox_message(MID)
    assert refused is not None
    assert (refused.status, refused.claims) == ("refused", None)
    assert await store.inbox_message(MID2) is None


async def test_a_failing_settle_command_leaves_the_message_waiting(store: SqliteStore) -> None:
    await _add_inbox(store, _inbox())
    with pytest.raises(LocalError):
        await _settle(store, MID, "accepted", None, T0, T0, _unprovable())
    assert [r.message_id for r in await store.take_inbox(10)] == [MID]


# ---------------------------------------------------------------------------- retention


async def test_purge_keeps_what_status_and_audit_need(store: SqliteStore) -> None:
    await _add_outbox(store, _outbox())
    await _set(store, MID, GEM, "sent", None, T0)
    await _set(store, MID, GEM, "delivered", None, T0)
    await store.commit(KeepReceipt(MID, GEM, "accepted", b"receipt-jws", T0))
    final = T0 + timedelta(hours=1)
    accepted = SetStatus(MID, GEM, receipt_event("accepted"), None, final, final + WEEK)
    assert (await store.commit(accepted)).applied
    await _add_inbox(
        store, _inbox(sender=GGZ, message_id=MID2, forget_after=T0 + timedelta(days=40))
    )
    settle = SettleInbox(GGZ, MID2, InboundEvent.ACK, None, T0, T0 + timedelta(days=30))
    assert (await store.commit(settle)).applied

    # Not yet: the payloads stay until their time (the final answer brought the envelope's
    # deadline forward from a week after expiry to a week after the answer).
    assert await store.purge(T0 + timedelta(days=7)) == (0, 0, 0)
    assert await store.purge(final + WEEK) == (0, 1, 0)
    assert await store.purge(T0 + timedelta(days=30)) == (1, 0, 0)
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
    assert await store.purge(T0 + timedelta(days=40)) == (0, 0, 1), "forget_after passed"
    assert await store.seen(GGZ, MID2) is None
    assert await store.message(MID) is not None, "the sender's status is kept for ever"


async def test_purge_never_touches_a_message_the_adapter_has_not_taken(store: SqliteStore) -> None:
    await _add_inbox(store, _inbox())
    assert await store.purge(T0 + timedelta(days=3650)) == (0, 0, 0)
    assert [r.message_id for r in await store.take_inbox(10)] == [MID]


async def test_purge_of_an_unanswered_message_waits_for_expiry(store: SqliteStore) -> None:
    expiry = T0 + timedelta(days=3)
    await _add_outbox(store, _outbox(purge_after=expiry + timedelta(days=1)))
    await _set(store, MID, GEM, "sent", None, T0)
    assert await store.purge(expiry + timedelta(hours=23)) == (0, 0, 0)
    assert await store.purge(expiry + timedelta(days=1)) == (0, 1, 0)


async def test_an_entry_from_before_stored_deadlines_gets_one_and_goes(store: SqliteStore) -> None:
    # A store written by a version that kept no envelope deadline: retention dates such entries
    # once (RetentionPolicy.outbox_purge_after), or their envelopes would stay for ever.
    await _add_outbox(store, _outbox())
    await _add_outbox(store, _outbox(MID2))
    store.run_sync(
        lambda db: db.execute("UPDATE outbox SET purge_after=NULL WHERE message_id=?", (MID,))
    )
    expiry = T0 + timedelta(days=3)
    assert await store.undated_outbox() == [(MID, expiry, None)]
    deadline = expiry + timedelta(days=1)
    await store.commit(DateOutbox(MID, deadline), DateOutbox(MID2, deadline))
    assert await store.undated_outbox() == []
    assert await store.purge(deadline) == (0, 1, 0), "only the entry that had no deadline yet"
    assert await store.purge(T0 + timedelta(days=3) + WEEK) == (0, 1, 0), "the other kept its own"


def _counting_statements_needs_sqlite(store: SqliteStore) -> None:
    """Skip on PostgreSQL: these tests count statements with SQLite's trace callback, and
    PostgreSQL runs the same group commit code (gateway/node/store/engine.py)."""
    if not isinstance(store._db, sqlite3.Connection):  # the writer's connection (test only)
        pytest.skip(
            "counts statements with SQLite's trace callback; PostgreSQL runs the same "
            "group commit code (gateway/node/store/engine.py)"
        )
