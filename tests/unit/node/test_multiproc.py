"""Several node processes of one organisation on one PostgreSQL database (decision 0109).

Each "process" here is a :class:`PostgresStore` of its own (its own writer thread, connections
and outbox holder) on one schema, in one test process. Threats: two processes appending to the
audit log at once (one index given twice, the Merkle tree forking or a process's tree view
missing the other's records), a message delivered to both processes stored twice (an adapter
gets it twice), both processes publishing the same outbox entry, two leaders or none after the
leader died, a long-poll on one process not woken by an arrival on the other.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import threading
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import psycopg
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit.log import AuditLog
from gateway.cli import cli
from gateway.core import note
from gateway.core.audit import new_record
from gateway.core.decisions import Deliver
from gateway.core.delivery import InboundEvent, OutboundEvent
from gateway.node.context import NodeContext
from gateway.node.pg_store import VERSION
from gateway.node.runner import Node
from gateway.node.service import coordinate as coordinate_node
from gateway.node.store import (
    Committed,
    InboxEntry,
    InboxRow,
    InsertInbox,
    InsertOutbox,
    OutboxEntry,
    ReceiptSealed,
    SetStatus,
    SettleInbox,
    SqliteStore,
)
from gateway.node.store.pg_lead import coordinate
from gateway.node.store.pg_shared import LEADER
from gateway.node.store.postgres import PostgresStore
from gateway.node.store.writes import move_status
from gateway.testing.federation import FederationFiles
from tests.node_pair import HANG_S, open_node
from tests.pg import schema_url

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
POL, GEM = "00000001999000002000", "00000001999000001000"
ORIGIN = "oin/00000001999000001000/audit-log"
#: Failover bound of the leader's lease (issue 19): the tests wait for events, at most this.
FAILOVER_S = 10.0


@pytest.fixture
async def stores(pg_url: str) -> AsyncIterator[tuple[PostgresStore, PostgresStore, str]]:
    url = schema_url(pg_url, "shared")
    a = PostgresStore(url, version=VERSION)
    b = PostgresStore(url, version=VERSION)
    try:
        yield a, b, url
    finally:
        await a.close()
        await b.close()


async def _log(store: PostgresStore, key: Ed25519PrivateKey) -> AuditLog:
    return await AuditLog.open(store, origin=ORIGIN, key=key, rand=os.urandom, retention_s=86400.0)


def _record(name: str = "message.receive") -> Any:
    return new_record(name=name, status="ok", start_time=T0, end_time=T0)


def _inbox(message_id: str) -> InboxEntry:
    return InboxEntry(
        sender=POL,
        message_id=message_id,
        digest=b"d" * 32,
        message_type="case.referral",
        roles=("ZVH",),
        received_at=T0,
        expires_at=T0 + timedelta(days=3),
        forget_after=T0 + timedelta(days=7),
        status="delivered",
        reason=None,
        claims=b'{"body":{}}',
        inner_jws=b"eyJ.eyJ.sig",
    )


def _outbox(n: int) -> OutboxEntry:
    return OutboxEntry(
        message_id=f"019cbd58-c2a0-7000-8000-{n:012d}",
        message_type="case.referral",
        purpose="ZVH.AANMELDING",
        case_ref="Veenstad-2026-031",
        in_reply_to=None,
        created_at=T0 + timedelta(seconds=n),
        expires_at=T0 + timedelta(days=3),
        digest=b"d" * 32,
        envelope=b'{"protected":"..."}',
        recipients=((GEM, ("ZVH",)),),
        purge_after=T0 + timedelta(days=10),
    )


@pytest.mark.postgres
async def test_two_processes_appending_at_once_grow_one_audit_tree(
    stores: tuple[PostgresStore, PostgresStore, str],
) -> None:
    a, b, url = stores
    key = Ed25519PrivateKey.generate()
    log_a, log_b = await _log(a, key), await _log(b, key)
    # one commit at a time in each process, both at once: a clash would reach a caller
    results: list[Committed] = []
    for _ in range(30):
        results += await asyncio.gather(
            a.commit(log_a.append([_record()], T0)), b.commit(log_b.append([_record()], T0))
        )
    # and bursts: group commits of many appends in each process
    commits = [
        s.commit(log.append([_record()], T0))
        for _ in range(10)
        for s, log in ((a, log_a), (b, log_b))
    ]
    results += await asyncio.gather(*commits)
    assert all(r.applied for r in results)
    indexes = sorted(i for r in results for i in r.indexes)
    assert indexes == list(range(80)), "one sequence: no index twice, no gap"
    # each process's tree view has every record, its own and the other's
    signed = await log_a.checkpoint()
    assert signed is not None
    assert signed.size == 80
    seen_by_b = await log_b.checkpoint()  # catches up; finds a's checkpoint of the same size
    assert seen_by_b == signed
    assert log_b.size == 80
    # a process started now rebuilds the one tree and reproduces that checkpoint
    c = PostgresStore(url, version=VERSION)
    try:
        log_c = await _log(c, key)
        assert log_c.latest == signed
        assert log_c.size == 80
    finally:
        await c.close()


@pytest.mark.postgres
async def test_a_checkpoint_signed_after_the_other_process_signed_catches_up_first(
    stores: tuple[PostgresStore, PostgresStore, str],
) -> None:
    # the leader moved: the new one's view of the log and of the latest checkpoint is stale
    a, b, _url = stores
    key = Ed25519PrivateKey.generate()
    log_a, log_b = await _log(a, key), await _log(b, key)
    await b.commit(log_b.append([_record()], T0))
    await a.commit(log_a.append([_record(), _record()], T0))
    first = await log_a.checkpoint()
    await a.commit(log_a.append([_record()], T0))
    second = await log_b.checkpoint()  # b appended nothing since: it must catch up
    assert first is not None
    assert second is not None
    assert (first.size, second.size) == (3, 4)
    assert log_a.consistency_proof(3, 4) == log_b.consistency_proof(3, 4)


@pytest.mark.postgres
async def test_a_message_delivered_to_two_processes_at_once_lands_once(
    stores: tuple[PostgresStore, PostgresStore, str],
) -> None:
    a, b, _url = stores
    key = Ed25519PrivateKey.generate()
    log_a, log_b = await _log(a, key), await _log(b, key)
    mid = "019cbd58-c2a0-7000-8000-000000000001"
    first, second = await asyncio.gather(
        a.commit(InsertInbox(_inbox(mid)), log_a.append([_record()], T0)),
        b.commit(InsertInbox(_inbox(mid)), log_b.append([_record()], T0)),
    )
    assert sorted([first.applied, second.applied]) == [False, True]
    taken = await a.take_inbox(10) + await b.take_inbox(10)
    assert [row.message_id for row in taken] == [mid, mid], "one entry, read from both"
    assert len(a.read("SELECT idx FROM audit_records")) == 1, "the loser's record is not kept"


@pytest.mark.postgres
async def test_each_outbox_entry_is_claimed_by_one_process(
    stores: tuple[PostgresStore, PostgresStore, str],
) -> None:
    a, b, _url = stores
    for n in range(9):
        await a.commit(InsertOutbox(_outbox(n), T0))
    await a.commit(ReceiptSealed((), _outbox(9), T0))  # the leader's sealed receipt
    # a's publisher has them (Outbox.hand_over): b's scan must not publish them too
    assert await b.pending_publishes(100) == []
    assert len(await a.pending_publishes(100)) == 10, "a's own claims: a retries them"
    # a died: its claims run out, and the two scans that follow share them without overlap
    await a.run(lambda db: db.execute("UPDATE outbox_recipients SET claimed_until = 0"))
    got_a, got_b = await asyncio.gather(a.pending_publishes(100), b.pending_publishes(100))
    ids_a = {p.message_id for p in got_a}
    ids_b = {p.message_id for p in got_b}
    assert not ids_a & ids_b, "no entry published by both"
    assert len(ids_a | ids_b) == 10
    # oldest first, as on SQLite
    assert [p.message_id for p in got_a] == sorted(ids_a)


@pytest.mark.postgres
async def test_a_claim_lasts_store_claim_seconds_from_the_insert_and_from_each_scan(
    stores: tuple[PostgresStore, PostgresStore, str],
) -> None:
    """``store.claim_seconds``: how long a dead process's publishes wait for the others."""
    _a, _b, url = stores
    store = PostgresStore(url, version=VERSION, claim_s=1234)
    try:
        await store.commit(InsertOutbox(_outbox(0), T0))
        left_sql = (
            "SELECT claimed_until - extract(epoch FROM clock_timestamp()) FROM outbox_recipients"
        )
        ((left,),) = store.read(left_sql)
        assert 1200 < left <= 1234
        await store.run(lambda db: db.execute("UPDATE outbox_recipients SET claimed_until = 0"))
        assert len(await store.pending_publishes(10)) == 1
        ((left,),) = store.read(left_sql)
        assert 1200 < left <= 1234
    finally:
        await store.close()


