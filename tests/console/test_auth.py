"""Local accounts: argon2id password **and** TOTP, rate-limited and recorded failed logins,
logout (gateway/console/auth.py, gateway/console/login.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from click.testing import CliRunner

from gateway.cli import cli
from gateway.console.auth import add_account, load_accounts
from gateway.console.roles import Role
from gateway.console.session import SESSION_COOKIE
from gateway.errors import LocalError
from tests.console.conftest import FAST, PASSWORD, USERS, ConsoleUnderTest


async def test_a_login_with_password_and_totp_starts_a_session_with_a_strict_cookie(
    cut: ConsoleUnderTest,
) -> None:
    answer = await cut.login(Role.SECURITY_OFFICER)
    assert answer.status == 303
    assert answer.headers["Location"] == "/"
    cookie = answer.cookies[SESSION_COOKIE]
    assert cookie["httponly"] is True
    assert cookie["secure"] is True
    assert cookie["samesite"] == "Strict"
    assert cookie["path"] == "/"
    assert not cookie["domain"]
    page = await cut.client.get("/")
    assert page.status == 200
    assert "Sanne &lt;b&gt;Test&lt;/b&gt;" in await page.text()  # the display name, escaped
    (login,) = cut.records("console.login")
    assert login["view"]["status"] == "ok"
    assert login["personal"]["actor"]["id"] == "sanne"
    assert login["personal"]["actor"]["role"] == "security-officer"


async def test_a_wrong_totp_code_is_refused_and_recorded_without_the_code(
    cut: ConsoleUnderTest,
) -> None:
    wrong = "000000" if cut.code(Role.AUDITOR) != "000000" else "111111"
    answer = await cut.login(Role.AUDITOR, code=wrong)
    assert answer.status == 401
    assert SESSION_COOKIE not in answer.cookies
    (record,) = cut.records("console.login")
    assert record["view"]["status"] == "denied"
    assert record["view"]["reason"] == "bad_totp"
    assert wrong not in json.dumps(record)
    assert PASSWORD not in json.dumps(record)
    assert (await cut.client.get("/", allow_redirects=False)).status == 303


async def test_a_wrong_password_and_an_unknown_account_get_the_same_answer(
    cut: ConsoleUnderTest,
) -> None:
    bad_password = await cut.login(Role.AUDITOR, password="not the password at all")
    token = await cut.login_form_token()
    unknown = await cut.client.post(
        "/login",
        data={"csrf": token, "user": "nobody", "password": PASSWORD, "code": "123456"},
        allow_redirects=False,
    )
    assert bad_password.status == unknown.status == 401
    assert [r["view"]["reason"] for r in cut.records("console.login")] == [
        "unknown_or_bad_password",
        "unknown_or_bad_password",
    ]


async def test_a_totp_code_is_accepted_once(cut: ConsoleUnderTest) -> None:
    code = cut.code(Role.PRIVACY_OFFICER)
    first = await cut.login(Role.PRIVACY_OFFICER)
    assert first.status == 303
    cut.client.session.cookie_jar.clear()
    cut.federation.clock.move(seconds=-30)  # back into the same time step: the same code
    again = await cut.login(Role.PRIVACY_OFFICER, code=code)
    assert again.status == 401


async def test_failed_logins_are_rate_limited_per_account(cut: ConsoleUnderTest) -> None:
    for _ in range(5):
        assert (await cut.login(Role.AUDITOR, password="wrong password 123")).status == 401
    locked = await cut.login(Role.AUDITOR)  # the right password and code, but locked
    assert locked.status == 429
    assert "15" in await locked.text()
    assert cut.records("console.login")[-1]["view"]["reason"] == "locked"
    cut.federation.clock.move(minutes=15)
    assert (await cut.login(Role.AUDITOR)).status == 303


async def test_a_login_without_the_form_token_is_refused(cut: ConsoleUnderTest) -> None:
    await cut.login_form_token()
    answer = await cut.client.post(
        "/login",
        data={"user": USERS[Role.AUDITOR], "password": PASSWORD, "code": cut.code(Role.AUDITOR)},
        allow_redirects=False,
    )
    assert answer.status == 403
    assert SESSION_COOKIE not in answer.cookies
    assert cut.records("console.login") == []


async def test_logout_ends_the_session(cut: ConsoleUnderTest) -> None:
    await cut.login(Role.SECURITY_OFFICER)
    cookie = cut.client.session.cookie_jar.filter_cookies(cut.client.make_url("/"))
    answer = await cut.client.post("/logout", data={"csrf": cut.csrf}, allow_redirects=False)
    assert answer.status == 303
    assert answer.headers["Location"] == "/login"
    assert len(cut.console.sessions) == 0
    # The old cookie, sent again, opens nothing.
    again = await cut.client.get(
        "/",
        headers={"Cookie": f"{SESSION_COOKIE}={cookie[SESSION_COOKIE].value}"},
        allow_redirects=False,
    )
    assert again.status == 303
    assert again.headers["Location"].startswith("/login")


async def test_the_login_goes_back_to_the_page_asked_for_but_never_elsewhere(
    cut: ConsoleUnderTest,
) -> None:
    first = await cut.client.get("/search?partner=00000001999000001000", allow_redirects=False)
    assert first.headers["Location"] == "/login?next=/search?partner=00000001999000001000"
    cut.federation.clock.move(seconds=30)
    token = await cut.login_form_token()
    data = {"csrf": token, "user": "sanne", "password": PASSWORD}
    answer = await cut.client.post(
        "/login?next=//evil.example/",
        data={**data, "code": cut.code(Role.SECURITY_OFFICER)},
        allow_redirects=False,
    )
    assert answer.headers["Location"] == "/"


def test_an_account_keeps_an_argon2id_hash_and_a_totp_secret_never_the_password(
    tmp_path: Path,
) -> None:
    path = tmp_path / "users.json"
    account = add_account(
        path,
        name="sanne",
        display_name="Sanne",
        role=Role.SECURITY_OFFICER,
        password=PASSWORD,
        hasher=FAST,
    )
    text = path.read_text("utf-8")
    assert PASSWORD not in text
    assert account.password_hash.startswith("$argon2id$")
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_accounts(path)["sanne"] == account
    assert PasswordHasher().verify(account.password_hash, PASSWORD)


@pytest.mark.parametrize(
    ("name", "password", "problem"),
    [
        ("sanne", "short", "at least 12"),
        ("Not A Name", PASSWORD, "user name"),
    ],
)
def test_an_account_needs_a_valid_name_and_a_long_password(
    tmp_path: Path, name: str, password: str, problem: str
) -> None:
    with pytest.raises(LocalError, match=problem):
        add_account(
            tmp_path / "u.json",
            name=name,
            display_name="X",
            role=Role.AUDITOR,
            password=password,
            hasher=FAST,
        )


def test_zvg_console_add_user_writes_the_account_and_prints_the_totp_secret_once(
    tmp_path: Path,
) -> None:
    config = tmp_path / "node.toml"
    config.write_text(
        '[node]\norg = "00000001999000002000"\nnode_id = "pol-1"\n'
        '[keys]\nsigning = "s.pem"\nencryption = ["e.pem"]\naudit = "a.pem"\n'
        '[directory]\nfile = "d.json"\n[console]\nusers_file = "users.json"\n',
        "utf-8",
    )
    result = CliRunner().invoke(
        cli,
        [
            "console",
            "add-user",
            "--config",
            str(config),
            "--name",
            "anouk",
            "--display-name",
            "Anouk",
            "--role",
            "auditor",
        ],
        input=f"{PASSWORD}\n{PASSWORD}\n",
    )
    assert result.exit_code == 0, result.output
    account = load_accounts(tmp_path / "users.json")["anouk"]
    assert account.role is Role.AUDITOR
    assert account.totp_secret in result.output
    assert "otpauth://totp/" in result.output
    assert PASSWORD not in (tmp_path / "users.json").read_text("utf-8")
    again = CliRunner().invoke(
        cli,
        [
            "console",
            "add-user",
            "--config",
            str(config),
            "--name",
            "anouk",
            "--display-name",
            "Anouk",
            "--role",
            "auditor",
        ],
        input=f"{PASSWORD}\n{PASSWORD}\n",
    )
    assert again.exit_code == 2
    assert "exists already" in again.output


async def test_one_address_may_fail_more_often_than_one_account(cut: ConsoleUnderTest) -> None:
    """Many people may share an address (a NAT, a reverse proxy): another account from the same
    address still logs in after one account is locked."""
    for _ in range(5):
        await cut.login(Role.AUDITOR, password="wrong password 123")
    assert (await cut.login(Role.AUDITOR)).status == 429
    assert (await cut.login(Role.SECURITY_OFFICER)).status == 303
    cut.client.session.cookie_jar.clear()
    for i in range(15):  # other (unknown) accounts, none of which gets locked on its own
        token = await cut.login_form_token()
        answer = await cut.client.post(
            "/login",
            data={"csrf": token, "user": f"guess{i}", "password": "x", "code": "123456"},
            allow_redirects=False,
        )
        assert answer.status == 401
    # 20 failures from this address now: the address is locked for every account
    assert (await cut.login(Role.CONTACTPUNT)).status == 429


async def test_an_oversized_login_form_is_refused_before_it_is_read(
    cut: ConsoleUnderTest,
) -> None:
    token = await cut.login_form_token()
    answer = await cut.client.post(
        "/login", data={"csrf": token, "user": "x" * 20_000}, allow_redirects=False
    )
    assert answer.status == 413
