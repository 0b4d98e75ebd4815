"""OpenTelemetry across organisations, and nothing personal in telemetry, logs or audit records
(in process: two nodes behind their API on the broker in memory).

Threat: case data, identifying data, pseudonyms or key material leak out of the encrypted body
into spans, metrics, log lines or the (partner-witnessed) audit log.

These two tests ran as end-to-end tests on RabbitMQ before (same names); what the broker itself
sees (no AMQP headers besides the agreed properties) is tested in
tests/integration/test_broker_transport.py.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from gateway.errors import TransientError
from gateway.logs import JsonFormatter
from gateway.node.store import Command, Committed
from gateway.testing.federation import FederationFiles
from tests.node_pair import open_node
from tests.unit.node._inproc import ApiNode, InProcFederation, request_from_example

#: Strings from the referral's body and claims that must never leave the encrypted body:
#: identifying data, free text, professional contacts, the case reference and pseudonyms.
SECRETS = (
    "999990019",
    "Vermeer",
    "Jeroen",
    "Lindelaan",
    "9401 ZX",
    "kitchen knife",
    "Fifth incident",
    "M. de Boer",
    "wijkagent",
    "Eviction",
    "eviction",
)
NOT_IN_TELEMETRY = (*SECRETS, "Veenstad-2026-031", "sub-7f3KqZ2mLw9xTa", "sub-c1Ra8Hn4Pe2Ydk")


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _strings(v)]
    return [str(value)]


async def _exchange(pol: ApiNode, gem: ApiNode, inproc: InProcFederation) -> dict[str, object]:
    """The referral, delivered, acked and receipted; the ZVH's inbox item."""
    message_id = await pol.send(request_from_example("case.referral"))
    (item,) = await gem.inbox(wait=30)
    assert await gem.settle(message_id) == 204
    await inproc.wait_status("politie", message_id, "accepted")
    return item


async def test_trace_crosses_organisations_and_telemetry_holds_nothing_personal(
    inproc: InProcFederation, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    exporters = {k: InMemorySpanExporter() for k in ("politie", "gemeente")}
    pol = await inproc.start("politie", spans=exporters["politie"])
    gem = await inproc.start("gemeente", spans=exporters["gemeente"])
    item = await _exchange(pol, gem, inproc)

    sent = [s for s in exporters["politie"].get_finished_spans() if s.name == "zvg.send"]
    received = [s for s in exporters["gemeente"].get_finished_spans() if s.name == "zvg.receive"]
    assert len(sent) == 1
    assert len(received) == 1
    send_ctx = sent[0].get_span_context()
    assert send_ctx is not None
    links = [link.context for link in received[0].links if link.context is not None]
    assert any(c.trace_id == send_ctx.trace_id and c.span_id == send_ctx.span_id for c in links)
    claims = item["claims"]
    assert isinstance(claims, dict)
    assert claims["trace"].split("-")[1] == f"{send_ctx.trace_id:032x}"

    telemetry_text: list[str] = []
    for exporter in exporters.values():
        for span in exporter.get_finished_spans():
            telemetry_text += [span.name, *_strings(dict(span.attributes or {}))]
            telemetry_text += [
                s for e in span.events for s in (e.name, *_strings(dict(e.attributes or {})))
            ]
    names = set()
    for api in (pol, gem):
        data = api.node.metrics.get_metrics_data()
        assert data is not None
        telemetry_text += _strings(json.loads(data.to_json()))
        names |= {
            m.name for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
        }
        telemetry_text.append((await api.call("GET", "/metrics", token=None)).body.decode())
    assert {"zvg.messages", "zvg.latency"} <= names
    # Whole lines as the node writes them: the message and every field (access log included).
    formatter = JsonFormatter()
    logs = [formatter.format(r) for r in caplog.records]
    assert any('"logger":"aiohttp.access"' in line for line in logs)
    for secret in NOT_IN_TELEMETRY:
        assert not any(secret in t for t in telemetry_text), f"{secret!r} in telemetry"
        assert not any(secret in line for line in logs), f"{secret!r} in a log line"


async def test_audit_records_hold_no_payload_no_identifiers_no_keys(
    inproc: InProcFederation,
) -> None:
    pol = await inproc.start("politie")
    gem = await inproc.start("gemeente")
    await _exchange(pol, gem, inproc)
    key_material = []
    for key in ("politie", "gemeente"):
        for pem in inproc.files.keys_dir(key).glob("*.key.pem"):
            key_material += [line for line in pem.read_text().splitlines() if "-----" not in line]
    assert key_material
    for api in (pol, gem):
        rows = api.node.store.read("SELECT view, coalesce(personal, '') FROM audit_records")
        assert rows
        text = "\n".join(v + p for v, p in rows)
        for secret in SECRETS:
            assert secret not in text, f"{secret!r} in an audit record of {api.node.key}"
        for line in key_material:
            assert line not in text
        views = "\n".join(v for v, _ in rows)
        assert "Veenstad-2026-031" not in views  # the case reference only as a commitment


async def test_a_failed_send_commit_is_marked_on_the_send_span(
    tmp_path: Path, veenstad: FederationFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ``zvg.send`` span covers the commit that keeps the message: a commit that fails (the
    adapter gets a 503) is an error on the span, not a send that looked fine."""
    spans = InMemorySpanExporter()
    node = await open_node(veenstad, "politie", tmp_path / "politie", span_exporter=spans)
    try:

        async def fails(*_commands: Command) -> Committed:
            raise TransientError("the database went away")

        monkeypatch.setattr(node.store, "commit", fails)
        with pytest.raises(TransientError):
            await node.send_example("case.referral")
        [sent] = [s for s in spans.get_finished_spans() if s.name == "zvg.send"]
        assert sent.status.status_code is StatusCode.ERROR
        assert sent.attributes is not None
        assert sent.attributes["zvg.message_type"] == "case.referral"
    finally:
        monkeypatch.undo()
        await node.close()
