"""Officer console benchmark: first pages of search and the overview on a log of 1,000,000 records.

Run: ``.venv/bin/python -m benchmarks.console`` (``--records 100000`` for a quick run; ``--db
PATH`` keeps the generated store and reuses it on the next run). Prints a table and writes
``benchmarks/results/console.json``.

The store is a real node store written by the node's own :class:`~gateway.audit.log.AuditLog`
(leaf views, salted personal parts, the console's side tables, all in group commits). The log
holds a year of a busy ZVH: messages of 20,000 cases about 50,000 subjects with eight
partners and six purposes, each message leaving its records (send or receive, publish, policy
decision, receipts); the rows are made by a fast path of the real shape (:func:`_row`) and
written by the audit log's own append command, so the console's indexes are built as a node
builds them. Each measurement is the console's own call — the view-model with its
JSON parsing and receipt statuses, 50 rows a page — over a read-only connection as the console
opens one; p50 and p95 over random subjects, cases, partners and 7-day windows.

Baseline, in the same run: reading 50 consecutive records by primary key and parsing them, the
floor of any page. For contrast the unindexed search (``zvg audit query --subject``, which scans
the JSON of every record) is timed a few times.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import fields, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks._report import print_table, write_results
from gateway.audit import inspect
from gateway.audit import search as audit_search
from gateway.audit.log import AUDIT_SCHEMA, AuditLog
from gateway.console.data.alerts import compute_alerts
from gateway.console.data.overview import overview
from gateway.console.data.records import SearchRequest, search_records
from gateway.console.data.review import day_bounds, review_report
from gateway.console.roles import Role
from gateway.core.audit import Record, record_time
from gateway.node.store import AppendAudit, AuditRow, SqliteStore

_COMPACT = json.JSONEncoder(separators=(",", ":"))
_PERSONAL = ("case_ref", "data_subjects", "actor", "note", "adapter_reason")
_VIEW_FIELDS = tuple(f.name for f in fields(Record) if f.name not in _PERSONAL)

OWN = "00000001001234567000"
PARTNERS = tuple(f"0000000100{i:04d}0000000" for i in range(8))
PURPOSES = (
    "ZVH.AANMELDING",
    "ZVH.BEKENDHEID",
    "ZVH.RISICO",
    "ZVH.OVERLEG",
    "ZVH.OVERDRACHT",
    "ZVH.SIGNAAL",
)
CASES = 20_000
SUBJECTS = 50_000
DAYS = 365
NOW = datetime(2026, 12, 1, tzinfo=UTC)
PAGE = 50
TARGET_SEARCH_MS = 300
TARGET_OVERVIEW_MS = 500


def _records(message: int, rng: random.Random) -> list[Record]:
    """The records one message leaves at this node (about five)."""
    case = rng.randrange(CASES)
    at = NOW - timedelta(seconds=rng.uniform(0, DAYS * 86400))
    partner = PARTNERS[case % len(PARTNERS)]
    other = PARTNERS[rng.randrange(len(PARTNERS))]
    outgoing = rng.random() < 0.5
    common: dict[str, Any] = {
        "status": "ok",
        "trace_id": f"{message:032x}",
        "message_id": f"0190a0b0-{message % 65536:04x}-7000-8000-{message:012x}",
        "message_type": "info.request",
        "purpose": PURPOSES[case % len(PURPOSES)],
        "legal_basis": ("WGS",),
        "sender": OWN if outgoing else partner,
        "recipients": (partner, other) if outgoing else (OWN,),
        "data_categories": ("ID_PSEUDO", "BETROKKENHEID"),
        "policy_version": 12,
        "case_ref": f"Veenstad-2026-{case:05d}",
        "data_subjects": (f"sub-{(case * 7 + message % 3) % SUBJECTS:08d}x",),
    }

    def rec(name: str, dt: float, **extra: Any) -> Record:
        t = at + timedelta(seconds=dt)
        # The dataclass itself, without new_record's BSN guard: these values are made here.
        return Record(name=name, start_time=t, end_time=t, **{**common, **extra})

    denied = rng.random() < 0.02
    out = [
        rec(
            "policy.decision",
            0,
            status="denied" if denied else "ok",
            policy_decision="deny" if denied else "allow",
            policy_rule="r17",
        )
    ]
    if denied:
        return out
    if outgoing:
        out += [
            rec("message.send", 0.1),
            rec("message.publish", 0.2, peer=partner),
            rec("receipt.receive", 5, peer=partner, detail={"status": "delivered"}),
            rec("receipt.receive", 600, peer=partner, detail={"status": "accepted"}),
        ]
    else:
        out += [
            rec("message.receive", 0.1),
            rec("receipt.send", 0.2, peer=partner, detail={"status": "delivered"}),
            rec("message.deliver", 30),
            rec("receipt.send", 600, peer=partner, detail={"status": "accepted"}),
        ]
    return out


def _row(record: Record, rng: random.Random) -> AuditRow:
    """``record`` as the audit log stores it, by a fast path of the same shape: every field of
    the leaf view (as :func:`gateway.core.audit.split` writes them), the personal part, a salt;
    the commitments are random hex of the real length instead of HMACs, and the leaf is the
    view's SHA-256. Building a million rows the real way costs minutes of hashing that no
    console query repeats."""
    view: dict[str, Any] = {}
    for name in _VIEW_FIELDS:
        value = getattr(record, name)
        if isinstance(value, datetime):
            value = record_time(value)
        elif isinstance(value, tuple):
            value = list(value)
        elif isinstance(value, dict):
            value = dict(value)
        view[name] = value
    view["commitments"] = {
        "case_ref": rng.randbytes(32).hex(),
        "data_subjects": [rng.randbytes(32).hex() for _ in record.data_subjects],
        "actor": None,
    }
    text = _COMPACT.encode(view)
    personal = {
        "case_ref": record.case_ref,
        "data_subjects": list(record.data_subjects),
        "actor": None,
    }
    return AuditRow(
        record,
        hashlib.sha256(b"\x00" + text.encode()).digest(),
        text,
        _COMPACT.encode(personal),
        rng.randbytes(32),
        NOW.timestamp() + 5 * 365 * 86400,
    )


async def build(path: Path, records: int) -> float:
    """Fill a new store at ``path`` with ``records`` records through the audit log's own append
    command (its indexes included); returns seconds taken."""
    started = time.perf_counter()
    store = SqliteStore(path, schemas=(AUDIT_SCHEMA,))
    await AuditLog.open(
        store, origin="bench.example/x/audit-log", key=None, rand=os.urandom, retention_s=1e10
    )
    rng = random.Random(16)
    message = 0
    written = 0
    batch: list[Record] = []
    while written < records:
        while len(batch) < 5_000:
            batch += _records(message, rng)
            message += 1
        batch = batch[: records - written]
        await store.commit(AppendAudit(tuple(_row(r, rng) for r in batch)))
        written += len(batch)
        batch = []
        if written % 100_000 < 5_000:
            print(f"  {written:,} records", flush=True)
    await store.close()
    return time.perf_counter() - started


def _drop_console_indexes(db: sqlite3.Connection) -> None:
    db.execute("DROP INDEX audit_by_time")
    db.execute("DROP INDEX audit_by_case_time")


async def append_cost(records: int) -> dict[str, float]:
    """µs per record of the audit log's append command (1,000-record commits, as a busy node
    group-commits), with the console's side tables and indexes and, in the same run, without
    them."""

    rng = random.Random(3)
    rows: list[AuditRow] = []
    message = 0
    # A node appends as things happen: in time order, at its pace (here 500 records a second,
    # a busy ZVH at its peak); the store built for the queries holds a year in random order,
    # which only the queries do not mind.
    while len(rows) < records:
        for r in _records(message, rng):
            when = NOW + timedelta(milliseconds=2 * len(rows))
            rows.append(_row(replace(r, start_time=when, end_time=when), rng))
        message += 1
    out: dict[str, float] = {}
    real = audit_search.index_rows
    for label, hook in (
        ("without", lambda *_: None),
        ("with", real),
        ("without_again", lambda *_: None),
    ):
        audit_search.index_rows = hook
        with tempfile.TemporaryDirectory() as tmp:
            store = SqliteStore(Path(tmp) / "n.db", schemas=(AUDIT_SCHEMA,))
            await AuditLog.open(
                store,
                origin="bench.example/x/audit-log",
                key=None,
                rand=os.urandom,
                retention_s=1e10,
            )
            if hook is not real:  # the log as it was before the console: no index of its own
                await store.run(_drop_console_indexes)
            t = time.perf_counter()
            for i in range(0, records, 1_000):
                await store.commit(AppendAudit(tuple(rows[i : i + 1_000])))
            out[label] = (time.perf_counter() - t) / records * 1e6
            await store.close()
    audit_search.index_rows = real
    return out


def _timed(fn: Callable[[], object], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def _p95(ms: list[float]) -> float:
    return statistics.quantiles(ms, n=20, method="inclusive")[18]


def measure(path: Path, runs: int) -> list[dict[str, Any]]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    rng = random.Random(7)
    size = db.execute("SELECT count(*) FROM audit_records").fetchone()[0]
    # Officers look up what exists: subjects and cases of 1,000 random records.
    sample = [
        json.loads(p)
        for (p,) in db.execute(
            "SELECT personal FROM audit_records WHERE idx IN"  # noqa: S608 - integers made here
            f" ({','.join(str(rng.randrange(size)) for _ in range(1000))})"
        )
    ]
    subjects = [p["data_subjects"][0] for p in sample]
    cases = [p["case_ref"] for p in sample]

    def page(request: SearchRequest) -> object:
        return search_records(
            db, Role.SECURITY_OFFICER, request, pseudonym_key=None, names={OWN: "Gemeente"}
        )

    def by_subject() -> object:
        return page(SearchRequest(subject=rng.choice(subjects), page_size=PAGE))

    def by_case() -> object:
        return page(SearchRequest(case_ref=rng.choice(cases), page_size=PAGE))

    def by_partner_time() -> object:
        end = NOW - timedelta(days=rng.uniform(0, DAYS - 7))
        return page(
            SearchRequest(
                partner=rng.choice(PARTNERS),
                since=end - timedelta(days=7),
                until=end,
                page_size=PAGE,
            )
        )

    def the_overview() -> object:
        return overview(db, now=NOW, own_org=OWN, names={}, log_size=size)

    def the_alerts() -> object:
        return compute_alerts(db, now=NOW, own_org=OWN, names={})

    def a_review() -> object:
        day = (NOW - timedelta(days=rng.randrange(1, DAYS - 30))).date()
        start, end = day_bounds(day, UTC)
        return review_report(db, Role.PRIVACY_OFFICER, start=start, end=end, own_org=OWN, names={})

    def baseline() -> object:
        start = rng.randrange(max(size - PAGE, 1))
        return [
            (json.loads(v), json.loads(p) if p else None)
            for v, p in db.execute(
                "SELECT view, personal FROM audit_records WHERE idx >= ? AND idx < ?",
                (start, start + PAGE),
            )
        ]

    def unindexed() -> object:
        return inspect.query(db, subject=rng.choice(subjects), limit=PAGE)

    for fn in (by_subject, by_case, by_partner_time, the_overview, the_alerts, a_review, baseline):
        _timed(fn, 5)  # warm the page cache: an officer's console runs on a warm node
    rows = []
    base = _timed(baseline, runs)
    base_p95 = _p95(base)
    for name, fn, n, target in (
        ("baseline: 50 records by primary key", baseline, runs, None),
        ("search by subject, first page", by_subject, runs, TARGET_SEARCH_MS),
        ("search by case, first page", by_case, runs, TARGET_SEARCH_MS),
        ("search by partner + 7-day range, first page", by_partner_time, runs, TARGET_SEARCH_MS),
        (
            "overview (30 days, per purpose/partner)",
            the_overview,
            max(runs // 4, 20),
            TARGET_OVERVIEW_MS,
        ),
        ("alerts (all kinds, 30-day spike baseline)", the_alerts, max(runs // 4, 20), None),
        ("log review report, one day", a_review, max(runs // 4, 20), None),
        ("unindexed subject scan (zvg audit query)", unindexed, 3, None),
    ):
        ms = base if fn is baseline else _timed(fn, n)
        p95 = _p95(ms) if len(ms) >= 20 else max(ms)
        rows.append(
            {
                "measurement": name,
                "runs": len(ms),
                "p50_ms": round(statistics.median(ms), 2),
                "p95_ms": round(p95, 2),
                "x_baseline_p95": round(p95 / base_p95, 1),
                "target_p95_ms": target,
                "meets_target": None if target is None else p95 <= target,
            }
        )
    db.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=200, help="queries per measurement")
    parser.add_argument("--db", type=Path, help="keep the store here (reused if it exists)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.db or Path(tmp) / "node.db"
        build_s = None
        if not path.exists():
            print(f"building a store of {args.records:,} audit records in {path} ...")
            build_s = asyncio.run(build(path, args.records))
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        records = db.execute("SELECT count(*) FROM audit_records").fetchone()[0]
        db.close()
        size_mb = path.stat().st_size / 1e6
        rows = measure(path, args.runs)
    append = asyncio.run(append_cost(50_000))
    print(f"\n{records:,} audit records, store {size_mb:,.0f} MB")
    print_table(
        ["measurement", "runs", "p50 ms", "p95 ms", "x baseline", "target p95 ms", "meets"],
        [
            [
                r["measurement"],
                r["runs"],
                r["p50_ms"],
                r["p95_ms"],
                r["x_baseline_p95"],
                "" if r["target_p95_ms"] is None else r["target_p95_ms"],
                "" if r["meets_target"] is None else ("yes" if r["meets_target"] else "NO"),
            ]
            for r in rows
        ],
    )
    base_us = min(append["without"], append["without_again"])
    print(
        f"\nappend, 1,000-record commits: {append['with']:.1f} µs/record with the console's"
        f" indexes, {base_us:.1f} without ({append['with'] / base_us:.2f}x)"
    )
    write_results(
        "console",
        {
            "records": records,
            "store_mb": round(size_mb, 1),
            "build_seconds": None if build_s is None else round(build_s, 1),
            "page_size": PAGE,
            "results": rows,
            "append_us_per_record": {
                "with_console_indexes": round(append["with"], 1),
                "without": round(base_us, 1),
                "ratio": round(append["with"] / base_us, 2),
            },
        },
    )


if __name__ == "__main__":
    main()
