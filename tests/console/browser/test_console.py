"""The officer console in a real browser (issue 16 §5, §6): Debian's Chromium driven by Playwright
against a console the node itself serves, on a real federation on the real RabbitMQ
(tests/console/browser/conftest.py). Logins (local account + TOTP, the OpenID provider), every
page with axe-core and a screenshot, the demo case found by its case reference, a message with
both receipts verified, an evidence bundle verified on the server and in the browser and a
tampered one refused by both, each look's ``console.access`` record, and the browser-side
security checks (no session → login, a cross-site POST refused)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import pytest_asyncio
from playwright.async_api import BrowserContext, Page, expect

from tests.console.browser.conftest import (
    OFFICER,
    PASSWORD,
    Site,
    axe_violations,
)

pytestmark = [pytest.mark.broker, pytest.mark.asyncio(loop_scope="module")]


@dataclass(frozen=True)
class PageSpec:
    """A console page to open, check with axe-core and photograph."""

    name: str
    """Also the screenshot's file name (docs/console/<name>.png)."""
    path: str
    """Formatted with the site (``{message_id}``, ``{case_ref}``)."""
    looks: str | None = None
    """The ``detail.page`` of the ``console.access`` record opening it must leave (None: the page
    shows no records)."""
    logged_in: bool = True


#: Every page of the console; each further page is one line here.
PAGES = [
    PageSpec("login", "/login", logged_in=False),
    PageSpec("overview", "/", looks="overview"),
    PageSpec("search", "/search?case_ref={case_ref}", looks="search"),
    PageSpec("message", "/message/{message_id}", looks="message"),
    PageSpec("evidence", "/evidence"),
    PageSpec("access", "/access", looks="access"),
    PageSpec("case", "/case?ref={case_ref}", looks="case"),
    PageSpec("policy", "/policy", looks="policy"),
    PageSpec("alerts", "/alerts", looks="alerts"),
    PageSpec("review", "/review", looks="review"),
    PageSpec("review-print", "/review/print", looks="review.print"),
    PageSpec("rights", "/rights", looks="rights"),
    PageSpec("notices", "/notices", looks="notices"),
]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def officer(site: Site) -> BrowserContext:
    """A browser profile with the security officer logged in (local account, password + TOTP)."""
    context = await site.context()
    page = await context.new_page()
    await login_local(page, site, OFFICER)
    alerts = page.get_by_role("alert")
    assert await alerts.count() == 0, await alerts.inner_text()
    await expect(page).to_have_url(f"{site.url}/")
    await page.close()
    return context


async def login_local(page: Page, site: Site, user: str) -> None:
    await page.goto("/login")
    await page.get_by_label("Gebruikersnaam").fill(user)
    await page.get_by_label("Wachtwoord").fill(PASSWORD)
    await page.get_by_label("Code uit de authenticator-app").fill(site.totp(user))
    await page.get_by_role("button", name="Inloggen").click()


def looks(site: Site, page: str) -> list[dict[str, Any]]:
    return [r for r in site.records("console.access") if r["view"]["detail"]["page"] == page]


async def test_without_a_session_every_page_sends_the_browser_to_the_login(site: Site) -> None:
    context = await site.context()
    page = await context.new_page()
    for spec in PAGES:
        if spec.logged_in:
            await page.goto(spec.path.format(**vars(site)))
            await expect(page.get_by_role("heading", level=1)).to_have_text("Inloggen")
            url = urlsplit(page.url)
            assert (url.path, parse_qs(url.query)["next"]) == (
                "/login",
                [spec.path.format(**vars(site))],
            )


async def test_a_local_account_logs_in_with_password_and_totp(
    site: Site, officer: BrowserContext
) -> None:
    page = await officer.new_page()
    await page.goto("/")
    await expect(page.get_by_role("navigation")).to_be_visible()
    await expect(page.locator(".zvg-header__who")).to_contain_text("Sanne de Vries")
    logins = [r for r in site.records("console.login") if r["view"]["status"] == "ok"]
    assert any(r["personal"]["actor"]["id"] == OFFICER for r in logins)
    await page.close()


