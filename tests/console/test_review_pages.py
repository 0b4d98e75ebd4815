"""The Alerts and Log review pages and the Overview's charts on politie's console (in process):
an alert raised by failed logins, acknowledged with a comment (a ``console.acknowledge``
record, the ``zvg_console_alerts`` gauge); the daily review report, signed off with a comment
(a ``console.review`` record bound to the report's digest), its print page and its PDF
(WeasyPrint); an unreviewed day raising the ``review-overdue`` alert."""

from __future__ import annotations

import re
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest

from gateway.console import review_pages
from gateway.console.review_pages import alert_points
from gateway.console.roles import Role
from tests.console.conftest import ConsoleUnderTest
from tests.console.exchange import referral_accepted

AMSTERDAM = ZoneInfo("Europe/Amsterdam")  # console.timezone's default
_DIGEST = re.compile(r'name="digest" value="([0-9a-f]{64})"')


async def _fail_logins(cut: ConsoleUnderTest, n: int) -> None:
    for _ in range(n):
        answer = await cut.login(Role.CONTACTPUNT, code="000000")
        assert answer.status != 303


def _gauge(cut: ConsoleUnderTest) -> dict[tuple[str, str], float]:
    return {
        (str(a["kind"]), str(a["state"])): v
        for a, v in cut.politie.node.metric("zvg.console.alerts")
    }


async def test_failed_logins_raise_an_alert_an_officer_acknowledges_with_a_comment(
    cut: ConsoleUnderTest,
) -> None:
    await _fail_logins(cut, 5)
    await cut.login(Role.SECURITY_OFFICER)
    page = await (await cut.client.get("/alerts")).text()
    assert "Herhaald mislukte inlogpogingen op de console" in page
    assert "<strong>Open</strong>" in page
    assert cut.records("console.access")[-1]["view"]["detail"]["page"] == "alerts"
    alert_id = re.search(r'name="alert" value="(failed-logins:[0-9]+)"', page)
    assert alert_id is not None
    assert (await alert_points(cut.console)).count(
        (1.0, {"kind": "failed-logins", "state": "open"})
    )

    form = {"csrf": cut.csrf, "alert": alert_id.group(1), "comment": "Mijn collega's typfouten."}
    answer = await cut.client.post("/alerts/acknowledge", data=form, allow_redirects=False)
    assert answer.status == 303
    [record] = cut.records("console.acknowledge")
    assert record["view"]["detail"] == {"alert": alert_id.group(1), "kind": "failed-logins"}
    assert record["personal"]["note"] == "Mijn collega's typfouten."
    assert record["personal"]["actor"]["id"] == "sanne"
    assert record["personal"]["actor"]["role"] == "security-officer"
    assert "note" not in record["view"]  # the comment is personal: shredded with the rest
    page = await (await cut.client.get("/alerts?ok=1")).text()
    assert "Afgehandeld door sanne (security-officer)" in page
    assert "Mijn collega&#39;s typfouten." in page
    points = await alert_points(cut.console)
    assert (1.0, {"kind": "failed-logins", "state": "acknowledged"}) in points
    assert (0.0, {"kind": "failed-logins", "state": "open"}) in points


async def test_an_acknowledgement_without_a_comment_or_with_a_bsn_is_refused(
    cut: ConsoleUnderTest,
) -> None:
    await _fail_logins(cut, 5)
    await cut.login(Role.PRIVACY_OFFICER)
    page = await (await cut.client.get("/alerts")).text()
    alert_id = re.search(r'name="alert" value="(failed-logins:[0-9]+)"', page)
    assert alert_id is not None
    for comment, reason in (("  ", "Een toelichting is verplicht"), ("BSN 111222333", "geen BSN")):
        form = {"csrf": cut.csrf, "alert": alert_id.group(1), "comment": comment}
        answer = await cut.client.post("/alerts/acknowledge", data=form)
        assert answer.status == 400
        assert reason in await answer.text()
    unknown = {"csrf": cut.csrf, "alert": "fork:nothing:1", "comment": "gezien"}
    assert (await cut.client.post("/alerts/acknowledge", data=unknown)).status == 404
    no_token = {"alert": alert_id.group(1), "comment": "gezien"}
    assert (await cut.client.post("/alerts/acknowledge", data=no_token)).status == 403
    assert cut.records("console.acknowledge") == []
    assert "111222333" not in str(cut.records("console.access"))


