"""The security officer's tools against real node stores (issue 7 §4, §5): verify, query, export,
verify-bundle, and the tamper scenarios — a changed byte, a deleted record, a truncated log, a
rewritten log with recomputed hashes, and a forked log shown to a witnessing partner."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from click.testing import CliRunner, Result
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from gateway.cli import cli
from gateway.core.audit import leaf_of
from gateway.telemetry import setup_telemetry
from tests import stores
from tests.audit_logs import alarms
from tests.e2e.harness import Fed, exchanged_fed, request_from_example

pytestmark = pytest.mark.broker

#: The tests that only read the nodes' stores (or tamper with a copy) share one exchange.
shared_loop = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[Fed, str]]:
    """One :func:`exchanged_fed` for the tests of this module that leave it as it is."""
    async with exchanged_fed(tmp_path_factory.mktemp("exchanged")) as done:
        yield done


def zvg(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


# First, on a federation of its own: it rewrites the police log (the others share one exchange).
async def test_a_forked_log_is_caught_by_a_witnessing_partner_and_alarms_its_own_node_at_once(
    exchanged: tuple[Fed, str],
) -> None:
    fed, _ = exchanged
    police = fed.running["politie"].service
    cosigned = await police.audit.peer_sizes()
    assert cosigned  # the partners cosigned the police log
    await fed.stop("politie")
    # The police operator rewrites history and removes the traces of the old one.
    db_path = fed.nodes["politie"].data_dir / "node.db"
    with stores.connect(db_path) as db:
        db.execute("DELETE FROM audit_records WHERE idx >= 1")
        db.execute("DELETE FROM audit_checkpoints")
        db.execute("DELETE FROM peer_cosigned")
    reader = InMemoryMetricReader()
    org = fed.nodes["politie"].org
    telemetry = setup_telemetry(org=org.oin, node_id=org.node_id, env={}, metric_readers=[reader])
    await fed.start("politie", telemetry=telemetry)
    police = fed.running["politie"].service
    # At once, not only once the log has grown: the restarted node asks its partners which
    # checkpoint they cosigned, and their answers show its log lost what they saw.
    partners = {fed.nodes[k].org.oin for k in ("gemeente", "ggz")}
    for _ in range(300):
        if {p for kind, p in alarms(reader) if kind == "truncated"} == partners:
            break
        await asyncio.sleep(0.1)
    assert {p for kind, p in alarms(reader) if kind == "truncated"} == partners
    pol = fed.client("politie")
    for _ in range(3):  # grow the new history past the size the partners cosigned
        code, _doc = await pol.send(request_from_example("case.referral"))
        assert code == 202
    zvh = fed.running["gemeente"].service
    for _ in range(100):
        await police.witnessing.request_cosignatures()
        with stores.connect(fed.nodes["gemeente"].data_dir / "node.db") as db:
            evidence = db.execute("SELECT code, evidence FROM witness_evidence").fetchall()
        if evidence:
            break
        await asyncio.sleep(0.1)
    assert evidence, "the ZVH never refused the forked checkpoint"
    assert evidence[0][0] in ("inconsistent", "bad_proof")
    assert json.loads(evidence[0][1])["origin"] == zvh.directory.audit_origin(police.org)
    r = zvg(
        "audit", "query", "--config", fed.nodes["gemeente"].config, "--operation", "witness.refuse"
    )
    assert "witness.refuse" in r.output


@shared_loop
async def test_verify_query_export_and_verify_bundle(
    shared: tuple[Fed, str], tmp_path: Path
) -> None:
    fed, message_id = shared
    for key in ("gemeente", "politie"):
        r = zvg("audit", "verify", "--config", fed.nodes[key].config)
        assert r.exit_code == 0, r.output
        assert "OK" in r.output
        assert "cosigned by" in r.output
    r = zvg(
        "audit", "query", "--config", fed.nodes["gemeente"].config, "--case", "Veenstad-2026-031"
    )
    assert r.exit_code == 0, r.output
    for part in (
        "message.receive",
        "policy.decision",
        "adapter.ack",
        "receipt.send",
        "ZVH.AANMELDING",
        "00000001999000002000",
        "allow aanmelding-pol",
    ):
        assert part in r.output, part
    r = zvg(
        "audit",
        "query",
        "--config",
        fed.nodes["gemeente"].config,
        "--subject",
        "sub-c1Ra8Hn4Pe2Ydk",
        "--json",
    )
    assert r.exit_code == 0
    hits = [json.loads(line) for line in r.output.splitlines()]
    assert hits
    assert all("sub-c1Ra8Hn4Pe2Ydk" in h["personal"]["data_subjects"] for h in hits)
    for key in ("gemeente", "politie"):
        bundle = tmp_path / f"{key}.bundle.json"
        r = zvg(
            "audit",
            "export",
            "--config",
            fed.nodes[key].config,
            "--message",
            message_id,
            "--out",
            bundle,
        )
        assert r.exit_code == 0, r.output
        r = zvg("audit", "verify-bundle", bundle, "--directory", fed.files.directory)
        assert r.exit_code == 0, r.output
        assert "OK" in r.output
    received = json.loads((tmp_path / "gemeente.bundle.json").read_text())
    assert len(received["messages"]) == 1  # the police's signed referral
    sent = json.loads((tmp_path / "politie.bundle.json").read_text())
    assert {rc["status"] for rc in sent["receipts"]} == {"delivered", "accepted"}
    # A bundle changed after export no longer verifies.
    received["records"][0]["view"]["purpose"] = "ZVH.RISICO"
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(received))
    r = zvg("audit", "verify-bundle", forged, "--directory", fed.files.directory)
    assert r.exit_code == 1
    assert "record" in r.output


def _copy_node(fed: Fed, key: str, tmp: Path) -> tuple[Path, Path]:
    """A copy of a node's store and config to tamper with."""
    data = tmp / f"tampered-{key}"
    live = fed.nodes[key].data_dir
    shutil.copytree(live, data, ignore=shutil.ignore_patterns("node.db*"))
    stores.snapshot(live / "node.db", data / "node.db")  # the node is running
    config = tmp / f"{key}.toml"
    text = fed.nodes[key].config.read_text().replace(str(fed.nodes[key].data_dir), str(data))
    config.write_text(text)
    return config, data / "node.db"


