"""The audit log's retention shred reads only the records that passed retention since its last run.

Bug: the shred (every ``retention.purge_interval_seconds``, 60 s by default) read every record up
to the cutoff — by the time index, three times: the pseudonym index rows, the kept evidence, the
personal parts — so its cost grew with the whole history, shredded records included, and every
commit of the node waited behind it (≈ 1 s with nothing to do on 800,000 records, on this
machine). The log now remembers the cutoff it shredded up to (``audit_shredded``) and reads only
records after it. Measured here in SQLite virtual-machine steps on the writer's connection (a
progress handler called on every step): a count, not a time, so a busy machine cannot change it.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from gateway.audit.log import AUDIT_SCHEMA, AuditLog
from gateway.node.store import SqliteStore
from tests.audit_logs import open_log
from tests.console.data.conftest import NOW, msg

RETENTION_S = 86400 * 365


async def _log(path: Path) -> tuple[SqliteStore, AuditLog]:
    store = SqliteStore(path, schemas=(AUDIT_SCHEMA,))
    log = await open_log(store, retention_s=RETENTION_S)
    return store, log


async def _steps_of_a_shred_with_nothing_due(tmp_path: Path, shredded_before: int) -> int:
    store, log = await _log(tmp_path / f"{shredded_before}.db")
    try:
        old = NOW - timedelta(days=400)
        records = [
            msg(i, "message.send", at=old + timedelta(seconds=i)) for i in range(shredded_before)
        ]
        await store.commit(log.append(records, NOW))
        await store.commit(log.append([msg(10**6, "message.send", at=NOW)], NOW))
        assert await log.shred(NOW) == shredded_before
        steps = 0

        def count() -> int:
            nonlocal steps
            steps += 1
            return 0

        store._db.set_progress_handler(count, 1)
        try:
            assert await log.shred(NOW + timedelta(minutes=1)) == 0
        finally:
            store._db.set_progress_handler(None, 1)
        return steps
    finally:
        await store.close()


async def test_a_shred_with_nothing_due_does_not_read_the_records_shredded_before(
    tmp_path: Path,
) -> None:
    few = await _steps_of_a_shred_with_nothing_due(tmp_path, 20)
    many = await _steps_of_a_shred_with_nothing_due(tmp_path, 400)
    # Before the fix: 20x the records shredded before, ~20x the steps (every one read again).
    assert many <= few + 50, (few, many)


async def test_records_that_pass_retention_after_a_shred_are_shredded_by_the_next(
    tmp_path: Path,
) -> None:
    store, log = await _log(tmp_path / "n.db")
    try:
        year = timedelta(seconds=RETENTION_S)
        times = [NOW - year - timedelta(days=2), NOW - year + timedelta(days=1), NOW]
        await store.commit(
            log.append([msg(i, "message.send", at=t) for i, t in enumerate(times)], NOW)
        )
        personal = "SELECT idx FROM audit_records WHERE personal IS NOT NULL ORDER BY idx"
        assert await log.shred(NOW) == 1
        assert store.read(personal) == [(1,), (2,)]
        # A longer retention set in between moves the cutoff back: nothing to do, nothing undone.
        assert await log.shred(NOW - timedelta(days=30)) == 0
        assert await log.shred(NOW + timedelta(days=2)) == 1
        assert store.read(personal) == [(2,)]
    finally:
        await store.close()
