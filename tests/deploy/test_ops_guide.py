"""docs/ops.md: every command in it runs, and its tables match the code.

The guide's ``sh`` blocks run in order in one working folder with this environment's ``zvg``
first on PATH (``deploy`` there links to the repository's ``deploy/``, as if run from the
repository root); a ``toml`` block preceded by ``<!-- file: PATH -->`` is written to PATH
before the next block runs. ``text`` blocks (Docker, systemd as PID 1, a cluster, root on the
broker) are not run; the test checks that every fenced block is one of those three kinds, so a
command cannot hide in an unmarked block.

Threats: a guide whose commands no longer work (ops follow it during an incident); a settings
table or metric list that drifted from the code.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.deploy.settings_doc import BEGIN, END, render_settings_table
from gateway.telemetry import GAUGES, setup_telemetry
from tests.deploy.conftest import DEPLOY, ROOT, tool_env

GUIDE = ROOT / "docs" / "ops.md"
BLOCK = re.compile(
    r"(?:<!-- file: (?P<file>\S+) -->\n)?```(?P<lang>[a-z]*)\n(?P<body>.*?)```", re.S
)
KINDS = {"sh", "toml", "text"}
BLOCK_TIMEOUT_S = 120


@dataclass(frozen=True)
class Block:
    lang: str
    body: str
    file: str | None
    line: int


def _blocks() -> list[Block]:
    text = GUIDE.read_text(encoding="utf-8")
    return [
        Block(m["lang"], m["body"], m["file"], text.count("\n", 0, m.start()) + 1)
        for m in BLOCK.finditer(text)
    ]


def test_every_block_is_run_written_or_marked_as_not_runnable() -> None:
    blocks = _blocks()
    assert {b.lang for b in blocks} <= KINDS, {b.lang for b in blocks}
    assert [b for b in blocks if b.lang == "toml" and b.file is None] == []
    assert sum(b.lang == "sh" for b in blocks) >= 10


@pytest.mark.slow
def test_every_command_in_the_guide_runs(tmp_path: Path) -> None:
    """≈ 20 s: key generation, federation, directory, TLS, provisioning, check-config, a node
    run of 10 s, backups — one block after the other, each must exit 0."""
    (tmp_path / "deploy").symlink_to(DEPLOY)
    env = tool_env(ZVG_PYTHON=sys.executable)
    for block in _blocks():
        if block.lang == "toml" and block.file:
            target = tmp_path / block.file
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(block.body, encoding="utf-8")
        elif block.lang == "sh":
            result = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", block.body],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                check=False,
                timeout=BLOCK_TIMEOUT_S,
            )
            assert result.returncode == 0, (
                f"docs/ops.md line {block.line}:\n{block.body}\n--- stdout\n{result.stdout}"
                f"\n--- stderr\n{result.stderr[-3000:]}"
            )
    # What the walk-through must have produced.
    assert (tmp_path / "backup" / "node.db").is_file()
    assert (tmp_path / "definitions.json").is_file()
    assert (tmp_path / "federation" / "directory.v4.json").is_file()


def test_settings_table_matches_the_config_models() -> None:
    text = GUIDE.read_text(encoding="utf-8")
    start, end = text.index(BEGIN), text.index(END) + len(END)
    assert text[start:end] == render_settings_table(), (
        "regenerate: python -m gateway.deploy.settings_doc docs/ops.md"
    )


def test_settings_table_names_every_setting_of_the_example_config() -> None:
    """The guide's example node.toml uses only settings the table explains."""
    table = render_settings_table()
    (example,) = [b for b in _blocks() if b.file == "politie/node.toml"]
    section = ""
    for raw in example.body.splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.startswith("["):
            section = line.strip("[]")
            section = "api.tokens[]" if section == "api.tokens" else section
            section = re.sub(r'^purposes\."[^"]+"$', 'purposes."<CODE>"', section)
        elif "=" in line:
            key = line.split("=", 1)[0].strip()
            assert f"| `{section}.{key}` |" in table, f"{section}.{key}"


def test_metric_names_in_the_guide_are_the_ones_the_node_exports() -> None:
    telemetry = setup_telemetry(org="00000001999000002000", node_id="pol-1", env={})
    try:
        for counter in (
            telemetry.messages,
            telemetry.rejections,
            telemetry.receipts_ignored,
            telemetry.receipt_contradictions,
            telemetry.witness,
            telemetry.audit_alarm,
        ):
            counter.add(1)
        telemetry.latency.record(1.0)
        for gauge, _description, _unit in GAUGES:
            telemetry.gauges[gauge] = lambda: [(1.0, {})]
        exported = telemetry.prometheus_text().decode()
    finally:
        telemetry.shutdown()
    names = {
        re.sub(r"_(bucket|count|sum|created)$", "", n)
        for n in re.findall(r"^(zvg_[a-z_]+)", exported, re.M)
    }
    text = GUIDE.read_text(encoding="utf-8")
    section = text[text.index("<!-- metrics:") :]
    documented = set(re.findall(r"^\| `(zvg_[a-z_]+)` \|", section, re.M))
    assert documented == names


def test_regenerating_replaces_only_the_table(tmp_path: Path) -> None:
    from gateway.deploy.settings_doc import main

    doc = tmp_path / "guide.md"
    doc.write_text(f"before\n{BEGIN}\nstale\n{END}\nafter\n", encoding="utf-8")
    assert main(["settings_doc", str(doc)]) == 0
    assert doc.read_text(encoding="utf-8") == f"before\n{render_settings_table()}\nafter\n"
    assert main(["settings_doc"]) == 2
