"""Lose nothing while parts die (issue 19 point 4, decision 0115): the chaos soak, short.

Threats: a message accepted (202) by a node process that is then killed -9, or whose broker
member or PostgreSQL server goes down under it, never reaches the recipient's adapter (lost);
one handed to an adapter again after the adapter's ack was answered 204 (a duplicate after the
ack); a receipt that never comes back; an audit log forked, broken or left without a partner's
cosignature by the restarts. ``benchmarks/soak.py`` does the work (two organisations with two
node processes each on a private PostgreSQL server, over a private three-member RabbitMQ
cluster, a fixed-rate load both ways, a seeded driver killing parts); here it runs for a minute
with a fault every 4-8 s (every kind at least twice) and the counts are asserted.

Known failure (decision 0115, "Open"): a recipient whose store failed closed after a PostgreSQL
crash takes and requeues deliveries until the queue's delivery limit dead-letters them, so a run
whose faults land badly loses a message; this test then fails, as it should, until that is fixed.

Run with ``./scripts/test -m chaos tests/chaos -n 0`` (deselected otherwise).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.soak import ACTION_KINDS, run

pytestmark = [pytest.mark.chaos, pytest.mark.slow, pytest.mark.broker, pytest.mark.postgres]

DURATION_S = 60.0
SEED = 19


@pytest.mark.timeout(1200)
async def test_soak_loses_nothing_while_node_processes_broker_members_and_postgres_die(
    tmp_path: Path,
) -> None:
    data = await run(duration=DURATION_S, seed=SEED, rate=None, every=(4.0, 8.0), tmp=tmp_path)
    print(json.dumps({k: v for k, v in data.items() if k != "actions"}, indent=1))
    kinds = {a["action"] for a in data["actions"]}
    assert kinds >= ACTION_KINDS, f"not every kind of fault was injected: {kinds}"
    assert data["sent"] > 0
    assert data["refused"] == []
    assert data["lost"] == 0, data["lost_ids"]
    assert data["duplicates_after_ack"] == 0, data["duplicates"]
    assert data["unexpected"] == 0
    assert data["receipts_missing"] == 0, data["receipts_missing_ids"]
    assert sum(data["dead_lettered"].values()) == 0, data["dead_lettered"]
    assert all(v["exit"] == 0 for v in data["audit_verify"].values()), data["audit_verify"]
