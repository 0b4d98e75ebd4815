"""Webhook adapter: signed HTTPS pushes, ack only after the partner took the message, retries,
and an authenticated outbound endpoint.

The partner is a real HTTPS server with a certificate made here (``cryptography``); the adapter
trusts it through ``ca_file``, as with a partner's private CA.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from adapters._runtime import EventLog, NodeSettings, bound_port
from adapters.errors import ConfigError
from adapters.webhook import (
    WebhookAdapter,
    WebhookConfig,
    WebhookSettings,
    load,
    sign,
    verify_signature,
)
from schemas.claims import RiskSignal
from tests.adapters.conftest import ORG
from tests.adapters.nodefake import FakeNode, fresh_copy, load_example
from zvg_client.client import NodeClient, RetryPolicy

SECRET = b"s" * 32
EXAMPLE = Path(__file__).resolve().parents[2] / "docs/adapters/examples/veiligthuis"
TOKEN = "vt-registration-system-token"


def make_cert(folder: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (its own CA) and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / f"{name}.crt", folder / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@dataclass
class Partner:
    """Veilig Thuis' registration system: an HTTPS endpoint that checks signatures."""

    url: str = ""
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    answers: list[tuple[int, Any]] = field(default_factory=list)
    bad_signatures: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if not verify_signature(SECRET, request.headers["ZVG-Signature"], body, now=_now()):
            self.bad_signatures += 1
            return web.Response(status=401)
        self.received.append((dict(request.headers), body))
        status, answer = self.answers.pop(0) if self.answers else (200, None)
        if answer is None:
            return web.Response(status=status)
        return web.json_response(answer, status=status)


def write_key(path: Path) -> Path:
    path.write_bytes(b"v" * 32)
    path.chmod(0o600)
    return path


def read_text(path: Path) -> str:
    return path.read_text()


def _now() -> float:
    return dt.datetime.now(dt.UTC).timestamp()


@pytest.fixture
async def partner(tmp_path: Path) -> AsyncIterator[Partner]:
    cert, key = make_cert(tmp_path, "partner")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    p = Partner()
    app = web.Application()
    app.router.add_post("/zvg/inbound", p.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx).start()
    p.url = f"https://127.0.0.1:{bound_port(runner, 0)}/zvg/inbound"
    yield p
    await runner.cleanup()


def secrets(tmp_path: Path) -> dict[str, Path]:
    out = {}
    for name, value in (("secret", SECRET), ("token", TOKEN.encode()), ("node", b"adapter-token")):
        path = tmp_path / name
        path.write_bytes(value)
        path.chmod(0o600)
        out[name] = path
    return out


class NoSleep:
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def make_adapter(
    node: FakeNode, partner_url: str, tmp_path: Path, ca: Path | None, **settings: Any
) -> WebhookAdapter:
    s = secrets(tmp_path)
    config = WebhookConfig(
        node=NodeSettings(url=node.url, token_file=s["node"]),
        webhook=WebhookSettings(
            push_url=partner_url,
            ca_file=ca,
            signing_secret_file=s["secret"],
            inbound_token_file=s["token"],
            state_dir=tmp_path / "state",
            max_attempts=3,
            **settings,
        ),
    )
    client = NodeClient(node.url, node.token, retry=RetryPolicy(attempts=1))
    return WebhookAdapter(config, client, EventLog("webhook-test"), sleep=NoSleep())


@pytest.fixture
async def vt_node() -> AsyncIterator[FakeNode]:
    node = FakeNode(ORG["veiligthuis"])
    await node.start()
    yield node
    await node.stop()


@pytest.fixture
async def adapter(
    vt_node: FakeNode, partner: Partner, tmp_path: Path
) -> AsyncIterator[WebhookAdapter]:
    a = make_adapter(vt_node, partner.url, tmp_path, tmp_path / "partner.crt")
    yield a
    await a.close()
    await a.node.close()


# ---------------------------------------------------------------- signatures


