"""Roles, deny by default: every route names the roles that may use it; the auditor sees no
personal fields; the contactpunt sees only the subject search (gateway/console/roles.py)."""

from __future__ import annotations

import pytest

from gateway.console.roles import Role
from tests.console.conftest import ConsoleUnderTest

#: Routes anyone may reach: logging in and out, the language, the CSS.
OPEN = {"/login", "/logout", "/lang/{lang}"}


async def test_every_route_but_login_language_and_static_names_its_roles(
    cut: ConsoleUnderTest,
) -> None:
    guarded = []
    for route in cut.app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter") or info.get("prefix")
        if path in OPEN or (path or "").startswith("/static") or route.method == "HEAD":
            continue
        roles = getattr(route.handler, "roles", None)
        assert roles, f"{route.method} {path} names no roles"
        guarded.append(path)
    assert {
        *("/", "/search", "/search.csv", "/message/{message_id}", "/access"),
        *("/evidence", "/evidence/export", "/evidence/verify"),
    } <= set(guarded)


@pytest.mark.parametrize(
    ("role", "path", "status"),
    [
        (Role.CONTACTPUNT, "/message/m-1", 403),
        (Role.CONTACTPUNT, "/search.csv", 403),
        (Role.CONTACTPUNT, "/access", 403),
        (Role.CONTACTPUNT, "/search?partner=00000001999000001000", 403),
        (Role.AUDITOR, "/access", 403),
        (Role.AUDITOR, "/search?case_ref=VH-2026-0001", 403),
        (Role.AUDITOR, "/search?subject=abc", 403),
        (Role.AUDITOR, "/search.csv?case_ref=VH-2026-0001", 400),
        (Role.PRIVACY_OFFICER, "/access", 200),
    ],
)
async def test_what_a_role_may_not_open_is_refused(
    cut: ConsoleUnderTest, role: Role, path: str, status: int
) -> None:
    await cut.login(role)
    answer = await cut.client.get(path, allow_redirects=False)
    assert answer.status == status


async def test_the_contactpunt_starts_at_the_subject_search_and_sees_only_it(
    cut: ConsoleUnderTest,
) -> None:
    answer = await cut.login(Role.CONTACTPUNT)
    assert answer.headers["Location"] == "/search"
    assert (await cut.client.get("/", allow_redirects=False)).headers["Location"] == "/search"
    page = await (await cut.client.get("/search")).text()
    assert 'name="subject"' in page
    for other in ("message_id", "case_ref", "partner", "operation"):
        assert f'name="{other}"' not in page
    assert 'href="/access"' not in page
    assert 'href="/"' not in page


async def test_an_auditor_sees_no_case_reference_or_pseudonym_anywhere(
    cut: ConsoleUnderTest,
) -> None:
    from tests.console.exchange import CASE_REF, referral_accepted

    exchange = await referral_accepted(cut)
    assert exchange.subjects  # the example names its subjects by pseudonym
    await cut.login(Role.AUDITOR)
    pages = [
        await (await cut.client.get(f"/search?message_id={exchange.message_id}")).text(),
        await (await cut.client.get(f"/message/{exchange.message_id}")).text(),
        await (await cut.client.get(f"/search.csv?message_id={exchange.message_id}")).text(),
    ]
    for page in pages:
        assert exchange.message_id in page  # the metadata is there
        assert CASE_REF not in page
        for subject in exchange.subjects:
            assert subject not in page
    cut.client.session.cookie_jar.clear()
    await cut.login(Role.SECURITY_OFFICER)  # an officer sees them
    page = await (await cut.client.get(f"/message/{exchange.message_id}")).text()
    assert CASE_REF in page
