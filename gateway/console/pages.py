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
import re
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, TypeVar
from urllib.parse import urlencode

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
from gateway.console.data.records import (
    MAX_PAGE,
    BadQuery,
    NotAllowed,
    SearchPage,
    SearchRequest,
    search_records,
    to_csv,
)
from gateway.console.data.records import RecordRow as SearchRowT
from gateway.console.data.subject import NotABsn, looks_like_bsn, subject_pseudonym
from gateway.console.i18n import translate
from gateway.console.reads import Health, access_rows, health, message_story, policy_sentence
from gateway.console.roles import OFFICERS, Role
from gateway.console.session import Session
from gateway.core.audit import OPERATIONS
from gateway.errors import LocalError, RemoteError
from schemas import ids

__all__ = ["SearchRefusedError", "add_routes", "parse_search", "read_store", "request_session"]

T = TypeVar("T")

READERS = (*OFFICERS, Role.AUDITOR)
_MAX_TEXT = 200
_OIN = re.compile(r"^[0-9]{20}$")
_TOKEN = re.compile(r"^[A-Za-z0-9._:/+=-]{1,200}$")
_CURSOR = re.compile(r"^\d{1,12}(?:\.\d{1,6})?~\d{1,15}$")
STATUSES = ("ok", "denied", "rejected", "error")


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


read_store = _read
"""For the other page modules: a job on a read-only store connection, in a thread."""
request_session = _session
"""For the other page modules: the session :func:`gateway.console.app.allow` let through."""


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


def _text(query: Mapping[str, str], name: str) -> str | None:
    value = query.get(name, "").strip()
    if not value:
        return None
    if len(value) > _MAX_TEXT:
        raise SearchRefusedError("search.bad", f"{name} is too long")
    if ids.find_bsn(value) and not (name == "subject" and looks_like_bsn(value)):
        raise SearchRefusedError("search.bsn")
    return value


def _day(query: Mapping[str, str], name: str, *, end: bool) -> datetime | None:
    value = query.get(name, "").strip()
    if not value:
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise SearchRefusedError("search.bad", f"{name} is not a date (YYYY-MM-DD)") from None
    start = datetime.combine(day, time(0), tzinfo=UTC)
    return start + timedelta(days=1) if end else start


def parse_search(query: Mapping[str, str], role: Role) -> tuple[SearchRequest, bool]:
    """The search in ``query`` (the page's form) as ``role`` may ask it, and whether anything
    was asked. The subject may be a pseudonym or a typed BSN (the only field where a BSN is
    not refused; :func:`search_page` turns it into the pseudonym before anything else).
    Raises :class:`SearchRefusedError`."""
    q = SearchRequest(
        message_id=_text(query, "message_id"),
        case_ref=_text(query, "case_ref"),
        trace_id=_text(query, "trace_id"),
        subject=_text(query, "subject"),
        partner=_text(query, "partner"),
        purpose=_text(query, "purpose"),
        operation=_text(query, "operation"),
        legal_basis=_text(query, "legal_basis"),
        status=_text(query, "status"),
        since=_day(query, "since", end=False),
        until=_day(query, "until", end=True),
        cursor=_text(query, "cursor"),
    )
    for name in ("message_id", "trace_id", "purpose", "legal_basis"):
        value = getattr(q, name)
        if value is not None and not _TOKEN.match(value):
            raise SearchRefusedError("search.bad", f"{name} has characters it cannot have")
    if q.subject is not None and not looks_like_bsn(q.subject) and not _TOKEN.match(q.subject):
        raise SearchRefusedError("search.bad", "subject has characters it cannot have")
    if q.partner is not None and not _OIN.match(q.partner):
        raise SearchRefusedError("search.bad", "partner must be an OIN (20 digits)")
    if q.operation is not None and q.operation not in OPERATIONS:
        raise SearchRefusedError("search.bad", "unknown operation")
    if q.status is not None and q.status not in STATUSES:
        raise SearchRefusedError("search.bad", "unknown status")
    if q.cursor is not None and not _CURSOR.match(q.cursor):
        raise SearchRefusedError("search.bad", "cursor is not a page of this search")
    asked = bool(q.filters())
    if role is Role.CONTACTPUNT:
        if set(q.filters()) - {"subject"}:
            raise SearchRefusedError("search.only_subject")
        return q, q.subject is not None
    if role is Role.AUDITOR and (q.case_ref is not None or q.subject is not None):
        raise SearchRefusedError("error.forbidden")
    return q, asked


def pseudonym_key(console: Console) -> bytes | None:
    """This organisation's subject pseudonym key (``console.pseudonym_key_file``), or ``None``
    when none is configured (then a subject is searched by pseudonym only)."""
    path = console.settings.pseudonym_key_file
    if path is None:
        return None
    key: bytes = path.read_bytes().rstrip(b"\r\n")
    return key


_BSN_REFUSALS = {
    "invalid": ("search.bad", "not a valid BSN"),
    "no-key": ("search.bad", "this console has no pseudonym key"),
    "short-key": ("search.bad", "the pseudonym key is too short"),
    "forbidden": ("error.forbidden", ""),
    "only-subject": ("search.only_subject", ""),
    "elsewhere": ("search.bsn", ""),
    "other": ("search.bad", "the search was refused (the BSN typed was not kept)"),
}
"""A search with a typed BSN (as subject, or where none may be typed) that is refused is
answered by a redirect to ``/search?bsn=<code>`` (the page then shows the refusal), so the BSN is
not in the page or its links either."""


def _bsn_refused(problem: SearchRefusedError) -> web.Response:
    code = next(
        (c for c, kp in _BSN_REFUSALS.items() if kp == (problem.key, problem.problem)), "other"
    )
    return see_other(f"/search?bsn={code}")


