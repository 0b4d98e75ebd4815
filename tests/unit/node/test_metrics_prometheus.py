"""``/metrics`` as Prometheus users expect it
(docs/decisions/0087-prometheus-metrics-conventions.md): ``promtool check metrics`` passes, base
units, no ``otel_scope_*`` labels, the ``process_*`` series, every counter present from the start
at 0, the expiry and witness gauges."""

from __future__ import annotations

import re

from gateway.node.gauges import run_gauges
from tests.promtool import promtool
from tests.unit.node._inproc import ApiNode, InProcFederation, request_from_example


def _sample(text: str, name: str, *labels: str) -> list[float]:
    """The values of the samples ``name`` (with or without labels) whose labels include
    ``labels``."""
    samples = re.findall(rf"^{name}(?:\{{([^}}]*)\}})? (\S+)$", text, re.M)
    return [float(v) for found, v in samples if all(label in found for label in labels)]


async def _scrape(api: ApiNode) -> str:
    answer = await api.call("GET", "/metrics", token=None)
    assert answer.status == 200
    return answer.body.decode()


async def _node_with_gauges(inproc: InProcFederation) -> ApiNode:
    pol = await inproc.start("politie", connect=False)
    pol.node.service.ctx.spawn(run_gauges(pol.node.service.ctx), "gauges")

    async def refreshed() -> bool:
        return _sample(await _scrape(pol), "zvg_outbox_pending") != []

    await inproc.broker.until(refreshed, "the gauges have been refreshed once")
    return pol


async def test_metrics_pass_promtool_check_metrics(inproc: InProcFederation) -> None:
    pol = await _node_with_gauges(inproc)
    await pol.send(request_from_example("case.referral"))
    text = await _scrape(pol)
    assert _sample(text, "zvg_latency_seconds_count", 'stage="send"') == [1.0]
    assert promtool("check", "metrics", stdin=text.encode()) == ""


async def test_metrics_use_base_units_and_carry_no_scope_labels(
    inproc: InProcFederation,
) -> None:
    pol = await _node_with_gauges(inproc)
    await pol.send(request_from_example("case.referral"))
    text = await _scrape(pol)
    assert "otel_scope" not in text
    assert "milliseconds" not in text
    # Buckets in seconds: a millisecond up to an hour (the federation's clock stands still here).
    bounds = re.findall(r'^zvg_latency_seconds_bucket\{le="([^"]+)",stage="send"\}', text, re.M)
    assert bounds[0] == "0.001"
    assert bounds[-2:] == ["3600.0", "+Inf"]
    for name in (
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
    ):
        assert len(_sample(text, name)) == 1, name
    names = set(re.findall(r"^# TYPE (\S+) ", text, re.M))
    assert all(n.islower() and " " not in n for n in names)


async def test_every_counter_is_present_from_the_start_at_zero(inproc: InProcFederation) -> None:
    pol = await _node_with_gauges(inproc)
    text = await _scrape(pol)
    ctx = pol.node.service.ctx
    peers = [m.oin for m in ctx.directory.payload.members if m.oin != ctx.org]
    assert peers
    for counter in (
        "zvg_messages_total",
        "zvg_rejections_total",
        "zvg_receipts_ignored_total",
        "zvg_receipts_contradictions_total",
        "zvg_witness_total",
        "zvg_audit_alarm_total",
    ):
        values = _sample(text, counter)
        assert values, f"{counter} is missing before anything happened"
        assert set(values) == {0.0}, counter
    for peer in peers:
        assert _sample(text, "zvg_rejections_total", 'reason="malformed"', f'sender="{peer}"') == [
            0.0
        ]
        assert _sample(text, "zvg_audit_alarm_total", 'kind="forked"', f'partner="{peer}"') == [0.0]
    # Bounded by the directory and the catalogue: 13 reasons per partner (and `unknown`).
    assert len(_sample(text, "zvg_rejections_total")) == 13 * (len(peers) + 1)
    assert _sample(
        text,
        "zvg_messages_total",
        'direction="out"',
        'type="case.referral"',
        'outcome="queued"',
    )
    # Counting adds to the seeded series; it does not make a second one.
    await pol.send(request_from_example("case.referral"))
    after = await _scrape(pol)
    labels = ('direction="out"', 'type="case.referral"', 'outcome="queued"')
    assert sum(_sample(after, "zvg_messages_total", *labels)) == 1.0


async def test_gauges_show_directory_and_key_expiry_witness_conflicts_and_backlog(
    inproc: InProcFederation,
) -> None:
    pol = await _node_with_gauges(inproc)
    text = await _scrape(pol)
    ctx = pol.node.service.ctx
    assert _sample(text, "zvg_directory_expiry_timestamp_seconds") == [
        ctx.directory.payload.expires.timestamp()
    ]
    member = ctx.directory.member(ctx.org)
    assert member is not None
    for key in member.keys:
        if key.status == "active":
            assert _sample(
                text,
                "zvg_key_expiry_timestamp_seconds",
                f'kid="{key.kid}"',
                f'use="{key.use}"',
            ) == [key.not_after.timestamp()]
    assert _sample(text, "zvg_witness_conflicts") == [0.0]
    assert _sample(text, "zvg_outbox_backlog_limit") == [
        float(ctx.config.limits.max_outbox_backlog)
    ]
    assert _sample(text, "zvg_receipts_awaited") == [0.0]
    assert _sample(text, "zvg_receipts_awaited_age_seconds") == [0.0]


async def test_witness_conflicts_count_the_evidence_kept(inproc: InProcFederation) -> None:
    pol = await _node_with_gauges(inproc)
    store = pol.node.store
    gauges = await store.gauges(pol.node.service.ctx.now())
    assert gauges["witness_conflicts"] == 0.0
    await store.run(
        lambda db: db.execute(
            "INSERT INTO witness_evidence (origin, code, evidence, created_at)"
            " VALUES ('x', 'inconsistent', '{}', 0)"
        )
    )
    gauges = await store.gauges(pol.node.service.ctx.now())
    assert gauges["witness_conflicts"] == 1.0