@pytest.mark.postgres
async def test_a_receipt_applied_by_another_process_is_not_overwritten_by_a_late_publish_confirm(
    stores: tuple[PostgresStore, PostgresStore, str],
) -> None:
    """The bug (found by the 2-process benchmark: a message stuck at ``sent``): the status move
    read the status, then wrote the move's result. Process b applied the delivered receipt
    between a's read (``queued``) and a's write of the publish confirm (``sent``), and a's write
    put the message back from ``delivered`` to ``sent``."""
    a, b, url = stores
    entry = _outbox(0)
    mid = entry.message_id
    await a.commit(InsertOutbox(entry, T0))
    b_finished = threading.Event()

    def b_moves_meanwhile() -> None:  # on a's writer thread, right after a read the status
        def move() -> None:
            try:
                delivered = OutboundEvent.RECEIPT_DELIVERED
                b.run_sync(lambda db: move_status(db, mid, GEM, delivered, None, T0))
            finally:
                b_finished.set()

        # b's move waits for a's lock on the message (or, without it, commits at once)
        threading.Thread(target=move, daemon=True).start()
        _waits_for_a_lock(url, b._db._conn.info.backend_pid, b_finished)  # type: ignore[attr-defined]  # PgConnection wraps psycopg

    a._db = _PausedAfter(a._db, "SELECT org, status", b_moves_meanwhile)  # type: ignore[assignment]  # a stand-in with the same execute()
    await a.run(lambda db: move_status(db, mid, GEM, OutboundEvent.PUBLISHED, None, T0))
    assert await asyncio.to_thread(b_finished.wait, HANG_S)
    assert a.read("SELECT status FROM outbox_recipients WHERE message_id=?", (mid,)) == [
        ("delivered",)
    ]