def test_signature_verifies_only_the_exact_body_and_recent_time() -> None:
    body = b'{"message_id": "x"}'
    header = sign(SECRET, body, 1_700_000_000)
    assert verify_signature(SECRET, header, body, now=1_700_000_100)
    assert not verify_signature(SECRET, header, body + b" ", now=1_700_000_100)
    assert not verify_signature(b"t" * 32, header, body, now=1_700_000_100)
    assert not verify_signature(SECRET, header, body, now=1_700_000_000 + 301), "replayed later"
    assert not verify_signature(SECRET, "v1=" + header.split("v1=")[1], body, now=1_700_000_000)
    assert not verify_signature(SECRET, "t=1700000000", body, now=1_700_000_000)


# ---------------------------------------------------------------- push


async def test_push_is_signed_over_https_and_acked_after_2xx(
    adapter: WebhookAdapter, vt_node: FakeNode, partner: Partner
) -> None:
    handover = fresh_copy(load_example("info.request"))
    await vt_node.deliver(handover)
    assert await adapter.push_once() == (1, 0)
    [(headers, body)] = partner.received
    assert headers["ZVG-Event"] == "message"
    assert headers["ZVG-Delivery"] == handover["message_id"]
    assert json.loads(body)["claims"]["body"] == handover["body"]
    assert vt_node.acked == [handover["message_id"]]
    assert partner.bad_signatures == 0


async def test_partner_failure_is_retried_then_acked(
    adapter: WebhookAdapter, vt_node: FakeNode, partner: Partner
) -> None:
    partner.answers = [(500, None), (503, None)]
    item = await vt_node.deliver(fresh_copy(load_example("info.request")))
    assert await adapter.push_once() == (1, 0)
    assert len(partner.received) == 3
    assert vt_node.acked == [item.message_id]


async def test_partner_down_leaves_the_item_in_the_inbox(
    adapter: WebhookAdapter, vt_node: FakeNode, partner: Partner
) -> None:
    partner.answers = [(500, None)] * 3
    item = await vt_node.deliver(fresh_copy(load_example("info.request")))
    assert await adapter.push_once() == (0, 1)
    assert vt_node.acked == []
    assert item.message_id in vt_node.inbox, "redelivered later, nothing lost"
    assert not adapter.health.ready()


async def test_partner_can_reject(
    adapter: WebhookAdapter, vt_node: FakeNode, partner: Partner
) -> None:
    partner.answers = [(200, {"reject": {"reason": "unknown_subject"}})]
    item = await vt_node.deliver(fresh_copy(load_example("info.request")))
    await adapter.push_once()
    assert [m for m, _ in vt_node.rejected] == [item.message_id]
    assert vt_node.acked == []


async def test_untrusted_certificate_is_never_sent_to(
    vt_node: FakeNode, partner: Partner, tmp_path: Path
) -> None:
    other_ca, _ = make_cert(tmp_path, "someone-else")
    adapter = make_adapter(vt_node, partner.url, tmp_path, other_ca)
    item = await vt_node.deliver(fresh_copy(load_example("info.request")))
    try:
        assert await adapter.push_once() == (0, 1)
    finally:
        await adapter.close()
        await adapter.node.close()
    assert partner.received == []
    assert item.message_id in vt_node.inbox


def test_plain_http_push_url_is_refused(tmp_path: Path) -> None:
    s = secrets(tmp_path)
    (tmp_path / "webhook.toml").write_text(
        f"""
[node]
url = "http://127.0.0.1:1"
token_file = "{s["node"]}"
[webhook]
push_url = "http://vt.example/zvg"
signing_secret_file = "{s["secret"]}"
inbound_token_file = "{s["token"]}"
state_dir = "state"
"""
    )
    with pytest.raises(ConfigError, match="must be https"):
        load(tmp_path / "webhook.toml")


# ---------------------------------------------------------------- outbound endpoint


@pytest.fixture
async def endpoint(adapter: WebhookAdapter) -> AsyncIterator[str]:
    runner = web.AppRunner(adapter.app())
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{bound_port(runner, 0)}"
    await runner.cleanup()


