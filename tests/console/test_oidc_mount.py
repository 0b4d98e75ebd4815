"""How the console mounts the OpenID Connect login (gateway.console.oidc, its own branch and
tests): with ``[console.oidc] issuer`` set, ``client_settings`` of the section and
``add_oidc_routes(app, settings, start_session, on_failure=oidc_failed)``. Here against a
stand-in module that records the calls (the protocol itself is tested against a real provider in
tests/console/test_oidc.py); a login it reports ends in a console session."""

from __future__ import annotations

import sys
import types
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway.console.app import CONSOLE, build_console_app
from gateway.console.config import ConsoleSettings, OidcSettings
from gateway.console.identity import Identity
from gateway.console.roles import Role
from gateway.testing.federation import FederationFiles
from tests.unit.node._inproc import InProcFederation

OnIdentity = Callable[[web.Request, Identity], Awaitable[web.StreamResponse]]
OnFailure = Callable[[web.Request, Exception], Awaitable[web.StreamResponse]]


class _Error(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _stand_in(calls: dict[str, Any]) -> types.ModuleType:
    module = types.ModuleType("gateway.console.oidc")

    def client_settings(config: OidcSettings) -> object:
        calls["config"] = config
        return ("client", config.issuer)

    def add_oidc_routes(
        app: web.Application, settings: object, on_identity: OnIdentity, *, on_failure: OnFailure
    ) -> None:
        calls["settings"] = settings

        async def callback(request: web.Request) -> web.StreamResponse:
            if request.query.get("fail"):
                return await on_failure(request, _Error(request.query["fail"]))
            who = Identity("oidc-sub-1", "Olga <i>OIDC</i>", Role.PRIVACY_OFFICER, "oidc")
            return await on_identity(request, who)

        app.router.add_get("/auth/callback", callback)

    module.client_settings = client_settings  # type: ignore[attr-defined]  # a stand-in
    module.add_oidc_routes = add_oidc_routes  # type: ignore[attr-defined]  # a stand-in
    return module


async def test_an_oidc_login_ends_in_a_console_session_and_a_failure_on_the_login_page(
    tmp_path: Path, veenstad: FederationFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: dict[str, Any] = {}
    monkeypatch.setitem(sys.modules, "gateway.console.oidc", _stand_in(calls))
    federation = InProcFederation(veenstad, tmp_path)
    politie = await federation.start("politie")
    oidc = OidcSettings(
        issuer="https://login.example.nl",
        client_id="zvg",
        redirect_url="https://zvg.example.nl/auth/callback",
        role_mapping={"fg": Role.PRIVACY_OFFICER},
    )
    settings = ConsoleSettings(enabled=True, oidc=oidc)
    app = build_console_app(politie.node.service, settings, users_file=tmp_path / "none.json")
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        assert calls["config"] == oidc
        assert calls["settings"] == ("client", "https://login.example.nl")
        login = await (await client.get("/login")).text()
        assert 'href="/login/oidc?next=/"' in login
        answer = await client.get("/auth/callback", allow_redirects=False)
        assert answer.status == 303
        assert len(app[CONSOLE].sessions) == 1
        (record,) = politie.node.audit(operation="console.login")
        assert record["view"]["status"] == "ok"
        assert record["view"]["detail"]["method"] == "oidc"
        assert record["personal"]["actor"]["id"] == "oidc-sub-1"
        failed = await client.get("/auth/callback?fail=no-role", allow_redirects=False)
        assert failed.status == 403
        assert "(no-role)" in await failed.text()
        assert politie.node.audit(operation="console.login")[-1]["view"]["reason"] == (
            "oidc:no-role"
        )
    finally:
        await client.close()
        await federation.close()