async def test_a_wrong_totp_code_is_refused_in_the_browser(site: Site) -> None:
    context = await site.context()
    page = await context.new_page()
    await page.goto("/login")
    await page.get_by_label("Gebruikersnaam").fill("anouk")
    await page.get_by_label("Wachtwoord").fill(PASSWORD)
    wrong = "000000" if site.totp("anouk") != "000000" else "111111"
    await page.get_by_label("Code uit de authenticator-app").fill(wrong)
    await page.get_by_role("button", name="Inloggen").click()
    await expect(page.get_by_role("alert")).to_be_visible()
    await expect(page).to_have_url(f"{site.url}/login?next=/")
    assert (await context.cookies()) == [] or all(
        c["name"] != "__Host-zvg-console" for c in await context.cookies()
    )


async def test_login_through_the_openid_provider(site: Site) -> None:
    context = await site.context()
    page = await context.new_page()
    await page.goto("/login")
    await page.get_by_role("link", name="organisatie").click()
    # The provider's own login form (tests/console/oidc_provider/provider.mjs).
    await page.get_by_label("Account").fill("fatima")
    await page.get_by_label("Password").fill(site.provider.password)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url(f"{site.url}/")
    await expect(page.locator(".zvg-header__who")).to_contain_text("Fatima El Amrani")
    await expect(page.locator(".zvg-header__who")).to_contain_text("gegevensbescherming")
    oidc = [r for r in site.records("console.login") if r["view"]["detail"]["method"] == "oidc"]
    assert oidc
    assert oidc[-1]["view"]["status"] == "ok"
    assert oidc[-1]["personal"]["actor"]["id"] == "fatima"


def actor(record: dict[str, Any]) -> tuple[str, str]:
    """Who did what ``record`` records: (account, role)."""
    who = record["personal"]["actor"]
    return who["id"], who["role"]


def pseudonym(site: Site) -> str:
    """The demo referral's subject as politie's log keeps it (its pseudonym)."""
    (send,) = [
        r for r in site.records("message.send") if r["view"]["message_id"] == site.message_id
    ]
    subject: str = send["personal"]["data_subjects"][0]
    return subject


async def test_an_auditor_sees_html_in_a_name_as_text_and_no_pseudonym_or_case_reference(
    site: Site,
) -> None:
    context = await site.context()
    page = await context.new_page()
    await login_local(page, site, "anouk")
    await expect(page).to_have_url(f"{site.url}/")
    who = page.locator(".zvg-header__who")
    await expect(who).to_contain_text("Anouk <script>alert(1)</script> Smit")
    assert await page.locator("header script").count() == 0
    subject = pseudonym(site)
    await page.goto(f"/message/{site.message_id}")
    await expect(page.get_by_role("heading", level=1)).to_contain_text(site.message_id)
    for path in (f"/message/{site.message_id}", f"/search?message_id={site.message_id}"):
        await page.goto(path)
        await expect(page.get_by_role("link", name=site.message_id).first).to_be_visible()
        content = await page.content()
        assert site.case_ref not in content, path
        assert subject not in content, path
        assert await axe_violations(page) == [], path
    # Nor may the auditor search by a personal field: the form has none, a typed URL is refused.
    assert await page.locator("#subject").count() == 0
    answer = await page.goto(f"/search?subject={subject}")
    assert answer is not None
    assert answer.status == 403
    assert subject not in await page.locator("main").inner_text()  # (the URL it typed is its own)
    seen = [r for r in looks(site, "message") if r["personal"]["actor"]["id"] == "anouk"]
    assert seen
    assert seen[-1]["personal"]["actor"]["role"] == "auditor"
    searched = [r for r in looks(site, "search") if r["personal"]["actor"]["id"] == "anouk"]
    assert searched
    assert searched[-1]["view"]["message_id"] == site.message_id