TAMPERS = {
    "changed byte": (
        (
            "UPDATE audit_records SET view = replace(view, 'ZVH.AANMELDING', 'ZVH.AANMELDINH')"
            " WHERE idx = 3"
        ),
        "record 3",
    ),
    "deleted record": ("DELETE FROM audit_records WHERE idx = 2", "record 2 is missing"),
    "truncated log": ("DELETE FROM audit_records WHERE idx >= 4", "truncated"),
}


@shared_loop
@pytest.mark.parametrize("tamper", list(TAMPERS), ids=list(TAMPERS))
async def test_tampering_is_found_by_verify(
    shared: tuple[Fed, str], tmp_path: Path, tamper: str
) -> None:
    fed, _ = shared
    config, db_path = _copy_node(fed, "gemeente", tmp_path)
    sql, expected = TAMPERS[tamper]
    with stores.connect(db_path) as db:
        db.execute(sql)
    r = zvg("audit", "verify", "--config", config)
    assert r.exit_code == 1, r.output
    assert expected in r.output
    assert r.output.count("\n") == 1


@shared_loop
async def test_rewritten_log_with_recomputed_hashes_fails_against_the_checkpoint(
    shared: tuple[Fed, str], tmp_path: Path
) -> None:
    fed, _ = shared
    config, db_path = _copy_node(fed, "gemeente", tmp_path)
    with stores.connect(db_path) as db:
        view_text = db.execute("SELECT view FROM audit_records WHERE idx = 1").fetchone()[0]
        view = json.loads(view_text)
        view["status"] = "denied"
        db.execute(
            "UPDATE audit_records SET view = ?, leaf = ? WHERE idx = 1",
            (json.dumps(view), leaf_of(view)),
        )
    r = zvg("audit", "verify", "--config", config)
    assert r.exit_code == 1
    assert "do not reproduce its root" in r.output