async def test_the_alerts_page_is_for_officers_only(cut: ConsoleUnderTest) -> None:
    for role in (Role.AUDITOR, Role.CONTACTPUNT):
        cut.client.session.cookie_jar.clear()
        await cut.login(role)
        assert (await cut.client.get("/alerts")).status == 403
        form = {"csrf": cut.csrf, "alert": "x", "comment": "gezien"}
        assert (await cut.client.post("/alerts/acknowledge", data=form)).status == 403


async def test_the_alerts_are_a_gauge_of_the_node_telemetry(cut: ConsoleUnderTest) -> None:
    """The console app registers ``zvg.console.alerts`` in the node's gauges when it starts:
    every kind, open and acknowledged, at 0 before the first computation."""
    gauge = _gauge(cut)
    assert gauge[("fork", "open")] == 0
    assert gauge[("review-overdue", "acknowledged")] == 0
    assert len(gauge) == 18
    assert b"zvg_console_alerts{" in cut.politie.node.service.telemetry.prometheus_text()


async def test_the_daily_review_is_signed_off_with_a_comment_bound_to_its_digest(
    cut: ConsoleUnderTest,
) -> None:
    await referral_accepted(cut)
    day = cut.federation.clock.now.astimezone(AMSTERDAM).date()
    await cut.login(Role.PRIVACY_OFFICER)
    today = await (await cut.client.get(f"/review?start={day}")).text()
    assert "Berichten per partner" in today
    assert "Gemeente Veenstad" in today
    assert "kan worden afgetekend als ze voorbij is" in today  # the day has not ended
    assert 'action="/review/sign-off"' not in today
    assert cut.records("console.access")[-1]["view"]["detail"] == {
        "page": "review",
        "count": 1,  # the look at the search page after the login: the day's console accesses
        "method": "local",
        "filter.end": day.isoformat(),
        "filter.start": day.isoformat(),
    }

    cut.federation.clock.move(days=1)
    cut.client.session.cookie_jar.clear()
    await cut.login(Role.PRIVACY_OFFICER)
    page = await (await cut.client.get("/review")).text()  # default: yesterday
    assert re.search(rf"Periode: {day} 00:00 CES?T tot ", page)
    assert "Nog niet afgetekend." in page
    digest = _DIGEST.search(page)
    assert digest is not None
    stale = {"csrf": cut.csrf, "start": str(day), "end": str(day), "comment": "ok"}
    answer = await cut.client.post("/review/sign-off", data={**stale, "digest": "0" * 64})
    assert answer.status == 409
    form = {**stale, "digest": digest.group(1), "comment": "Geen bijzonderheden <b>gezien</b>."}
    answer = await cut.client.post("/review/sign-off", data=form, allow_redirects=False)
    assert answer.status == 303
    [record] = cut.records("console.review")
    assert record["view"]["detail"]["digest"] == digest.group(1)
    assert re.match(rf"{day}T00:00:00\+0[12]:00/", record["view"]["detail"]["period"])
    assert record["personal"]["note"] == "Geen bijzonderheden <b>gezien</b>."
    page = await (await cut.client.get(answer.headers["Location"])).text()
    assert "Afgetekend door pieter (privacy-officer)" in page
    assert "Geen bijzonderheden &lt;b&gt;gezien&lt;/b&gt;." in page

    cut.client.session.cookie_jar.clear()
    await cut.login(Role.AUDITOR)  # reads the review, without the comments, and signs nothing
    page = await (await cut.client.get(f"/review?start={day}")).text()
    assert "Afgetekend door pieter (privacy-officer)" in page
    assert "Geen bijzonderheden" not in page
    assert 'action="/review/sign-off"' not in page
    assert (await cut.client.post("/review/sign-off", data=form)).status == 403


