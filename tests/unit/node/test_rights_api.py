"""The inzageverzoek through the node's local API (``/v1/rights``) and ``zvg rights``, in one
process (tests/node_pair.py nodes, envelopes carried by hand).

Threats: an adapter token starting requests or releasing deferrals; a BSN echoed in an error;
the CLI reaching past the running node.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from click.testing import CliRunner, Result

from gateway.cli import cli
from gateway.node.api import build_app
from gateway.node.api_common import TOKENS
from gateway.node.config import Token, hash_token
from tests.node_pair import InProcessNode
from tests.unit.node.test_rights import BSN, GGZ, IDENTITY_CHECK, POL, Federation, fed

__all__ = ["fed"]  # the fixture, shared with test_rights

Client = TestClient[web.Request, web.Application]

RIGHTS = "rights-token-0123456789abcdef0123456789"
ADAPTER = "adapter-token-0123456789abcdef012345678"


async def _ready() -> dict[str, Any]:
    return {}


async def _client(node: InProcessNode) -> Client:
    app = build_app(node.service, _ready)
    app[TOKENS] = (
        Token(name="contactpunt", role="contactpunt", sha256=hash_token(RIGHTS)),
        Token(name="ehr", role="adapter", sha256=hash_token(ADAPTER)),
    )
    client: Client = TestClient(TestServer(app))
    await client.start_server()
    return client


@pytest.fixture
async def clients(
    fed: Federation,
) -> AsyncIterator[dict[str, Client]]:
    made = {key: await _client(fed[key]) for key in ("gemeente", "politie")}
    try:
        yield made
    finally:
        for client in made.values():
            await client.close()


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_an_adapter_token_may_not_start_or_release(
    clients: dict[str, Client],
) -> None:
    zvh, pol = clients["gemeente"], clients["politie"]
    body = {"bsn": BSN, "identity_check": IDENTITY_CHECK}
    response = await zvh.post("/v1/rights/requests", json=body, headers=_auth(ADAPTER))
    assert response.status == 403
    response = await pol.post(
        "/v1/rights/deferrals/019d4d6b-be80-7001-8203-040506070809/release",
        headers=_auth(ADAPTER),
    )
    assert response.status == 403


async def test_a_bad_bsn_is_refused_without_echoing_it(
    clients: dict[str, Client],
) -> None:
    body = {"bsn": "123456789", "identity_check": IDENTITY_CHECK}
    response = await clients["gemeente"].post(
        "/v1/rights/requests", json=body, headers=_auth(RIGHTS)
    )
    assert response.status == 400
    assert response.content_type == "application/problem+json"
    assert "123456789" not in await response.text()


async def test_start_read_extend_through_the_api(
    clients: dict[str, Client],
) -> None:
    zvh = clients["gemeente"]
    body = {"bsn": BSN, "identity_check": IDENTITY_CHECK, "received_on": "2026-04-01"}
    response = await zvh.post("/v1/rights/requests", json=body, headers=_auth(RIGHTS))
    assert response.status == 201
    doc = await response.json()
    assert BSN not in await response.text()
    assert set(doc["organisations"]) >= {GGZ, POL}
    response = await zvh.get(f"/v1/rights/requests/{doc['request_id']}", headers=_auth(RIGHTS))
    assert response.status == 200
    assert (await response.json())["names"][GGZ] == "GGZ Veenland"
    response = await zvh.post(
        f"/v1/rights/requests/{doc['request_id']}/extend",
        json={"reason": "complexe casus"},
        headers=_auth(RIGHTS),
    )
    assert response.status == 200
    missing = "5b0f8c1e-2d7a-4e11-9c3b-7a1d2e3f4a5b"
    response = await zvh.get(f"/v1/rights/requests/{missing}", headers=_auth(RIGHTS))
    assert response.status == 404
    listed = await (await zvh.get("/v1/rights/requests", headers=_auth(RIGHTS))).json()
    assert [d["request_id"] for d in listed] == [doc["request_id"]]


async def _zvg(args: list[str]) -> Result:
    """``zvg`` in a thread: it calls the node's API, which this event loop serves."""
    return await asyncio.to_thread(CliRunner().invoke, cli, args)


async def test_the_cli_starts_shows_and_releases(
    fed: Federation,
    clients: dict[str, Client],
    tmp_path: Path,
) -> None:
    token = tmp_path / "rights.token"
    token.write_text(RIGHTS + "\n", "utf-8")
    zvh, pol = fed["gemeente"], fed["politie"]

    def common(key: str) -> list[str]:
        client = clients[key]
        url = f"http://{client.host}:{client.port}"
        config = str(fed[key].config.source)
        return ["--config", config, "--token-file", str(token), "--url", url]

    started = await _zvg(
        ["rights", "request", *common("gemeente"), "--bsn", BSN, "--identity-check", "paspoort"]
    )
    assert started.exit_code == 0, started.output
    assert BSN not in started.output
    request_id = started.output.split()[1]
    await fed.carry("gemeente", "ggz")
    await fed.carry("gemeente", "politie")
    await fed.carry("ggz", "gemeente")
    await fed.carry("politie", "gemeente")

    shown = await _zvg(["rights", "show", *common("gemeente"), request_id])
    assert shown.exit_code == 0, shown.output
    assert "GGZ Veenland: beantwoord" in shown.output
    assert "uitgesteld op grond van Wet politiegegevens" in shown.output
    assert "wacht nog op: Politie, basisteam Veenstad" in shown.output

    listed = await _zvg(["rights", "deferrals", *common("politie")])
    assert listed.exit_code == 0, listed.output
    message_id = listed.output.split()[0]
    released = await _zvg(["rights", "release", *common("politie"), message_id])
    assert released.exit_code == 0, released.output
    await pol.carry_to(zvh)
    shown = await _zvg(["rights", "show", *common("gemeente"), request_id])
    assert "Politie, basisteam Veenstad: beantwoord" in shown.output
    assert "nu vrijgegeven" in shown.output

    again = await _zvg(["rights", "release", *common("politie"), message_id])
    assert again.exit_code == 1
    assert "released already" in again.output