@pytest.mark.postgres
async def test_the_lead_passes_to_another_process_when_the_leader_dies(pg_url: str) -> None:
    url = schema_url(pg_url, "lead")
    lead_a, lead_b, stop_a, stop_b = (asyncio.Event() for _ in range(4))
    task_a = asyncio.create_task(coordinate(url, lead_a, lambda _w: None, stop_a, retry_s=0.2))
    await asyncio.wait_for(lead_a.wait(), FAILOVER_S)
    task_b = asyncio.create_task(coordinate(url, lead_b, lambda _w: None, stop_b, retry_s=0.2))
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            holders = conn.execute(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid = %s"
                " AND objsubid = 2 AND granted AND database ="
                " (SELECT oid FROM pg_database WHERE datname = current_database())",
                (LEADER,),
            ).fetchall()
            assert len(holders) == 1
            assert not lead_b.is_set(), "one leader"
            # the leader's process is killed: the server ends its session (as on kill -9)
            conn.execute("SELECT pg_terminate_backend(%s)", (holders[0][0],))
        loop = asyncio.get_running_loop()
        started = loop.time()
        await asyncio.wait_for(lead_b.wait(), FAILOVER_S)
        assert loop.time() - started < FAILOVER_S
        # the old leader noticed it lost its session and stepped down
        while lead_a.is_set():  # noqa: ASYNC110 - nothing signals a cleared Event
            await asyncio.sleep(0.05)
    finally:
        stop_a.set()
        stop_b.set()
        await asyncio.gather(task_a, task_b)
    assert not lead_a.is_set(), "a stopped process does not lead"
    assert not lead_b.is_set()


@pytest.mark.postgres
async def test_an_arrival_committed_by_one_process_wakes_the_others(
    stores: tuple[PostgresStore, PostgresStore, str],
) -> None:
    a, _b, url = stores
    heard: asyncio.Queue[str] = asyncio.Queue()
    leading, stopping = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(coordinate(url, leading, heard.put_nowait, stopping))
    try:
        assert await asyncio.wait_for(heard.get(), FAILOVER_S) == "*", "listening"
        await a.commit(InsertInbox(_inbox("019cbd58-c2a0-7000-8000-000000000009")))
        assert await asyncio.wait_for(heard.get(), FAILOVER_S) == "inbox"
    finally:
        stopping.set()
        await task


