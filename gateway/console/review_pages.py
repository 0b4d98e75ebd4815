"""The Alerts and Log review pages (officers; the auditor reads the review without comments).

- ``GET /alerts``: every alert (:mod:`gateway.console.data.alerts`), critical first, each with
  its acknowledgement; ``POST /alerts/acknowledge`` (an officer, a comment): a
  ``console.acknowledge`` record in the audit log. The alerts are also the
  ``zvg_console_alerts{kind,state}`` gauge (:func:`alert_gauge_loop`, refreshed every minute).
- ``GET /review``: the log review report (:mod:`gateway.console.data.review`) of a day (default:
  yesterday, in UTC) or of any period (``start``, ``end``: dates, the end included), computed
  from the indexed side tables when it is viewed — the report of a day is the same whenever it
  is asked once the day has ended, and a sign-off binds to its digest. ``GET /review/print``:
  the same without navigation, with the print stylesheet; ``GET /review.pdf``: that page as a
  PDF made by WeasyPrint. ``POST /review/sign-off`` (a privacy or security officer, a comment,
  the digest shown): a ``console.review`` record; only for a period that has ended, and only
  when the report still has the digest the officer saw.

Days since the console's first login without a signed-off daily report for longer than
``console.review_unreviewed_days`` raise the ``review-overdue`` alert. Every view and download
records its ``console.access`` first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from datetime import date, datetime, timedelta, tzinfo
from typing import Any

from aiohttp import web

from gateway.audit.inspect import open_readonly
from gateway.console.access import Access
from gateway.console.app import (
    CONSOLE,
    STATIC,
    Console,
    allow,
    error_page,
    render,
    see_other,
    session_of,
)
from gateway.console.data.alerts import (
    Alert,
    AlertSettings,
    acknowledge_record,
    compute_alerts,
    gauge_points,
)
from gateway.console.data.records import BadQuery
from gateway.console.data.review import (
    ReviewReport,
    day_bounds,
    review_report,
    signoff_record,
    unreviewed_days,
)
from gateway.console.roles import OFFICERS, Role
from gateway.console.session import Session
from gateway.errors import GatewayError

__all__ = [
    "ALERT_GAUGE",
    "MAX_REVIEW_DAYS",
    "add_routes",
    "alert_gauge_loop",
    "alert_points",
    "read_alerts",
    "report_pdf",
]

log = logging.getLogger("gateway.console")

ALERT_GAUGE = "zvg.console.alerts"
ALERT_GAUGE_INTERVAL_S = 60.0
MAX_REVIEW_DAYS = 366
"""The longest period a report covers: a year (the counts come from hourly sums)."""
_LOOKBACK_DAYS = 90
"""How far back unreviewed days are looked for (the alert names each day)."""


def _session(request: web.Request) -> Session:
    session = session_of(request)
    if session is None:  # allow() lets only sessions through
        raise web.HTTPForbidden
    return session


def _first_use(db: sqlite3.Connection, tz: tzinfo) -> date | None:
    """The day of the console's first login: days before it have no review to miss."""
    row = db.execute("SELECT min(time) FROM audit_notable WHERE name = 'console.login'").fetchone()
    return None if row is None or row[0] is None else datetime.fromtimestamp(row[0], tz).date()


def _alerts(console: Console, db: sqlite3.Connection, *, show_comments: bool) -> tuple[Alert, ...]:
    now = console.clock()
    directory = console.directory
    expiries = {"directory": directory.payload.expires}
    member = directory.member(console.org)
    for key in member.keys if member is not None else ():
        if key.status == "active":
            expiries[f"key:{key.kid}"] = key.not_after
    tz = console.settings.tz
    first = _first_use(db, tz)
    unreviewed = (
        unreviewed_days(
            db, today=now.astimezone(tz).date(), days=_LOOKBACK_DAYS, tz=tz, since=first
        )
        if first is not None
        else ()
    )
    settings = AlertSettings(
        checkpoint_interval_s=console.service.config.audit.checkpoint_interval_seconds,
        failed_logins=console.settings.max_failed_logins,
        review_overdue_days=console.settings.review_unreviewed_days,
    )
    return compute_alerts(
        db,
        now=now,
        own_org=console.org,
        names=directory.names(),
        settings=settings,
        expiries=expiries,
        unreviewed=unreviewed,
        tz=tz,
        show_comments=show_comments,
        extra=_rights_alerts(console),
    )


def _rights_alerts(console: Console) -> list[Alert]:
    """The inzageverzoek terms' alerts (imported here: the rights pages use this module)."""
    from gateway.console.rights_pages import deadline_alerts

    return deadline_alerts(console)


async def read_alerts(console: Console, *, show_comments: bool = True) -> tuple[Alert, ...]:
    def run() -> tuple[Alert, ...]:
        with open_readonly(console.store_path) as db:
            return _alerts(console, db, show_comments=show_comments)

    return await asyncio.to_thread(run)


