"""``./scripts/demo --console`` (demo/console.py), without playing the case: the console section
and the login it writes, what it prints, and the wait for the console — each cheap."""

from __future__ import annotations

import asyncio
import io
import json
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pyotp
from aiohttp import web
from aiohttp.test_utils import TestServer
from click.testing import CliRunner

from demo.__main__ import main
from demo.console import (
    USER,
    DemoLogin,
    enable_console,
    login_lines,
    open_console_line,
    serve_console,
)
from demo.report import Console
from demo.run import _summary_next
from demo.workspace import Workspace
from gateway.console.auth import LocalAccounts
from gateway.console.config import ConsoleSettings, console_problems
from gateway.testing.nodes import NodeFiles
from gateway.testing.veenstad import org_by_key

SECRET = pyotp.random_base32()


def _node(tmp_path: Path) -> NodeFiles:
    tmp_path.mkdir(parents=True, exist_ok=True)
    config = tmp_path / "node.toml"
    config.write_text('[node]\norg = "x"\n', "utf-8")
    return NodeFiles(org_by_key("gemeente"), config, tmp_path / "data", "127.0.0.1:1", "t")


def test_enable_console_writes_a_loopback_console_and_an_account_that_logs_in(
    tmp_path: Path,
) -> None:
    node = _node(tmp_path)
    login = enable_console(node, tmp_path)
    doc = tomllib.loads(node.config.read_text("utf-8"))
    assert doc["node"] == {"org": "x"}  # the rest of the file is kept
    settings = ConsoleSettings.model_validate_json(json.dumps(doc["console"]))
    assert settings.enabled
    assert settings.listen.startswith("127.0.0.1:")
    assert login.url == f"http://{settings.listen}/"
    assert settings.users_file is not None
    assert console_problems(settings, settings.users_file) == []
    accounts = LocalAccounts(settings.users_file)
    now = datetime.now(UTC)
    result = accounts.check(USER, login.password, login.code(now), now)
    assert result.identity is not None
    assert result.identity.role.value == "security-officer"
    assert accounts.check(USER, "wrong password", login.code(now), now).identity is None


def test_each_run_gets_its_own_password_and_secret(tmp_path: Path) -> None:
    first = enable_console(_node(tmp_path / "a"), tmp_path / "a")
    second = enable_console(_node(tmp_path / "b"), tmp_path / "b")
    assert first.password != second.password
    assert first.totp_secret != second.totp_secret


def test_the_printed_login_names_the_url_user_password_and_code() -> None:
    login = DemoLogin("http://127.0.0.1:9/", "demo", "pw-123", SECRET, "otpauth://x")
    at = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    text = "\n".join(login_lines(login, "Gemeente Veenstad / ZVH", at))
    for part in ("http://127.0.0.1:9/", "user demo", "password pw-123", "otpauth://x"):
        assert part in text
    assert f"code now: {login.code(at)}" in text
    assert "Ctrl-C" in text


async def test_serve_console_restarts_waits_for_the_console_and_prints_the_login() -> None:
    restarted: list[bool] = []
    app = web.Application()

    async def login_page(_: web.Request) -> web.Response:
        return web.Response(text="login")

    app.router.add_get("/login", login_page)
    server = TestServer(app)
    await server.start_server()
    try:
        login = DemoLogin(str(server.make_url("/")), "demo", "pw", SECRET, "otpauth://x")
        stream = io.StringIO()
        task = asyncio.create_task(
            serve_console(login, "Gemeente", lambda: restarted.append(True), Console(stream))
        )
        for _ in range(200):
            if "Ctrl-C" in stream.getvalue():
                break
            await asyncio.sleep(0.05)
        task.cancel()
        assert restarted == [True]
        assert f"open {login.url}" in stream.getvalue()
    finally:
        await server.close()


def test_the_demo_command_has_a_console_option() -> None:
    answer = CliRunner().invoke(main, ["--help"])
    assert answer.exit_code == 0
    assert "--console" in answer.output


def test_the_demos_closing_lines_say_how_to_open_the_console(tmp_path: Path) -> None:
    stream = io.StringIO()
    _summary_next(Console(stream), cast(Workspace, SimpleNamespace(work=tmp_path)))
    text = stream.getvalue()
    assert "./scripts/demo --console" in text
    assert "docs/console.md" in text


def test_the_demos_last_line_says_how_to_open_the_console() -> None:
    line = open_console_line("Gemeente Veenstad / ZVH")
    assert "./scripts/demo --console" in line
    assert "Gemeente Veenstad / ZVH's officer console" in line
    assert "zvg demo" not in line  # the demo is not a zvg command (decision 0090)