async def test_a_contactpunt_searches_by_subject_and_sees_nothing_else(site: Site) -> None:
    context = await site.context()
    page = await context.new_page()
    await login_local(page, site, "karim")
    await expect(page).to_have_url(f"{site.url}/search")  # its first page
    nav = page.get_by_role("navigation")
    # the subject search and the data-subject rights pages (docs/subject-rights.md)
    assert await nav.get_by_role("link").all_inner_texts() == [
        "Zoeken",
        "Inzageverzoeken",
        "Correcties en wissingen",
    ]
    subject = pseudonym(site)
    await page.locator("#subject").fill(subject)
    await page.get_by_role("button", name="Zoeken").click()
    await expect(page.get_by_role("cell", name=site.message_id).first).to_be_visible()
    # Only the subject field; no link to a message or case, no CSV export.
    assert await page.locator("form input:not([type=hidden])").count() == 1
    assert await page.get_by_role("link", name=site.message_id).count() == 0
    assert await page.locator("a[href^='/search.csv']").count() == 0
    assert await axe_violations(page) == []
    record = looks(site, "search")[-1]
    assert actor(record) == ("karim", "contactpunt")
    assert record["personal"]["data_subjects"] == [subject]
    assert record["view"]["detail"]["count"] >= 1
    before = len(site.records("console.access"))
    for path in (
        f"/message/{site.message_id}",
        f"/case?ref={site.case_ref}",
        "/evidence",
        "/policy",
        "/alerts",
        "/review",
        "/access",
        f"/search?case_ref={site.case_ref}",
        f"/search.csv?subject={subject}",
    ):
        answer = await page.goto(path)
        assert answer is not None
        assert answer.status == 403, path
        assert site.message_id not in await page.locator("main").inner_text(), path
    await page.goto("/")  # the overview sends it back to the search
    await expect(page).to_have_url(f"{site.url}/search")
    assert len(site.records("console.access")) == before  # nothing was shown, nothing logged


async def test_an_officer_acknowledges_an_alert_with_a_comment(
    site: Site, officer: BrowserContext
) -> None:
    # Five failed logins (an unknown account) raise the failed-logins alert.
    stranger = await (await site.context()).new_page()
    for _ in range(5):
        await stranger.goto("/login")
        await stranger.get_by_label("Gebruikersnaam").fill("mallory")
        await stranger.get_by_label("Wachtwoord").fill("guess")
        await stranger.get_by_label("Code uit de authenticator-app").fill("123456")
        await stranger.get_by_role("button", name="Inloggen").click()
        await expect(stranger.get_by_role("alert")).to_be_visible()
    page = await officer.new_page()
    await page.goto("/alerts")
    alert = page.locator("article").filter(has=page.locator("input[value^='failed-logins:']"))
    await expect(alert).to_have_count(1)
    alert_id = await alert.locator("input[name=alert]").get_attribute("value")
    comment = "Gecontroleerd: een tester op de proefomgeving."
    await alert.get_by_label("Toelichting").fill(comment)
    await alert.get_by_role("button", name="Afhandelen").click()
    await expect(page).to_have_url(f"{site.url}/alerts?ok=1")
    await expect(page.get_by_role("status")).to_contain_text("afgehandeld")
    done = page.locator("article").filter(has=page.get_by_text(alert_id or "?", exact=True))
    await expect(done).to_contain_text(comment)
    await expect(done.get_by_role("button")).to_have_count(0)
    await page.screenshot(path=site.shots / "alerts-acknowledged.png")
    assert await axe_violations(page) == []
    (ack,) = [
        r for r in site.records("console.acknowledge") if r["view"]["detail"]["alert"] == alert_id
    ]
    assert ack["view"]["detail"]["kind"] == "failed-logins"
    assert actor(ack) == (OFFICER, "security-officer")
    assert ack["personal"]["note"] == comment
    assert looks(site, "alerts")[-1]["personal"]["actor"]["id"] == OFFICER
    await page.close()