def _bsn_to_pseudonym(console: Console, form: dict[str, str]) -> dict[str, str] | None:
    """``form`` with a typed BSN in ``subject`` replaced by its pseudonym (``None``: no BSN
    typed). The BSN goes nowhere else: not into a record, a log line, an exception, or the
    page (the answer is a redirect to the pseudonym's search)."""
    subject = form.get("subject", "").strip()
    if not looks_like_bsn(subject):
        return None
    try:
        key = pseudonym_key(console)
    except OSError:
        key = None
    if key is None:
        raise SearchRefusedError("search.bad", "this console has no pseudonym key")
    try:
        pseudonym = subject_pseudonym(key, subject)
    except NotABsn:
        raise SearchRefusedError("search.bad", "not a valid BSN") from None
    except LocalError:
        raise SearchRefusedError("search.bad", "the pseudonym key is too short") from None
    return {**form, "subject": pseudonym}


def _filters(q: SearchRequest) -> dict[str, str]:
    """The non-personal filters, as the access record keeps them."""
    out = {
        "partner": q.partner or "",
        "purpose": q.purpose or "",
        "operation": q.operation or "",
        "legal_basis": q.legal_basis or "",
        "status": q.status or "",
        "since": q.since.date().isoformat() if q.since else "",
        "until": (q.until - timedelta(days=1)).date().isoformat() if q.until else "",
        "cursor": q.cursor or "",
    }
    return {k: v for k, v in out.items() if v}


def _access(session: Session, page: str, q: SearchRequest, count: int) -> Access:
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


def _refused(problem: SearchRefusedError) -> int:
    return 403 if problem.key in ("error.forbidden", "search.only_subject") else 400


@allow(*READERS, Role.CONTACTPUNT)
async def search_page(request: web.Request) -> web.StreamResponse:
    """Search the audit log (form and one page of results, newest first)."""
    console = request.app[CONSOLE]
    session = _session(request)
    role = session.identity.role
    form = dict(request.query)
    refusal = _BSN_REFUSALS.get(form.get("bsn", ""))
    if refusal is not None:  # after a refused BSN search (the BSN is not in this URL)
        problem = SearchRefusedError(*refusal)
        context: dict[str, Any] = {"form": {}, "page": None, "problem": problem}
        return render(
            request, "search.html", {**context, **_columns(role)}, status=_refused(problem)
        )
    try:
        q, asked = parse_search(form, role)  # the role may search by subject, if it is one
        pseudonymised = _bsn_to_pseudonym(console, form)
        if pseudonymised is not None:
            return see_other("/search?" + urlencode(pseudonymised))
    except SearchRefusedError as problem:
        if looks_like_bsn(form.get("subject", "")) or problem.key == "search.bsn":
            return _bsn_refused(problem)
        context = {"form": form, "page": None, "problem": problem}
        return render(
            request, "search.html", {**context, **_columns(role)}, status=_refused(problem)
        )
    page: SearchPage | None = None
    if asked or role is not Role.CONTACTPUNT:
        request_ = replace(q, page_size=console.settings.page_size)
        try:
            page = await _read(
                console,
                search_records,
                role,
                request_,
                pseudonym_key=None,
                names=console.directory.names(),
            )
        except (BadQuery, NotAllowed) as exc:
            refused = SearchRefusedError("search.bad", str(exc))
            context = {"form": form, "page": None, "problem": refused}
            return render(request, "search.html", {**context, **_columns(role)}, status=400)
        await console.look(_access(session, "search", q, len(page.rows)))
    context = {"form": form, "page": page, "problem": None}
    return render(request, "search.html", {**context, **_columns(role)})


def _columns(role: Role) -> dict[str, Any]:
    return {
        "personal": role is not Role.AUDITOR,
        "contactpunt": role is Role.CONTACTPUNT,
        "operations": sorted(OPERATIONS),
        "statuses": STATUSES,
        "csv_allowed": role in READERS,
    }


@allow(*READERS)
async def search_csv(request: web.Request) -> web.StreamResponse:
    """The search's records as CSV (up to ``console.export_max_rows``, in pages of
    :data:`MAX_PAGE` read one after the other)."""
    console = request.app[CONSOLE]
    session = _session(request)
    role = session.identity.role
    if looks_like_bsn(request.query.get("subject", "")):  # the page turns it into a pseudonym
        return error_page(request, "error.not_found", 400)
    try:
        q, _ = parse_search(dict(request.query), role)
    except SearchRefusedError as problem:
        return error_page(
            request, problem.key if problem.key != "search.bad" else "error.not_found", 400
        )
    names = console.directory.names()
    limit = console.settings.export_max_rows

    def run(db: sqlite3.Connection) -> list[SearchRowT]:
        rows: list[SearchRowT] = []
        cursor = q.cursor
        while len(rows) < limit:
            size = min(MAX_PAGE, limit - len(rows))
            found = search_records(
                db,
                role,
                replace(q, cursor=cursor, page_size=size),
                pseudonym_key=None,
                names=names,
            )
            rows += found.rows
            cursor = found.next_cursor
            if cursor is None:
                break
        return rows

    try:
        rows = await _read(console, run)
    except (BadQuery, NotAllowed):
        return error_page(request, "error.not_found", 400)
    await console.look(_access(session, "search.csv", q, len(rows)))
    stamp = console.clock().strftime("%Y%m%dT%H%M%SZ")
    return web.Response(
        body=to_csv(rows).encode("utf-8"),
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
    names = console.directory.names()
    policy = [
        (r, policy_sentence(view, names))
        for r, view in zip(story.records, story.views, strict=True)
        if r.operation == "policy.decision"
    ]
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
