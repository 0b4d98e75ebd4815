"""The strict Content-Security-Policy (no inline script or style), the hardening headers, the
NL Design System CSS served from the node with its licences, and record fields with HTML shown
escaped (gateway/console/app.py, templates/)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from gateway.console.roles import Role
from gateway.core.audit import new_record
from tests.console.conftest import ConsoleUnderTest
from tests.console.exchange import referral_accepted

SCRIPT = "<script>alert(1)</script>"
IMG = '<img src=x onerror="alert(2)">'


def _pages(message_id: str) -> list[str]:
    return [
        *("/", "/search", f"/message/{message_id}", "/access", "/evidence", "/login"),
        "/no-such-page",
    ]


async def test_every_page_has_the_strict_csp_and_no_inline_script_or_style(
    cut: ConsoleUnderTest,
) -> None:
    exchange = await referral_accepted(cut)
    await cut.login(Role.SECURITY_OFFICER)
    for path in _pages(exchange.message_id):
        answer = await cut.client.get(path)
        csp = answer.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp
        assert "script-src 'self'" in csp
        assert "style-src 'self'" in csp
        assert "frame-ancestors 'none'" in csp
        assert "unsafe" not in csp
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
        assert answer.headers["Referrer-Policy"] == "same-origin"
        assert answer.headers["Cache-Control"] == "no-store"
        page = await answer.text()
        # scripts only as files of this console (the evidence page's module), never inline
        assert not re.search(r'<script(?![^>]*\ssrc="/static/js/[\w.-]+\.js")', page), path
        assert not re.search(r"<script[^>]*>[^<]+</script>", page), path
        assert "<style" not in page, path
        assert not re.search(r"\sstyle=", page), path
        assert not re.search(r"\son[a-z]+=", page), path
        assert not re.search(r'(href|src)="(https?:)?//', page), path  # nothing from elsewhere


async def test_the_nl_design_system_css_is_served_from_the_node_with_its_licences(
    cut: ConsoleUnderTest,
) -> None:
    for path in (
        "/static/nlds/utrecht-component-library.css",
        "/static/nlds/voorbeeld-theme.css",
        "/static/console.css",
        "/static/nlds/LICENSE-utrecht-component-library-css.md",
        "/static/nlds/LICENSE-voorbeeld-design-tokens.md",
    ):
        answer = await cut.client.get(path)
        assert answer.status == 200, path
        assert (
            "Cache-Control" not in answer.headers
            or "no-store" not in answer.headers["Cache-Control"]
        )
    css = await (await cut.client.get("/static/nlds/utrecht-component-library.css")).text()
    assert "@license EUPL-1.2" in css
    assert "@import" not in css  # nothing fetched from elsewhere


async def test_record_fields_with_html_or_script_are_shown_escaped(cut: ConsoleUnderTest) -> None:
    service = cut.politie.node.service
    now = cut.federation.clock.now
    record = new_record(
        name="message.refuse",
        status="denied",
        start_time=now,
        end_time=now + timedelta(seconds=1),
        message_id="m-escape-1",
        message_type="case.referral",
        reason=SCRIPT,
        case_ref=IMG,
        data_subjects=(SCRIPT,),
    )
    await service.audit.store.commit(service.audit.append([record], now))
    await cut.login(Role.SECURITY_OFFICER)
    for path in ("/search?message_id=m-escape-1", "/message/m-escape-1"):
        page = await (await cut.client.get(path)).text()
        assert SCRIPT not in page, path
        assert IMG not in page, path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page, path
        assert "&lt;img src=x onerror=&#34;alert(2)&#34;&gt;" in page, path


async def test_a_csv_cell_that_looks_like_a_formula_is_defused(cut: ConsoleUnderTest) -> None:
    service = cut.politie.node.service
    now = cut.federation.clock.now
    record = new_record(
        name="message.refuse",
        status="denied",
        start_time=now,
        end_time=now,
        message_id="m-formula-1",
        reason='=HYPERLINK("http://evil.example")',
    )
    await service.audit.store.commit(service.audit.append([record], now))
    await cut.login(Role.SECURITY_OFFICER)
    text = await (await cut.client.get("/search.csv?message_id=m-formula-1")).text()
    assert "'=HYPERLINK" in text
    assert ",=HYPERLINK" not in text


async def test_an_unexpected_error_is_a_page_with_the_headers_and_no_details(
    cut: ConsoleUnderTest, caplog: pytest.LogCaptureFixture
) -> None:
    await cut.login(Role.SECURITY_OFFICER)

    async def broken(*_: object) -> None:
        raise RuntimeError("VH-2026-0001 leaked into an exception")

    cut.console.access.write = broken  # type: ignore[method-assign,assignment]  # it breaks
    answer = await cut.client.get("/search")
    assert answer.status == 500
    assert "Content-Security-Policy" in answer.headers
    page = await answer.text()
    assert "VH-2026-0001" not in page
    assert "VH-2026-0001" not in caplog.text
    assert "RuntimeError" in caplog.text