async def test_an_officer_signs_off_yesterdays_review_report(
    site: Site, officer: BrowserContext
) -> None:
    page = await officer.new_page()
    await page.goto("/review")
    period = await page.locator("input[name=start][type=hidden]").get_attribute("value")
    comment = "Rapport doorgenomen; geen bijzonderheden."
    await page.get_by_label("Toelichting").fill(comment)
    await page.get_by_role("button", name="Rapport aftekenen").click()
    await expect(page.get_by_role("status")).to_contain_text("afgetekend")
    assert urlsplit(page.url).path == "/review"
    await expect(page.get_by_text(comment)).to_be_visible()  # the sign-off is listed
    await page.screenshot(path=site.shots / "review-signed.png")
    assert await axe_violations(page) == []
    (signed,) = [
        r
        for r in site.records("console.review")
        if r["view"]["detail"]["period"].startswith(period or "?")
    ]
    assert len(signed["view"]["detail"]["digest"]) == 64
    assert actor(signed) == (OFFICER, "security-officer")
    assert signed["personal"]["note"] == comment
    assert looks(site, "review")[-1]["personal"]["actor"]["id"] == OFFICER
    await page.close()


async def test_the_english_switch_translates_labels_and_keeps_the_domain_words(
    site: Site,
) -> None:
    context = await site.context()
    page = await context.new_page()
    await login_local(page, site, "pieter")  # the privacy officer (a code is accepted once)
    await expect(page.get_by_role("heading", level=1)).to_have_text("Overzicht")
    before = len(looks(site, "overview"))
    await page.get_by_role("link", name="Switch to English").click()
    await expect(page).to_have_url(f"{site.url}/")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Overview")
    assert await page.get_attribute("html", "lang") == "en"
    nav = await page.get_by_role("navigation").get_by_role("link").all_inner_texts()
    # Every label in English, but "Casus" is what the officers call a case.
    assert nav == [
        "Overview",
        "Search",
        "Evidence",
        "Casus",
        "Policy",
        "Inzageverzoeken",  # the word the person and the contactpunt use
        "Alerts",
        "Log review",
        "Corrections and erasures",
        "Console access log",
    ]
    assert await axe_violations(page) == []
    assert len(looks(site, "overview")) == before + 1
    await page.goto(f"/search?case_ref={site.case_ref}")
    await expect(page.get_by_label("Case reference (casus)")).to_have_value(site.case_ref)
    await expect(page.get_by_role("button", name="Search")).to_be_visible()
    await page.screenshot(path=site.shots / "search-en.png")
    assert await axe_violations(page) == []
    assert looks(site, "search")[-1]["personal"]["case_ref"] == site.case_ref
    await page.get_by_role("link", name="Schakel naar Nederlands").click()
    await expect(page.get_by_label("Casusreferentie")).to_have_value(site.case_ref)
    assert await page.get_attribute("html", "lang") == "nl"


@pytest.mark.parametrize("spec", PAGES, ids=[p.name for p in PAGES])
async def test_every_page_opens_has_no_axe_violations_and_is_photographed(
    site: Site, officer: BrowserContext, spec: PageSpec
) -> None:
    context = officer if spec.logged_in else await site.context()
    page = await context.new_page()
    before = len(looks(site, spec.looks)) if spec.looks else 0
    answer = await page.goto(spec.path.format(**vars(site)))
    assert answer is not None
    assert answer.status == 200, spec
    assert page.url.startswith(f"{site.url}/login") == (not spec.logged_in)
    await expect(page.get_by_role("heading", level=1)).to_be_visible()
    site.shots.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=site.shots / f"{spec.name}.png")  # the laptop-sized viewport
    violations = await axe_violations(page)
    assert violations == [], json.dumps(violations, indent=1)
    # 200 % zoom on the 1280 px laptop screen: a 640 px wide viewport; nothing but a table's own
    # scroll container may need a horizontal scroll bar (WCAG 1.4.10 reflow).
    await page.set_viewport_size({"width": 640, "height": 400})
    overflow = await page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"{spec.name}: {overflow} px wider than the viewport at 200 %"
    if spec.looks:
        after = looks(site, spec.looks)
        assert len(after) == before + 1
        assert after[-1]["personal"]["actor"]["id"] == OFFICER
    await page.close()


