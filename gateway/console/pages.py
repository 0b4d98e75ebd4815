"""The basic pages: Overview (the log's health), Search (with CSV export), Message, and the
console's own access log. Read views, all without JavaScript; each records its look first
(``Console.look``: a ``console.access`` record, or no page).

What a role sees (deny by default, :mod:`gateway.console.roles`):

- officers (security, privacy): every page, personal fields (case reference, pseudonyms);
- auditor: overview, search, message, CSV, without personal fields, and no search by a
  personal field (case reference, subject);
- contactpunt: search by subject only.
"""

from __future__ import annotations

import asyncio
import csv
import io
import re
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, TypeVar

from aiohttp import web
from markupsafe import Markup

from gateway.audit.inspect import open_readonly, verify_log
from gateway.console.access import Access
from gateway.console.app import (
    CONSOLE,
    Console,
    Verification,
    allow,
    error_page,
    lang_of,
    render,
    see_other,
    session_of,
)
from gateway.console.data.alerts import Alert
from gateway.console.data.overview import Chart, Overview, chart_rows, chart_svg
from gateway.console.data.overview import overview as overview_figures
from gateway.console.i18n import translate
from gateway.console.reads import (
    Health,
    RecordRow,
    SearchQuery,
    access_rows,
    health,
    message_story,
    search,
)
from gateway.console.roles import OFFICERS, Role
from gateway.console.session import Session
from gateway.core.audit import OPERATIONS
from gateway.errors import RemoteError
from schemas import ids

__all__ = ["SearchRefusedError", "add_routes", "parse_search"]

T = TypeVar("T")

READERS = (*OFFICERS, Role.AUDITOR)
_MAX_TEXT = 200
_OIN = re.compile(r"^[0-9]{20}$")
_TOKEN = re.compile(r"^[A-Za-z0-9._:/+=-]{1,200}$")
STATUSES = ("ok", "denied", "rejected", "error")
_FILTERS = (
    *("message_id", "case_ref", "trace_id", "subject", "partner", "purpose"),
    *("operation", "status", "since", "until", "before"),
)


class SearchRefusedError(ValueError):
    """A search the console refuses; ``key`` is the message (``search.bsn`` ...)."""

    def __init__(self, key: str, problem: str = "") -> None:
        super().__init__(problem or key)
        self.key = key
        self.problem = problem


