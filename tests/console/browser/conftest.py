"""One federation and one browser for every console browser test (issue 16 §6).

The federation is the e2e harness's (tests/e2e/harness.py): politie and gemeente as in-process
nodes on the real RabbitMQ, politie's ``node.toml`` with a ``[console]`` section (loopback, the
local accounts file, the OpenID provider of tests/console/oidc_provider), so the console is the
one the node itself starts. Politie refers the demo case to the ZVH (gemeente), gemeente's adapter
accepts it, both logs are cosigned. The browser is Debian's Chromium (``/usr/bin/chromium``,
installed by ``scripts/lib.sh ensure_chromium``) driven by Playwright — no downloaded browser.

axe-core (tests/console/browser/node_modules, ``ensure_axe_core``) is loaded through a Playwright
route on the console's own origin (``/__axe/axe.min.js``): the page keeps its strict CSP
(``script-src 'self'``) while axe runs, and the console never serves that file itself.

Everything is module-scoped in :mod:`tests.console.browser.test_console` and on one event loop
(``loop_scope="module"``): the federation, the provider, the browser and the logged-in officer
are made once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyotp
import pytest
import pytest_asyncio
from argon2 import PasswordHasher
from playwright.async_api import Browser, BrowserContext, Page, Route, async_playwright

from gateway.audit.inspect import open_readonly, query
from gateway.console.auth import Account, add_account
from gateway.console.roles import Role
from tests.console._oidc_provider import Provider, register_client, run_provider
from tests.e2e.harness import (
    Client,
    Fed,
    free_port,
    make_fed,
    request_from_example,
    teardown_fed,
    wait_witnessed,
)

ROOT = Path(__file__).resolve().parents[3]
HERE = Path(__file__).resolve().parent
CHROMIUM = Path("/usr/bin/chromium")
AXE = HERE / "node_modules" / "axe-core" / "axe.min.js"
AXE_PATH = "/__axe/axe.min.js"
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]
"""The axe-core rules run: WCAG 2.0 and 2.1, levels A and AA, and axe's best practices."""
SHOTS_ENV = "ZVG_CONSOLE_SCREENSHOTS"
"""Set to a folder (``docs/console`` to refresh the committed set that docs/security-officers.md
shows) to keep the screenshots there; unset, they go to the session's temporary folder, so a test
run leaves the working tree as it was."""

#: Cheap argon2id parameters (the hash records them; the console verifies with what it records).
FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
PASSWORD = "correct horse battery staple"
OFFICER = "sanne"
ROLES = {
    "sanne": Role.SECURITY_OFFICER,
    "pieter": Role.PRIVACY_OFFICER,
    "anouk": Role.AUDITOR,
    "karim": Role.CONTACTPUNT,
}
"""One local account per role (each logs in once: a TOTP code is accepted once)."""
NAMES = {
    "sanne": "Sanne de Vries",
    "pieter": "Pieter Jansen",
    "anouk": "Anouk <script>alert(1)</script> Smit",
    "karim": "Karim Bouzid",
}
"""Display names; the auditor's has HTML in it (it must show as text)."""
OIDC_ROLES = {"zvh-ciso": "security-officer", "zvh-fg": "privacy-officer", "zvh-audit": "auditor"}


def _install() -> None:
    """``ensure_chromium`` and ``ensure_axe_core`` (scripts/lib.sh), as scripts/test runs them."""
    subprocess.run(
        ["bash", "-c", ". scripts/lib.sh; ensure_chromium; ensure_axe_core"], cwd=ROOT, check=True
    )


@dataclass
class Site:
    """The console under test and the browser that uses it."""

    fed: Fed
    url: str
    """The console's base URL (``http://127.0.0.1:<port>``)."""
    browser: Browser
    provider: Provider
    accounts: dict[str, Account]
    message_id: str
    """The demo referral (politie → ZVH), accepted."""
    case_ref: str
    shots: Path
    """Where each page's screenshot goes (:data:`SHOTS_ENV`)."""
    contexts: list[BrowserContext] = field(default_factory=list)

    def totp(self, user: str) -> str:
        return pyotp.TOTP(self.accounts[user].totp_secret).now()

    async def context(self) -> BrowserContext:
        """A fresh browser profile (no cookies) that can load axe-core; closed with the module."""
        context = await self.browser.new_context(
            base_url=self.url,
            accept_downloads=True,
            locale="nl-NL",
            viewport={"width": 1280, "height": 800},
        )
        await context.route(f"{self.url}{AXE_PATH}", _serve_axe)
        self.contexts.append(context)
        return context

    def records(self, operation: str) -> list[dict[str, Any]]:
        """Politie's audit records of ``operation`` (views and personal parts), oldest first."""
        with open_readonly(self.fed.running["politie"].config.store_path) as db:
            return query(db, operation=operation)


