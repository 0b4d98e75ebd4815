"""The shipped Prometheus alert rules and Grafana dashboard (deploy/observability/): valid for
promtool, unit-tested alerts, and every metric they name is one the node exports."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from gateway.telemetry import GAUGES, setup_telemetry
from tests.deploy.conftest import DEPLOY
from tests.promtool import promtool

OBSERVABILITY = DEPLOY / "observability"
RULES = OBSERVABILITY / "alerts.yml"
DASHBOARD = OBSERVABILITY / "grafana-dashboard.json"

#: Series Prometheus itself adds to every scrape target.
PROMETHEUS_OWN = frozenset({"up"})
_NAME = re.compile(r"\b((?:zvg|process|python)_[a-z0-9_]+|up)\b")
_SUFFIXES = re.compile(r"_(bucket|count|sum)$")


def exported_names() -> set[str]:
    """The metric families a node's ``/metrics`` has once each instrument was used, with the
    histogram's ``_bucket``/``_count``/``_sum`` series."""
    telemetry = setup_telemetry(org="00000001999000002000", node_id="pol-1", env={})
    try:
        for counter in (
            telemetry.messages,
            telemetry.rejections,
            telemetry.receipts_ignored,
            telemetry.receipt_contradictions,
            telemetry.witness,
            telemetry.audit_alarm,
            telemetry.ldv_otlp,
        ):
            counter.add(1)
        telemetry.latency.record(0.01)
        for gauge, _description, _unit in GAUGES:
            telemetry.gauges[gauge] = lambda: [(1.0, {})]
        text = telemetry.prometheus_text().decode()
    finally:
        telemetry.shutdown()
    return set(re.findall(r"^([a-z_][a-z0-9_]*)(?:\{| )", text, re.M)) | PROMETHEUS_OWN


def _dashboard_exprs(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]


def _as_promql(expr: str) -> str:
    """A dashboard expression with Grafana's variables replaced by what they stand for."""
    return expr.replace("$__rate_interval", "5m").replace("$instance", ".*")


def test_alert_rules_pass_promtool_check_rules() -> None:
    out = promtool("check", "rules", str(RULES))
    assert "SUCCESS: 12 rules found" in out


def test_alert_rules_unit_tests_pass() -> None:
    out = promtool("test", "rules", "alerts.test.yml", cwd=OBSERVABILITY)
    assert "SUCCESS" in out


def test_alerts_cover_the_conditions_ops_must_act_on() -> None:
    rules = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    assert alerts == {
        "ZvgNodeDown",
        "ZvgOutboxBacklogGrowing",
        "ZvgInboxNotTaken",
        "ZvgReceiptsOverdue",
        "ZvgRefusedMessagesSpike",
        "ZvgWitnessConflict",
        "ZvgAuditLogAlarm",
        "ZvgReceiptContradiction",
        "ZvgDirectoryExpiringSoon",
        "ZvgKeyExpiringSoon",
    }
    tested = yaml.safe_load((OBSERVABILITY / "alerts.test.yml").read_text(encoding="utf-8"))
    fired = {
        case["alertname"]
        for test in tested["tests"]
        for case in test["alert_rule_test"]
        if case["exp_alerts"]
    }
    assert len(fired) >= 7, fired
    # Every alert is documented in the ops guide's table.
    guide = (DEPLOY.parent / "docs" / "ops.md").read_text(encoding="utf-8")
    assert {a for a in alerts if f"| `{a}` |" in guide} == alerts


def test_rules_and_dashboard_name_only_metrics_the_node_exports() -> None:
    exported = exported_names()
    rules = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    alert_exprs = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    panel_exprs = _dashboard_exprs(json.loads(DASHBOARD.read_text(encoding="utf-8")))
    named = {n for e in (*alert_exprs, *panel_exprs) for n in _NAME.findall(e)}
    assert {n for n in named if n not in exported} == set()
    # All the node's own metrics are on the dashboard (the histogram by its buckets).
    on_dashboard = {_SUFFIXES.sub("", n) for e in panel_exprs for n in _NAME.findall(e)}
    own = {_SUFFIXES.sub("", n) for n in exported if n.startswith("zvg_")}
    assert own - on_dashboard == set()


def test_dashboard_is_grafana_json_with_valid_promql(tmp_path: Path) -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dashboard["uid"] == "zvg-node"
    assert {v["name"] for v in dashboard["templating"]["list"]} == {"datasource", "instance"}
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert {"type", "title", "gridPos"} <= panel.keys()
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${datasource}"
    # promtool parses every expression (as recording rules).
    exprs = [_as_promql(e) for e in _dashboard_exprs(dashboard)]
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [{"record": f"zvg:dashboard:{i}", "expr": e} for i, e in enumerate(exprs)],
            }
        ]
    }
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump(rules), encoding="utf-8")
    assert f"SUCCESS: {len(exprs)} rules found" in promtool("check", "rules", str(path))