async def test_on_sqlite_the_one_process_leads_at_once(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "node.db")
    ctx = SimpleNamespace(store=store, leading=asyncio.Event())
    try:
        await coordinate_node(cast(NodeContext, ctx))
        assert ctx.leading.is_set()
    finally:
        await store.close()


@pytest.mark.parametrize(("shared", "ready"), [(False, False), (True, True)])
def test_a_standby_consumer_is_ready_only_when_the_store_is_shared(
    shared: bool, ready: bool
) -> None:
    # decision 0080: a standby on its own store would split the organisation's view; on a
    # shared store it serves the same inbox and receipts (decision 0109)
    node = SimpleNamespace(
        consumer=SimpleNamespace(role="standby"), store=SimpleNamespace(shared=shared)
    )
    check = Node._consumer_readiness(cast(Node, node))
    assert check["ok"] is ready
    assert check["role"] == "standby"


@pytest.mark.postgres
async def test_a_long_poll_on_one_process_is_woken_by_an_arrival_at_the_other(
    pg_url: str, tmp_path: Path, federation: FederationFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = schema_url(pg_url, "wake")
    pol = await open_node(federation, "politie", tmp_path / "pol")
    gem_a = await open_node(federation, "gemeente", tmp_path / "gem-a", store__url=url)
    gem_b = await open_node(federation, "gemeente", tmp_path / "gem-b", store__url=url)
    ctx = gem_b.service.ctx
    listening = asyncio.Event()
    heard = ctx.heard

    def hear(what: str) -> None:
        heard(what)
        if what == "*":
            listening.set()

    ctx.heard = hear  # type: ignore[method-assign]  # the test listens in
    coordination = asyncio.create_task(coordinate_node(ctx))
    try:
        await asyncio.wait_for(listening.wait(), FAILOVER_S)
        read_empty = asyncio.Event()
        take_inbox = gem_b.store.take_inbox

        async def read(limit: int, after: int = 0) -> list[InboxRow]:
            rows = await take_inbox(limit, after)
            if not rows:
                read_empty.set()
            return rows

        monkeypatch.setattr(gem_b.store, "take_inbox", read)
        poll = asyncio.create_task(gem_b.service.inbox.waiting(limit=10, wait=10 * HANG_S))
        await asyncio.wait_for(read_empty.wait(), HANG_S)  # it read nothing, and waits
        sent = await pol.send_example("case.referral")
        assert await pol.carry_to(gem_a) == [Deliver()]  # consumed by the other process
        items = await asyncio.wait_for(poll, HANG_S)
        assert [i.message_id for i in items] == [sent]
    finally:
        await ctx.begin_stop()
        await coordination
        for node in (pol, gem_a, gem_b):
            await node.close()


@pytest.mark.postgres
async def test_zvg_audit_verify_reads_a_postgresql_store_and_finds_a_tamper(
    pg_url: str, tmp_path: Path, federation: FederationFiles
) -> None:
    url = schema_url(pg_url, "verify")
    gem = await open_node(federation, "gemeente", tmp_path / "gem", store__url=url)
    try:
        audit = gem.service.audit
        await gem.store.commit(audit.append([_record(), _record(), _record()], T0))
        signed = await audit.checkpoint()
        assert signed is not None
        size = audit.size
    finally:
        await gem.close()
    config = tmp_path / "gem" / "node.toml"
    ok = await asyncio.to_thread(
        CliRunner().invoke, cli, ["audit", "verify", "--config", str(config)]
    )
    assert ok.exit_code == 3, ok.output  # every check passed; no partner cosigned (yet)
    assert f"records: {size} verified" in ok.output
    assert "checkpoints: 1 verified" in ok.output
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE audit_records SET view = replace(view, 'ok', 'error') WHERE idx = 0")
    bad = await asyncio.to_thread(
        CliRunner().invoke, cli, ["audit", "verify", "--config", str(config)]
    )
    assert bad.exit_code == 1, bad.output


@pytest.mark.postgres
async def test_a_witness_head_signed_by_the_leader_is_not_a_truncation_at_another_process(
    stores: tuple[PostgresStore, PostgresStore, str],
) -> None:
    # a partner's answer about our head reaches whichever process consumes: its tree may lag
    a, b, _url = stores
    key = Ed25519PrivateKey.generate()
    log_a, log_b = await _log(a, key), await _log(b, key)
    await a.commit(log_a.append([_record(), _record()], T0))
    signed = await log_a.checkpoint()
    assert signed is not None
    assert log_b.compare(note.Checkpoint(ORIGIN, signed.size, signed.root)) == "consistent"


class _PausedAfter:
    """A writer's connection that, right after a statement starting with ``prefix`` ran (its
    row lock taken), calls ``meanwhile()`` once, on the writer's thread, before going on."""

    def __init__(self, db: Any, prefix: str, meanwhile: Any) -> None:
        self.db, self.prefix, self.meanwhile = db, prefix, meanwhile

    @property
    def in_transaction(self) -> bool:
        return bool(self.db.in_transaction)

    def execute(self, sql: str, params: Any = ()) -> Any:
        cursor = self.db.execute(sql, params)
        if sql.startswith(self.prefix) and self.meanwhile is not None:
            meanwhile, self.meanwhile = self.meanwhile, None
            meanwhile()
        return cursor

    def executemany(self, sql: str, seq: Any) -> Any:
        return self.db.executemany(sql, seq)

    def close(self) -> None:
        self.db.close()


def _waits_for_a_lock(url: str, pid: int, done: threading.Event | None = None) -> None:
    """Return once backend ``pid`` waits for a lock, or ``done`` is set (bounded: only stops a
    hang)."""
    with psycopg.connect(url, autocommit=True) as conn:
        deadline = time.monotonic() + HANG_S
        while time.monotonic() < deadline:
            if done is not None and done.is_set():
                return
            row = conn.execute(
                "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)
            ).fetchone()
            if row is not None and row[0] == "Lock":
                return
            time.sleep(0.005)
    raise AssertionError(f"backend {pid} never waited for a lock")


@pytest.mark.postgres
async def test_an_inbox_ack_and_an_outbox_publish_in_two_processes_do_not_deadlock(
    stores: tuple[PostgresStore, PostgresStore, str],
) -> None:
    """The bug (seen in the chaos soak's logs: ``DeadlockDetected``): the audit sequencer's
    advisory lock was taken by each append, in the middle of its transaction. Process a's ack of
    an inbox message locked the message's row, then waited for the sequencer; process b's group
    commit held the sequencer (an outbox publish's append earlier in the group) and then its
    ack of the same message (the adapters of both processes ack it) waited for that row."""
    a, b, url = stores
    key = Ed25519PrivateKey.generate()
    log_a, log_b = await _log(a, key), await _log(b, key)
    mid = "019cbd58-c2a0-7000-8000-000000000001"
    assert (await a.commit(InsertInbox(_inbox(mid)))).applied

    def ack() -> SettleInbox:
        return SettleInbox(POL, mid, InboundEvent.ACK, None, T0, T0 + timedelta(days=1))

    loop = asyncio.get_running_loop()
    b_done: asyncio.Future[Committed] = loop.create_future()

    def b_commits_meanwhile() -> None:  # on a's writer thread, a's row lock held
        async def commit() -> None:
            try:
                # the sequencer first (the publish's append), then the inbox row (the ack)
                b_done.set_result(
                    await b.commit(log_b.append([_record("message.publish")], T0), ack())
                )
            except Exception as exc:  # noqa: BLE001 - shown by the assert below
                b_done.set_exception(exc)

        asyncio.run_coroutine_threadsafe(commit(), loop)
        _waits_for_a_lock(url, b._db._conn.info.backend_pid)  # type: ignore[attr-defined]  # PgConnection wraps psycopg

    a._db = _PausedAfter(a._db, "UPDATE inbox SET status", b_commits_meanwhile)  # type: ignore[assignment]  # a stand-in with the same execute()
    acked = await a.commit(ack(), log_a.append([_record("adapter.ack")], T0))
    async with asyncio.timeout(HANG_S):
        second = await b_done
    assert acked.applied, "the first ack lands"
    assert not second.applied, "the second ack of the same message changes nothing"
    assert a.read("SELECT status FROM inbox WHERE message_id=?", (mid,)) == [("accepted",)]
    assert len(a.read("SELECT idx FROM audit_records")) == 1


@pytest.mark.postgres
async def test_a_commit_postgresql_aborted_as_a_deadlock_victim_is_run_again(
    stores: tuple[PostgresStore, PostgresStore, str],
) -> None:
    """What one lock order cannot rule out (two commits moving two recipients' statuses in
    opposite orders): PostgreSQL aborts one of them with ``DeadlockDetected``, which reached its
    caller as a raw psycopg error (an ack answered 503, a publish task's exception was never
    retrieved). A commit of commands may run again: the store runs the victim again."""
    a, b, url = stores
    entry = dataclasses.replace(_outbox(0), recipients=((GEM, ("ZVH",)), (POL, ("ZVH",))))
    mid = entry.message_id
    await a.commit(InsertOutbox(entry, T0))
    loop = asyncio.get_running_loop()
    b_done: asyncio.Future[Committed] = loop.create_future()

    def move(org: str, event: OutboundEvent) -> SetStatus:
        return SetStatus(mid, org, event, None, T0)

    def b_commits_meanwhile() -> None:  # on a's writer thread, a's lock on GEM's row held
        async def commit() -> None:
            try:
                delivered = OutboundEvent.RECEIPT_DELIVERED
                b_done.set_result(await b.commit(move(POL, delivered), move(GEM, delivered)))
            except Exception as exc:  # noqa: BLE001 - shown by the assert below
                b_done.set_exception(exc)

        asyncio.run_coroutine_threadsafe(commit(), loop)
        _waits_for_a_lock(url, b._db._conn.info.backend_pid)  # type: ignore[attr-defined]  # PgConnection wraps psycopg

    a._db = _PausedAfter(a._db, "UPDATE outbox_recipients SET status", b_commits_meanwhile)  # type: ignore[assignment]  # a stand-in with the same execute()
    published = OutboundEvent.PUBLISHED
    first = a.commit(move(GEM, published), move(POL, published))
    results = await asyncio.gather(first, b_done, return_exceptions=True)
    assert [type(r) for r in results] == [Committed, Committed], results
    rows = a.read(
        "SELECT org, status FROM outbox_recipients WHERE message_id=? ORDER BY org", (mid,)
    )
    assert rows == [(GEM, "delivered"), (POL, "delivered")]


@pytest.mark.postgres
async def test_the_last_two_recipients_becoming_final_in_two_processes_at_once_date_the_message(
    stores: tuple[PostgresStore, PostgresStore, str],
) -> None:
    """The race: a status move read every recipient's status, then moved its own. Process a
    read (b's recipient not final yet), b moved its recipient meanwhile reading a's not final
    either, and neither set the message's ``final_at``: its envelope kept the longer deadline of
    an unfinished message."""
    a, b, url = stores
    entry = dataclasses.replace(_outbox(0), recipients=((GEM, ("ZVH",)), (POL, ("ZVH",))))
    mid = entry.message_id
    await a.commit(InsertOutbox(entry, T0))
    loop = asyncio.get_running_loop()
    b_done: asyncio.Future[Committed] = loop.create_future()
    b_finished = threading.Event()
    accepted = OutboundEvent.RECEIPT_ACCEPTED

    def b_commits_meanwhile() -> None:  # on a's writer thread, right after a read the statuses
        async def commit() -> None:
            try:
                b_done.set_result(await b.commit(SetStatus(mid, POL, accepted, None, T0)))
            except Exception as exc:  # noqa: BLE001 - shown by the assert below
                b_done.set_exception(exc)
            finally:
                b_finished.set()

        asyncio.run_coroutine_threadsafe(commit(), loop)
        _waits_for_a_lock(url, b._db._conn.info.backend_pid, b_finished)  # type: ignore[attr-defined]  # PgConnection wraps psycopg

    a._db = _PausedAfter(a._db, "SELECT org, status", b_commits_meanwhile)  # type: ignore[assignment]  # a stand-in with the same execute()
    first = a.commit(SetStatus(mid, GEM, accepted, None, T0))
    results = await asyncio.gather(first, b_done)
    assert [r.applied for r in results] == [True, True]
    assert a.read("SELECT final_at FROM outbox WHERE message_id=?", (mid,)) == [(T0.timestamp(),)]
