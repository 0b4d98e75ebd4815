"""Sessions: no session → the login; idle 15 min and absolute 8 h by default; a new id at every
login; CSRF tokens on every state-changing request (gateway/console/session.py, app.py)."""

from __future__ import annotations

import pytest

from gateway.console.roles import Role
from gateway.console.session import SESSION_COOKIE
from tests.console.conftest import ConsoleUnderTest

PAGES = ("/", "/search", "/search.csv", "/message/m-1", "/access", "/evidence", "/evidence/export")


@pytest.mark.parametrize("path", PAGES)
async def test_without_a_session_every_page_goes_to_the_login(
    cut: ConsoleUnderTest, path: str
) -> None:
    answer = await cut.client.get(path, allow_redirects=False)
    assert answer.status == 303
    assert answer.headers["Location"].startswith(f"/login?next={path}")
    assert cut.records("console.access") == []


async def test_a_session_ends_after_15_idle_minutes(cut: ConsoleUnderTest) -> None:
    await cut.login(Role.SECURITY_OFFICER)
    cut.federation.clock.move(minutes=14, seconds=59)
    assert (await cut.client.get("/", allow_redirects=False)).status == 200
    cut.federation.clock.move(minutes=15)
    answer = await cut.client.get("/", allow_redirects=False)
    assert answer.status == 303
    assert answer.headers["Location"] == "/login?next=/&expired=1"
    login = await cut.client.get(answer.headers["Location"])
    assert "Uw sessie is verlopen" in await login.text()


async def test_a_session_ends_8_hours_after_the_login_however_active(
    cut: ConsoleUnderTest,
) -> None:
    await cut.login(Role.SECURITY_OFFICER)
    for _ in range(47):  # every 10 minutes for 7 h 50 min (30 s already passed at login)
        cut.federation.clock.move(minutes=10)
        assert (await cut.client.get("/search", allow_redirects=False)).status == 200
    cut.federation.clock.move(minutes=10)
    assert (await cut.client.get("/search", allow_redirects=False)).status == 303


async def test_every_login_gets_a_new_session_id(cut: ConsoleUnderTest) -> None:
    first = (await cut.login(Role.SECURITY_OFFICER)).cookies[SESSION_COOKIE].value
    cut.client.session.cookie_jar.clear()
    second = (await cut.login(Role.SECURITY_OFFICER)).cookies[SESSION_COOKIE].value
    assert first != second
    assert len(first) >= 43  # 256 bits, base64url


async def test_a_post_without_the_csrf_token_is_refused(cut: ConsoleUnderTest) -> None:
    await cut.login(Role.SECURITY_OFFICER)
    answer = await cut.client.post("/logout", data={}, allow_redirects=False)
    assert answer.status == 403
    wrong = await cut.client.post("/logout", data={"csrf": "x" * 43}, allow_redirects=False)
    assert wrong.status == 403
    assert len(cut.console.sessions) == 1  # still logged in
    assert (await cut.client.get("/", allow_redirects=False)).status == 200


async def test_a_cross_site_post_is_refused_even_with_the_token(cut: ConsoleUnderTest) -> None:
    await cut.login(Role.SECURITY_OFFICER)
    answer = await cut.client.post(
        "/logout",
        data={"csrf": cut.csrf},
        headers={"Origin": "https://evil.example"},
        allow_redirects=False,
    )
    assert answer.status == 403
    assert len(cut.console.sessions) == 1


async def test_the_csrf_token_is_accepted_in_its_header_too(cut: ConsoleUnderTest) -> None:
    await cut.login(Role.SECURITY_OFFICER)
    answer = await cut.client.post(
        "/logout", headers={"X-CSRF-Token": cut.csrf}, allow_redirects=False
    )
    assert answer.status == 303
    assert len(cut.console.sessions) == 0


async def test_a_proxy_ending_tls_keeps_posts_from_the_same_host_working(
    cut: ConsoleUnderTest,
) -> None:
    await cut.login(Role.SECURITY_OFFICER)
    host = cut.client.make_url("/").authority
    answer = await cut.client.post(
        "/logout",
        data={"csrf": cut.csrf},
        headers={"Origin": f"https://{host}"},
        allow_redirects=False,
    )
    assert answer.status == 303
