"""The ``[console]`` section: off by default; loopback only without TLS; a way to log in;
checked by ``zvg node check-config`` (preflight); started on its own listener by the node."""

from __future__ import annotations

import socket
from pathlib import Path

import aiohttp
import pytest
from pydantic import ValidationError

from gateway.console.app import start_console
from gateway.console.config import ConsoleSettings, console_problems
from gateway.errors import LocalError
from gateway.node.config import load_config
from gateway.node.preflight import preflight
from gateway.testing.federation import FederationFiles
from tests.console.conftest import FAST, PASSWORD
from tests.node_pair import open_node


def _problems(tmp_path: Path, **settings: object) -> list[str]:
    users = tmp_path / "users.json"
    return console_problems(ConsoleSettings(enabled=True, **settings), users)  # type: ignore[arg-type]  # test values


def _with_users(tmp_path: Path) -> None:
    from gateway.console.auth import add_account
    from gateway.console.roles import Role

    add_account(
        tmp_path / "users.json",
        name="sanne",
        display_name="Sanne",
        role=Role.SECURITY_OFFICER,
        password=PASSWORD,
        hasher=FAST,
    )


def test_the_console_is_off_by_default() -> None:
    assert ConsoleSettings().enabled is False
    assert console_problems(ConsoleSettings(listen="0.0.0.0:443"), Path("/nonexistent")) == []


@pytest.mark.parametrize("listen", ["127.0.0.1:8401", "[::1]:8401", "localhost:8401"])
def test_loopback_without_tls_is_allowed(tmp_path: Path, listen: str) -> None:
    _with_users(tmp_path)
    assert _problems(tmp_path, listen=listen) == []


@pytest.mark.parametrize("listen", ["0.0.0.0:8401", "192.0.2.10:8401", "console.example:443"])
def test_anything_but_loopback_without_tls_is_refused(tmp_path: Path, listen: str) -> None:
    _with_users(tmp_path)
    (problem,) = _problems(tmp_path, listen=listen)
    assert problem.startswith(f"console.listen: {listen} is not loopback")


def test_tls_needs_both_files_and_a_private_key(tmp_path: Path) -> None:
    _with_users(tmp_path)
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("x")
    key.write_text("x")
    key.chmod(0o644)
    assert _problems(tmp_path, listen="0.0.0.0:443", tls_cert=cert) == [
        "console.tls_cert and console.tls_key: set both or neither",
    ]
    (problem,) = _problems(tmp_path, listen="0.0.0.0:443", tls_cert=cert, tls_key=key)
    assert "readable by group or others" in problem


def test_the_pseudonym_key_must_exist_be_private_and_long_enough(tmp_path: Path) -> None:
    _with_users(tmp_path)
    key = tmp_path / "pseudonym.key"
    (problem,) = _problems(tmp_path, pseudonym_key_file=key)
    assert problem == f"console.pseudonym_key_file: {key} does not exist"
    key.write_bytes(b"k" * 31 + b"\n")
    key.chmod(0o640)
    (problem,) = _problems(tmp_path, pseudonym_key_file=key)
    assert "readable by group or others" in problem
    key.chmod(0o600)
    (problem,) = _problems(tmp_path, pseudonym_key_file=key)
    assert "fewer than 32 bytes" in problem
    key.write_bytes(b"k" * 32 + b"\n")
    assert _problems(tmp_path, pseudonym_key_file=key) == []


def test_a_console_without_a_way_to_log_in_is_refused(tmp_path: Path) -> None:
    (problem,) = _problems(tmp_path)
    assert "no way to log in" in problem
    assert "zvg console add-user" in problem


def test_check_config_reports_the_console_problems(
    tmp_path: Path, veenstad: FederationFiles
) -> None:
    import asyncio

    async def config_path() -> Path:
        node = await open_node(
            veenstad,
            "politie",
            tmp_path / "n",
            console__enabled=True,
            console__listen="0.0.0.0:8401",
        )
        await node.close()
        return node.config.source

    source = asyncio.run(config_path())
    found = preflight(load_config(source))
    assert any(p.startswith("console.listen: 0.0.0.0:8401 is not loopback") for p in found.problems)
    assert any("no way to log in" in p for p in found.problems)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_the_node_serves_the_console_on_its_own_listener(
    tmp_path: Path, veenstad: FederationFiles
) -> None:
    port = _free_port()
    users = tmp_path / "users.json"
    node = await open_node(
        veenstad,
        "politie",
        tmp_path / "n",
        console__enabled=True,
        console__listen=f"127.0.0.1:{port}",
        console__users_file=str(users),
    )
    try:
        runner = await start_console(node.service)
        assert runner is not None
        try:
            async with (
                aiohttp.ClientSession() as client,
                client.get(f"http://127.0.0.1:{port}/login") as answer,
            ):
                assert answer.status == 200
                assert "Inloggen" in await answer.text()
                assert "Content-Security-Policy" in answer.headers
        finally:
            await runner.cleanup()
    finally:
        await node.close()


async def test_a_node_without_the_console_section_starts_no_console(
    tmp_path: Path, veenstad: FederationFiles
) -> None:
    node = await open_node(veenstad, "politie", tmp_path / "n")
    try:
        assert await start_console(node.service) is None
    finally:
        await node.close()


