"""The node stays a set of thin loops: no module of ``gateway/node/`` longer than 400 lines and
no class there (or in the node's witnessing loop) with more than 15 methods
(docs/architecture.md §9.6). A module or class that grows past this is doing more than one
thing: split it by what it does rather than raising the limits."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
NODE = ROOT / "gateway" / "node"
#: Modules outside gateway/node/ that are loops of the node (the rest of gateway/audit/ holds
#: the audit log and its tools, which these limits do not cover yet).
NODE_LOOPS_ELSEWHERE = (ROOT / "gateway" / "audit" / "witness_loop.py",)
MAX_LINES = 400
MAX_METHODS = 15

MODULES = sorted([*NODE.rglob("*.py"), *NODE_LOOPS_ELSEWHERE])


def _ids(path: Path) -> str:
    return str(path.relative_to(ROOT))


def methods_per_class(source: str) -> dict[str, int]:
    """The number of functions defined directly in each class body (properties, setters and
    dunders included), by class name."""
    counts: dict[str, int] = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef):
            counts[node.name] = sum(
                isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) for item in node.body
            )
    return counts


def test_the_node_modules_are_found() -> None:
    names = {p.name for p in MODULES}
    assert {"service.py", "outbound.py", "inbound.py", "witness_loop.py"} <= names


@pytest.mark.parametrize("path", MODULES, ids=_ids)
def test_no_node_module_is_longer_than_400_lines(path: Path) -> None:
    lines = len(path.read_text("utf-8").splitlines())
    assert lines <= MAX_LINES, f"{_ids(path)} has {lines} lines"


@pytest.mark.parametrize("path", MODULES, ids=_ids)
def test_no_node_class_has_more_than_15_methods(path: Path) -> None:
    big = {c: n for c, n in methods_per_class(path.read_text("utf-8")).items() if n > MAX_METHODS}
    assert big == {}, f"{_ids(path)}: classes with more than {MAX_METHODS} methods"


def test_the_method_count_sees_every_kind_of_method() -> None:
    source = """
class Big:
    def __init__(self) -> None: ...
    @property
    def a(self) -> int: ...
    @a.setter
    def a(self, value: int) -> None: ...
    async def b(self) -> None: ...
    @staticmethod
    def c() -> None: ...
    class Inner:
        def d(self) -> None: ...
    x = 1
"""
    assert methods_per_class(source) == {"Big": 5, "Inner": 1}
