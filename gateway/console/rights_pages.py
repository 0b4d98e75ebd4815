"""The inzageverzoek pages (docs/subject-rights.md): for the contactpunt and the officers.

- ``GET /rights``: the requests this node started (term, days left, who has not answered), the
  form that starts one (contactpunt: BSN and how the identity was checked; the BSN is used by
  the node and dropped), and the deferrals this node keeps with the form that releases one
  (privacy officer).
- ``GET /rights/{request_id}``: the report of one request, every organisation's answer in Dutch
  words; ``GET /rights/{request_id}/print`` the same on its own (the print stylesheet), and
  ``GET /rights/{request_id}/pdf`` that page as a PDF (WeasyPrint, as the log review).
- ``POST /rights/start``, ``POST /rights/extend`` (a reason), ``POST /rights/release``.

Every view records its ``console.access`` first. The terms raise alerts
(:func:`deadline_alerts`): two weeks and three days before a request's deadline, and once it
passed, while an organisation has not answered.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import date, datetime
from typing import Any

from aiohttp import web

from gateway.console.access import Access
from gateway.console.app import CONSOLE, Console, allow, error_page, render, see_other, session_of
from gateway.console.data.alerts import Alert
from gateway.console.review_pages import report_pdf
from gateway.console.roles import OFFICERS, Role
from gateway.core.audit import Actor
from gateway.errors import LocalError
from gateway.node.problems import ApiError
from gateway.node.rights_report import Report, build_report

__all__ = ["add_routes", "deadline_alerts"]

log = logging.getLogger("gateway.console")

_READERS = (Role.CONTACTPUNT, *OFFICERS)


def _report(console: Console, doc: dict[str, Any], today: date) -> Report:
    return build_report(
        doc,
        names=console.directory.names(),
        catalogue=console.service.ctx.catalogue,
        today=today,
    )


def _today(console: Console) -> date:
    return console.clock().astimezone(console.settings.tz).date()


def deadline_alerts(console: Console) -> list[Alert]:
    """One alert per open request whose deadline is two weeks or less away (``warning``), three
    days or less or passed (``critical``), naming who has not answered yet."""
    today = _today(console)
    alerts = []
    for doc in console.service.contactpunt.requests():
        report = _report(console, doc, today)
        if report.complete or not report.alerts:
            continue
        reached = min(report.alerts)
        alerts.append(
            Alert(
                f"rights:{report.request_id}:{reached}",
                "rights-deadline",
                "warning" if reached == 14 else "critical",
                datetime.fromisoformat(doc["started_at"]),
                facts=(
                    ("request", report.request_id),
                    ("deadline", report.deadline),
                    ("waiting", ", ".join(report.waiting)),
                ),
            )
        )
    return alerts


def _identity(request: web.Request) -> Any:
    session = session_of(request)
    assert session is not None  # noqa: S101 - @allow let only sessions through
    return session.identity


@allow(*_READERS)
async def rights_page(request: web.Request) -> web.StreamResponse:
    """The requests, the start form, the deferrals."""
    console = request.app[CONSOLE]
    today = _today(console)
    reports = [_report(console, d, today) for d in console.service.contactpunt.requests()]
    deferrals = console.service.rights.deferrals()
    await console.look(Access(_identity(request), "rights", len(reports) + len(deferrals)))
    context = {
        "reports": sorted(reports, key=lambda r: r.deadline),
        "deferrals": deferrals,
        "names": console.directory.names(),
        "problem": request.query.get("problem"),
        "done": request.query.get("ok"),
    }
    return render(request, "rights.html", context)


async def _one(request: web.Request, page: str) -> tuple[Report, dict[str, Any]] | web.Response:
    console = request.app[CONSOLE]
    try:
        doc = console.service.contactpunt.request(request.match_info["request_id"])
    except LocalError:
        doc = None
    if doc is None:
        return error_page(request, "rights.unknown", 404)
    report = _report(console, doc, _today(console))
    await console.look(
        Access(_identity(request), page, len(report.answers), case_ref=report.case_ref)
    )
    return report, {"report": report, "generated": console.clock()}


@allow(*_READERS)
async def report_page(request: web.Request) -> web.StreamResponse:
    """The report of one request, with the extend form."""
    found = await _one(request, "rights.report")
    if isinstance(found, web.Response):
        return found
    return render(request, "rights_report.html", found[1])


@allow(*_READERS)
async def report_print(request: web.Request) -> web.StreamResponse:
    found = await _one(request, "rights.print")
    if isinstance(found, web.Response):
        return found
    return render(request, "rights_print.html", found[1])


@allow(*_READERS)
async def report_pdf_page(request: web.Request) -> web.StreamResponse:
    """The report as a PDF download (what the person receives)."""
    found = await _one(request, "rights.pdf")
    if isinstance(found, web.Response):
        return found
    report, context = found
    page = render(request, "rights_print.html", {**context, "pdf": True})
    assert isinstance(page.text, str)  # noqa: S101 - a rendered template is text
    try:
        pdf = await asyncio.to_thread(report_pdf, page.text)
    except (ImportError, OSError) as exc:  # WeasyPrint or pango missing on this host
        log.warning("console: no PDF of the inzageverzoek (%s)", type(exc).__name__)
        return error_page(request, "review.pdf_unavailable", 503)
    return web.Response(
        body=pdf,
        content_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="inzage-{report.request_id}.pdf"'},
    )


@allow(Role.CONTACTPUNT)
async def start(request: web.Request) -> web.StreamResponse:
    """Start a request (BSN, identity check); the BSN goes to the node and is dropped."""
    console = request.app[CONSOLE]
    form = await request.post()
    try:
        received = str(form.get("received_on") or "")
        doc = await console.service.contactpunt.start(
            bsn=str(form.get("bsn", "")),
            identity_check=str(form.get("identity_check", "")),
            received_on=date.fromisoformat(received) if received else None,
        )
    except ValueError:
        return see_other("/rights?problem=rights.bad_date")
    except LocalError as exc:
        key = "rights.bad_bsn" if "BSN" in str(exc) else "rights.bad_start"
        return see_other(f"/rights?problem={key}")
    return see_other(f"/rights/{doc['request_id']}")


@allow(Role.CONTACTPUNT, Role.PRIVACY_OFFICER)
async def extend(request: web.Request) -> web.StreamResponse:
    """Extend a request's term by two months, with a reason."""
    console = request.app[CONSOLE]
    form = await request.post()
    request_id = str(form.get("request", ""))
    try:
        await console.service.contactpunt.extend(request_id, reason=str(form.get("reason", "")))
    except LocalError:
        return see_other("/rights?problem=rights.bad_extend")
    return see_other(f"/rights/{request_id}")


@allow(Role.PRIVACY_OFFICER)
async def release(request: web.Request) -> web.StreamResponse:
    """Release a deferred answer: the node sends the exchanges now."""
    console = request.app[CONSOLE]
    form = await request.post()
    try:
        identity = _identity(request)
        await console.service.rights.release(
            str(form.get("message", "")),
            actor=Actor(id=identity.subject, role=identity.role.value),
        )
    except (LocalError, ApiError):
        return see_other("/rights?problem=rights.bad_release")
    return see_other("/rights?ok=released")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/rights", rights_page)
    app.router.add_post("/rights/start", start)
    app.router.add_post("/rights/extend", extend)
    app.router.add_post("/rights/release", release)
    app.router.add_get("/rights/{request_id}", report_page)
    app.router.add_get("/rights/{request_id}/print", report_print)
    app.router.add_get("/rights/{request_id}/pdf", report_pdf_page)
