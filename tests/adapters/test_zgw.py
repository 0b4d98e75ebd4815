"""ZGW Zaken API adapter (gemeente / ZVH).

Two layers:

- the mapping, with the demo case's messages and zaken (pure, no server);
- the protocol, against Stoplight Prism serving the VNG Zaken API OpenAPI document
  (``zgw/zaken-api.yaml``, see its header for the source): Prism validates every request the
  adapter makes against the standard (a body or query outside it gets the standard's 400
  ValidatieFout) and answers with the document's published examples and schema-derived values.
  Prism keeps no state, so the flows are checked step by step, not as a story.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from adapters._runtime import EventLog, Pseudonymiser, load_config
from adapters.zgw.adapter import ZgwAdapter, ZgwConfig, ZgwMapping, load_mapping
from adapters.zgw.api import ZakenClient, ZgwError, zgw_jwt
from schemas.claims import CaseReferral, CaseStatus
from tests.adapters.conftest import ORG
from tests.adapters.nodefake import FakeNode, fresh_copy, load_example
from zvg_client.client import NodeClient, RetryPolicy

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "adapters" / "examples" / "gemeente"
GEM, POL = ORG["gemeente"].oin, ORG["politie"].oin
KEY = b"gemeente-veenstad-pseudonym-key!"
SCHEMA_URL = "http://example.com"  # what Prism derives for format: uri fields


def mapping() -> ZgwMapping:
    return load_mapping(EXAMPLE / "zgw-mapping.toml")


def make_adapter(
    node: FakeNode, tmp_path: Path, zaken_url: str, the_mapping: ZgwMapping | None = None
) -> ZgwAdapter:
    shutil.copy(EXAMPLE / "zgw.toml", tmp_path / "zgw.toml")
    shutil.copy(EXAMPLE / "zgw-mapping.toml", tmp_path / "zgw-mapping.toml")
    text = (tmp_path / "zgw.toml").read_text()
    text = text.replace("https://zaken.veenstad.example/api/v1", zaken_url)
    text = text.replace("/var/lib/zvg/gemeente", str(tmp_path / "state"))
    (tmp_path / "zgw.toml").write_text(text)
    config = load_config(tmp_path / "zgw.toml", ZgwConfig)
    zaken = ZakenClient(zaken_url, client_id="zv-gateway", secret=b"z" * 32)
    client = NodeClient(node.url, node.token, retry=RetryPolicy(attempts=1))
    return ZgwAdapter(
        config,
        the_mapping or load_mapping(tmp_path / "zgw-mapping.toml"),
        client,
        zaken,
        EventLog("zgw-test"),
        Pseudonymiser(KEY),
    )


@pytest.fixture
async def adapter(
    gemeente_node: FakeNode, tmp_path: Path, zaken_url: str
) -> AsyncIterator[ZgwAdapter]:
    a = make_adapter(gemeente_node, tmp_path, zaken_url)
    yield a
    await a.zaken.close()
    await a.node.close()


def demo_zaak() -> dict[str, Any]:
    """The wijkteam's zaak of the referral zaaktype, as a Zaken API returns it."""
    spec = mapping().outbound_referral
    assert spec is not None
    return {
        "url": "https://zaken.veenstad.example/api/v1/zaken/6f2b1c0e-1d3a-4e5b-9c7d-8a9b0c1d2e3f",
        "identificatie": "ZAAK-2026-0000412",
        "zaaktype": spec.zaaktype,
        "omschrijving": "Aanmelding ZVH",
        "toelichting": "Debts, threats to neighbours, no care contact; the wijkteam cannot cope.",
        "startdatum": "2026-02-20",
        "kenmerken": [],
    }


def demo_rol() -> dict[str, Any]:
    return {
        "url": "https://zaken.veenstad.example/api/v1/rollen/0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
        "betrokkeneType": "natuurlijk_persoon",
        "betrokkeneIdentificatie": {"inpBsn": "999990019", "geslachtsnaam": "Vermeer"},
    }


# ---------------------------------------------------------------- mapping (demo case, no server)


