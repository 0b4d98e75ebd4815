"""docs/api.md works as written: every ```sh block runs, in order, in one bash session (as a
reader pasting them into a terminal) against a real two-node federation, exits cleanly and prints
what the ```text block under it says (``…`` matches any text within a line).

The test plays the other side of the story: an adapter at the ZVH (gemeente) acks the police's
referral and answers with a ``case.status`` and a ``plan.task``, which the guide then receives,
acks and rejects. The guide sets only ``NODE`` and ``TOKEN`` from outside.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import ROOT, Client, Fed, make_fed, request_from_example, teardown_fed

pytestmark = [pytest.mark.broker, pytest.mark.slow]

GUIDE = ROOT / "docs" / "api.md"
POL = "00000001999000002000"
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```\s*$", re.M | re.S)
#: Seconds one block may run (the slowest waits for a receipt or a long-poll).
BLOCK_TIMEOUT_S = 60


@dataclass
class Block:
    number: int
    code: str
    expected: str | None

    def __str__(self) -> str:
        return f"block {self.number} of docs/api.md:\n{self.code}"


def guide_blocks(text: str) -> list[Block]:
    """The sh blocks of the guide, each with the text block that follows it (if it is next)."""
    fences = [(m.group(1), m.group(2)) for m in _FENCE.finditer(text)]
    blocks: list[Block] = []
    for i, (lang, body) in enumerate(fences):
        if lang != "sh":
            continue
        following = fences[i + 1] if i + 1 < len(fences) else None
        expected = following[1] if following is not None and following[0] == "text" else None
        blocks.append(Block(len(blocks) + 1, body, expected))
    return blocks


def matches(expected: str, actual: str) -> bool:
    """Line by line; ``…`` in an expected line matches any text."""
    want, got = expected.rstrip("\n").split("\n"), actual.rstrip("\n").split("\n")
    if len(want) != len(got):
        return False
    for w, g in zip(want, got, strict=True):
        pattern = ".*".join(re.escape(part) for part in w.split("…"))
        if not re.fullmatch(pattern, g):
            return False
    return True


class Shell:
    """One bash session: blocks run in it one after another, sharing variables and files."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.cwd = cwd
        self.process = subprocess.Popen(
            ["bash", "--norc", "--noprofile"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            text=True,
        )
        # Any failing command (outside conditions) is recorded, not only the block's last one.
        self._send("trap '__failed=\"$__failed $BASH_COMMAND;\"' ERR\n")

    def _send(self, text: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(text)
        self.process.stdin.flush()

    def run(self, block: Block) -> tuple[int, str, str, str]:
        """(exit status, stdout, stderr, failed commands) of one block."""
        n = block.number
        script = self.cwd / f".block{n}.sh"
        script.write_text(block.code, "utf-8")
        out, err = self.cwd / f".block{n}.out", self.cwd / f".block{n}.err"
        self._send(
            f"__failed=''; source {script} > {out} 2> {err}; echo \"__done__ $? $__failed\"\n"
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line.startswith("__done__ "), line
        status, _, failed = line.removeprefix("__done__ ").strip().partition(" ")
        return int(status), out.read_text("utf-8"), err.read_text("utf-8"), failed

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=10)


async def _zvh_adapter(zvh: Client, stop: asyncio.Event) -> None:
    """The other side: ack what arrives at the ZVH and answer a referral with the screening
    outcome and a plan task for the wijkagent."""
    while not stop.is_set():
        for item in await zvh.inbox(wait=1):
            mid = item["message_id"]
            assert await zvh.ack(mid) == 204
            if item["claims"]["message_type"] != "case.referral":
                continue
            status = request_from_example("case.status", in_reply_to=mid, correlation_id=mid)
            code, doc = await zvh.send(status)
            assert code == 202, doc
            task = request_from_example(
                "plan.task", recipients=[{"org": POL, "role": "POL"}], correlation_id=mid
            )
            task["body"] = {
                **task["body"],
                "title": "Weekly check-in by the wijkagent",
                "goal": "Early warning of escalation",
                "description": "The wijkagent visits weekly and reports to the procesregisseur.",
                "assignee": {"org": POL, "role": "POL"},
                "assignee_contact": {"name": "M. de Boer", "function": "wijkagent"},
            }
            code, doc = await zvh.send(task)
            assert code == 202, doc


async def _inbox_waiting(fed: Fed, key: str, n: int) -> None:
    store = fed.running[key].store
    for _ in range(300):
        waiting = await store.run(
            lambda db: db.execute("SELECT count(*) FROM inbox WHERE status='delivered'").fetchone()[
                0
            ]
        )
        if waiting >= n:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{key} never had {n} messages waiting")


@pytest.fixture
async def federation(tmp_path: Path) -> AsyncIterator[Fed]:
    fed = make_fed(tmp_path, ("gemeente", "politie"))
    try:
        await fed.start("gemeente")
        await fed.start("politie")
        yield fed
    finally:
        for key in list(fed.running):
            await fed.stop(key)
        teardown_fed(fed)


def test_the_guide_has_examples_with_outputs() -> None:
    blocks = guide_blocks(GUIDE.read_text("utf-8"))
    assert len(blocks) >= 12
    assert all(b.expected is not None for b in blocks), [
        b.number for b in blocks if b.expected is None
    ]
    assert matches("a …\nb", "a 123\nb")
    assert not matches("a …\nb", "a 123\nc")
    assert not matches("a", "a\nb")


async def test_every_example_in_the_api_guide_works(federation: Fed, tmp_path: Path) -> None:
    fed = federation
    missing = [tool for tool in ("curl", "jq") if shutil.which(tool) is None]
    assert not missing, f"the guide's examples need {missing}"
    work = tmp_path / "reader"
    work.mkdir()
    env = {
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "HOME": str(work),
        "LANG": "C.UTF-8",
        "NODE": fed.nodes["politie"].url,
        "TOKEN": fed.nodes["politie"].token,
    }
    stop = asyncio.Event()
    zvh = asyncio.create_task(_zvh_adapter(fed.client("gemeente"), stop))
    shell = Shell(work, env)
    failures: list[str] = []
    try:
        for block in guide_blocks(GUIDE.read_text("utf-8")):
            if "/v1/inbox?wait=30" in block.code:
                await _inbox_waiting(fed, "politie", 2)
            status, out, err, failed = await asyncio.wait_for(
                asyncio.to_thread(shell.run, block), BLOCK_TIMEOUT_S
            )
            problems: list[str] = []
            if status != 0 or failed:
                problems.append(f"exit status {status}; failed: {failed}")
            if err:
                problems.append(f"stderr: {err}")
            if block.expected is not None and not matches(block.expected, out):
                problems.append(f"printed:\n{out}\nthe guide says:\n{block.expected}")
            if problems:
                failures.append(f"{block}\n" + "\n".join(problems))
    finally:
        stop.set()
        shell.close()
        await asyncio.gather(zvh, return_exceptions=True)
    assert not failures, "\n\n".join(failures)
    # The story happened: the referral was accepted, the plan task rejected by the police adapter.
    gem = fed.client("gemeente")
    statuses: dict[str, Any] = {}
    for row in fed.running["gemeente"].store.run_sync(
        lambda db: db.execute(
            "SELECT message_id, message_type FROM outbox WHERE message_type != 'receipt'"
        ).fetchall()
    ):
        statuses[row[1]] = await gem.wait_status(
            row[0], "accepted" if row[1] == "case.status" else "rejected"
        )
    assert set(statuses) == {"case.status", "plan.task"}
    assert statuses["plan.task"]["recipients"][0]["reason"] == "adapter_rejected"
