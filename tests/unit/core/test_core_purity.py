"""The core stays pure (design principle 1, "pure core", docs/architecture.md §14): no I/O
frameworks, no clock, no environment, no randomness. Which parts of the project the core may
import is the import-linter contract ``core-imports-no-shell`` (pyproject.toml)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[3] / "gateway" / "core"

FORBIDDEN_MODULES = {
    "asyncio",
    "aio_pika",
    "aiormq",
    "aiohttp",
    "opentelemetry",
    "socket",
    "subprocess",
    "random",
    "secrets",
    "time",
    "sqlite3",
}
FORBIDDEN_CALLS = {"now", "utcnow", "today", "getenv", "urandom", "token_bytes", "generate"}


def _core_files() -> list[Path]:
    return sorted(CORE.rglob("*.py"))


def test_core_has_modules() -> None:
    assert _core_files(), "gateway/core is empty"


@pytest.mark.parametrize("path", _core_files(), ids=lambda p: p.name)
def test_core_module_is_pure(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        for name in names:
            bad = [m for m in FORBIDDEN_MODULES if name == m or name.startswith(m + ".")]
            assert not bad, f"{path.name} imports {name}"
        if isinstance(node, ast.Attribute) and node.attr in FORBIDDEN_CALLS:
            # `datetime.now()`, `os.getenv()`, `os.urandom()`, `X25519PrivateKey.generate()`:
            # the core takes clocks, environment and fresh keys/nonces as arguments.
            pytest.fail(f"{path.name}:{node.lineno} calls .{node.attr}()")