async def test_zaak_becomes_a_pseudonymous_referral(
    gemeente_node: FakeNode, tmp_path: Path
) -> None:
    adapter = make_adapter(gemeente_node, tmp_path, "http://127.0.0.1:9/api/v1")
    request = adapter.referral_request(demo_zaak(), demo_rol())
    await adapter.zaken.close()
    await adapter.node.close()
    assert request.sender_role == "GEM"
    assert [(r.org, r.role) for r in request.recipients] == [(GEM, "ZVH")]
    assert request.subjects[0].subject_ref == Pseudonymiser(KEY).subject_ref("bsn", "999990019")
    assert "999990019" not in request.model_dump_json()
    assert request.case_ref.startswith("case-"), "no meaning: not the zaak's identificatie"
    assert "ZAAK-2026" not in request.model_dump_json()


async def test_zvg_kenmerk_is_the_case_ref(gemeente_node: FakeNode, tmp_path: Path) -> None:
    adapter = make_adapter(gemeente_node, tmp_path, "http://127.0.0.1:9/api/v1")
    zaak = demo_zaak() | {"kenmerken": [{"kenmerk": "Veenstad-2026-031", "bron": "zv-gateway"}]}
    assert adapter.case_ref_of(zaak) == "Veenstad-2026-031"
    await adapter.zaken.close()
    await adapter.node.close()


async def test_handover_becomes_zaak_and_rol(gemeente_node: FakeNode, tmp_path: Path) -> None:
    adapter = make_adapter(gemeente_node, tmp_path, "http://127.0.0.1:9/api/v1")
    handover = fresh_copy(load_example("case.handover"))
    [spec] = [i for i in adapter.mapping.inbound if i.message_type == "case.handover"]
    zaak = adapter.zaak_for(handover, spec)
    rol = adapter.rol_for("https://zaken.example/z/1", handover, spec)
    await adapter.zaken.close()
    await adapter.node.close()
    assert len(zaak["identificatie"]) <= 40
    assert zaak["omschrijving"] == "Warme overdracht: Wijkteam Veenstad-Noord"
    assert zaak["kenmerken"] == [{"kenmerk": "Veenstad-2026-031", "bron": "zv-gateway"}]
    assert rol["betrokkeneIdentificatie"] == {
        "inpBsn": "999990019",
        "geslachtsnaam": "Vermeer",
        "geboortedatum": "1992-05-14",
    }