async def alert_gauge_loop(app: web.Application) -> None:
    """Keep the ``zvg.console.alerts`` gauge of the node's telemetry current (every minute)."""
    console = app[CONSOLE]
    points: list[tuple[float, dict[str, str]]] = gauge_points(())
    console.service.telemetry.gauges[ALERT_GAUGE] = lambda: list(points)
    while not console.service.stopping:
        try:
            points = await alert_points(console)
        except (GatewayError, sqlite3.Error) as exc:
            log.warning("console: the alerts gauge was not refreshed (%s)", type(exc).__name__)
        await asyncio.sleep(ALERT_GAUGE_INTERVAL_S)


async def alert_points(console: Console) -> list[tuple[float, dict[str, str]]]:
    """The ``zvg.console.alerts`` points now: open and acknowledged alerts per kind."""
    return gauge_points(await read_alerts(console, show_comments=False))


async def _start_gauge(app: web.Application) -> None:
    app[_GAUGE_TASK] = asyncio.create_task(alert_gauge_loop(app))


async def _stop_gauge(app: web.Application) -> None:
    task = app[_GAUGE_TASK]
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


_GAUGE_TASK = web.AppKey("console_alert_gauge", asyncio.Task[None])


# ---------------------------------------------------------------------------- alerts


async def _alerts_page(
    request: web.Request, *, problem: str | None = None, status: int = 200
) -> web.Response:
    console = request.app[CONSOLE]
    session = _session(request)
    alerts = await read_alerts(console)
    await console.look(Access(session.identity, "alerts", len(alerts)))
    context = {"alerts": alerts, "problem": problem, "acknowledged": request.query.get("ok")}
    return render(request, "alerts.html", context, status=status)


@allow(*OFFICERS)
async def alerts_page(request: web.Request) -> web.StreamResponse:
    """The open and acknowledged alerts, critical first."""
    return await _alerts_page(request)


@allow(*OFFICERS)
async def acknowledge(request: web.Request) -> web.StreamResponse:
    """Acknowledge one alert with a comment (a ``console.acknowledge`` record)."""
    console = request.app[CONSOLE]
    session = _session(request)
    form = await request.post()
    alert_id = str(form.get("alert", ""))
    comment = str(form.get("comment", ""))
    alerts = await read_alerts(console)
    alert = next((a for a in alerts if a.id == alert_id), None)
    if alert is None:
        return await _alerts_page(request, problem="alerts.unknown", status=404)
    if alert.acknowledged is not None:
        return see_other("/alerts")
    now = console.clock()
    try:
        record = acknowledge_record(session.identity, alert, comment, at=now)
    except BadQuery as exc:
        key = "alerts.comment.bsn" if "BSN" in str(exc) else "alerts.comment.bad"
        return await _alerts_page(request, problem=key, status=400)
    await console.access.write(record, now)
    return see_other("/alerts?ok=1")


# ---------------------------------------------------------------------------- review


class _BadPeriodError(ValueError):
    pass


def _period(query: dict[str, str], now: datetime, tz: tzinfo) -> tuple[datetime, datetime, bool]:
    """``[start, end)`` of the report asked for (dates in ``tz``, the end day included;
    default: yesterday), and whether it is one day."""
    text_start, text_end = query.get("start", "").strip(), query.get("end", "").strip()
    try:
        today = now.astimezone(tz).date()
        first = date.fromisoformat(text_start) if text_start else today - timedelta(days=1)
        last = date.fromisoformat(text_end) if text_end else first
    except ValueError:
        raise _BadPeriodError("review.bad_date") from None
    if last < first:
        raise _BadPeriodError("review.bad_order")
    if (last - first).days >= MAX_REVIEW_DAYS:
        raise _BadPeriodError("review.too_long")
    start, _ = day_bounds(first, tz)
    _, end = day_bounds(last, tz)
    return start, end, first == last


async def _report(console: Console, role: Role, start: datetime, end: datetime) -> ReviewReport:
    def run() -> ReviewReport:
        with open_readonly(console.store_path) as db:
            return review_report(
                db,
                role,
                start=start,
                end=end,
                own_org=console.org,
                names=console.directory.names(),
                tz=console.settings.tz,
            )

    return await asyncio.to_thread(run)


def _items(report: ReviewReport) -> int:
    return (
        len(report.rejected_receipts)
        + len(report.contradictions)
        + len(report.risk_signals)
        + len(report.console_accesses)
        + len(report.failed_logins)
    )


async def _review(
    request: web.Request, page: str, *, problem: str | None = None, status: int = 200
) -> tuple[dict[str, Any], int] | web.Response:
    console = request.app[CONSOLE]
    session = _session(request)
    now = console.clock()
    query = dict(request.query)
    try:
        start, end, one_day = _period(query, now, console.settings.tz)
    except _BadPeriodError as exc:
        bad = {"report": None, "problem": str(exc), "form": query}
        return render(request, "review.html", {**bad, **_empty()}, status=400)
    report = await _report(console, session.identity.role, start, end)
    filters = {
        "start": start.date().isoformat(),
        "end": (end - timedelta(days=1)).date().isoformat(),
    }
    await console.look(Access(session.identity, page, _items(report), filters))
    context: dict[str, Any] = {
        "report": report,
        "digest": report.digest(),
        "one_day": one_day,
        "ended": end <= now,
        "may_sign": session.identity.role in OFFICERS,
        "form": {"start": filters["start"], "end": filters["end"]},
        "query": f"start={filters['start']}&end={filters['end']}",
        "problem": problem,
        "signed": request.query.get("ok"),
        "generated": now,
    }
    return context, status