async def _serve_axe(route: Route) -> None:
    await route.fulfill(path=AXE, content_type="text/javascript")


async def axe_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's violations on ``page`` (WCAG 2.0/2.1 A and AA rules and best practices)."""
    await page.add_script_tag(url=AXE_PATH)
    result: dict[str, Any] = await page.evaluate(
        "async (tags) => await axe.run(document,"
        " {runOnly: {type: 'tag', values: tags}, resultTypes: ['violations']})",
        AXE_TAGS,
    )
    return [
        {
            "id": v["id"],
            "impact": v["impact"],
            "help": v["help"],
            "nodes": [(n["target"], n.get("failureSummary", "")) for n in v["nodes"]][:5],
        }
        for v in result["violations"]
    ]


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    with run_provider() as running:
        yield running


def _console_section(port: int, users_file: Path, issuer: str, client_id: str) -> str:
    mapping = ", ".join(f"{json.dumps(k)} = {json.dumps(v)}" for k, v in OIDC_ROLES.items())
    return (
        "\n[console]\n"
        "enabled = true\n"
        f'listen = "127.0.0.1:{port}"\n'
        f"users_file = {json.dumps(str(users_file))}\n"
        "\n[console.oidc]\n"
        f"issuer = {json.dumps(issuer)}\n"
        f"client_id = {json.dumps(client_id)}\n"
        f'redirect_url = "http://127.0.0.1:{port}/auth/callback"\n'
        'scopes = ["openid", "profile", "groups"]\n'
        f"role_mapping = {{ {mapping} }}\n"
    )


async def _deferred_inzageverzoek(fed: Fed) -> None:
    """The ZVH's contactpunt asks for the referral's man; the police node defers (``[rights]
    defer``), so the police console's ``/rights`` page has a deferral to show."""
    gem = fed.nodes["gemeente"]
    contactpunt = Client(dataclasses.replace(gem, token=f"{gem.token}-contactpunt"))
    code, doc = await contactpunt.request(
        "POST",
        "/v1/rights/requests",
        body={"bsn": "999990019", "identity_check": "paspoort getoond aan de balie"},
    )
    assert code == 201, doc
    node = fed.running["politie"].service
    for _ in range(600):  # bounded: the request travels the broker once
        if node.rights.deferrals():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the police node never deferred the inzageverzoek")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def site(tmp_path_factory: pytest.TempPathFactory, provider: Provider) -> AsyncIterator[Site]:
    _install()
    tmp = tmp_path_factory.mktemp("console-browser")
    fed = make_fed(tmp, ("politie", "gemeente"), rights=True)
    playwright = None
    try:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        import aiohttp

        async with aiohttp.ClientSession() as http:
            client_id, _ = await register_client(http, provider.main, f"{url}/auth/callback")
        users_file = tmp / "console-users.json"
        accounts = {
            name: add_account(
                users_file,
                name=name,
                display_name=NAMES[name],
                role=role,
                password=PASSWORD,
                hasher=FAST,
            )
            for name, role in ROLES.items()
        }
        config = fed.nodes["politie"].config
        config.write_text(
            config.read_text("utf-8")
            + _console_section(port, users_file, provider.main, client_id),
            "utf-8",
        )
        await fed.start("politie")
        await fed.start("gemeente")
        request = request_from_example("case.referral")
        code, doc = await fed.client("politie").send(request)
        assert code == 202, doc
        items = await fed.client("gemeente").inbox(wait=10)
        assert await fed.client("gemeente").ack(items[0]["message_id"]) == 204
        await fed.client("politie").wait_status(doc["message_id"], "accepted")
        await _deferred_inzageverzoek(fed)
        await wait_witnessed(fed)
        playwright = await async_playwright().start()
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), env={**os.environ, "LANG": "nl_NL.UTF-8"}
        )
        shots = Path(os.environ.get(SHOTS_ENV) or tmp / "screenshots")
        found = Site(
            fed,
            url,
            browser,
            provider,
            accounts,
            doc["message_id"],
            str(request["case_ref"]),
            shots if shots.is_absolute() else ROOT / shots,
        )
        found.shots.mkdir(parents=True, exist_ok=True)
        try:
            yield found
        finally:
            for context in found.contexts:
                await context.close()
            await browser.close()
    finally:
        if playwright is not None:
            await playwright.stop()
        for key in list(fed.running):
            await fed.stop(key)
        teardown_fed(fed)