def test_an_enabled_console_without_its_packages_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "pyotp" else real(name, *a)
    )
    _with_users(tmp_path)
    (problem,) = _problems(tmp_path)
    assert problem == "console: enabled, but pyotp not installed; install zv-gateway[console]"


def test_the_node_does_not_import_the_console_unless_enabled() -> None:
    import subprocess
    import sys

    code = (
        "import sys, gateway.node.runner, gateway.node.preflight, gateway.cli;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in"
        " ('aiohttp_jinja2', 'jinja2', 'argon2', 'pyotp')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


async def test_zvg_node_run_starts_the_console_after_the_api_and_stops_it_first(
    tmp_path: Path, veenstad: FederationFiles
) -> None:
    """``Node.start`` (what ``zvg node run`` runs) with ``[console] enabled``: the console
    answers on its own listener while the node runs, and is gone after ``stop``. The broker is
    not needed for this: the node connects to it in the background."""
    from gateway.console.auth import add_account
    from gateway.console.roles import Role
    from gateway.node.runner import Node

    port, api_port = _free_port(), _free_port()
    users = tmp_path / "users.json"
    add_account(
        users,
        name="sanne",
        display_name="Sanne",
        role=Role.SECURITY_OFFICER,
        password=PASSWORD,
        hasher=FAST,
    )
    users.chmod(0o600)
    made = await open_node(
        veenstad,
        "politie",
        tmp_path / "n",
        console__enabled=True,
        console__listen=f"127.0.0.1:{port}",
        console__users_file=str(users),
    )
    await made.close()
    source = made.config.source
    text = source.read_text("utf-8")
    assert '"127.0.0.1:8400"' in text
    source.write_text(text.replace('"127.0.0.1:8400"', f'"127.0.0.1:{api_port}"'), "utf-8")
    node = await Node.start(load_config(source))
    try:
        assert node.console is not None
        async with (
            aiohttp.ClientSession() as client,
            client.get(f"http://127.0.0.1:{port}/login") as answer,
        ):
            assert answer.status == 200
    finally:
        await node.stop()
    with pytest.raises(aiohttp.ClientConnectionError):
        async with (
            aiohttp.ClientSession() as client,
            client.get(f"http://127.0.0.1:{port}/login"),
        ):
            pass


def test_the_oidc_settings_must_be_complete_and_https(tmp_path: Path) -> None:
    from gateway.console.config import OidcSettings
    from gateway.console.roles import Role

    good = OidcSettings(
        issuer="https://login.example.nl/realms/zorg",
        client_id="zvg-console",
        redirect_url="https://zvg.example.nl/auth/callback",
        role_mapping={"zvg-ciso": Role.SECURITY_OFFICER},
    )
    assert _problems(tmp_path, oidc=good) == []  # no local accounts needed with a provider
    loopback = good.model_copy(update={"issuer": "http://127.0.0.1:9000"})
    assert _problems(tmp_path, oidc=loopback) == []
    bad = OidcSettings(issuer="http://login.example.nl", scopes=("profile",))
    assert _problems(tmp_path, oidc=bad) == [
        "console.oidc: issuer needs client_id and redirect_url",
        "console.oidc.issuer: must be https:// (or http:// on loopback)",
        "console.oidc.scopes: must include openid",
        "console.oidc.role_mapping: maps no claim value to a role",
    ]


def test_node_toml_reads_the_console_section_with_its_oidc_subsection(
    tmp_path: Path, veenstad: FederationFiles
) -> None:
    import asyncio

    from gateway.console.roles import Role

    async def make() -> Path:
        node = await open_node(veenstad, "politie", tmp_path / "n")
        await node.close()
        return node.config.source

    source = asyncio.run(make())
    source.write_text(
        source.read_text("utf-8")
        + '\n[console]\nenabled = true\nusers_file = "users.json"\nidle_timeout_minutes = 10\n'
        '[console.oidc]\nissuer = "https://login.example.nl"\nclient_id = "zvg"\n'
        'client_secret_file = "oidc.secret"\nscopes = ["openid", "email"]\n'
        'redirect_url = "https://zvg.example.nl/auth/callback"\n'
        'role_mapping = { "zvg-fg" = "privacy-officer" }\n',
        "utf-8",
    )
    config = load_config(source)
    assert config.console.enabled
    assert config.console.idle_timeout_minutes == 10
    assert config.console_users_file == source.parent / "users.json"
    assert config.console.oidc.client_secret_file == source.parent / "oidc.secret"
    assert config.console.oidc.scopes == ("openid", "email")
    assert config.console.oidc.role_mapping == {"zvg-fg": Role.PRIVACY_OFFICER}
    source.write_text(source.read_text("utf-8").replace('"privacy-officer"', '"admin"'), "utf-8")
    with pytest.raises(LocalError, match=r"console\.oidc\.role_mapping"):
        load_config(source)


def test_the_console_time_zone_must_be_a_known_iana_name() -> None:
    assert ConsoleSettings().tz.key == "Europe/Amsterdam"
    assert ConsoleSettings(timezone="UTC").tz.key == "UTC"
    for bad in ("Europe/Veenstad", "../etc/passwd", ""):
        with pytest.raises(ValidationError, match="an IANA time zone name"):
            ConsoleSettings(timezone=bad)