def test_zgw_jwt_is_hs256_over_the_client_claims() -> None:
    token = zgw_jwt("zv-gateway", b"z" * 32, now=1_770_000_000)
    header, payload, signature = token.split(".")
    expected = hmac.new(b"z" * 32, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    assert base64.urlsafe_b64decode(signature + "==") == expected
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    assert claims["client_id"] == claims["iss"] == "zv-gateway"
    assert claims["iat"] == 1_770_000_000


# ---------------------------------------------------------------- protocol (Prism + the standard)


async def test_received_handover_becomes_a_zaak_the_standard_accepts(
    adapter: ZgwAdapter, gemeente_node: FakeNode
) -> None:
    handover = await gemeente_node.deliver(fresh_copy(load_example("case.handover")))
    assert await adapter.receive_once() == 1
    assert gemeente_node.acked == [handover.message_id]
    assert gemeente_node.rejected == []
    [followed] = adapter.state.data["zaken"].values()
    assert followed["case_ref"] == "Veenstad-2026-031"
    assert followed["counterparts"] == [{"org": GEM, "role": "ZVH"}]


async def test_a_zaak_outside_the_standard_is_refused_and_the_message_rejected(
    gemeente_node: FakeNode, tmp_path: Path, zaken_url: str
) -> None:
    bad = mapping().model_copy(
        update={
            "inbound": [i.model_copy(update={"zaaktype": "not a URL"}) for i in mapping().inbound]
        }
    )
    adapter = make_adapter(gemeente_node, tmp_path, zaken_url, bad)
    item = await gemeente_node.deliver(fresh_copy(load_example("case.handover")))
    try:
        assert await adapter.receive_once() == 0
    finally:
        await adapter.zaken.close()
        await adapter.node.close()
    assert [(m, w.reason) for m, w in gemeente_node.rejected] == [
        (item.message_id, "invalid_content")
    ]


async def test_new_zaken_become_referrals_once(
    adapter: ZgwAdapter, gemeente_node: FakeNode
) -> None:
    # Prism answers the zaaktype-filtered list with one schema-derived zaak, and a `next` link
    # to another host (the published pagination example), which the client must not follow.
    assert await adapter.refer_new_zaken() == 1
    assert await adapter.refer_new_zaken() == 0
    [referral] = gemeente_node.sent_of_type("case.referral")
    assert isinstance(referral, CaseReferral)
    assert referral.sender.role == "GEM"
    assert referral.body.referrer.function == "wijkcoach"
    assert referral.subjects[0].subject_ref.startswith("sub-")


async def test_status_on_a_followed_zaak_becomes_case_status(
    gemeente_node: FakeNode, tmp_path: Path, zaken_url: str
) -> None:
    status_map = {SCHEMA_URL: "accepted"}  # Prism's statustype for the published Status schema
    base = mapping()
    assert base.status is not None
    the_mapping = base.model_copy(
        update={"status": base.status.model_copy(update={"map": status_map})}
    )
    adapter = make_adapter(gemeente_node, tmp_path, zaken_url, the_mapping)
    adapter.follow(
        f"{zaken_url}/zaken/6f2b1c0e", "Veenstad-2026-031", [{"org": POL, "role": "POL"}]
    )
    try:
        assert await adapter.report_statuses() == 1
        assert await adapter.report_statuses() == 0, "the same status is reported once"
    finally:
        await adapter.zaken.close()
        await adapter.node.close()
    [status] = gemeente_node.sent_of_type("case.status")
    assert isinstance(status, CaseStatus)
    assert status.body.status == "accepted"
    assert status.purpose == "ZVH.AANMELDING"
    assert [(r.org, r.role) for r in status.recipients] == [(POL, "POL")]


async def test_zaken_api_errors_are_typed(zaken_url: str) -> None:
    client = ZakenClient(zaken_url, token="t")
    try:
        with pytest.raises(ZgwError) as info:
            await client.create("statussen", {"zaak": "not a url"})
        assert info.value.status == 400
    finally:
        await client.close()


async def test_other_types_are_left_or_rejected_as_configured(
    gemeente_node: FakeNode, tmp_path: Path
) -> None:
    status = fresh_copy(load_example("case.status"))
    status["recipients"] = [{"org": GEM, "role": "GEM"}]
    status["sender"] = {"org": GEM, "node": "zvh-veenstad-1", "role": "ZVH"}
    item = await gemeente_node.deliver(status)
    leave = make_adapter(gemeente_node, tmp_path, "http://127.0.0.1:9/api/v1")
    assert await leave.receive_once() == 0
    assert gemeente_node.rejected == []
    assert item.message_id in gemeente_node.inbox, "left for another consumer"
    strict = make_adapter(
        gemeente_node,
        tmp_path,
        "http://127.0.0.1:9/api/v1",
        mapping().model_copy(update={"unhandled": "reject"}),
    )
    await strict.receive_once()
    for a in (leave, strict):
        await a.zaken.close()
        await a.node.close()
    assert [(m, w.reason) for m, w in gemeente_node.rejected] == [
        (item.message_id, "not_responsible")
    ]


async def test_zaken_api_down_keeps_the_message_and_reports_not_ready(
    gemeente_node: FakeNode, tmp_path: Path
) -> None:
    adapter = make_adapter(gemeente_node, tmp_path, "http://127.0.0.1:9/api/v1")
    item = await gemeente_node.deliver(fresh_copy(load_example("case.handover")))
    await adapter.step()
    await adapter.zaken.close()
    await adapter.node.close()
    assert gemeente_node.acked == []
    assert gemeente_node.rejected == []
    assert item.message_id in gemeente_node.inbox
    assert not adapter.health.ready()
