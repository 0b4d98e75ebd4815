"""``scripts/test`` (the README's test command, which CI runs) ends with the status of what it ran.

The bug: its EXIT trap stops background jobs with ``kill``, which fails for jobs that already
ended; under ``set -e`` a failing command in the EXIT trap becomes the script's exit status, so
every run whose tests and mypy passed exited 1 (CI: "failed (exit 1)" under "3,280 passed").
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "test"


def _trap() -> str:
    (line,) = [ln for ln in SCRIPT.read_text("utf-8").splitlines() if ln.startswith("trap ")]
    assert re.search(r"\bEXIT$", line), line
    return line


@pytest.mark.parametrize("status", [0, 3])
def test_the_exit_trap_keeps_the_status_when_the_background_jobs_have_ended(status: int) -> None:
    script = f"""
set -euo pipefail
background=()
mypy_out=$(mktemp)
{_trap()}
true &
background+=("$!")
wait
exit {status}
"""
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=False)
    assert result.returncode == status, result.stderr
