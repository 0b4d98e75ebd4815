"""Indexed reads of the audit log for the officer console: by subject, case, partner, time.

The leaf view keeps the exchange fields as JSON and the personal part keeps the subject
pseudonyms, so "every record about this pseudonym" or "every record with this partner last
week" would scan the whole log. Side tables, written in the same transaction as the
records (:func:`index_rows`, called by the audit log's append) make them index seeks:

- ``audit_subjects (subject, time, idx)``: one row per pseudonym of a record. Personal data:
  deleted with the record's personal part at the end of retention (:func:`forget_subjects`).
- ``audit_parties (org, time, idx)``: one row per organisation a record names (sender,
  recipients, peer). Not personal: kept for ever, like the leaf view.
- ``audit_hourly (name, hour, status, purpose, party, n)``: counts per UTC hour, operation,
  status, purpose and party (``*``: every record once, however many parties it names), for the
  overview's 30-day charts and the review report's baselines without reading records;
- ``audit_notable (name, time, idx)``: the records of rare operations (:data:`NOTABLE`, and every
  ``console.*`` record: accesses, acknowledgements, sign-offs), listed one by one.

``audit_indexed.upto`` says up to which index the side tables cover the log; :func:`catch_up`
indexes records written before this module existed (run when the log opens), so an upgraded
node needs no migration step. The order of every page is newest first, ``(time, idx)``
descending, and a page's cursor is its last ``(time, idx)``: keyset pagination, no OFFSET.

No function here logs, and none takes a BSN: the console pseudonymises a typed BSN before it
asks (:mod:`gateway.console.data.subject`).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo
from typing import Any, Literal

from gateway.core.audit import Record

__all__ = [
    "ALL_PARTIES",
    "NOTABLE",
    "SEARCH_SCHEMA",
    "AuditHit",
    "RecordQuery",
    "catch_up",
    "findings",
    "forget_subjects",
    "index_rows",
    "is_notable",
    "notable",
    "receipt_statuses",
    "search",
    "send_trace",
    "sum_by_day",
    "sum_by_hour",
    "utc_offsets",
]

SEARCH_SCHEMA = """
CREATE INDEX IF NOT EXISTS audit_by_time ON audit_records (time);
CREATE INDEX IF NOT EXISTS audit_by_case_time ON audit_records (case_ref, time);
DROP INDEX IF EXISTS audit_by_case;  -- of older stores: audit_by_case_time serves its queries
CREATE TABLE IF NOT EXISTS audit_subjects (
    subject TEXT NOT NULL,       -- a data subject's pseudonym (personal: shredded with the record)
    time    REAL NOT NULL,
    idx     INTEGER NOT NULL,
    PRIMARY KEY (subject, time, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audit_parties (
    org     TEXT NOT NULL,       -- an organisation the record names (sender, recipient, peer)
    time    REAL NOT NULL,
    idx     INTEGER NOT NULL,
    PRIMARY KEY (org, time, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audit_hourly (
    name    TEXT NOT NULL,       -- first: every reader asks for a few operations
    hour    INTEGER NOT NULL,    -- UTC hours since the epoch
    status  TEXT NOT NULL,
    purpose TEXT NOT NULL,       -- '' for records about no message
    party   TEXT NOT NULL,       -- an organisation, or '*' (each record counted once)
    n       INTEGER NOT NULL,
    PRIMARY KEY (name, hour, status, purpose, party)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audit_notable (
    name    TEXT NOT NULL,       -- one of NOTABLE: rare operations the review and alerts list
    time    REAL NOT NULL,
    idx     INTEGER NOT NULL,
    PRIMARY KEY (name, time, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audit_indexed (
    id      INTEGER PRIMARY KEY CHECK (id = 0),
    upto    INTEGER NOT NULL     -- the side tables cover records with idx < upto
);
"""

#: Operations rare enough to list one by one (the log review, alerts, acknowledgements): every
#: console record and what an officer must see individually. Indexed by name and time.
NOTABLE = frozenset(
    {
        "receipt.contradiction",
        "witness.refuse",
        "broker.quarantine",
        "broker.release",
        "directory.change",
        "key.change",
        "retention.purge",
        "rights.erase",
        "refusal.summary",
    }
)


def is_notable(name: str) -> bool:
    return name in NOTABLE or name.startswith("console.")


#: The ``party`` of the hourly counts that counts every record once.
ALL_PARTIES = "*"

_CATCH_UP_BATCH = 10_000
"""Records indexed per statement batch when an older log is indexed on open: bounded memory."""


def _parties(sender: str | None, recipients: Iterable[str], peer: str | None) -> list[str]:
    seen: dict[str, None] = {}
    for org in (sender, *recipients, peer):
        if org:
            seen[org] = None
    return list(seen)


def _index(
    db: sqlite3.Connection,
    rows: Sequence[tuple[int, float, str, str, str, list[str], Sequence[str]]],
) -> None:
    """Index ``(idx, time, name, status, purpose, parties, subjects)`` rows."""
    subjects = [(s, t, i) for i, t, _, _, _, _, subs in rows for s in subs]
    parties = [(o, t, i) for i, t, _, _, _, orgs, _ in rows for o in orgs]
    counts: dict[tuple[str, int, str, str, str], int] = {}
    for _, t, name, status, purpose, orgs, _ in rows:
        hour = int(t // 3600)
        for party in (ALL_PARTIES, *orgs):
            key = (name, hour, status, purpose, party)
            counts[key] = counts.get(key, 0) + 1
    db.executemany("INSERT OR IGNORE INTO audit_subjects VALUES (?,?,?)", subjects)
    db.executemany("INSERT OR IGNORE INTO audit_parties VALUES (?,?,?)", parties)
    db.executemany(
        "INSERT OR IGNORE INTO audit_notable VALUES (?,?,?)",
        [(name, t, i) for i, t, name, _, _, _, _ in rows if is_notable(name)],
    )
    db.executemany(
        "INSERT INTO audit_hourly VALUES (?,?,?,?,?,?) ON CONFLICT"
        " (name, hour, status, purpose, party) DO UPDATE SET n = audit_hourly.n + excluded.n",
        [(*k, n) for k, n in counts.items()],
    )
    if rows:
        db.execute(
            "INSERT INTO audit_indexed (id, upto) VALUES (0, ?)"
            " ON CONFLICT (id) DO UPDATE SET upto = excluded.upto"
            " WHERE excluded.upto > audit_indexed.upto",  # SQLite's and PostgreSQL's upsert
            (rows[-1][0] + 1,),
        )


def index_rows(
    db: sqlite3.Connection,
    records: Sequence[Record],
    indexes: Sequence[int],
    times: Sequence[float] | None = None,
) -> None:
    """Index records just appended at ``indexes`` (in the append's transaction). ``times``: the
    records' ``end_time`` as POSIX seconds, when the caller has them already (as stored)."""
    if times is None:
        times = [r.end_time.timestamp() for r in records]
    _index(
        db,
        [
            (
                i,
                t,
                r.name,
                r.status,
                r.purpose or "",
                _parties(r.sender, r.recipients, r.peer),
                r.data_subjects,
            )
            for i, r, t in zip(indexes, records, times, strict=True)
        ],
    )


def catch_up(db: sqlite3.Connection) -> int:
    """Index the records the side tables do not cover yet (a log written before them); returns
    how many. Idempotent; runs in the caller's transaction."""
    row = db.execute("SELECT upto FROM audit_indexed WHERE id = 0").fetchone()
    upto = int(row[0]) if row is not None else 0
    done = 0
    while True:
        batch = db.execute(
            "SELECT idx, time, view, personal FROM audit_records WHERE idx >= ?"
            " ORDER BY idx LIMIT ?",
            (upto, _CATCH_UP_BATCH),
        ).fetchall()
        if not batch:
            return done
        rows = []
        for idx, t, view_text, personal_text in batch:
            view = json.loads(view_text)
            personal = json.loads(personal_text) if personal_text else {}
            rows.append(
                (
                    int(idx),
                    float(t),
                    str(view["name"]),
                    str(view["status"]),
                    str(view.get("purpose") or ""),
                    _parties(view.get("sender"), view.get("recipients") or (), view.get("peer")),
                    [str(s) for s in personal.get("data_subjects") or ()],
                )
            )
        _index(db, rows)
        upto = rows[-1][0] + 1
        done += len(rows)


def forget_subjects(db: sqlite3.Connection, cutoff: float, since: float = -1.0) -> None:
    """Delete the pseudonym index rows of the records the audit log's shred is about to shred
    (time after ``since`` and at or before ``cutoff``, POSIX times, personal part still held):
    they go with the personal parts. Run it in the shred's transaction, before the personal
    parts are cleared.

    It reads the same records the shred's own update does (by the time index) and deletes by
    primary key, so a shred that finds nothing to do costs no scan of the pseudonym index."""
    rows = db.execute(
        "SELECT idx, time, personal FROM audit_records WHERE time > ? AND time <= ?"
        " AND personal IS NOT NULL",
        (since, cutoff),
    ).fetchall()
    gone = [
        (str(subject), t, idx)
        for idx, t, personal in rows
        for subject in json.loads(personal).get("data_subjects") or ()
    ]
    db.executemany("DELETE FROM audit_subjects WHERE subject = ? AND time = ? AND idx = ?", gone)


# ---------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class RecordQuery:
    """Which records to read, newest first. Every filter is exact and they all must hold;
    times are ``since <= time < until`` (POSIX seconds); ``before`` is the ``(time, idx)`` of
    the last record of the previous page."""

    message_id: str | None = None
    trace_id: str | None = None
    case_ref: str | None = None
    subject: str | None = None
    party: str | None = None
    purpose: str | None = None
    operation: str | None = None
    status: str | None = None
    legal_basis: str | None = None
    since: float | None = None
    until: float | None = None
    before: tuple[float, int] | None = None
    limit: int = 50


@dataclass(frozen=True)
class AuditHit:
    """One record as read: its index, time, leaf view and what is left of its personal part
    (``None`` once shredded)."""

    idx: int
    time: float
    view: dict[str, Any] = field(hash=False, compare=False)
    personal: dict[str, Any] | None = field(hash=False, compare=False)


def _driver(q: RecordQuery) -> tuple[str, str, str, list[Any]]:
    """The FROM clause that seeks the most selective index the query allows, the time and
    index columns that index holds in order, and the clause's values."""
    if q.message_id is not None:
        return "audit_records a WHERE a.message_id = ?", "a.time", "a.idx", [q.message_id]
    if q.trace_id is not None:
        return "audit_records a WHERE a.trace_id = ?", "a.time", "a.idx", [q.trace_id]
    if q.case_ref is not None:
        return "audit_records a WHERE a.case_ref = ?", "a.time", "a.idx", [q.case_ref]
    if q.subject is not None:
        return (
            "audit_subjects s JOIN audit_records a ON a.idx = s.idx WHERE s.subject = ?",
            "s.time",
            "s.idx",
            [q.subject],
        )
    if q.party is not None:
        return (
            "audit_parties p JOIN audit_records a ON a.idx = p.idx WHERE p.org = ?",
            "p.time",
            "p.idx",
            [q.party],
        )
    return "audit_records a WHERE 1", "a.time", "a.idx", []


def search(db: sqlite3.Connection, q: RecordQuery) -> tuple[list[AuditHit], bool]:
    """A page of records matching ``q``, newest first, and whether more follow.

    The query seeks one index (message id, trace id, case, subject, party, else time) and
    reads it in order; the other filters are checked on the rows it yields."""
    source, time_col, idx_col, args = _driver(q)
    where: list[str] = []
    for column, value in (
        ("a.message_id", q.message_id),
        ("a.trace_id", q.trace_id),
        ("a.case_ref", q.case_ref),
        ("a.name", q.operation),
    ):
        if value is not None:
            where.append(f"{column} = ?")
            args.append(value)
    if q.subject is not None and time_col != "s.time":
        where.append(
            "EXISTS (SELECT 1 FROM audit_subjects s2 WHERE s2.subject = ? AND s2.idx = a.idx)"
        )
        args.append(q.subject)
    if q.party is not None and time_col != "p.time":
        where.append("EXISTS (SELECT 1 FROM audit_parties p2 WHERE p2.org = ? AND p2.idx = a.idx)")
        args.append(q.party)
    if q.purpose is not None:
        where.append("json_extract(a.view, '$.purpose') = ?")
        args.append(q.purpose)
    if q.status is not None:
        where.append("json_extract(a.view, '$.status') = ?")
        args.append(q.status)
    if q.legal_basis is not None:
        where.append("EXISTS (SELECT 1 FROM json_each(a.view, '$.legal_basis') WHERE value = ?)")
        args.append(q.legal_basis)
    if q.since is not None:
        where.append(f"{time_col} >= ?")
        args.append(q.since)
    if q.until is not None:
        where.append(f"{time_col} < ?")
        args.append(q.until)
    if q.before is not None:
        where.append(f"({time_col}, {idx_col}) < (?, ?)")
        args += [q.before[0], q.before[1]]
    condition = "".join(f" AND {w}" for w in where)
    sql = (
        f"SELECT a.idx, a.time, a.view, a.personal FROM {source}{condition}"  # noqa: S608 - fixed clauses, bound values
        f" ORDER BY {time_col} DESC, {idx_col} DESC LIMIT ?"
    )
    rows = db.execute(sql, (*args, q.limit + 1)).fetchall()
    hits = [
        AuditHit(int(i), float(t), json.loads(v), json.loads(p) if p else None)
        for i, t, v, p in rows[: q.limit]
    ]
    return hits, len(rows) > q.limit


def send_trace(db: sqlite3.Connection, message_id: str) -> str:
    """The trace id of the ``message.send`` record of ``message_id`` ('' when there is none: a
    receipt, which starts a trace of its own). Reads the message-id index only."""
    row = db.execute(
        "SELECT trace_id FROM audit_records WHERE message_id = ? AND name = 'message.send'"
        " ORDER BY idx LIMIT 1",
        (message_id,),
    ).fetchone()
    return str(row[0] or "") if row is not None else ""


def receipt_statuses(
    db: sqlite3.Connection, message_ids: Sequence[str]
) -> dict[str, dict[str, str]]:
    """Per message id: per organisation, the latest receipt status the log records (a
    partner's receipt we received, or ours we sent) — ``delivered``, ``accepted``,
    ``rejected``. Reads the message-id index only."""
    if not message_ids:
        return {}
    marks = ",".join("?" * len(message_ids))
    out: dict[str, dict[str, str]] = {}
    for mid, view_text in db.execute(
        "SELECT message_id, view FROM audit_records"  # noqa: S608 - placeholders only
        f" WHERE message_id IN ({marks}) AND name IN ('receipt.receive', 'receipt.send')"
        " ORDER BY idx",
        tuple(message_ids),
    ):
        view = json.loads(view_text)
        status = (view.get("detail") or {}).get("status")
        org = view.get("peer") or (
            view.get("sender") if view["name"] == "receipt.receive" else None
        )
        if isinstance(status, str) and org:
            out.setdefault(str(mid), {})[str(org)] = status
    return out


def notable(
    db: sqlite3.Connection,
    names: Sequence[str],
    since: float,
    until: float,
    *,
    limit: int = 1000,
) -> tuple[list[AuditHit], bool]:
    """Records of the notable operations ``names`` with ``since <= time < until``, newest
    first, at most ``limit`` (and whether there were more)."""
    marks = ",".join("?" * len(names))
    rows = db.execute(
        "SELECT a.idx, a.time, a.view, a.personal FROM audit_notable n"  # noqa: S608 - placeholders only
        f" JOIN audit_records a ON a.idx = n.idx WHERE n.name IN ({marks})"
        " AND n.time >= ? AND n.time < ? ORDER BY n.time DESC, n.idx DESC LIMIT ?",
        (*names, since, until, limit + 1),
    ).fetchall()
    hits = [
        AuditHit(int(i), float(t), json.loads(v), json.loads(p) if p else None)
        for i, t, v, p in rows[:limit]
    ]
    return hits, len(rows) > limit


#: The review's one-by-one findings among ordinary records, as SQL conditions on the leaf view:
#: receipts that say ``rejected`` (a partner's or ours), and urgent risk signals.
_FINDINGS = {
    "rejected_receipts": (
        ("receipt.receive", "receipt.send"),
        "json_extract(view, '$.detail.status') = 'rejected'",
    ),
    "risk_signals": (
        ("message.send", "message.receive"),
        (
            "(json_extract(view, '$.message_type') = 'risk.signal' OR EXISTS"
            " (SELECT 1 FROM json_each(view, '$.flags') WHERE value = 'emergency'))"
        ),
    ),
}


def findings(
    db: sqlite3.Connection,
    kind: Literal["rejected_receipts", "risk_signals"],
    since: float,
    until: float,
    *,
    limit: int = 1000,
) -> tuple[list[AuditHit], bool]:
    """The records of one kind of review finding with ``since <= time < until``, oldest first,
    at most ``limit`` (and whether there were more). Reads the time index over the period and
    filters in SQLite: meant for a day or a week, not for a year."""
    names, condition = _FINDINGS[kind]
    rows = db.execute(
        "SELECT idx, time, view, personal FROM audit_records"  # noqa: S608 - fixed clauses, bound values
        f" WHERE time >= ? AND time < ? AND name IN ({','.join('?' * len(names))})"
        f" AND {condition} ORDER BY time, idx LIMIT ?",
        (since, until, *names, limit + 1),
    ).fetchall()
    hits = [
        AuditHit(int(i), float(t), json.loads(v), json.loads(p) if p else None)
        for i, t, v, p in rows[:limit]
    ]
    return hits, len(rows) > limit


def _hourly_sql(
    names: Sequence[str], by: Literal["purpose", "party"], status: str | None
) -> tuple[str, list[Any]]:
    """The ``WHERE`` clause (after the hour range) of a sum over ``audit_hourly`` and its
    arguments."""
    party = "party = '*'" if by == "purpose" else "party != '*'"
    sql = f" AND {party} AND name IN ({','.join('?' * len(names))})"
    args: list[Any] = [*names]
    if status is not None:
        sql += " AND status = ?"
        args.append(status)
    return sql, args


def sum_by_hour(
    db: sqlite3.Connection,
    since: float,
    until: float,
    *,
    names: Sequence[str],
    by: Literal["purpose", "party"],
    status: str | None = None,
) -> list[tuple[int, str, int]]:
    """``(hour, purpose or party, count)`` of the records of operations ``names`` (and
    ``status``, if given) with ``since <= hour start < until``, summed in SQL: each record once
    per purpose, or once per party it names. The review reads a few thousand rows this way
    instead of every hourly row of the month."""
    where, args = _hourly_sql(names, by, status)
    sql = (
        f"SELECT hour, {by}, sum(n) FROM audit_hourly"  # noqa: S608 - fixed clauses, bound values
        f" WHERE hour >= ? AND hour < ?{where} GROUP BY hour, {by}"
    )
    hours = [int(since // 3600), int(-(-until // 3600))]
    return [(int(h), str(k), int(n)) for h, k, n in db.execute(sql, [*hours, *args])]


def utc_offsets(since: float, until: float, tz: tzinfo) -> tuple[tuple[int, int], ...]:
    """``tz``'s offsets from UTC over the hours from ``since`` to ``until``, as ``(first hour,
    offset in seconds)`` from each change on (the first at the first hour): what
    :func:`sum_by_day` needs to put each hour on its local day."""
    out: list[tuple[int, int]] = []
    for hour in range(int(since // 3600), int(-(-until // 3600)) + 1):
        offset = datetime.fromtimestamp(hour * 3600, tz).utcoffset()
        seconds = int(offset.total_seconds()) if offset is not None else 0
        if not out or out[-1][1] != seconds:
            out.append((hour, seconds))
    return tuple(out)


def sum_by_day(
    db: sqlite3.Connection,
    since: float,
    until: float,
    *,
    names: Sequence[str],
    by: Literal["purpose", "party"],
    offsets: Sequence[tuple[int, int]],
    status: str | None = None,
) -> list[tuple[date, str, int]]:
    """As :func:`sum_by_hour`, summed per local day in SQL (each hour on the day of its start
    in the time zone of ``offsets``, from :func:`utc_offsets`): the overview's 30 days per
    purpose or party are a few hundred rows, whatever the log's size."""
    where, args = _hourly_sql(names, by, status)
    # The hour's offset: the last change at or before it (offsets are ascending).
    changes = offsets[1:][::-1]
    shift = "CASE" + " WHEN hour >= ? THEN ?" * len(changes) + " ELSE ? END" if changes else "?"
    shift_args: list[Any] = [x for h, o in changes for x in (h, o)]
    shift_args.append(offsets[0][1] if offsets else 0)
    sql = (
        f"SELECT (hour * 3600 + {shift}) / 86400 AS day, {by}, sum(n)"  # noqa: S608 - fixed clauses, bound values
        f" FROM audit_hourly WHERE hour >= ? AND hour < ?{where} GROUP BY day, {by}"
    )
    hours = [int(since // 3600), int(-(-until // 3600))]
    epoch = date(1970, 1, 1)
    return [
        (epoch + timedelta(days=int(d)), str(k), int(n))
        for d, k, n in db.execute(sql, [*shift_args, *hours, *args])
    ]
