"""Run the shell examples of a guide (``sh`` code blocks) so the documentation cannot rot."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_BLOCK = re.compile(r"^```sh\n(.*?)^```", re.MULTILINE | re.DOTALL)


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
