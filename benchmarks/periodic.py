"""The periodic jobs on a node with a long history: index seeks vs the full scans before.

    .venv/bin/python -m benchmarks.periodic [--messages N] [--rounds N]

A SQLite store (the node's own schema) is filled with ``N`` settled messages sent and ``N``
received — envelopes and payloads already purged, every recipient answered, as months of a
node's history look — plus 100 open ones, and ``4 N`` audit records. Then each periodic job
runs in a transaction that is rolled back, timed as the best of ``--rounds``: the store's
(``gateway.node.store.periodic``: the metrics gauges, every 5 s and at every outbox scan; the
expiry of unanswered messages; the retention purge, nothing due) and the audit log's retention
shred (``gateway.audit.log.shred_up_to``, every 60 s; the older 80 % of the records shredded by
earlier runs, a minute's records due now). First on the store as it is, then with the periodic
indexes dropped and the shred's mark of its last cutoff removed: the baseline, how every node
ran these jobs before. Each job runs in the writer's transaction, so its time is how long every
commit of the node waits behind it. Results go to benchmarks/results/periodic.json: ms per run
before and now, and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks._report import print_table, write_results
from gateway.audit.log import AUDIT_SCHEMA, shred_up_to
from gateway.node.store import SqliteStore, periodic

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
OPEN = 100
Job = Callable[[sqlite3.Connection], Any]
ORGS = ("00000001999000001000", "00000001999000004000")


def _fill(path: Path, n: int) -> None:
    """``n`` settled messages each way and ``OPEN`` open ones, spread over the last 200 days."""
    db = sqlite3.connect(path)
    t_end = NOW.timestamp()
    with db:
        for i in range(n + OPEN):
            settled = i < n
            mid = str(uuid.UUID(int=i))
            created = t_end - 200 * 86400 * (1 - i / (n + OPEN))
            db.execute(
                "INSERT INTO outbox (message_id, message_type, purpose, case_ref, created_at,"
                " expires_at, digest, envelope, final_at, purge_after)"
                " VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    mid,
                    "case.referral",
                    "ZVH.AANMELDING",
                    f"Veenstad-2026-{i % 10_000:04d}",
                    created,
                    created + 3 * 86400,
                    b"d" * 32,
                    None if settled else b"e" * 6000,
                    created + 60 if settled else None,
                    created + 30 * 86400,
                ),
            )
            for org in ORGS:
                db.execute(
                    "INSERT INTO outbox_recipients (message_id, org, roles, status, updated_at,"
                    " published) VALUES (?,?,?,?,?,1)",
                    (mid, org, '["ZVH"]', "accepted" if settled else "sent", created + 60),
                )
            db.execute(
                "INSERT INTO inbox (sender, message_id, digest, message_type, roles, received_at,"
                " expires_at, status, claims, inner_jws, settled_at, purge_after, forget_after)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    ORGS[0],
                    mid,
                    b"d" * 32,
                    "case.referral",
                    '["ZVH"]',
                    created,
                    created + 3 * 86400,
                    "accepted" if settled else "delivered",
                    None if settled else b"{}" * 1000,
                    None if settled else b"j" * 2000,
                    created + 60 if settled else None,
                    created + 30 * 86400,
                    created + 400 * 86400,
                ),
            )
            db.execute(
                "INSERT INTO idempotency VALUES (?,?,?,?,?)",
                ("adapter", mid, b"r" * 32, mid, t_end - 6 * 86400 * (1 - i / (n + OPEN))),
            )
    db.close()


def _fill_audit(path: Path, n: int) -> float:
    """``4 n`` audit records over the same 200 days, the older 80 % shredded by earlier runs of
    a 160-day retention; returns the cutoff of the next run (a minute after the last)."""
    db = sqlite3.connect(path)
    records, t_end, span = 4 * n, NOW.timestamp(), 200 * 86400
    cutoff = t_end - 0.2 * span
    personal = json.dumps({"data_subjects": ["sub-c1Ra8Hn4Pe2Ydk"], "case_ref": "Veenstad-1"})
    with db:
        db.executemany(
            "INSERT INTO audit_records (idx, leaf, view, personal, salt, name, time, trace_id,"
            " message_id, case_ref) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (
                (
                    i,
                    b"l" * 32,
                    '{"name":"message.send"}',
                    *kept,
                    "message.send",
                    t,
                    f"{i:032x}",
                    str(uuid.UUID(int=i // 4)),
                    None,
                )
                for i in range(records)
                for t in [t_end - span * (1 - i / records)]
                for kept in [(None, None) if t <= cutoff else (personal, b"s" * 32)]
            ),
        )
        db.execute("INSERT INTO audit_shredded (id, upto) VALUES (0, ?)", (cutoff,))
    db.close()
    return cutoff + 60


def _best_ms(db: sqlite3.Connection, job: Job, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        db.execute("BEGIN IMMEDIATE")
        start = time.perf_counter()
        job(db)
        best = min(best, time.perf_counter() - start)
        db.execute("ROLLBACK")
    return best * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    jobs: dict[str, Job] = {
        "gauges": lambda db: periodic.gauges(db, NOW),
        "expire_outbox": lambda db: periodic.expire_outbox(db, NOW - timedelta(days=1)),
        "purge": lambda db: periodic.purge(db, NOW - timedelta(days=400)),
    }
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "node.db"
        # the node's schema, indexes included
        asyncio.run(SqliteStore(path, schemas=(AUDIT_SCHEMA,)).close())
        print(f"filling a store with {args.messages:,} settled messages each way ...")
        _fill(path, args.messages)
        cutoff = _fill_audit(path, args.messages)
        jobs["audit shred"] = lambda db: shred_up_to(db, cutoff)
        db = sqlite3.connect(path, isolation_level=None)
        with_ms = {name: _best_ms(db, job, args.rounds) for name, job in jobs.items()}
        for name in re.findall(r"CREATE INDEX IF NOT EXISTS (\w+)", periodic.PERIODIC_INDEXES):
            db.execute(f"DROP INDEX {name}")
        db.execute("DELETE FROM audit_shredded")
        without_ms = {name: _best_ms(db, job, args.rounds) for name, job in jobs.items()}
        db.close()
    rows = [
        [name, without_ms[name], with_ms[name], without_ms[name] / with_ms[name]] for name in jobs
    ]
    print_table(["job", "scan (before), ms", "now, ms", "ratio"], rows)
    write_results(
        "periodic",
        {
            "messages_each_way": args.messages,
            "open_messages": OPEN,
            "rounds": args.rounds,
            "scan_ms": without_ms,
            "index_ms": with_ms,
            "ratio": {name: without_ms[name] / with_ms[name] for name in jobs},
        },
    )


if __name__ == "__main__":
    main()
