"""OpenTelemetry for a node: traces, metrics, and the Prometheus view of them
(docs/architecture.md §10).

- **Traces**: a span per send, receive, policy decision, delivery and receipt. The W3C trace
  context of the send span travels *inside the signed claims* (``trace``), so the receiving node
  continues the trace across organisations: its receive span links to the sender's span.
- **Metrics**: messages by direction, type, purpose and outcome; rejections by reason; latency
  in seconds; outbox, inbox, broker queue, receipts awaited, directory and key expiry, witness
  conflicts (observable gauges). ``/metrics`` follows Prometheus' conventions
  (docs/decisions/0087-prometheus-metrics-conventions.md): base units, no ``otel_scope_*`` labels,
  the ``process_*`` metrics of ``prometheus_client``, and counters seeded at 0
  (:meth:`Tally.seed`).
- **Export**: set by the standard ``OTEL_*`` variables (``OTEL_EXPORTER_OTLP_ENDPOINT`` or the
  per-signal ``..._TRACES_ENDPOINT`` / ``..._METRICS_ENDPOINT``; ``OTEL_TRACES_EXPORTER`` /
  ``OTEL_METRICS_EXPORTER`` ``none`` turns a signal off; ``OTEL_SDK_DISABLED=true`` turns all
  off). Nothing is exported when none is set, and spans are then not recorded at all (they
  still get trace and span ids for the claims and the audit log). ``/metrics`` always serves the
  node's own Prometheus registry.

Never put payload content, subject data, case references or key material into an attribute:
attributes are message ids, types, purposes, org ids, reasons and counts only. A test runs a
two-node exchange with in-memory exporters and checks exactly that.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from opentelemetry.metrics import CallbackOptions, Meter, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import Tracer
from prometheus_client import (
    CollectorRegistry,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

__all__ = ["GAUGES", "LATENCY_BUCKETS_S", "Telemetry", "setup_telemetry"]

#: Histogram buckets of ``zvg_latency_seconds``: a millisecond (a send on an idle node) to an
#: hour (end to end, while a recipient's node was down).
LATENCY_BUCKETS_S = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    900.0,
    3600.0,
)

#: The observable gauges: OpenTelemetry name, description, unit. Their values come from
#: ``Telemetry.gauges`` (gateway/node/gauges.py fills it).
GAUGES: tuple[tuple[str, str, str], ...] = (
    ("zvg.outbox.age", "Age of the oldest unpublished outbox entry", "s"),
    ("zvg.outbox.pending", "Outbox entries not yet confirmed by the broker (the backlog)", "1"),
    (
        "zvg.outbox.backlog_limit",
        "limits.max_outbox_backlog: at this many pending publishes sends get 429",
        "1",
    ),
    ("zvg.inbox.waiting", "Delivered messages the adapter has not acked", "1"),
    ("zvg.queue.depth", "Messages waiting in this organisation's broker queue", "1"),
    (
        "zvg.receipts.awaited",
        "Published (message, recipient organisation) pairs without a receipt yet",
        "1",
    ),
    (
        "zvg.receipts.awaited.age",
        "Age of the oldest published message a recipient organisation has not receipted",
        "s",
    ),
    (
        "zvg.directory.expiry_timestamp",
        "When the trusted federation directory expires (Unix time)",
        "s",
    ),
    (
        "zvg.key.expiry_timestamp",
        "When each active key of this organisation in the directory expires (Unix time)",
        "s",
    ),
    (
        "zvg.witness.conflicts",
        "Peer checkpoints refused as a proven fork or a bad proof, kept as evidence",
        "1",
    ),
    (
        "zvg.console.alerts",
        "Officer console alerts per kind and state (open, acknowledged); none without a console",
        "1",
    ),
)


def _enabled(env: Mapping[str, str], signal: str) -> bool:
    if env.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    if env.get(f"OTEL_{signal}_EXPORTER", "").lower() == "none":
        return False
    return bool(
        env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT")
    )


Gauge = Callable[[], Iterable[tuple[float, Mapping[str, str]]]]


class Tally:
    """A monotonic counter kept as plain integers and read by the metric readers when they
    collect (an OpenTelemetry observable counter): the SDK's ``Counter.add`` costs about 35 µs a
    call with two readers (it aggregates per reader on every call), this ``add`` well under one.
    Same call as ``Counter.add``; the readers see the same cumulative sum."""

    def __init__(self, meter: Meter, name: str, description: str) -> None:
        self._counts: dict[frozenset[tuple[str, str]], int] = {}
        self._lock = threading.Lock()
        meter.create_observable_counter(name, callbacks=[self._observe], description=description)

    def add(self, amount: int, attributes: Mapping[str, str] | None = None) -> None:
        key = frozenset(attributes.items()) if attributes else frozenset()
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + amount

    def seed(self, attribute_sets: Iterable[Mapping[str, str]]) -> None:
        """Show these series at 0 until they are counted: Prometheus' ``rate``/``increase`` and
        an alert on the first increase need the series to exist before it."""
        keys = [frozenset(a.items()) for a in attribute_sets]
        with self._lock:
            for key in keys:
                self._counts.setdefault(key, 0)

    def _observe(self, _options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:  # collection runs on a reader's thread
            counts = list(self._counts.items())
        return [Observation(value, dict(key)) for key, value in counts]


@dataclass
class Telemetry:
    """One node's tracer, meter, instruments and Prometheus registry."""

    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    registry: CollectorRegistry
    gauges: dict[str, Gauge] = field(default_factory=dict)

    def __post_init__(self) -> None:
        meter = self.meter_provider.get_meter("zv-gateway")
        self.tracer: Tracer = self.tracer_provider.get_tracer("zv-gateway")
        self.messages = Tally(
            meter, "zvg.messages", description="Messages by direction, type, purpose and outcome"
        )
        self.rejections = Tally(
            meter, "zvg.rejections", description="Refused messages by stage and coarse reason"
        )
        self.latency = meter.create_histogram(
            "zvg.latency",
            unit="s",
            description="Time spent per stage (send, receive, e2e)",
            explicit_bucket_boundaries_advisory=LATENCY_BUCKETS_S,
        )
        self.receipts_ignored = Tally(
            meter,
            "zvg.receipts.ignored",
            description="Receipts that did not verify and were ignored",
        )
        self.receipt_contradictions = Tally(
            meter,
            "zvg.receipts.contradictions",
            description="Signed receipts contradicting the recipient's earlier signed statement, "
            "kept as evidence, by kind (status, content) and recipient org",
        )
        self.witness = Tally(
            meter, "zvg.witness", description="Peer checkpoints cosigned or refused, by outcome"
        )
        self.audit_alarm = Tally(
            meter,
            "zvg.audit.alarm",
            description="Partners' evidence that this node's own audit log was rewritten or "
            "truncated, by kind (inconsistent, bad_proof, forked, truncated) and partner",
        )
        self.ldv_otlp = Tally(
            meter,
            "zvg.ldv.otlp",
            description="Audit records' LDV lines sent as OTLP spans to the organisation's "
            "Logboek (audit.ldv_otlp), by outcome: sent, dropped (queue full or node stopping), "
            "retried (a batch that failed, sent again)",
        )
        for name, description, unit in GAUGES:
            meter.create_observable_gauge(
                name, callbacks=[self._observe(name)], unit=unit, description=description
            )

    def _observe(self, name: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def callback(_options: CallbackOptions) -> Iterable[Observation]:
            source = self.gauges.get(name)
            if source is None:
                return []
            return [Observation(value, dict(attrs)) for value, attrs in source()]

        return callback

    def prometheus_text(self) -> bytes:
        """The ``/metrics`` body (Prometheus text exposition format)."""
        return generate_latest(self.registry)

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


def setup_telemetry(
    *,
    org: str,
    node_id: str,
    env: Mapping[str, str] | None = None,
    span_exporter: SpanExporter | None = None,
    metric_readers: Iterable[MetricReader] = (),
) -> Telemetry:
    """Telemetry for one node. ``span_exporter``/``metric_readers`` are for tests (in-memory);
    otherwise OTLP exporters are added only when the ``OTEL_*`` variables ask for them."""
    from opentelemetry.exporter.prometheus import PrometheusMetricReader

    env = os.environ if env is None else env
    resource = Resource.create(
        {"service.name": "zv-gateway", "service.instance.id": node_id, "zvg.org": org}
    )
    processor: SpanProcessor | None = None
    if span_exporter is not None:
        processor = SimpleSpanProcessor(span_exporter)
    elif _enabled(env, "TRACES"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        processor = BatchSpanProcessor(OTLPSpanExporter())
    # With nothing to export, spans are not recorded (a quarter of the cost); they still carry
    # fresh trace and span ids, which the claims' ``trace`` and the audit records use.
    tracer_provider = TracerProvider(
        resource=resource, sampler=None if processor is not None else ALWAYS_OFF
    )
    if processor is not None:
        tracer_provider.add_span_processor(processor)
    registry = CollectorRegistry(auto_describe=True)
    # The standard process_* (CPU seconds, resident memory bytes, open fds, start time) and
    # python_info series, as every Prometheus client library exports them (Linux: /proc).
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    # No otel_scope_* labels: this process has one instrumentation scope, and the labels only
    # lengthen every series (docs/decisions/0087-prometheus-metrics-conventions.md).
    prometheus = PrometheusMetricReader(scope_info_enabled=False, registry=registry)
    readers: list[MetricReader] = [prometheus, *metric_readers]
    if _enabled(env, "METRICS"):
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
    meter_provider = MeterProvider(resource=resource, metric_readers=readers)
    return Telemetry(tracer_provider, meter_provider, registry)
