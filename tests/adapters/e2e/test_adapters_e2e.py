"""The adapters end to end: partner system → adapter → real node → RabbitMQ → real node →
adapter → partner system, with the demo federation's keys and policy (issue 8, point 7).

Uses the node's own e2e harness (``tests/e2e/harness.py``: a throwaway federation on the shared
RabbitMQ, nodes in-process). The FHIR server and the Zaken API (Prism) are the same processes as
in the adapters' own tests.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from adapters._runtime import EventLog, NodeSettings, Pseudonymiser
from adapters.fhir import resources as r
from adapters.fhir.adapter import FhirAdapter, FhirConfig, FhirSettings
from adapters.fhir.server import FhirClient
from adapters.folder import FolderAdapter, FolderConfig, FolderSettings
from adapters.webhook import WebhookAdapter, WebhookConfig, WebhookSettings
from tests.adapters.test_fhir import complete, hl7
from tests.adapters.test_folder import EXAMPLES, drop
from tests.adapters.test_webhook import Partner, make_cert, secrets
from tests.adapters.test_zgw import make_adapter as make_zgw_adapter
from tests.e2e import harness
from zvg_client.client import NodeClient, request_from_dict

pytestmark = [pytest.mark.broker, pytest.mark.slow]

FINAL_WAIT = 60.0


async def eventually(check: Callable[[], Any], seconds: float = FINAL_WAIT) -> Any:
    """Poll ``check`` (sync or async) until it returns something truthy."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.2)


