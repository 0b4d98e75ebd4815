"""Run the shell examples of a guide (``sh`` code blocks) so the documentation cannot rot: one
block at a time (:func:`run_block`), or all of them in one bash session as a reader pasting
them would, each checked against the ``text`` block under it (:class:`Shell`, :func:`matches`).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.e2e.harness import request_from_example

ROOT = Path(__file__).resolve().parents[1]
API_GUIDE = ROOT / "docs" / "api.md"
#: Seconds one block may run (the slowest waits for a receipt or a long-poll).
BLOCK_TIMEOUT_S = 60
#: The police's OIN in the guide's story.
POL = "00000001999000002000"
_BLOCK = re.compile(r"^```sh\n(.*?)^```", re.MULTILINE | re.DOTALL)
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```\s*$", re.M | re.S)


def sh_blocks(guide: str) -> list[str]:
    """The ``sh`` blocks of ``docs/<guide>``, in order."""
    return _BLOCK.findall((ROOT / "docs" / guide).read_text(encoding="utf-8"))


def run_block(block: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run one block with bash (``set -euo pipefail``), ``zvg`` of this virtualenv on PATH."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + block],
        env={**os.environ, "PATH": path, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


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


async def run_api_guide(
    work: Path, node: str, token: str, before: Callable[[Block], Awaitable[None]]
) -> list[str]:
    """Run every ``sh`` block of docs/api.md, in order, in one bash session in ``work`` with
    only ``NODE`` and ``TOKEN`` set from outside; ``before(block)`` runs first (to wait for
    what the block needs). Returns what went wrong, one entry per failing block."""
    missing = [tool for tool in ("curl", "jq") if shutil.which(tool) is None]
    assert not missing, f"the guide's examples need {missing}"
    env = {
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "HOME": str(work),
        "LANG": "C.UTF-8",
        "NODE": node,
        "TOKEN": token,
    }
    shell = Shell(work, env)
    failures: list[str] = []
    try:
        for block in guide_blocks(API_GUIDE.read_text("utf-8")):
            await before(block)
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
        shell.close()
    return failures


def zvh_answers(referral_id: str) -> list[dict[str, Any]]:
    """What the ZVH's adapter sends in the API guide's story once it has taken the police's
    referral: the screening outcome and a plan task for the wijkagent."""
    status = request_from_example(
        "case.status", in_reply_to=referral_id, correlation_id=referral_id
    )
    task = request_from_example(
        "plan.task", recipients=[{"org": POL, "role": "POL"}], correlation_id=referral_id
    )
    task["body"] = {
        **task["body"],
        "title": "Weekly check-in by the wijkagent",
        "goal": "Early warning of escalation",
        "description": "The wijkagent visits weekly and reports to the procesregisseur.",
        "assignee": {"org": POL, "role": "POL"},
        "assignee_contact": {"name": "M. de Boer", "function": "wijkagent"},
    }
    return [status, task]