def vt_risk_signal() -> dict[str, Any]:
    """Veilig Thuis signals acute risk in the household to the ZVH (purpose ZVH.RISICO)."""
    return {
        "message_type": "risk.signal",
        "purpose": "ZVH.RISICO",
        "recipients": [{"org": ORG["gemeente"].oin, "role": "ZVH"}],
        "case_ref": "Veenstad-2026-031",
        "legal_basis": ["WMO_VT"],
        "data_categories": ["ID_PSEUDO", "CONTACT_PROF", "RISICO"],
        "flags": {"emergency": True, "professional_secrecy": True},
        "subjects": [{"subject_ref": "sub-7f3KqZ2mLw9xTa", "role": "betrokkene", "minor": False}],
        "body": {
            "level": "high",
            "kinds": ["threats"],
            "observed_at": "2026-03-21T21:00:00Z",
            "requested_action": "assess",
            "situation": "The ex-partner reports threats against the children's mother.",
            "contact": {"name": "T. Bakker", "function": "aandachtsfunctionaris"},
        },
    }


async def test_outbound_message_is_sent_with_the_partners_key(
    endpoint: str, vt_node: FakeNode, adapter: WebhookAdapter, partner: Partner
) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}", "Idempotency-Key": "vt-melding-8812"}
    async with aiohttp.ClientSession() as http:
        first = await http.post(f"{endpoint}/v1/messages", json=vt_risk_signal(), headers=headers)
        again = await http.post(f"{endpoint}/v1/messages", json=vt_risk_signal(), headers=headers)
        assert first.status == again.status == 202
        mid = (await first.json())["message_id"]
        assert (await again.json())["message_id"] == mid
        status = await http.get(f"{endpoint}/v1/messages/{mid}", headers=headers)
        assert (await status.json())["recipients"][0]["status"] == "queued"
    assert len(vt_node.sent) == 1
    assert vt_node.sent[0].idempotency_key == "webhook-vt-melding-8812"
    # Receipts come back to the partner as signed status events.
    assert await adapter.poll_statuses() == 1
    vt_node.set_status(mid, "accepted")
    assert await adapter.poll_statuses() == 1
    events = [json.loads(b) for h, b in partner.received if h["ZVG-Event"] == "status"]
    assert [e["recipients"][0]["status"] for e in events] == ["queued", "accepted"]
    assert adapter.state.data["tracked"] == {}


@pytest.mark.parametrize("auth", [None, "Bearer wrong", f"bearer {TOKEN}x"])
async def test_outbound_needs_the_shared_token(
    endpoint: str, vt_node: FakeNode, auth: str | None
) -> None:
    headers = {"Authorization": auth} if auth else {}
    async with aiohttp.ClientSession() as http:
        resp = await http.post(f"{endpoint}/v1/messages", json=vt_risk_signal(), headers=headers)
        assert resp.status == 401
        assert resp.content_type == "application/problem+json"
    assert vt_node.sent == []


async def test_outbound_refusals_are_the_nodes_problem_documents(
    endpoint: str, vt_node: FakeNode
) -> None:
    request = vt_risk_signal()
    request["recipients"] = [{"org": ORG["om"].oin, "role": "OM"}]  # VT → OM: no rule
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession() as http:
        denied = await http.post(f"{endpoint}/v1/messages", json=request, headers=headers)
        assert denied.status == 403
        problem = await denied.json(content_type=None)
        assert problem["type"].endswith("/policy-denied")
        assert problem["decision"]["reason"] == "no_rule"
        broken = await http.post(f"{endpoint}/v1/messages", data=b"{", headers=headers)
        assert broken.status == 400
        huge = await http.post(
            f"{endpoint}/v1/messages", data=b"x" * (2 * 1024 * 1024), headers=headers
        )
        assert huge.status == 413
    assert vt_node.sent == []


async def test_a_full_node_outbox_is_a_429_with_its_retry_after_for_the_partner(
    endpoint: str, vt_node: FakeNode
) -> None:
    vt_node.fail_next(1, 429, retry_after="7")
    headers = {"Authorization": f"Bearer {TOKEN}", "Idempotency-Key": "vt-melding-8813"}
    async with aiohttp.ClientSession() as http:
        busy = await http.post(f"{endpoint}/v1/messages", json=vt_risk_signal(), headers=headers)
        assert (busy.status, busy.headers.get("Retry-After")) == (429, "7")
        assert busy.content_type == "application/problem+json"
        assert vt_node.sent == []
        again = await http.post(f"{endpoint}/v1/messages", json=vt_risk_signal(), headers=headers)
        assert again.status == 202
    assert len(vt_node.sent) == 1