async def _read(console: Console, job: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``job(db, *args, **kwargs)`` on a read-only connection to the store, in a thread."""

    def run() -> T:
        with open_readonly(console.store_path) as db:
            return job(db, *args, **kwargs)

    return await asyncio.to_thread(run)


def _session(request: web.Request) -> Session:
    session = session_of(request)
    if session is None:  # allow() lets only sessions through
        raise web.HTTPForbidden
    return session


# ---------------------------------------------------------------------------- overview


@dataclass(frozen=True)
class _ChartView:
    key: str
    chart: Chart
    svg: Markup
    rows: Sequence[tuple[date, tuple[int, ...], int]]


def _overview_read(
    db: sqlite3.Connection, console: Console, now: datetime, waiting_before: datetime
) -> tuple[Health, Overview]:
    found = health(db, console.directory, console.org, waiting_before=waiting_before)
    figures = overview_figures(
        db,
        now=now,
        own_org=console.org,
        names=console.directory.names(),
        log_size=found.records,
        tz=console.settings.tz,
    )
    return found, figures


@allow(*READERS, Role.CONTACTPUNT)
async def overview(request: web.Request) -> web.StreamResponse:
    """The log's health (records, checkpoint, cosigners, witnessing, fork evidence), the open
    alerts (officers) and 30 days of messages per purpose and per partner and of policy denials
    (SVG charts, each with its numbers as a table)."""
    from gateway.console.review_pages import read_alerts

    session = _session(request)
    role = session.identity.role
    if role is Role.CONTACTPUNT:
        return see_other("/search")
    console = request.app[CONSOLE]
    now = console.clock()
    wait = timedelta(hours=console.settings.receipt_wait_hours)
    found, figures = await _read(console, _overview_read, console, now, now - wait)
    alerts: tuple[Alert, ...] | None = await read_alerts(console) if role in OFFICERS else None
    await console.look(Access(session.identity, "overview", found.records))
    age = None
    if found.checkpoint_at is not None:
        age = _age(now - found.checkpoint_at)
    lang = lang_of(request)
    charts = [
        _ChartView(
            key,
            chart,
            Markup(chart_svg(chart, label=translate(lang, key))),  # noqa: S704 - chart_svg escapes every text
            chart_rows(chart),
        )
        for key, chart in (
            ("overview.chart.purpose", figures.per_purpose),
            ("overview.chart.partner", figures.per_partner),
            ("overview.chart.denials", figures.denials),
        )
    ]
    open_alerts = [a for a in alerts or () if a.acknowledged is None]
    context = {
        "health": found,
        "checkpoint_age": age,
        "verification": console.verification,
        "charts": charts,
        "alerts": None if alerts is None else open_alerts,
        "critical": sum(1 for a in open_alerts if a.severity == "critical"),
    }
    return render(request, "overview.html", context)


@allow(*OFFICERS, Role.AUDITOR)
async def verify_now(request: web.Request) -> web.StreamResponse:
    """Verify the whole log now (``zvg audit verify``, without asking the witnesses); the
    result stays on the overview until the next run or a restart."""
    console = request.app[CONSOLE]
    session = _session(request)
    config = console.service.config
    retention = timedelta(days=config.retention.audit_personal_days)
    started = console.clock()

    def run() -> Verification:
        with open_readonly(console.store_path) as db:
            try:
                report = verify_log(
                    db,
                    directory=console.directory,
                    org=console.org,
                    now=started,
                    personal_retention=retention,
                )
            except RemoteError as exc:
                return Verification(started, False, 0, 0, exc.detail)
        return Verification(started, True, report.records, report.witnessed, "")

    if console.verifying.locked():
        return see_other("/")
    async with console.verifying:
        result = await asyncio.to_thread(run)
    console.verification = result
    await console.look(Access(session.identity, "verify", result.records, {"ok": str(result.ok)}))
    return see_other("/")


def _age(delta: timedelta) -> str:
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"


# ---------------------------------------------------------------------------- search


def _text(query: dict[str, str], name: str) -> str | None:
    value = query.get(name, "").strip()
    if not value:
        return None
    if len(value) > _MAX_TEXT:
        raise SearchRefusedError("search.bad", f"{name} is too long")
    if ids.find_bsn(value):
        raise SearchRefusedError("search.bsn")
    return value


def _day(query: dict[str, str], name: str, *, end: bool) -> datetime | None:
    value = query.get(name, "").strip()
    if not value:
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise SearchRefusedError("search.bad", f"{name} is not a date (YYYY-MM-DD)") from None
    start = datetime.combine(day, time(0), tzinfo=UTC)
    return start + timedelta(days=1) if end else start


def parse_search(query: dict[str, str], role: Role) -> tuple[SearchQuery, bool]:
    """The search in ``query`` (the page's form) as ``role`` may ask it, and whether anything
    was asked. Raises :class:`SearchRefusedError`."""
    q = SearchQuery(
        message_id=_text(query, "message_id"),
        case_ref=_text(query, "case_ref"),
        trace_id=_text(query, "trace_id"),
        subject=_text(query, "subject"),
        partner=_text(query, "partner"),
        purpose=_text(query, "purpose"),
        operation=_text(query, "operation"),
        status=_text(query, "status"),
        since=_day(query, "since", end=False),
        until=_day(query, "until", end=True),
    )
    for name in ("message_id", "trace_id", "purpose"):
        value = getattr(q, name)
        if value is not None and not _TOKEN.match(value):
            raise SearchRefusedError("search.bad", f"{name} has characters it cannot have")
    if q.partner is not None and not _OIN.match(q.partner):
        raise SearchRefusedError("search.bad", "partner must be an OIN (20 digits)")
    if q.operation is not None and q.operation not in OPERATIONS:
        raise SearchRefusedError("search.bad", "unknown operation")
    if q.status is not None and q.status not in STATUSES:
        raise SearchRefusedError("search.bad", "unknown status")
    before = query.get("before", "").strip()
    if before:
        if not before.isdigit() or len(before) > 18:
            raise SearchRefusedError("search.bad", "before must be a record number")
        q = replace(q, before=int(before))
    asked = any(getattr(q, n) is not None for n in _FILTERS)
    if role is Role.CONTACTPUNT:
        others = [
            n
            for n in (
                "message_id",
                "case_ref",
                "trace_id",
                "partner",
                "purpose",
                "operation",
                "status",
            )
            if getattr(q, n) is not None
        ]
        if others:
            raise SearchRefusedError("search.only_subject")
        return q, q.subject is not None
    if role is Role.AUDITOR and (q.case_ref is not None or q.subject is not None):
        raise SearchRefusedError("error.forbidden")
    return q, asked


def _filters(q: SearchQuery) -> dict[str, str]:
    """The non-personal filters, as the access record keeps them."""
    out = {
        "partner": q.partner or "",
        "purpose": q.purpose or "",
        "operation": q.operation or "",
        "status": q.status or "",
        "since": q.since.date().isoformat() if q.since else "",
        "until": (q.until - timedelta(days=1)).date().isoformat() if q.until else "",
        "before": str(q.before) if q.before is not None else "",
    }
    return {k: v for k, v in out.items() if v}


def _access(session: Session, page: str, q: SearchQuery, count: int) -> Access:
    return Access(
        session.identity,
        page,
        count,
        _filters(q),
        message_id=q.message_id,
        trace_id=q.trace_id,
        case_ref=q.case_ref,
        subjects=(q.subject,) if q.subject else (),
    )


@allow(*READERS, Role.CONTACTPUNT)
async def search_page(request: web.Request) -> web.StreamResponse:
    """Search the audit log (form and one page of results, newest first)."""
    console = request.app[CONSOLE]
    session = _session(request)
    role = session.identity.role
    form = dict(request.query)
    try:
        q, asked = parse_search(form, role)
    except SearchRefusedError as problem:
        status = 403 if problem.key in ("error.forbidden", "search.only_subject") else 400
        context: dict[str, Any] = {"form": form, "rows": None, "problem": problem}
        context["next_before"] = None
        return render(request, "search.html", {**context, **_columns(role)}, status=status)
    rows: list[RecordRow] | None = None
    next_before = None
    if asked or role is not Role.CONTACTPUNT:
        size = console.settings.page_size
        found = await _read(console, search, q, limit=size + 1)
        rows = found[:size]
        if len(found) > size:
            next_before = rows[-1].index
        await console.look(_access(session, "search", q, len(rows)))
    context = {"form": form, "rows": rows, "problem": None}
    context["next_before"] = next_before
    return render(request, "search.html", {**context, **_columns(role)})


def _columns(role: Role) -> dict[str, Any]:
    return {
        "personal": role in OFFICERS,
        "contactpunt": role is Role.CONTACTPUNT,
        "operations": sorted(OPERATIONS),
        "statuses": STATUSES,
        "csv_allowed": role in READERS,
    }


def _cell(value: str) -> str:
    """A CSV cell a spreadsheet will not run as a formula."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


@allow(*READERS)
async def search_csv(request: web.Request) -> web.StreamResponse:
    """The search's records as CSV (up to ``console.export_max_rows``)."""
    console = request.app[CONSOLE]
    session = _session(request)
    role = session.identity.role
    try:
        q, _ = parse_search(dict(request.query), role)
    except SearchRefusedError as problem:
        return error_page(
            request, problem.key if problem.key != "search.bad" else "error.not_found", 400
        )
    rows = await _read(console, search, q, limit=console.settings.export_max_rows)
    await console.look(_access(session, "search.csv", q, len(rows)))
    personal = role in OFFICERS
    out = io.StringIO()
    writer = csv.writer(out)
    header = [
        "index",
        "time",
        "operation",
        "status",
        "message_id",
        "trace_id",
        "type",
        "purpose",
        "partner",
        "recipients",
        "legal_basis",
        "policy",
        "reason",
        "receipt",
    ]
    writer.writerow(header + (["case_ref", "subjects"] if personal else []))
    for r in rows:
        cells = [
            str(r.index),
            r.time,
            r.operation,
            r.status,
            r.message_id or "",
            r.trace_id or "",
            r.message_type or "",
            r.purpose or "",
            r.partner or "",
            " ".join(r.recipients),
            " ".join(r.legal_basis),
            r.policy,
            r.reason,
            r.receipt,
        ]
        if personal:
            cells += [r.case_ref or "", " ".join(r.subjects)]
        writer.writerow([_cell(c) for c in cells])
    stamp = console.clock().strftime("%Y%m%dT%H%M%SZ")
    return web.Response(
        body=out.getvalue().encode("utf-8"),
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="zvg-audit-{stamp}.csv"'},
    )


# ---------------------------------------------------------------------------- message


@allow(*READERS)
async def message_page(request: web.Request) -> web.StreamResponse:
    """One message: metadata, this node's records, the partners' receipts checked."""
    console = request.app[CONSOLE]
    session = _session(request)
    message_id = request.match_info["message_id"]
    if not _TOKEN.match(message_id) or ids.find_bsn(message_id):
        raise web.HTTPNotFound
    story = await _read(console, message_story, message_id, console.directory, console.clock())
    await console.look(
        Access(
            session.identity,
            "message",
            len(story.records) + len(story.receipts),
            message_id=message_id,
        )
    )
    first = next((r for r in reversed(story.records) if r.message_type), None)
    policy = [r for r in story.records if r.operation == "policy.decision"]
    return render(
        request,
        "message.html",
        {
            "message_id": message_id,
            "story": story,
            "first": first,
            "policy": policy,
            "personal": session.identity.role in OFFICERS,
        },
        status=200 if story.records or story.receipts else 404,
    )


# ---------------------------------------------------------------------------- access log


@allow(*OFFICERS)
async def access_page(request: web.Request) -> web.StreamResponse:
    """Who looked at what in this console (``console.access``, ``console.login``)."""
    console = request.app[CONSOLE]
    session = _session(request)
    before_text = request.query.get("before", "")
    before = int(before_text) if before_text.isdigit() and len(before_text) < 19 else None
    size = console.settings.page_size
    found = await _read(console, access_rows, before=before, limit=size + 1)
    rows = found[:size]
    await console.look(Access(session.identity, "access", len(rows), {"before": str(before or "")}))
    next_before = rows[-1].index if len(found) > size else None
    return render(request, "access.html", {"rows": rows, "next_before": next_before})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/", overview)
    app.router.add_post("/verify", verify_now)
    app.router.add_get("/search", search_page)
    app.router.add_get("/search.csv", search_csv)
    app.router.add_get("/message/{message_id}", message_page)
    app.router.add_get("/access", access_page)
