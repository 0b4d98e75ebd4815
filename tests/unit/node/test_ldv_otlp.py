"""The audit records as OTLP spans to the organisation's Logboek (``[audit.ldv_otlp]``, issue 17
point 1; decision 0103), against a local OTLP/HTTP receiver started in the test (an aiohttp
server decoding opentelemetry-proto's ``ExportTraceServiceRequest``), not a mock of the
exporter: every LDV line of an exchange arrives as a span with the record's trace and span id
and the standard's attributes; a failed send is retried; a Logboek that does not answer never
holds up the audit log, and what does not fit the queue is dropped and counted.
"""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from gateway.audit.inspect import open_readonly
from gateway.audit.ldv import ldv_lines
from gateway.node.activities import processing_activity
from gateway.node.config import AuditSettings
from tests.node_pair import HANG_S
from tests.unit.node._inproc import ApiNode, InProcFederation, request_from_example
from tests.unit.node.test_audit_trace_ids import ACTOR


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


def _attributes(pairs: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in pairs if isinstance(kv, KeyValue)}


class Receiver:
    """An OTLP/HTTP traces endpoint: decodes what it is sent; can refuse or hold requests."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.requests = 0
        self.refuse = 0
        """Answer this many requests ``400`` (not retried by the exporter itself)."""
        self.gate = asyncio.Event()
        self.gate.set()
        self._changed = asyncio.Condition()

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        async with self._changed:
            self.requests += 1
            self._changed.notify_all()
        await self.gate.wait()
        if self.refuse:
            self.refuse -= 1
            return web.Response(status=400, text="refused by the test")
        message = ExportTraceServiceRequest()
        message.ParseFromString(body)
        async with self._changed:
            for resource_spans in message.resource_spans:
                resource = _attributes(resource_spans.resource.attributes)
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        self.spans.append(
                            {
                                "resource": resource,
                                "traceId": span.trace_id.hex(),
                                "spanId": span.span_id.hex(),
                                "parentSpanId": span.parent_span_id.hex(),
                                "name": span.name,
                                "status": span.status.code,
                                "start": span.start_time_unix_nano,
                                "end": span.end_time_unix_nano,
                                "attributes": _attributes(span.attributes),
                                "links": [(x.trace_id.hex(), x.span_id.hex()) for x in span.links],
                            }
                        )
            self._changed.notify_all()
        body = ExportTraceServiceResponse().SerializeToString()
        return web.Response(body=body, content_type="application/x-protobuf")

    async def until(self, check: Callable[[], bool], what: str) -> None:
        try:
            async with asyncio.timeout(HANG_S), self._changed:
                await self._changed.wait_for(check)
        except TimeoutError:
            raise AssertionError(f"never happened: {what}") from None


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    got = Receiver()
    app = web.Application()
    app.router.add_post("/v1/traces", got.handle)
    server = TestServer(app)
    await server.start_server()
    try:
        yield got, str(server.make_url("/v1/traces"))
    finally:
        got.gate.set()
        await server.close()


async def _politie(inproc: InProcFederation, url: str, **settings: Any) -> ApiNode:
    options = {f"audit.ldv_otlp__{k}": v for k, v in {"endpoint": url, **settings}.items()}
    pol = await inproc.start("politie", **options)
    sender = pol.node.service.ldv_otlp
    assert sender is not None
    sender.start()
    return pol


def _lines(node: ApiNode) -> list[dict[str, Any]]:
    activity = partial(processing_activity, node.node.config)
    with open_readonly(node.node.config.store_path) as db:
        return list(ldv_lines(db, org=node.org, activity_of=activity))


def _key(line: dict[str, Any]) -> tuple[str, str, str, str]:
    subject = line["attributes"]["dpl.core.data_subject_id"]
    return line["traceId"], line["spanId"], line["name"], subject


def _tally(node: ApiNode, outcome: str) -> float:
    return sum(v for a, v in node.node.metric("zvg.ldv.otlp") if a.get("outcome") == outcome)


async def _settled(check: Callable[[], bool], what: str) -> None:
    """Until ``check()``: counters the sender's thread and task keep have no event to wait for,
    so they are asked every 10 ms (the result does not depend on how fast; a hang guard)."""
    try:
        async with asyncio.timeout(HANG_S):
            while not check():  # noqa: ASYNC110 - a thread's counter: nothing to await
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"never happened: {what}") from None


async def test_every_ldv_line_of_an_exchange_arrives_as_an_otlp_span_with_its_ids(
    receiver: tuple[Receiver, str], inproc: InProcFederation
) -> None:
    got, url = receiver
    pol = await _politie(inproc, url)
    gem = await inproc.start("gemeente")
    message_id = await pol.send(request_from_example("case.referral"), headers=ACTOR)
    while not await gem.inbox(wait=30, headers=ACTOR):
        pass
    assert await gem.settle(message_id) == 204
    await inproc.wait_status("politie", message_id, "accepted")
    lines = _lines(pol)
    names = {line["name"] for line in lines}
    assert {"message.send", "message.publish", "receipt.receive", "access"} <= names
    expected = {_key(line) for line in lines}
    await got.until(
        lambda: expected <= {_key(s) for s in got.spans},
        "every LDV line of politie's records arrived",
    )
    by_key = {_key(s): s for s in got.spans}
    for line in lines:
        span = by_key[_key(line)]
        attributes = span["attributes"]
        for name in (
            "dpl.core.processing_activity_id",
            "dpl.core.data_subject_id",
            "dpl.core.data_subject_id_type",
            "dpl.core.foreign_operation.processor",
        ):
            assert attributes.get(name) == line["attributes"].get(name), (line["name"], name)
        assert span["start"] == line["startTime"] * 1_000_000
        assert span["end"] == line["endTime"] * 1_000_000
        assert span["status"] == {"Ok": 1, "Error": 2}.get(line["status"], 0)
        assert span["parentSpanId"] == line.get("parentSpanId", "")
        foreign = line.get("foreignOperation")
        if foreign is not None:
            assert span["links"] == [(foreign["traceId"], foreign["spanId"])]
        assert span["resource"] == {"service.name": "zv-gateway", "zvg.org": pol.org}
    # Counted once the exporter returns (after the receiver answered).
    await _settled(lambda: _tally(pol, "sent") >= len(expected), "the spans counted as sent")
    assert _tally(pol, "dropped") == 0


async def test_a_send_the_logboek_refuses_is_sent_again(
    receiver: tuple[Receiver, str], inproc: InProcFederation
) -> None:
    got, url = receiver
    got.refuse = 1
    pol = await _politie(inproc, url, retry_seconds=0.05)
    await inproc.start("gemeente")
    message_id = await pol.send(request_from_example("case.referral"), headers=ACTOR)
    (sent,) = pol.node.audit(operation="message.send", message_id=message_id)
    span_id = sent["view"]["span_id"]
    await got.until(lambda: any(s["spanId"] == span_id for s in got.spans), "the send's span")
    assert got.requests >= 2
    await _settled(lambda: _tally(pol, "sent") >= 1, "the spans counted as sent")
    assert _tally(pol, "retried") >= 1


async def test_a_logboek_that_does_not_answer_never_holds_up_the_audit_log(
    receiver: tuple[Receiver, str], inproc: InProcFederation
) -> None:
    """The receiver holds every request: the node goes on sending and logging; what does not
    fit the queue (3 spans) is dropped and counted; the rest arrives once it answers."""
    got, url = receiver
    got.gate.clear()
    pol = await _politie(inproc, url, queue_size=3)
    await inproc.start("gemeente")
    first = await pol.send(request_from_example("case.referral"), headers=ACTOR)
    await got.until(lambda: got.requests >= 1, "the first batch is on its way (and held)")
    ids = [first] + [
        await pol.send(request_from_example("case.referral"), headers=ACTOR) for _ in range(4)
    ]
    for message_id in ids:  # every send was answered and logged while the Logboek hangs
        assert pol.node.audit(operation="message.send", message_id=message_id)
    sender = pol.node.service.ldv_otlp
    assert sender is not None
    size = pol.node.service.audit.size
    await _settled(lambda: sender._next >= size, "the sender read the whole log")
    assert _tally(pol, "dropped") > 0
    got.gate.set()
    await _settled(
        lambda: _tally(pol, "sent") + _tally(pol, "dropped") >= len(_lines(pol)),
        "every line of the log read so far was sent or dropped",
    )
    assert len(got.spans) == _tally(pol, "sent") > 0


def test_sending_to_a_logboek_is_off_by_default() -> None:
    assert AuditSettings().ldv_otlp.endpoint is None
