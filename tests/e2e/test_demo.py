"""The demo end to end (issue 9): `python -m demo` — what `./scripts/demo` runs — plays the whole
case on the real RabbitMQ with five node processes and three adapter processes and leaves no
process and no broker object behind; run again over the same folder, it starts again, and a
SIGTERM in the middle stops everything too.

The checks read the demo's own output (what a newcomer sees) and, independently, the audit log
through the command the demo tells them to run next.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from demo.__main__ import main as demo_command
from demo.console import open_console_line
from demo.workspace import demo_federations
from gateway.broker.provision import Rabbitmqctl

# Demos run one at a time on a machine (a lock; they share the broker): under pytest -n, one worker.
pytestmark = [pytest.mark.broker, pytest.mark.slow, pytest.mark.xdist_group("demo")]

#: Seconds one demo run may take here before the test gives up (it takes ~20 s on 2 cores).
RUN_TIMEOUT_S = 240

CHECK = "\u2713"
MESSAGES = 19  # messages the case sends (the planned denial is not sent)
DELIVERIES = 37  # one per recipient organisation


def _demo(work: Path, *args: str) -> list[str]:
    return [sys.executable, "-P", "-m", "demo", "--work", str(work), *args]


def _env() -> dict[str, str]:
    return {**os.environ, "NO_COLOR": "1", "PYTHONIOENCODING": "utf-8"}


def processes_mentioning(text: str) -> list[str]:
    """Command lines of running processes that mention ``text`` (the work folder is in every
    node's and adapter's command line)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (entry / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if text in cmdline and state != "Z":
            found.append(cmdline)
    return found


def demo_broker_objects(work: Path) -> list[str]:
    """The broker vhosts and users of demo runs in the working folder ``work``."""
    federations = demo_federations(Rabbitmqctl())
    return [n for f in federations if f.work == work for n in (*f.vhosts, *f.users)]


def check_outcome(out: str) -> None:
    """What the issue asks the demo to show, read from its output."""
    for step in range(1, 11):
        assert f"[{step}/10]" in out
    accepted = re.findall(rf"delivered {CHECK} accepted {CHECK}$", out, re.MULTILINE)
    assert len(accepted) == MESSAGES, "every message reached every recipient's system"
    # The policy denial, with the node's explanation naming purpose, recipient and category.
    assert "refused \u00d7 (403 policy-denied)" in out
    flat = " ".join(out.split())
    assert "denies info.response under ZVH.BEKENDHEID from GGZ (GGZ Veenland) to ZVH" in flat
    assert "data category GEZONDHEID is not allowed (rule bekendheid-antwoord" in flat
    assert "policy.decision deny info.response under ZVH.BEKENDHEID" in flat
    # Messages per partner and purpose, and receipts.
    assert f"{MESSAGES} messages sent, {DELIVERIES} deliveries published" in flat
    assert f"{DELIVERIES} received" in flat
    assert (
        f"{DELIVERIES} deliveries: {DELIVERIES} delivered, {DELIVERIES} accepted by the "
        "recipient's system, 0 rejected" in flat
    )
    table = out.split("Messages per purpose")[1].split("Receipts", maxsplit=1)[0]
    for purpose in ("ZVH.AANMELDING", "ZVH.BEKENDHEID", "ZVH.RISICO", "ZVH.AFSLUITING"):
        assert purpose in table
    # zvg audit verify OK on every node; every latest checkpoint cosigned by 2+ partners.
    verify = out.split("zvg audit verify on every node")[1].split("Where to look next", maxsplit=1)[
        0
    ]
    rows = [ln for ln in verify.splitlines() if " records, " in ln]
    assert len(rows) == 5
    for row in rows:
        assert " OK " in row, row
        cosigners = row.split("cosigned by ")[1].split(", ")
        assert len(cosigners) >= 2, row
    # Where to look next.
    assert "audit query --config" in out
    assert "--case Veenstad-2026-031" in out
    assert "docs/api.md" in out
    assert "docs/integrators.md" in out
    assert "./scripts/demo --console" in out  # how to open the officer console
    assert "Stopped all 8 processes the demo started" in out
    # ... and it ends by saying how to open the console.
    assert out.rstrip().splitlines()[-1] == open_console_line("Gemeente Veenstad / ZVH")


@pytest.mark.timeout(3 * RUN_TIMEOUT_S)
def test_the_demo_plays_the_case_leaves_nothing_behind_and_a_sigterm_stops_its_next_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One play of the whole case, through the command's entry point in this process (so
    coverage sees it); then the command a newcomer runs starts again over that run's folder and
    broker leftovers — re-runnability is in the setting up and starting, which the second run
    goes through — and a SIGTERM once its processes run stops every one of them."""
    monkeypatch.chdir(tmp_path)
    work = tmp_path / "demo-work"
    result = CliRunner().invoke(demo_command, ["--work", str(work)], env={"NO_COLOR": "1"})
    assert result.exit_code == 0, f"{result.stderr}\n{result.stdout[-4000:]}"
    assert result.stderr.strip() == ""
    check_outcome(result.stdout)
    assert "\033[" not in result.stdout, "no colour codes when stdout is not a terminal"
    assert "demo-work/nodes/gemeente/node.toml --case Veenstad-2026-031" in result.stdout
    assert processes_mentioning(str(work)) == [], "the play left processes behind"
    assert demo_broker_objects(work) == [], "the play left its vhost or users"

    # The command the demo suggests answers from the gemeente node's audit log.
    query = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "audit",
            "query",
            "--config",
            str(work / "nodes" / "gemeente" / "node.toml"),
            "--case",
            "Veenstad-2026-031",
            "--json",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    views = [json.loads(line)["view"] for line in query.stdout.splitlines()]
    sent = [v for v in views if v["name"] == "message.send"]
    assert len(sent) == 12, "the ZVH sent twelve of the case's messages"
    assert {v["purpose"] for v in sent} >= {"ZVH.BEKENDHEID", "ZVH.OVERDRACHT", "ZVH.AFSLUITING"}

    # Again, as the command, over the last run's folder: SIGTERM at the case's first step (every
    # node and adapter is running by then).
    demo = subprocess.Popen(
        _demo(work),
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert demo.stdout is not None
    seen = []
    for line in demo.stdout:
        seen.append(line)
        if line.startswith("[1/10]"):
            break
    assert processes_mentioning(str(work)), "the nodes are running again"
    demo.send_signal(signal.SIGTERM)
    rest, err = demo.communicate(timeout=RUN_TIMEOUT_S)
    out = "".join(seen) + rest
    assert demo.returncode == 128 + signal.SIGTERM, out[-2000:] + err
    assert err.strip().splitlines() == [
        "zvg: error: interrupted by SIGTERM; stopped every process the demo started"
    ]
    assert re.search(r"Stopped all 8 processes the demo started; broker vhost", out)
    assert processes_mentioning(str(work)) == []
    assert demo_broker_objects(work) == []