def _empty() -> dict[str, Any]:
    return {
        "digest": "",
        "one_day": True,
        "ended": False,
        "may_sign": False,
        "query": "",
        "signed": None,
        "generated": None,
    }


@allow(*OFFICERS, Role.AUDITOR)
async def review_page(request: web.Request) -> web.StreamResponse:
    """The log review report of a day or a period, with its sign-offs and the sign-off form."""
    found = await _review(request, "review")
    if isinstance(found, web.Response):
        return found
    context, status = found
    return render(request, "review.html", context, status=status)


@allow(*OFFICERS, Role.AUDITOR)
async def review_print(request: web.Request) -> web.StreamResponse:
    """The report on its own (the print stylesheet; what the PDF is made of)."""
    found = await _review(request, "review.print")
    if isinstance(found, web.Response):
        return found
    context, status = found
    return render(request, "review_print.html", context, status=status)


def report_pdf(html: str) -> bytes:
    """``html`` (the print page) as a PDF, by WeasyPrint, with the print stylesheet and nothing
    fetched: no URL of any kind is followed (the page's text is escaped, this is the second
    guard)."""
    from weasyprint import CSS, HTML  # only the PDF needs it (and pango)
    from weasyprint.urls import URLFetcher

    nothing = URLFetcher(allowed_protocols=())
    css = CSS(string=(STATIC / "review-print.css").read_text(encoding="utf-8"), url_fetcher=nothing)
    pdf = HTML(string=html, url_fetcher=nothing).write_pdf(stylesheets=[css])
    if not isinstance(pdf, bytes):  # write_pdf without a target returns the bytes
        raise TypeError("WeasyPrint returned no PDF")
    return pdf


@allow(*OFFICERS, Role.AUDITOR)
async def review_pdf(request: web.Request) -> web.StreamResponse:
    """The report as a PDF download."""
    found = await _review(request, "review.pdf")
    if isinstance(found, web.Response):
        return found
    context, _ = found
    page = render(request, "review_print.html", {**context, "pdf": True})
    assert isinstance(page.text, str)  # noqa: S101 - a rendered template is text
    try:
        pdf = await asyncio.to_thread(report_pdf, page.text)
    except (ImportError, OSError) as exc:  # WeasyPrint or Debian's pango missing on this host
        log.warning("console: no PDF of the log review (%s)", type(exc).__name__)
        return error_page(request, "review.pdf_unavailable", 503)
    report: ReviewReport = context["report"]
    name = f"zvg-log-review-{report.start.date().isoformat()}"
    if not context["one_day"]:
        name += f"-{context['form']['end']}"
    return web.Response(
        body=pdf,
        content_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="{name}.pdf"'},
    )


@allow(*OFFICERS)
async def sign_off(request: web.Request) -> web.StreamResponse:
    """Sign off the report of a period that has ended, with a comment (``console.review``)."""
    console = request.app[CONSOLE]
    session = _session(request)
    form = await request.post()
    now = console.clock()
    query = {"start": str(form.get("start", "")), "end": str(form.get("end", ""))}
    try:
        start, end, _ = _period(query, now, console.settings.tz)
    except _BadPeriodError:
        return error_page(request, "review.bad_date", 400)
    where = f"/review?start={query['start']}&end={query['end']}"
    if end > now:
        return error_page(request, "review.not_ended", 409)
    report = await _report(console, session.identity.role, start, end)
    if report.digest() != str(form.get("digest", "")):
        return error_page(request, "review.changed", 409)
    try:
        record = signoff_record(session.identity, report, str(form.get("comment", "")), at=now)
    except BadQuery as exc:
        key = "alerts.comment.bsn" if "BSN" in str(exc) else "alerts.comment.bad"
        request_query = request.rel_url.with_query(query)
        clone = request.clone(rel_url=request_query)
        found = await _review(clone, "review", problem=key, status=400)
        if isinstance(found, web.Response):
            return found
        context, status = found
        return render(clone, "review.html", context, status=status)
    await console.access.write(record, now)
    return see_other(where + "&ok=1")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/alerts", alerts_page)
    app.router.add_post("/alerts/acknowledge", acknowledge)
    app.router.add_get("/review", review_page)
    app.router.add_get("/review/print", review_print)
    app.router.add_get("/review.pdf", review_pdf)
    app.router.add_post("/review/sign-off", sign_off)
    app.on_startup.append(_start_gauge)
    app.on_cleanup.append(_stop_gauge)
