"""Every command block of docs/security-officers.md runs against a real node's store."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.e2e.harness import Fed
from tests.guides import run_block, sh_blocks

pytestmark = pytest.mark.broker


async def test_every_command_in_the_security_officers_guide_runs(
    exchanged: tuple[Fed, str], tmp_path: Path
) -> None:
    fed, message_id = exchanged
    evidence = tmp_path / "evidence"
    evidence.mkdir()
    env = {
        "CONFIG": str(fed.nodes["gemeente"].config),
        "CASE": "Veenstad-2026-031",
        "PARTNER": "00000001999000002000",
        "SUBJECT": "sub-7f3KqZ2mLw9xTa",
        "MESSAGE_ID": message_id,
        "EVIDENCE": str(evidence),
        "DIRECTORY": str(fed.files.directory),
    }
    blocks = sh_blocks("security-officers.md")
    assert len(blocks) >= 5
    outputs = []
    for block in blocks:
        # In a thread: the nodes run in this event loop, and `verify --witnesses` needs them.
        result = await asyncio.to_thread(run_block, block, env, tmp_path)
        assert result.returncode == 0, f"{block}\n{result.stdout}\n{result.stderr}"
        outputs.append(result.stdout)
    text = "\n".join(outputs)
    assert "message.receive" in text
    assert "OK" in text
    assert "Politie, basisteam Veenstad: cosigned checkpoint" in text, "--witnesses asked"
    assert (evidence / "message.json").exists()
    assert (evidence / "case.json").exists()
