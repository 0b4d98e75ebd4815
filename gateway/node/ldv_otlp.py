"""The audit records as OTLP spans to the organisation's Logboek Dataverwerkingen
(``[audit.ldv_otlp] endpoint``; off by default; decision 0103).

Every record the node commits from its start on becomes the spans of its LDV lines
(:func:`gateway.audit.ldv.record_lines`: one per data subject, the standard's ``dpl.core.*``
attributes, the record's own trace and span id, status and times) and is sent with
OpenTelemetry's OTLP/HTTP exporter. The audit log never waits for it:

- **after the commit**: a store commit hook (on the writer thread) only wakes a task, which
  reads the new records from the store's read connection, in log order from the last one read;
- **a bounded queue**: spans wait in a queue of ``queue_size``; when it is full, new ones are
  dropped and counted (``zvg_ldv_otlp_total{outcome="dropped"}``): a Logboek that is down costs
  neither the audit log's latency nor the node's memory;
- **a thread sends**: batches of up to :data:`BATCH` spans; a batch that fails is sent again
  after ``retry_seconds`` (counted ``retried``) until it goes or the node stops (then what is
  left is counted ``dropped``).

The audit log stays the record of truth: what was dropped is still in it, and
``zvg audit export --format ldv`` writes every line. Records written before the node started
are not sent (the export covers them). Nothing here logs a payload, a subject or a span.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections import deque
from functools import partial
from typing import Any

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, TraceFlags
from opentelemetry.trace.status import Status, StatusCode

from gateway.audit.ldv import record_lines
from gateway.audit.ldv_read import MessageSubjects
from gateway.node.activities import processing_activity
from gateway.node.context import NodeContext

__all__ = ["BATCH", "LdvOtlp", "ldv_span"]

log = logging.getLogger("gateway.node")

#: Spans one export carries at most (the OpenTelemetry SDK's default batch).
BATCH = 512
#: Records one read of the log takes.
_READ_ROWS = 500
_STATUS = {"Ok": StatusCode.OK, "Error": StatusCode.ERROR}
_SCOPE = InstrumentationScope("zv-gateway.ldv")


def _context(trace_id: object, span_id: object) -> SpanContext | None:
    if not isinstance(trace_id, str) or not isinstance(span_id, str):
        return None
    try:
        return SpanContext(
            int(trace_id, 16), int(span_id, 16), is_remote=False, trace_flags=TraceFlags(1)
        )
    except ValueError:
        return None


def ldv_span(line: dict[str, Any], resource: Resource) -> ReadableSpan:
    """One LDV line (of :func:`~gateway.audit.ldv.record_lines`) as an OTLP span: the record's
    trace and span id, its parent, the foreign operation as a link, the attributes."""
    parent = _context(line["traceId"], line.get("parentSpanId"))
    foreign = line.get("foreignOperation") or {}
    remote = _context(foreign.get("traceId"), foreign.get("spanId"))
    attributes = {k: v for k, v in line["attributes"].items() if v is not None}
    return ReadableSpan(
        name=line["name"],
        context=_context(line["traceId"], line["spanId"]),
        parent=parent,
        resource=resource,
        attributes=attributes,
        links=[Link(remote)] if remote is not None else (),
        status=Status(_STATUS.get(line["status"], StatusCode.UNSET)),
        start_time=int(line["startTime"]) * 1_000_000,
        end_time=int(line["endTime"]) * 1_000_000,
        instrumentation_scope=_SCOPE,
    )


class LdvOtlp:
    """The sender (module docstring). :meth:`start` on the event loop; :meth:`close` when the
    node stops."""

    def __init__(self, ctx: NodeContext, exporter: SpanExporter | None = None) -> None:
        settings = ctx.config.audit.ldv_otlp
        self.ctx = ctx
        self._settings = settings
        self._exporter = exporter or OTLPSpanExporter(
            endpoint=settings.endpoint, timeout=settings.timeout_seconds
        )
        self._resource = Resource({"service.name": "zv-gateway", "zvg.org": ctx.org})
        #: The next record to read: records committed from now on are sent.
        self._next = ctx.audit.size
        self._grown = asyncio.Event()
        self._queue: deque[ReadableSpan] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._send_all, name="zvg-ldv-otlp", daemon=True)
        self._tally = ctx.telemetry.ldv_otlp
        self._tally.seed([{"outcome": o} for o in ("sent", "dropped", "retried")])

    def start(self) -> None:
        loop = asyncio.get_running_loop()

        def committed(_db: object) -> None:  # on the store's writer thread: wake, nothing more
            with contextlib.suppress(RuntimeError):  # the loop is closed: the node is gone
                loop.call_soon_threadsafe(self._grown.set)

        self.ctx.audit.store.on_commit(committed)
        self._thread.start()
        self._grown.set()  # records committed before the start
        self.ctx.spawn(self._read_all(), "ldv-otlp")

    async def _read_all(self) -> None:
        ctx = self.ctx
        stopping = asyncio.ensure_future(ctx.stopping.wait())
        try:
            while not ctx.stopping.is_set():
                grown = asyncio.ensure_future(self._grown.wait())
                await asyncio.wait({grown, stopping}, return_when=asyncio.FIRST_COMPLETED)
                grown.cancel()
                self._grown.clear()
                if self._read_some() == _READ_ROWS:
                    self._grown.set()  # a long backlog: read on after the node's other work
        finally:
            stopping.cancel()

    def _read_some(self) -> int:
        """Queue the spans of the next records of the log; how many records were read."""
        read = self.ctx.audit.store.read
        rows = read(
            "SELECT idx, view, personal FROM audit_records WHERE idx >= ? ORDER BY idx LIMIT ?",
            (self._next, _READ_ROWS),
        )
        if not rows:
            return 0
        messages = MessageSubjects(read)
        activity = partial(processing_activity, self.ctx.config)
        spans = []
        for idx, view_text, personal_text in rows:
            view = json.loads(view_text)
            _, lines = record_lines(
                int(idx),
                view,
                personal_text,
                messages.of(view.get("message_id")),
                org=self.ctx.org,
                activity_of=activity,
            )
            spans += [ldv_span(line, self._resource) for line in lines]
        self._next = int(rows[-1][0]) + 1
        self._enqueue(spans)
        return len(rows)

    def _enqueue(self, spans: list[ReadableSpan]) -> None:
        with self._cond:
            room = max(0, self._settings.queue_size - len(self._queue))
            self._queue.extend(spans[:room])
            self._cond.notify()
        if len(spans) > room:
            self._tally.add(len(spans) - room, {"outcome": "dropped"})

    def _take(self) -> list[ReadableSpan] | None:
        """The next batch, when there is one; ``None`` when the node stops."""
        with self._cond:
            while not self._queue and not self._closing:
                self._cond.wait()
            if self._closing:
                return None
            return [self._queue.popleft() for _ in range(min(BATCH, len(self._queue)))]

    def _send(self, batch: list[ReadableSpan]) -> bool:
        """Send ``batch`` until it goes (``True``) or the node stops (``False``: dropped)."""
        while self._exporter.export(batch) is not SpanExportResult.SUCCESS:
            self._tally.add(1, {"outcome": "retried"})
            with self._cond:
                if not self._closing:
                    self._cond.wait(self._settings.retry_seconds)
                if self._closing:
                    self._tally.add(len(batch), {"outcome": "dropped"})
                    return False
        self._tally.add(len(batch), {"outcome": "sent"})
        return True

    def _send_all(self) -> None:
        """The sender thread: batches from the queue, each until it is sent or the node stops."""
        while (batch := self._take()) is not None and self._send(batch):
            pass
        with self._cond:
            left = len(self._queue)
            self._queue.clear()
        if left:
            self._tally.add(left, {"outcome": "dropped"})
            log.warning("LDV OTLP: %d span(s) not sent before the node stopped", left)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the sender: what is still queued is counted dropped (the audit log keeps it)."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._exporter.shutdown()
