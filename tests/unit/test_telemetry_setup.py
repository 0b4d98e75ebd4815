"""Telemetry set-up without a broker: what is recorded depends on whether anything exports."""

from __future__ import annotations

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway.telemetry import setup_telemetry

ORG = "00000001999000002000"


def test_without_an_exporter_spans_are_not_recorded_but_carry_ids() -> None:
    telemetry = setup_telemetry(org=ORG, node_id="pol-1", env={})
    try:
        with telemetry.tracer.start_as_current_span("zvg.send") as span:
            ctx = span.get_span_context()
            assert not span.is_recording()
            assert ctx.is_valid  # the claims' traceparent and the audit records need the ids
            assert ctx.trace_id != 0
            assert ctx.span_id != 0
    finally:
        telemetry.shutdown()


def test_with_an_exporter_every_span_is_recorded_and_exported() -> None:
    exporter = InMemorySpanExporter()
    telemetry = setup_telemetry(org=ORG, node_id="pol-1", env={}, span_exporter=exporter)
    try:
        with telemetry.tracer.start_as_current_span("zvg.send") as span:
            assert span.is_recording()
        assert [s.name for s in exporter.get_finished_spans()] == ["zvg.send"]
    finally:
        telemetry.shutdown()
