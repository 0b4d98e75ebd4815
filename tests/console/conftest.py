"""The console in process: the demo federation's nodes (politie, gemeente) on one clock and one
broker in memory (tests/unit/node/_inproc.py), politie's console app served by aiohttp's test
server, and a local account for every role (argon2id with cheap test parameters; the same
code path as the real ones, which read their parameters from the hash)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyotp
import pytest
from aiohttp import CookieJar, web
from aiohttp.test_utils import TestClient, TestServer
from argon2 import PasswordHasher

from gateway.console.app import CONSOLE, Console, build_console_app
from gateway.console.auth import Account, add_account
from gateway.console.config import ConsoleSettings
from gateway.console.roles import Role
from gateway.testing.federation import FederationFiles
from tests.node_pair import make_federation
from tests.unit.node._inproc import ApiNode, InProcFederation

#: Cheap argon2id parameters for tests (the hash records them; production uses RFC 9106's).
FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
PASSWORD = "correct horse battery staple"
USERS = {
    Role.SECURITY_OFFICER: "sanne",
    Role.PRIVACY_OFFICER: "pieter",
    Role.AUDITOR: "anouk",
    Role.CONTACTPUNT: "karim",
}
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture(scope="session")
def veenstad(tmp_path_factory: pytest.TempPathFactory) -> FederationFiles:
    """One demo federation of politie and gemeente for the session (read only)."""
    return make_federation(tmp_path_factory.mktemp("veenstad") / "federation")


@dataclass
class ConsoleUnderTest:
    """Politie's node with its console, gemeente's node, and a browser-like client."""

    federation: InProcFederation
    politie: ApiNode
    gemeente: ApiNode
    client: TestClient[Any, Any]
    accounts: dict[Role, Account]
    users_file: Path
    logged_in: Role | None = None
    csrf: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    app: web.Application = field(default_factory=web.Application)

    @property
    def console(self) -> Console:
        return self.app[CONSOLE]

    def code(self, role: Role) -> str:
        """The TOTP code of ``role``'s account now (the federation's clock)."""
        secret = self.accounts[role].totp_secret
        return pyotp.TOTP(secret).at(self.federation.clock.now)

    async def login_form_token(self) -> str:
        page = await self.client.get("/login")
        assert page.status == 200
        match = _CSRF.search(await page.text())
        assert match is not None
        return match.group(1)

    async def login(self, role: Role, *, code: str | None = None, **form: str) -> Any:
        """Log in as ``role`` (a fresh TOTP step: the clock moves 30 s first)."""
        self.federation.clock.move(seconds=30)
        token = await self.login_form_token()
        data = {
            "csrf": token,
            "user": USERS[role],
            "password": PASSWORD,
            "code": code if code is not None else self.code(role),
            **form,
        }
        answer = await self.client.post("/login", data=data, allow_redirects=False)
        if answer.status == 303:
            self.logged_in = role
            self.csrf = await self.page_csrf()
        return answer

    async def page_csrf(self) -> str:
        page = await self.client.get("/search")
        match = _CSRF.search(await page.text())
        return match.group(1) if match else ""

    def records(self, operation: str) -> list[dict[str, Any]]:
        """Politie's audit records of ``operation`` (views and personal parts)."""
        return self.politie.node.audit(operation=operation)


async def start_console(
    tmp_path: Path, veenstad: FederationFiles, **settings: Any
) -> ConsoleUnderTest:
    federation = InProcFederation(veenstad, tmp_path)
    politie = await federation.start("politie")
    gemeente = await federation.start("gemeente")
    users_file = tmp_path / "console-users.json"
    accounts = {
        role: add_account(
            users_file,
            name=name,
            display_name=f"{name.title()} <b>Test</b>",
            role=role,
            password=PASSWORD,
            hasher=FAST,
        )
        for role, name in USERS.items()
    }
    app = build_console_app(
        politie.node.service,
        ConsoleSettings(enabled=True, **settings),
        users_file=users_file,
        hasher=FAST,
    )
    server = TestServer(app)
    await server.start_server()
    jar = CookieJar(unsafe=True, treat_as_secure_origin=[str(server.make_url("/"))])
    client = TestClient(server, cookie_jar=jar)
    await client.start_server()
    return ConsoleUnderTest(federation, politie, gemeente, client, accounts, users_file, app=app)


@pytest.fixture
async def cut(tmp_path: Path, veenstad: FederationFiles) -> AsyncIterator[ConsoleUnderTest]:
    """Politie's console (default settings but page size 10) with an account per role."""
    under_test = await start_console(tmp_path, veenstad, page_size=10)
    try:
        yield under_test
    finally:
        await under_test.client.close()
        await under_test.federation.close()
