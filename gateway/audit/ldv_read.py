"""The audit log read as Logboek Dataverwerkingen lines for the LDV read API
(``POST /v1/processing-activities``, :mod:`gateway.node.ldv_api`; docs/decisions/0102).

A query names a trace, a processing activity or a data subject (a pseudonym: a BSN is turned
into one before it gets here), and optionally a time range. It returns the same lines as
``zvg audit export --format ldv`` (:func:`gateway.audit.ldv.record_lines`: one per subject, the
subjects of a message's publish, deliver, receipt and access records taken from the record
that names them), filtered to the query.

**Pagination** (the read extension leaves it open): lines come in log order, oldest first. A
page ends at a *position* ``(idx, skip)``: the next page starts at record ``idx``, after the
first ``skip`` lines of that record that match the query. The log only grows at its end, so a
walk sees every line that existed when it started exactly once (a record shredded at the end of
retention meanwhile is gone). One page reads at most :data:`SCAN_MAX` records; a page may hold
fewer lines than asked, even none, and still have a next position: only a page without one is
the last.

Reads go through ``read(sql, params)`` (the store's read connection: SQLite or PostgreSQL, the
same SQL); indexed by trace id, message id, subject (``audit_subjects``) and time.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.audit.ldv import message_subjects, record_lines

__all__ = ["SCAN_MAX", "LdvPage", "LdvQuery", "MessageSubjects", "read_page"]

#: Records one page reads at most, whatever it finds: bounds the time one request holds the
#: store's read connection (a rare processing activity over a long log is walked in pages).
SCAN_MAX = 2000

Read = Callable[[str, tuple[Any, ...]], list[tuple[Any, ...]]]


@dataclass(frozen=True)
class LdvQuery:
    """What the caller asks: at least one of ``trace_id`` (32 hex), ``activity`` (a processing
    activity URI) and ``subject`` (a pseudonym); times in seconds since the epoch."""

    trace_id: str | None = None
    activity: str | None = None
    subject: str | None = None
    since: float | None = None
    """Lines of actions that started at or after this."""
    until: float | None = None
    """Lines of actions that ended at or before this."""

    def fingerprint(self) -> str:
        """A digest of the query, kept in its cursors so a cursor serves only its own query
        (the cursor holds no filter value itself)."""
        text = json.dumps(
            [self.trace_id, self.activity, self.subject, self.since, self.until],
            separators=(",", ":"),
        )
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class LdvPage:
    lines: list[dict[str, Any]]
    next_position: tuple[int, int] | None
    """Where the next page starts (module docstring); ``None``: this was the last page."""


def _sql(query: LdvQuery, start: int, scan_max: int) -> tuple[str, tuple[Any, ...]]:
    where = ["idx >= ?"]
    params: list[Any] = [start]
    if query.trace_id is not None:
        where.append("trace_id = ?")
        params.append(query.trace_id)
    if query.subject is not None:
        # The records that name the subject, and every record of their messages.
        # One set, looked up by primary key (an OR of the two would scan the log).
        where.append(
            "idx IN (SELECT idx FROM audit_subjects WHERE subject = ?"
            " UNION SELECT m.idx FROM audit_records m WHERE m.message_id IN"
            " (SELECT r.message_id FROM audit_subjects s JOIN audit_records r ON r.idx = s.idx"
            " WHERE s.subject = ? AND r.message_id IS NOT NULL))"
        )
        params += [query.subject, query.subject]
    # The time column is the end time (never before the start), in seconds; lines have whole
    # milliseconds: a millisecond of leeway here, the exact test in _matches.
    if query.since is not None:
        where.append("time >= ?")
        params.append(query.since - 0.001)
    if query.until is not None:
        where.append("time < ?")
        params.append(query.until + 0.001)
    conditions = " AND ".join(where)
    sql = (
        f"SELECT idx, view, personal FROM audit_records WHERE {conditions}"  # noqa: S608 - only the fixed conditions above; every value is a parameter
        " ORDER BY idx LIMIT ?"
    )
    return sql, (*params, scan_max)


def _matches(query: LdvQuery, line: dict[str, Any]) -> bool:
    attributes = line["attributes"]
    if query.subject is not None and attributes["dpl.core.data_subject_id"] != query.subject:
        return False
    if query.activity is not None and attributes["dpl.core.processing_activity_id"] != (
        query.activity
    ):
        return False
    if query.since is not None and line["startTime"] < round(query.since * 1000):
        return False
    return not (query.until is not None and line["endTime"] > round(query.until * 1000))


class MessageSubjects:
    """The subjects and processing activity of each message, from the first record that names
    them (as the export's first pass), read once per message and page."""

    def __init__(self, read: Read) -> None:
        self._read = read
        self._known: dict[str, tuple[list[str], str | None] | None] = {}

    def of(self, message_id: str | None) -> tuple[list[str], str | None] | None:
        if not message_id:
            return None
        if message_id not in self._known:
            found = None
            rows = self._read(
                "SELECT view, personal FROM audit_records"
                " WHERE message_id = ? AND personal IS NOT NULL ORDER BY idx",
                (message_id,),
            )
            for view_text, personal_text in rows:
                subjects = message_subjects(personal_text)
                if subjects:
                    found = (subjects, json.loads(view_text).get("processing_activity_id"))
                    break
            self._known[message_id] = found
        return self._known[message_id]


def read_page(
    read: Read,
    query: LdvQuery,
    *,
    position: tuple[int, int],
    limit: int,
    org: str,
    activity_of: Callable[[str], str],
    scan_max: int = SCAN_MAX,
) -> LdvPage:
    """Up to ``limit`` lines matching ``query`` from ``position`` on (module docstring)."""
    start, skip = position
    rows = read(*_sql(query, start, scan_max))
    messages = MessageSubjects(read)
    out: list[dict[str, Any]] = []
    for idx, view_text, personal_text in rows:
        view = json.loads(view_text)
        known = messages.of(view.get("message_id"))
        _, lines = record_lines(
            int(idx), view, personal_text, known, org=org, activity_of=activity_of
        )
        matching = [line for line in lines if _matches(query, line)]
        for k in range(skip if idx == start else 0, len(matching)):
            if len(out) == limit:
                return LdvPage(out, (int(idx), k))
            out.append(matching[k])
    if len(rows) == scan_max:  # there may be more after the records this page read
        return LdvPage(out, (int(rows[-1][0]) + 1, 0))
    return LdvPage(out, None)