@pytest.fixture
async def federation(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    made: list[Any] = []

    async def start(*orgs: str) -> Any:
        fed = harness.make_fed(tmp_path / "fed", orgs=orgs)
        made.append(fed)
        for key in orgs:
            await fed.start(key)
        return fed

    yield start
    for fed in made:
        for key in list(fed.running):
            await fed.stop(key)
        harness.teardown_fed(fed)


def node_client(fed: Any, key: str) -> NodeClient:
    files = fed.nodes[key]
    return NodeClient(files.url, files.token)


async def status_of(node: NodeClient, message_id: str) -> set[str]:
    return {r.status for r in (await node.status(message_id)).recipients}


async def test_police_csv_to_a_zvh_zaak_and_back(
    federation: Callable[..., Any], tmp_path: Path, zaken_url: str
) -> None:
    """Demo step 1: the police export a referral (folder adapter); the ZVH's case system gets a
    zaak (ZGW adapter, the Zaken API standard via Prism); the police see `accepted`."""
    fed = await federation("politie", "gemeente")
    key = tmp_path / "pseudonym-key"
    key.write_bytes(b"p" * 32)
    key.chmod(0o600)
    police = FolderAdapter(
        FolderConfig(
            node=NodeSettings(url=fed.nodes["politie"].url, token_file=key),
            folder=FolderSettings(
                root_dir=tmp_path / "politie",
                settle_seconds=0,
                csv_mapping=EXAMPLES / "politie" / "aanmelding.mapping.toml",
                pseudonym_key_file=key,
            ),
        ),
        node_client(fed, "politie"),
        EventLog("e2e-folder"),
    )
    (tmp_path / "zgw").mkdir()
    gemeente = make_zgw_adapter(FakeUrl(fed, "gemeente"), tmp_path / "zgw", zaken_url)  # type: ignore[arg-type]
    try:
        drop(
            police,
            "aanmeldingen.csv",
            (EXAMPLES / "politie" / "aanmelding-voorbeeld.csv").read_bytes(),
        )
        assert await police.scan_once(now=0.0) == 1
        [result] = [json.loads(p.read_text()) for p in police.dirs.processed.glob("*.result.json")]
        message_id = result["messages"][0]["message_id"]
        await eventually(gemeente.receive_once)
        [zaak] = gemeente.state.data["zaken"].values()
        assert zaak["case_ref"] == "Veenstad-2026-031"
        assert zaak["counterparts"] == [{"org": fed.nodes["politie"].org.oin, "role": "POL"}]
        await eventually(police.poll_statuses)
        status_file = police.dirs.outbox / f"{message_id}.status.json"

        async def accepted() -> bool:
            await police.poll_statuses()
            doc: dict[str, Any] = json.loads(status_file.read_text())
            return bool(doc["recipients"][0]["status"] == "accepted")

        await eventually(accepted)
    finally:
        await police.node.close()
        await gemeente.node.close()
        await gemeente.zaken.close()


class FakeUrl:
    """What ``make_zgw_adapter`` needs of a node: its URL and token (here a real node's)."""

    def __init__(self, fed: Any, key: str) -> None:
        self.url = fed.nodes[key].url
        self.token = fed.nodes[key].token


async def test_bekendheidsvraag_answered_from_the_ehr(
    federation: Callable[..., Any], tmp_path: Path, fhir_url: str
) -> None:
    """Demo step 3: the ZVH asks GGZ Veenland; the question becomes a Task in the EHR (FHIR
    adapter); the clinician completes it; the ZVH receives the 'known' answer."""
    fed = await federation("gemeente", "ggz")
    ggz_oin = fed.nodes["ggz"].org.oin
    question = harness.request_from_example(
        "info.request", recipients=[{"org": ggz_oin, "role": "GGZ"}]
    )
    zvh = node_client(fed, "gemeente")
    async with aiohttp.ClientSession() as http, http.post(f"{fhir_url}/$test-reset") as reset:
        assert reset.status == 200  # the session's server: empty, whatever ran before
    fhir = FhirClient(fhir_url)
    config = FhirConfig(
        node=NodeSettings(url=fed.nodes["ggz"].url, org=ggz_oin, token_file=tmp_path / "t"),
        fhir=FhirSettings(base_url=fhir_url, pseudonym_key_file=tmp_path / "k", state_dir=tmp_path),
    )
    ggz = FhirAdapter(
        config,
        node_client(fed, "ggz"),
        fhir,
        EventLog("e2e-fhir"),
        Pseudonymiser(b"g" * 32),
        ggz_oin,
    )
    try:
        role = hl7("PractitionerRole-example") | {
            "id": "fact-kuipers",
            "practitioner": {"display": "A. Kuipers"},
            "code": [{"text": "psychiater, FACT-team Veenstad"}],
        }
        await fhir.update(r.validate(role))
        sent = await zvh.send(request_from_dict(question), idempotency_key="e2e-question")
        await eventually(ggz.receive_once)
        task_id = f"zvg-{sent.message_id}"
        await complete(
            fhir,
            task_id,
            [
                r.param("disposition", valueCode="known"),
                r.param("contact", valueReference={"reference": "PractitionerRole/fact-kuipers"}),
            ],
        )
        assert await ggz.answer_requests() == 1

        async def answer() -> Any:
            page = await zvh.inbox(wait=1)
            return [i for i in page.items if i.claims.get("in_reply_to") == sent.message_id]

        [item] = await eventually(answer)
        assert item.claims["body"]["disposition"] == "known"
        assert item.claims["body"]["contact"]["name"] == "A. Kuipers"
        await zvh.ack(item.message_id)
        assert await eventually(lambda: _is(status_of(zvh, sent.message_id), {"accepted"}))
    finally:
        await zvh.close()
        await ggz.node.close()
        await fhir.close()


async def _is(awaitable: Any, want: set[str]) -> bool:
    return bool(await awaitable == want)


async def test_veilig_thuis_webhook_both_ways(
    federation: Callable[..., Any], tmp_path: Path
) -> None:
    """Veilig Thuis: the ZVH's bekendheidsvraag is pushed, signed, to the registration system's
    HTTPS endpoint, acked after its 2xx, and the ZVH sees `accepted`."""
    fed = await federation("gemeente", "veiligthuis")
    vt_oin = fed.nodes["veiligthuis"].org.oin
    cert, cert_key = make_cert(tmp_path, "partner")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, cert_key)
    partner = Partner()
    app = web.Application()
    app.router.add_post("/zvg/inbound", partner.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
    await site.start()
    port = runner.addresses[0][1]
    s = secrets(tmp_path)
    vt = WebhookAdapter(
        WebhookConfig(
            node=NodeSettings(url=fed.nodes["veiligthuis"].url, token_file=s["node"]),
            webhook=WebhookSettings(
                push_url=f"https://127.0.0.1:{port}/zvg/inbound",
                ca_file=cert,
                signing_secret_file=s["secret"],
                inbound_token_file=s["token"],
                state_dir=tmp_path / "vt-state",
            ),
        ),
        node_client(fed, "veiligthuis"),
        EventLog("e2e-webhook"),
    )
    zvh = node_client(fed, "gemeente")
    try:
        question = harness.request_from_example(
            "info.request", recipients=[{"org": vt_oin, "role": "VT"}]
        )
        sent = await zvh.send(request_from_dict(question), idempotency_key="e2e-vt-question")

        async def pushed() -> bool:
            settled, _left = await vt.push_once(wait=1)
            return settled == 1

        await eventually(pushed)
        [(headers, body)] = partner.received
        assert headers["ZVG-Delivery"] == sent.message_id
        assert json.loads(body)["claims"]["purpose"] == "ZVH.BEKENDHEID"
        assert await eventually(lambda: _is(status_of(zvh, sent.message_id), {"accepted"}))
        assert partner.bad_signatures == 0, "the partner verified every signature"
    finally:
        await vt.close()
        await vt.node.close()
        await zvh.close()
        await runner.cleanup()
