"""What each README command installs is enough for what it runs, and no more (issue 18 point 9):
``./scripts/demo`` installs the node with the ``fhir`` and ``console`` extras only — no test
tools — so every third-party module the product and the demo import must come from the node's
dependencies, the client distribution's, or those extras."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from importlib.metadata import packages_distributions, requires
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
#: The packages the demo runs (its own, the product's and the client distribution's).
DEMO_RUNS = ("demo", "gateway", "adapters", "zvg_client", "schemas")
#: Modules of an optional extra that nothing imports unless the node is configured for them:
#: the PostgreSQL store and its processes' coordination (``store.url``; the ``postgres`` extra),
#: which the demo never configures. ``test_a_node_on_sqlite_runs_without_the_postgres_extra``
#: shows nothing imports them eagerly.
OPTIONAL = {Path("gateway/node/store/postgres.py"), Path("gateway/node/store/pg_lead.py")}


def _closure(dist: str, extras: frozenset[str] = frozenset()) -> set[str]:
    """``dist`` and every distribution it needs with ``extras``, from the installed metadata."""
    seen: set[str] = set()
    todo = [(dist, extras)]
    while todo:
        name, wanted = todo.pop()
        key = canonicalize_name(name)
        if key in seen and not wanted:
            continue
        seen.add(key)
        for line in requires(name) or []:
            req = Requirement(line)
            env = {**{k: str(v) for k, v in default_environment().items()}, "extra": ""}
            if (
                req.marker is None
                or req.marker.evaluate(env)
                or any(req.marker.evaluate({**env, "extra": e}) for e in wanted)
            ):
                todo.append((req.name, frozenset(req.extras)))
    return seen


def _third_party_imports() -> set[str]:
    local = {p.name for p in ROOT.iterdir() if p.is_dir()} | set(sys.stdlib_module_names)
    found: set[str] = set()
    for package in DEMO_RUNS:
        for path in (ROOT / package).rglob("*.py"):
            if path.relative_to(ROOT) in OPTIONAL:
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    found |= {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    found.add(node.module.split(".")[0])
    return {m for m in found if m not in local and m != "__future__"}


def test_the_demo_installs_the_fhir_and_console_extras_and_not_the_test_tools() -> None:
    demo = (ROOT / "scripts" / "demo").read_text(encoding="utf-8")
    assert re.search(r"^ensure_venv fhir,console\s", demo, re.MULTILINE), (
        "scripts/demo: ensure_venv fhir,console"
    )
    test = (ROOT / "scripts" / "test").read_text(encoding="utf-8")
    assert re.search(r"^ensure_venv(\s|$)", test, re.MULTILINE), "scripts/test: the default, test"
    lib = (ROOT / "scripts" / "lib.sh").read_text(encoding="utf-8")
    assert 'local extra="${1-test}"' in lib


def test_everything_the_demo_imports_is_installed_without_the_test_extra() -> None:
    installed = _closure("zv-gateway", frozenset({"fhir", "console"}))
    assert "pytest" not in installed, "the demo's extras do not pull in the test tools"
    owners = packages_distributions()
    missing = {
        module: owners.get(module)
        for module in _third_party_imports()
        if not {canonicalize_name(d) for d in owners.get(module, [])} & installed
    }
    assert missing == {}, f"imported by {DEMO_RUNS} but only in the test extra: {missing}"


def test_a_node_on_sqlite_runs_without_the_postgres_extra() -> None:
    """The bug: ``gateway.node.pg_store`` imported psycopg at module level, so a node installed
    without the ``postgres`` extra (the container image, the demo) failed at start-up."""
    blocked = "import sys; sys.modules['psycopg'] = sys.modules['psycopg_pool'] = None; "
    code = blocked + "import gateway.cli, gateway.node.runner, gateway.node.service, demo"
    done = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
