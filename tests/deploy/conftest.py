"""Fixtures for the deployment tests: the repository's deploy/ files and a prepared federation."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
VENV_BIN = Path(sys.executable).parent


def tool_env(**extra: str) -> dict[str, str]:
    """The environment for running repository scripts: this Python's ``zvg`` first on PATH."""
    return os.environ | {"PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"} | extra


@pytest.fixture(scope="session")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``deploy/compose/prepare.sh`` run once into a fresh folder (≈ 4 s): the compose state."""
    state = tmp_path_factory.mktemp("compose") / "state"
    result = subprocess.run(
        [str(DEPLOY / "compose" / "prepare.sh"), str(state)],
        env=tool_env(ZVG_PYTHON=sys.executable),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return state
