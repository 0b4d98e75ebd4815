"""Run Prometheus' ``promtool`` (Debian's ``prometheus`` package; ``scripts/test`` installs it
with ``ensure_promtool`` from scripts/lib.sh). A test that needs it fails without it: the
metrics, alert rules and dashboard checks must not pass by being skipped."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


def promtool(*args: str, stdin: bytes | None = None, cwd: Path | None = None) -> str:
    """``promtool ARGS``; its output (stdout and stderr). Fails the test when promtool is
    missing or exits non-zero."""
    exe = shutil.which("promtool")
    assert exe is not None, (
        "promtool is not installed: run `bash -c '. scripts/lib.sh; ensure_promtool'` "
        "(or apt-get install prometheus)"
    )
    done = subprocess.run(
        [exe, *args], input=stdin, capture_output=True, cwd=cwd, timeout=60, check=False
    )
    out = (done.stdout + done.stderr).decode()
    assert done.returncode == 0, f"promtool {' '.join(args)} exited {done.returncode}:\n{out}"
    return out
