"""Adapters depend on ``schemas`` and the node's HTTP API only, never on ``gateway`` internals
(docs/architecture.md §3): a partner can take ``adapters/`` and ``schemas/`` without the node's
code."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ADAPTERS = Path(__file__).resolve().parents[2] / "adapters"


def _files() -> list[Path]:
    return sorted(ADAPTERS.rglob("*.py"))


def test_adapters_has_modules() -> None:
    assert len(_files()) > 5


@pytest.mark.parametrize("path", _files(), ids=lambda p: str(p.relative_to(ADAPTERS)))
def test_adapter_module_never_imports_gateway(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "import_module":
            names = [
                a.value
                for a in node.args
                if isinstance(a, ast.Constant) and isinstance(a.value, str)
            ]
        bad = [n for n in names if n == "gateway" or n.startswith("gateway.")]
        assert not bad, (
            f"{path.name}:{getattr(node, 'lineno', '?')} imports {bad[0] if bad else ''}"
        )