async def test_the_demo_case_is_found_by_its_case_reference(
    site: Site, officer: BrowserContext
) -> None:
    page = await officer.new_page()
    await page.goto("/search")
    await page.get_by_label("Casusreferentie").fill(site.case_ref)
    await page.get_by_role("button", name="Zoeken").click()
    await expect(page.get_by_role("link", name=site.message_id).first).to_be_visible()
    record = looks(site, "search")[-1]
    assert record["personal"]["case_ref"] == site.case_ref
    assert record["view"]["detail"]["count"] >= 1
    await page.get_by_role("link", name=site.message_id).first.click()
    await expect(page).to_have_url(f"{site.url}/message/{site.message_id}")
    await page.close()


async def test_the_demo_case_is_found_by_its_subjects_pseudonym(
    site: Site, officer: BrowserContext
) -> None:
    (send,) = [
        r for r in site.records("message.send") if r["view"]["message_id"] == site.message_id
    ]
    pseudonym = send["personal"]["data_subjects"][0]
    page = await officer.new_page()
    await page.goto("/search")
    await page.locator("#subject").fill(pseudonym)  # its label differs per branch
    await page.get_by_role("button", name="Zoeken").click()
    await expect(page.get_by_role("link", name=site.message_id).first).to_be_visible()
    record = looks(site, "search")[-1]
    assert pseudonym in record["personal"]["data_subjects"]
    await page.close()


async def test_a_message_shows_both_receipts_verified(site: Site, officer: BrowserContext) -> None:
    page = await officer.new_page()
    await page.goto(f"/message/{site.message_id}")
    receipts = page.locator("section[aria-labelledby=receipts] tbody tr")
    await expect(receipts).to_have_count(2)
    await expect(receipts.locator(".zvg-ok")).to_have_count(2)
    await expect(receipts.locator(".zvg-bad")).to_have_count(0)
    statuses = sorted(await receipts.locator("td:nth-child(2)").all_inner_texts())
    assert statuses == ["accepted", "delivered"]
    record = looks(site, "message")[-1]
    assert record["view"]["message_id"] == site.message_id
    await page.close()


async def _download_bundle(site: Site, officer: BrowserContext, tmp_path: Path) -> Path:
    """The message's bundle, downloaded by the browser from the Evidence page's export form."""
    page = await officer.new_page()
    await page.goto("/evidence")
    await page.locator("#message_id").fill(site.message_id)
    async with page.expect_download() as info:
        await page.get_by_role("button", name="Download bundel").click()
    download = await info.value
    bundle = tmp_path / "bundle.json"
    await download.save_as(bundle)
    assert download.suggested_filename.startswith("zvg-evidence-message-")
    await page.close()
    return bundle


def _tamper(bundle: Path, tmp_path: Path) -> Path:
    """The bundle with one record's status changed (its leaf no longer matches the proof)."""
    doc = json.loads(bundle.read_text("utf-8"))
    record = doc["records"][0]
    view = record["view"]
    view["status"] = "denied" if view.get("status") != "denied" else "ok"
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(doc), "utf-8")
    return tampered


async def _verify_on_server(page: Page, bundle: Path) -> None:
    await page.goto("/evidence")
    await page.locator("#bundle").set_input_files(bundle)
    await page.get_by_role("button", name="Controleren", exact=True).click()


async def _verify_in_browser(page: Page, bundle: Path) -> str:
    await page.goto("/evidence")
    section = page.locator("#browser-verify")
    await expect(section).to_be_visible()  # the page's script shows it (JavaScript runs)
    await page.locator("#browser-bundle").set_input_files(bundle)
    await section.get_by_role("button", name="In de browser controleren").click()
    result = page.locator("#browser-verify-result")
    await expect(result).to_be_visible()
    await expect(result).not_to_be_empty()
    return await result.inner_text()


