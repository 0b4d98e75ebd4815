"""Partners witness each other's audit logs over the broker (issue 7 §3), and answer when a node
or its security officer asks which checkpoint of its log they cosigned (issue 14 §2).

Threat of the second part: the last records of a stopped node's log are deleted with the
checkpoints above them. What is left is consistent and cosigned, so only the partners, who
cosigned the larger checkpoint, can tell."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from gateway.core import note
from gateway.telemetry import setup_telemetry
from gateway.testing.veenstad import org_by_key
from tests import stores
from tests.audit_logs import alarms
from tests.e2e.harness import ROOT, Fed, request_from_example, wait_witnessed

pytestmark = pytest.mark.broker


async def test_peers_cosign_each_others_checkpoints(fed: Fed) -> None:
    nodes = {key: await fed.start(key) for key in ("politie", "gemeente", "ggz")}
    code, doc = await fed.client("politie").send(request_from_example("case.referral"))
    assert code == 202
    await fed.client("politie").wait_status(doc["message_id"], "delivered")
    gem = nodes["gemeente"].service
    for _ in range(100):
        await gem.witnessing.request_cosignatures()
        latest = gem.audit.latest
        if latest is not None and len(note.parse_note(latest.note).signatures) >= 3:
            break
        await asyncio.sleep(0.1)
    assert latest is not None
    directory = gem.directory
    cosigners = [
        note.ed25519_verifier(directory.witness_name(org), k, sig_type=note.SIG_TYPE_COSIGNATURE_V1)
        for org in (nodes["politie"].service.org, nodes["ggz"].service.org)
        for k in directory.audit_keys(org, gem.clock())
    ]
    verified = note.open_checkpoint(
        latest.note,
        log_keys=[note.ed25519_verifier(gem.audit.origin, gem.ctx.keys.audit.public_key())],
        cosigners=cosigners,
        quorum=2,
    )
    assert len(verified.cosignatures) == 2


# ------------------------------------------------------------- asking the witnesses (issue 14 §2)

GEM, POL, GGZ = (org_by_key(k).oin for k in ("gemeente", "politie", "ggz"))


async def zvg(*args: str | Path) -> tuple[int, str]:
    """The real ``zvg`` in its own process (it connects to the broker itself)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway.cli",
        *(str(a) for a in args),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=ROOT,
    )
    output, _ = await process.communicate()
    return process.returncode or 0, output.decode("utf-8", "replace")


async def test_truncating_the_last_records_and_their_checkpoints_is_found_by_asking_the_witnesses(
    exchanged: tuple[Fed, str],
) -> None:
    fed, _ = exchanged
    config = fed.nodes["gemeente"].config
    kept = fed.running["gemeente"].service.audit.size  # witnessed by both partners
    code, doc = await fed.client("politie").send(request_from_example("case.referral"))
    assert code == 202
    await fed.client("politie").wait_status(doc["message_id"], "delivered")
    await wait_witnessed(fed)
    grown = fed.running["gemeente"].service.audit.size
    assert grown > kept
    await fed.stop("gemeente")
    # The last records go, and the checkpoints above them: what is left is consistent and its
    # checkpoint is cosigned by both partners. Offline, nothing shows.
    with stores.connect(fed.nodes["gemeente"].data_dir / "node.db") as db:
        db.execute("DELETE FROM audit_records WHERE idx >= ?", (kept,))
        db.execute("DELETE FROM audit_checkpoints WHERE size > ?", (kept,))
    code, out = await zvg("audit", "verify", "--config", config)
    assert code == 0, out

    # The restarted node asks its partners what they cosigned and raises the alarm at once.
    reader = InMemoryMetricReader()
    org = fed.nodes["gemeente"].org
    telemetry = setup_telemetry(org=org.oin, node_id=org.node_id, env={}, metric_readers=[reader])
    await fed.start("gemeente", telemetry=telemetry)
    for _ in range(300):
        if set(alarms(reader)) == {("truncated", POL), ("truncated", GGZ)}:
            break
        await asyncio.sleep(0.1)
    assert set(alarms(reader)) == {("truncated", POL), ("truncated", GGZ)}

    # The security officer's check asks the partners too.
    code, out = await zvg("audit", "verify", "--config", config, "--witnesses")
    assert code == 1, out
    assert "the log is truncated" in out
    assert f"checkpoint {grown}" in out
    assert f"only {kept} records exist" in out


async def test_verify_with_witnesses_names_the_partners_that_answered_and_those_that_did_not(
    exchanged: tuple[Fed, str],
) -> None:
    fed, _ = exchanged
    config = fed.nodes["gemeente"].config
    size = fed.running["gemeente"].service.audit.size
    code, out = await zvg("audit", "verify", "--config", config, "--witnesses")
    assert code == 0, out
    assert f"Politie, basisteam Veenstad: cosigned checkpoint {size}" in out
    assert f"GGZ Veenland: cosigned checkpoint {size}" in out
    assert out.rstrip().endswith("OK")

    await fed.stop("ggz")
    # The command waits its whole timeout for a partner that is down: a short one, made longer
    # only when the politie's answer did not arrive within it (a busy machine), so the test
    # waits for that answer rather than for a fixed time.
    text = config.read_text("utf-8")
    for timeout in (2, 4, 8, 16, 32):
        config.write_text(
            text.replace("[audit]\n", f"[audit]\nwitness_answer_timeout_seconds = {timeout}\n", 1),
            "utf-8",
        )
        code, out = await zvg("audit", "verify", "--config", config, "--witnesses")
        if "Politie, basisteam Veenstad: cosigned" in out:
            break
    assert code == 75, out
    assert f"Politie, basisteam Veenstad: cosigned checkpoint {size}" in out
    assert "no answer from GGZ Veenland" in out