async def test_veilig_thuis_melding_through_the_example_mapping(
    vt_node: FakeNode, partner: Partner, tmp_path: Path
) -> None:
    example = EXAMPLE
    key = write_key(tmp_path / "pseudonym-key")
    adapter = make_adapter(
        vt_node,
        partner.url,
        tmp_path,
        tmp_path / "partner.crt",
        mapping=example / "melding.mapping.toml",
        pseudonym_key_file=key,
    )
    runner = web.AppRunner(adapter.app())
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{bound_port(runner, 0)}/v1/messages"
    melding = json.loads(read_text(example / "melding-voorbeeld.json"))
    try:
        async with aiohttp.ClientSession() as http:
            resp = await http.post(url, json=melding, headers={"Authorization": f"Bearer {TOKEN}"})
            assert resp.status == 202, await resp.text()
            melding["risico"]["niveau"] = "enorm"
            bad = await http.post(url, json=melding, headers={"Authorization": f"Bearer {TOKEN}"})
            assert bad.status == 422
            assert (await bad.json(content_type=None))["errors"][0]["field"] == "body.level"
    finally:
        await runner.cleanup()
        await adapter.close()
        await adapter.node.close()
    [sent] = vt_node.sent
    claims = sent.claims
    assert claims.message_type == "risk.signal"
    assert claims.flags.emergency
    assert claims.flags.minors
    assert isinstance(claims, RiskSignal)
    assert claims.body.observed_at.isoformat() == "2026-03-21T20:00:00+00:00"
    assert len(claims.subjects) == 3
    assert "999990019" not in claims.model_dump_json(), "no BSN: this message has no ID_DIRECT"


def test_example_configuration_loads() -> None:
    example = Path(__file__).resolve().parents[2] / "docs/adapters/examples/veiligthuis"
    config = load(example / "webhook.toml")
    assert config.webhook.push_url.startswith("https://")
    assert config.webhook.mapping == example / "melding.mapping.toml"


async def test_status_of_an_unknown_message_is_the_nodes_404(endpoint: str) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession() as http:
        resp = await http.get(
            f"{endpoint}/v1/messages/019cb92f-22c0-7751-a20c-afb356864716", headers=headers
        )
        assert resp.status == 404
        assert (await resp.json(content_type=None))["type"].endswith("/not-found")
        bad = await http.get(f"{endpoint}/v1/messages/..%2F..%2Fdirectory", headers=headers)
        assert bad.status == 404


async def test_node_down_is_a_503_for_the_partner(partner: Partner, tmp_path: Path) -> None:
    down = FakeNode(ORG["veiligthuis"])
    down.url = "http://127.0.0.1:9"
    adapter = make_adapter(down, partner.url, tmp_path, tmp_path / "partner.crt")
    runner = web.AppRunner(adapter.app())
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{bound_port(runner, 0)}/v1/messages"
    try:
        async with aiohttp.ClientSession() as http:
            resp = await http.post(
                url, json=vt_risk_signal(), headers={"Authorization": f"Bearer {TOKEN}"}
            )
            assert resp.status == 503
            assert resp.headers["Content-Type"] == "application/problem+json"
    finally:
        await runner.cleanup()
        await adapter.close()
        await adapter.node.close()


async def test_a_rights_notice_is_pushed_and_acked_after_the_partner_took_it(
    adapter: WebhookAdapter, vt_node: FakeNode, partner: Partner
) -> None:
    notice = fresh_copy(load_example("rights.notice"))
    await vt_node.deliver(notice, recipient_roles=("VT",))
    assert await adapter.push_once() == (1, 0)
    [(headers, body)] = partner.received
    assert headers["ZVG-Event"] == "message"
    pushed = json.loads(body)["claims"]
    assert pushed["message_type"] == "rights.notice"
    assert pushed["body"] == notice["body"]
    assert vt_node.acked == [notice["message_id"]], "acked: the sender sees 'accepted'"
