"""``--console``: after the case, the demo keeps the federation running with one organisation's
officer console (Gemeente Veenstad, the ZVH) and prints its URL and a login made for this run,
until Ctrl-C (docs/console.md).

The login is a local account (``security-officer``) with a password generated for this run and a
fresh TOTP secret: the demo prints the secret (for an authenticator app) and, every 30 seconds,
the code of the moment, so the console can be opened without one.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pyotp

from demo.report import Console
from demo.workspace import free_port
from gateway.console.auth import add_account, totp_uri
from gateway.console.roles import Role
from gateway.testing.nodes import NodeFiles

__all__ = [
    "CONSOLE_ORG",
    "DemoLogin",
    "enable_console",
    "login_lines",
    "open_console_line",
    "serve_console",
]

CONSOLE_ORG = "gemeente"
"""Whose console the demo keeps running: the ZVH's, which sees the most of the case."""
USER = "demo"
READY_S = 60.0
"""How long the restarted node may take before its console answers."""


@dataclass(frozen=True)
class DemoLogin:
    url: str
    user: str
    password: str
    totp_secret: str
    otpauth: str

    def code(self, at: datetime | None = None) -> str:
        return pyotp.TOTP(self.totp_secret).at(at or datetime.now(UTC))


def enable_console(node: NodeFiles, work: Path) -> DemoLogin:
    """Add a ``[console]`` section (loopback, a free port) to ``node``'s ``node.toml`` and a demo
    account with a password for this run to its accounts file in the working folder."""
    port = free_port()
    users_file = work / "console" / "console-users.json"
    users_file.parent.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(12)
    account = add_account(
        users_file,
        name=USER,
        display_name="Demo security officer",
        role=Role.SECURITY_OFFICER,
        password=password,
        replace=True,
    )
    text = node.config.read_text("utf-8")
    text += (
        "\n[console]\nenabled = true\n"
        f'listen = "127.0.0.1:{port}"\n'
        f"users_file = {json.dumps(str(users_file.absolute()))}\n"
    )
    node.config.write_text(text, "utf-8")
    url = f"http://127.0.0.1:{port}/"
    return DemoLogin(url, USER, password, account.totp_secret, totp_uri(account, "zv-gateway demo"))


def open_console_line(org_name: str) -> str:
    """The demo's last line (without ``--console``): how to open the officer console."""
    return (
        f"To see this case in {org_name}'s officer console: ./scripts/demo --console (plays it "
        "again, then keeps the federation and the console running with its URL and a login "
        "for this run, until Ctrl-C; docs/console.md)"
    )


def login_lines(login: DemoLogin, org_name: str, at: datetime | None = None) -> list[str]:
    """What the demo prints once the console answers."""
    return [
        f"The officer console of {org_name} is running: open {login.url}",
        f"  user {login.user}, password {login.password} (made for this run only)",
        (
            f"  second factor: add {login.otpauth} to an authenticator app, or use the code "
            "printed below (a new one every 30 s)"
        ),
        f"  code now: {login.code(at)}",
        "The federation keeps running; Ctrl-C stops it.",
    ]


async def _answers(url: str) -> bool:
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{url}login", timeout=aiohttp.ClientTimeout(total=2)) as answer,
        ):
            return answer.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False


async def serve_console(
    login: DemoLogin, org_name: str, restart: Callable[[], None], out: Console
) -> None:
    """Start the federation again (``restart``), wait for the console, print the login and a
    fresh code every 30 seconds until cancelled (Ctrl-C)."""
    restart()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + READY_S
    while not await _answers(login.url):
        if loop.time() > deadline:
            raise TimeoutError(f"the console at {login.url} did not answer within {READY_S:.0f} s")
        await asyncio.sleep(0.5)
    out.line()
    for line in login_lines(login, org_name):
        out.line(line)
    shown = login.code()
    while True:
        await asyncio.sleep(1)
        code = login.code()
        if code != shown:
            out.line(f"  code now: {code}")
            shown = code