async def test_the_review_prints_and_downloads_as_a_pdf(cut: ConsoleUnderTest) -> None:
    await referral_accepted(cut)
    day = cut.federation.clock.now.astimezone(AMSTERDAM).date()
    await cut.login(Role.SECURITY_OFFICER)
    printed = await cut.client.get(f"/review/print?start={day}&end={day}")
    text = await printed.text()
    assert printed.status == 200
    assert "/static/review-print.css" in text
    assert 'class="zvg-nav"' not in text
    answer = await cut.client.get(f"/review.pdf?start={day}&end={day}")
    assert answer.status == 200
    assert answer.content_type == "application/pdf"
    assert f'filename="zvg-log-review-{day}.pdf"' in answer.headers["Content-Disposition"]
    body = await answer.read()
    assert body.startswith(b"%PDF-")
    assert len(body) > 5_000  # pages of tables, not an empty document
    pages = [r["view"]["detail"]["page"] for r in cut.records("console.access")[-2:]]
    assert pages == ["review.print", "review.pdf"]


async def test_without_weasyprint_the_pdf_is_refused_and_the_print_view_offered(
    cut: ConsoleUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_pango(html: str) -> bytes:
        raise OSError("cannot load library 'libpango-1.0-0'")

    monkeypatch.setattr(review_pages, "report_pdf", no_pango)
    await cut.login(Role.SECURITY_OFFICER)
    answer = await cut.client.get("/review.pdf")
    assert answer.status == 503
    assert "Gebruik de afdrukversie." in await answer.text()


async def test_a_bad_review_period_is_answered_400(cut: ConsoleUnderTest) -> None:
    await cut.login(Role.SECURITY_OFFICER)
    for query, reason in (
        ("start=gisteren", "JJJJ-MM-DD"),
        ("start=2026-03-02&end=2026-03-01", "voor de begindatum"),
        ("start=2024-01-01&end=2026-01-01", "366 dagen"),
    ):
        answer = await cut.client.get(f"/review?{query}")
        assert answer.status == 400
        assert reason in await answer.text()


async def test_an_unreviewed_day_raises_the_review_overdue_alert(cut: ConsoleUnderTest) -> None:
    await cut.login(Role.SECURITY_OFFICER)  # the console's first use: the review days begin
    first = cut.federation.clock.now.astimezone(AMSTERDAM).date()
    cut.federation.clock.move(days=cut.console.settings.review_unreviewed_days + 1)
    cut.client.session.cookie_jar.clear()
    await cut.login(Role.SECURITY_OFFICER)
    page = await (await cut.client.get("/alerts")).text()
    assert "Logcontrole niet afgetekend" in page
    assert f"review-overdue:{first.isoformat()}" in page
    later = (first + timedelta(days=1)).isoformat()
    assert f"review-overdue:{later}" not in page  # not yet older than the allowed days


async def test_the_overview_charts_thirty_days_with_the_numbers_beside_them(
    cut: ConsoleUnderTest,
) -> None:
    await referral_accepted(cut)
    await _fail_logins(cut, 5)
    await cut.login(Role.SECURITY_OFFICER)
    page = await (await cut.client.get("/")).text()
    assert page.count('<svg xmlns="http://www.w3.org/2000/svg"') == 3
    assert 'aria-label="Berichten per dag per doel"' in page
    assert "De cijfers van deze grafiek: Berichten per dag per partner" in page
    assert page.count('<th class="utrecht-table__header-cell zvg-nowrap" scope="row">') == 90
    assert "<script" not in page
    alerts = page[page.index('id="open-alerts"') : page.index('id="charts"')]
    assert re.search(r">[0-9]+ open, waarvan 0 kritiek</a>", alerts)
    assert "Herhaald mislukte inlogpogingen op de console (" in alerts
    cut.client.session.cookie_jar.clear()
    await cut.login(Role.AUDITOR)
    page = await (await cut.client.get("/")).text()
    assert "Open meldingen" not in page  # alerts are the officers'
    assert page.count("<svg") == 3


async def test_overview_title_holds_no_copy_of_the_waiting_section(cut: ConsoleUnderTest) -> None:
    """Bug on main: overview.html's title block held a copy of the "waiting" section, so the
    page's <title> carried a heading and a table as text."""
    await cut.login(Role.AUDITOR)
    page = await (await cut.client.get("/")).text()
    title = page[page.index("<title>") : page.index("</title>")]
    assert title == "<title>Overzicht · Beheerconsole · Politie, basisteam Veenstad"
    assert page.count('id="waiting"') == 1