async def test_a_bundle_verifies_on_the_server_and_in_the_browser_and_a_tampered_one_fails_in_both(
    site: Site, officer: BrowserContext, tmp_path: Path
) -> None:
    exports = len(looks(site, "evidence.export"))
    bundle = await _download_bundle(site, officer, tmp_path)
    assert json.loads(bundle.read_text("utf-8"))["records"]
    assert len(looks(site, "evidence.export")) == exports + 1
    page = await officer.new_page()

    verifies = len(looks(site, "evidence.verify"))
    await _verify_on_server(page, bundle)
    await expect(page.locator(".zvg-ok")).to_be_visible()
    await expect(page.locator(".zvg-bad")).to_have_count(0)
    assert len(looks(site, "evidence.verify")) == verifies + 1
    await _verify_in_browser(page, bundle)
    await expect(page.locator("#browser-verify-result .zvg-ok")).to_be_visible()

    tampered = _tamper(bundle, tmp_path)
    await _verify_on_server(page, tampered)
    server_failure = await page.locator(".zvg-bad").inner_text()
    assert len(looks(site, "evidence.verify")) == verifies + 2
    bad = await _verify_in_browser(page, tampered)
    await expect(page.locator("#browser-verify-result .zvg-bad")).to_be_visible()
    # The same reason code from both verifiers (a changed record: its leaf is not in the proof).
    server_reason = _reason(r"Ongeldig: ([a-z_]+):", server_failure)
    assert server_reason == _reason(r"browser: ([a-z_]+) —", bad), (server_failure, bad)
    assert server_reason != ""
    await page.close()


def _reason(pattern: str, text: str) -> str:
    """The reason code in a failure line."""
    match = re.search(pattern, text)
    return match.group(1) if match else ""


async def test_a_form_post_from_the_console_itself_is_not_refused_as_cross_origin(
    site: Site, officer: BrowserContext
) -> None:
    """The bug: under ``Referrer-Policy: no-referrer`` the browser sent ``Origin: null`` with
    every form POST, and the CSRF check refused the console's own forms (the local login too)."""
    page = await officer.new_page()
    before = len(looks(site, "verify"))
    await page.goto("/")
    await page.get_by_role("button", name="Nu volledig verifiëren").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Overzicht")
    assert len(looks(site, "verify")) == before + 1
    await page.close()


async def test_a_cross_site_post_without_the_csrf_token_is_refused(
    site: Site, officer: BrowserContext
) -> None:
    page = await officer.new_page()
    before = len(looks(site, "verify"))
    # Another site (served by the browser itself) with a form that posts to the console.
    attacker = "http://attacker.test/"
    await page.route(
        attacker,
        lambda route: route.fulfill(
            content_type="text/html",
            body=(
                "<!doctype html><html lang=en><title>x</title>"
                f'<form method=post action="{site.url}/verify">'
                "<button>win a prize</button></form>"
            ),
        ),
    )
    await page.goto(attacker)
    async with page.expect_navigation():
        await page.get_by_role("button").click()
    assert page.url.startswith(site.url)
    # SameSite=Strict keeps the session cookie off a cross-site POST, and the CSRF check stops
    # it anyway: the full verification did not run.
    await expect(page.get_by_role("heading", level=1)).not_to_have_text("Overzicht")
    assert len(looks(site, "verify")) == before
    # Same origin, with the session cookie, but without the token: refused too.
    answer = await officer.request.post(f"{site.url}/verify", form={"x": "1"})
    assert answer.status == 403
    answer = await officer.request.post(
        f"{site.url}/verify", form={"x": "1"}, headers={"Origin": "http://attacker.test"}
    )
    assert answer.status == 403
    assert len(looks(site, "verify")) == before
    await page.close()
