"""OpenTelemetry across organisations, and nothing personal in telemetry, logs or audit records
(issue 7 §1 and §6)."""

from __future__ import annotations

import json
import logging

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway.telemetry import setup_telemetry
from tests import stores
from tests.e2e.harness import Fed, request_from_example

pytestmark = pytest.mark.broker

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


async def test_trace_crosses_organisations_and_telemetry_holds_nothing_personal(
    fed: Fed, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    exporters = {k: InMemorySpanExporter() for k in ("politie", "gemeente")}
    readers = {k: InMemoryMetricReader() for k in ("politie", "gemeente")}
    for key in ("politie", "gemeente"):
        org = fed.nodes[key].org
        telemetry = setup_telemetry(
            org=org.oin,
            node_id=org.node_id,
            env={},
            span_exporter=exporters[key],
            metric_readers=[readers[key]],
        )
        await fed.start(key, telemetry=telemetry)
    pol, gem = fed.client("politie"), fed.client("gemeente")
    code, doc = await pol.send(request_from_example("case.referral"))
    assert code == 202
    items = await gem.inbox(wait=10)
    assert await gem.ack(items[0]["message_id"]) == 204
    await pol.wait_status(doc["message_id"], "accepted")

    sent = [s for s in exporters["politie"].get_finished_spans() if s.name == "zvg.send"]
    received = [s for s in exporters["gemeente"].get_finished_spans() if s.name == "zvg.receive"]
    assert len(sent) == 1
    assert len(received) == 1
    send_ctx = sent[0].get_span_context()
    assert send_ctx is not None
    links = [link.context for link in received[0].links if link.context is not None]
    assert any(c.trace_id == send_ctx.trace_id and c.span_id == send_ctx.span_id for c in links)
    assert items[0]["claims"]["trace"].split("-")[1] == f"{send_ctx.trace_id:032x}"

    telemetry_text: list[str] = []
    for exporter in exporters.values():
        for span in exporter.get_finished_spans():
            telemetry_text += [span.name, *_strings(dict(span.attributes or {}))]
            telemetry_text += [
                s for e in span.events for s in (e.name, *_strings(dict(e.attributes or {})))
            ]
    for reader in readers.values():
        data = reader.get_metrics_data()
        assert data is not None
        telemetry_text += _strings(json.loads(data.to_json()))
    names = {
        m.name
        for r in readers.values()
        for rm in r.get_metrics_data().resource_metrics  # type: ignore[union-attr]
        for sm in rm.scope_metrics
        for m in sm.metrics
    }
    assert {"zvg.messages", "zvg.latency"} <= names
    logs = [r.getMessage() for r in caplog.records]
    for secret in NOT_IN_TELEMETRY:
        assert not any(secret in t for t in telemetry_text), f"{secret!r} in telemetry"
        assert not any(secret in line for line in logs), f"{secret!r} in a log line"


async def test_audit_records_hold_no_payload_no_identifiers_no_keys(fed: Fed) -> None:
    await fed.start("politie")
    await fed.start("gemeente")
    pol, gem = fed.client("politie"), fed.client("gemeente")
    code, doc = await pol.send(request_from_example("case.referral"))
    assert code == 202
    items = await gem.inbox(wait=10)
    assert await gem.ack(items[0]["message_id"]) == 204
    await pol.wait_status(doc["message_id"], "accepted")
    key_material = []
    for key in ("politie", "gemeente"):
        for pem in fed.files.keys_dir(key).glob("*.key.pem"):
            key_material += [line for line in pem.read_text().splitlines() if "-----" not in line]
    for key in ("politie", "gemeente"):
        with stores.connect(fed.nodes[key].data_dir / "node.db") as db:
            rows = db.execute("SELECT view, coalesce(personal, '') FROM audit_records").fetchall()
        assert rows
        text = "\n".join(v + p for v, p in rows)
        for secret in SECRETS:
            assert secret not in text, f"{secret!r} in an audit record of {key}"
        for line in key_material:
            assert line not in text
        views = "\n".join(v for v, _ in rows)
        assert "Veenstad-2026-031" not in views  # the case reference only as a commitment in leaves
