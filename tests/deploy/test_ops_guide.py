"""docs/ops.md: every command in it runs, and its tables match the code.

The guide's ``sh`` blocks run in order in one working folder with this environment's ``zvg``
first on PATH (``deploy`` there links to the repository's ``deploy/``, as if run from the
repository root), ``DESTDIR`` a scratch root for the server install (systemd) and ``ZVG_USER``
the user running the tests, ``ZVG_STORE_URL`` a fresh PostgreSQL database (the high-availability
chapter's store) and ``RABBIT`` the first member of the private three-member RabbitMQ cluster the
broker-cluster test boots (``rabbit_cluster``: the test joins its group, so the cluster boots once
per session); a ``toml`` block preceded by ``<!-- file: PATH -->`` is written to
PATH before the next block runs. What the install and the Kubernetes block made is checked after
the walk-through: file modes, and the rendered manifests against the Kubernetes API schemas.
``text`` blocks (Docker, systemd as PID 1, a cluster, a new system user, root on the broker) are
not run; the test checks that every fenced block is one of those three kinds, so a command
cannot hide in an unmarked block.

Threats: a guide whose commands no longer work (ops follow it during an incident), or that
installs a node without its keys; a settings table or metric list that drifted from the code.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import secrets
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import yaml

from gateway.deploy.settings_doc import BEGIN, END, render_settings_table
from gateway.node.config import load_config
from tests.deploy.conftest import DEPLOY, ROOT, VENV_BIN, tool_env
from tests.deploy.test_kubernetes import K8S_BASE_KINDS, validate_strictly
from tests.deploy.test_kubernetes_ha import HA_KINDS
from tests.deploy.test_observability import exported_names
from tests.integration._cluster import CLI_NOT_STARTED, RabbitCluster
from tests.pg import ADMIN_URL

GUIDE = ROOT / "docs" / "ops.md"
BLOCK = re.compile(
    r"(?:<!-- file: (?P<file>\S+) -->\n)?```(?P<lang>[a-z]*)\n(?P<body>.*?)```", re.S
)
KINDS = {"sh", "toml", "text"}
BLOCK_TIMEOUT_S = 120
#: The system's own unit files (Debian's systemd package), whose targets the scratch root gets.
SYSTEM_UNITS = Path("/usr/lib/systemd/system")


@dataclass(frozen=True)
class Block:
    lang: str
    body: str
    file: str | None
    line: int


def _blocks() -> list[Block]:
    text = GUIDE.read_text(encoding="utf-8")
    return [
        Block(m["lang"], m["body"], m["file"], text.count("\n", 0, m.start()) + 1)
        for m in BLOCK.finditer(text)
    ]


def test_every_block_is_run_written_or_marked_as_not_runnable() -> None:
    blocks = _blocks()
    assert {b.lang for b in blocks} <= KINDS, {b.lang for b in blocks}
    assert [b for b in blocks if b.lang == "toml" and b.file is None] == []
    assert sum(b.lang == "sh" for b in blocks) >= 10


def _scratch_root(root: Path) -> Path:
    """The server the systemd block installs into: the program of section 1 at
    ``/opt/zv-gateway/bin/zvg`` (a wrapper of this environment's ``zvg``: with ``--root``,
    systemd-analyze resolves every path inside the root) and the system's targets (which the
    template's ``After=``/``WantedBy=`` and systemd's default dependencies name; copies, since
    a link out of the root would be resolved inside it)."""
    program = root / "opt" / "zv-gateway" / "bin" / "zvg"
    program.parent.mkdir(parents=True)
    program.write_text(f'#!/bin/sh\nexec "{VENV_BIN / "zvg"}" "$@"\n', encoding="utf-8")
    program.chmod(0o755)
    units = root / "usr" / "lib" / "systemd" / "system"
    units.mkdir(parents=True)
    targets = [p for p in SYSTEM_UNITS.glob("*.target") if p.is_file() and not p.is_symlink()]
    assert targets, f"no systemd targets in {SYSTEM_UNITS}"
    for target in targets:
        shutil.copyfile(target, units / target.name)
    return root


def _stand_in(folder: Path, name: str, script: str) -> None:
    """``folder/name`` runs ``tests/deploy/<script>`` with this Python."""
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text(
        f'#!/bin/sh\nexec "{sys.executable}" "{Path(__file__).with_name(script)}" "$@"\n',
        encoding="utf-8",
    )
    path.chmod(0o755)


@pytest.fixture
def fresh_database() -> Iterator[str]:
    """An empty PostgreSQL database of this test's own (the guide migrates it), dropped after."""
    name = f"zvg_guide_{secrets.token_hex(4)}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.broker
def test_every_command_in_the_guide_runs(
    tmp_path: Path, fresh_database: str, rabbit_cluster: RabbitCluster
) -> None:
    """Key generation, federation, directory, TLS, provisioning, check-config, the systemd
    install into a scratch root, the Kubernetes kustomizations, a node run on SQLite and one on
    PostgreSQL (each stopped once it listens: tests/deploy/timeout_stand_in.py), backups,
    provisioning a broker cluster — one block after the other, each must exit 0."""
    assert shutil.which("systemd-analyze"), "scripts/test installs it (ensure_systemd_analyze)"
    (tmp_path / "deploy").symlink_to(DEPLOY)
    server = _scratch_root(tmp_path / "server")
    user = pwd.getpwuid(os.getuid()).pw_name
    assert grp.getgrgid(os.getgid()).gr_name == user, "the guide's install uses group = user"
    env = tool_env(
        ZVG_PYTHON=sys.executable,
        DESTDIR=str(server),
        ZVG_USER=user,
        ZVG_STORE_URL=fresh_database,
        RABBIT=rabbit_cluster.members[0].node,
    )
    stand_ins = tmp_path / "bin"
    # The node runs of sections 5 and 10 end once the node listens, not after the guide's 10 s.
    _stand_in(stand_ins, "timeout", "timeout_stand_in.py")
    if shutil.which("kubectl") is None:  # not in Debian: the tests' kustomize stands in
        _stand_in(stand_ins, "kubectl", "kustomize.py")
    env["PATH"] = f"{stand_ins}{os.pathsep}{env['PATH']}"
    for block in _blocks():
        if block.lang == "toml" and block.file:
            target = tmp_path / block.file
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(block.body, encoding="utf-8")
        elif block.lang == "sh":
            result = _run_block(block, tmp_path, env)
            assert result.returncode == 0, (
                f"docs/ops.md line {block.line}:\n{block.body}\n--- stdout\n{result.stdout}"
                f"\n--- stderr\n{result.stderr[-3000:]}"
            )
    # What the walk-through must have produced.
    assert (tmp_path / "backup" / "node.db").is_file()
    assert (tmp_path / "definitions.json").is_file()
    assert (tmp_path / "federation" / "directory.v4.json").is_file()
    _check_systemd_install(server / "etc" / "zvg" / "politie")
    _check_kubernetes_render(tmp_path / "politie" / "k8s.yaml")
    _check_kubernetes_render(tmp_path / "politie" / "k8s-ha.yaml", HA_KINDS)
    _check_high_availability(tmp_path / "politie", fresh_database, rabbit_cluster)


def _check_high_availability(politie: Path, database: str, cluster: RabbitCluster) -> None:
    """The node ran on PostgreSQL (its state there, from the URL in a 0600 file), and every
    queue of the guide's federation has a quorum replica on each member of the cluster."""
    url_file = politie / "store-url"
    assert stat.S_IMODE(url_file.stat().st_mode) == 0o600
    config = load_config(politie / "node.toml")
    assert config.store.url == database
    assert len(config.broker.urls) == 3
    with psycopg.connect(database) as conn:
        row = conn.execute("SELECT count(*) FROM audit_records").fetchone()
    assert row is not None
    assert row[0] > 0, "the node wrote its audit log into PostgreSQL"
    queues = cluster.ctl.json("list_queues", "-p", "zvg-veenstad", "name", "type", "members")
    assert queues
    nodes = sorted(m.node for m in cluster.members)
    for queue in queues:
        assert queue["type"] == "quorum", queue
        assert sorted(queue["members"]) == nodes, queue


def _run_block(block: Block, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run one ``sh`` block; again (up to twice more) only when a ``rabbitmqctl`` in it could
    not start its own Erlang node (``CLI_NOT_STARTED``: its name or port taken by one of the many
    rabbitmqctl runs of a busy test machine), which never reached the broker — the broker
    blocks are idempotent (provisioning, listings, a check)."""
    for _ in range(3):
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", block.body],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=BLOCK_TIMEOUT_S,
        )
        if result.returncode == 0 or CLI_NOT_STARTED not in result.stderr:
            break
    return result


def _check_systemd_install(etc: Path) -> None:
    """Every file the installed node.toml names is there, keys 0600 and nothing else private."""
    config = load_config(etc / "node.toml")
    assert config.node.data_dir == etc.parents[2] / "var" / "lib" / "zvg" / "politie"
    assert config.broker.key_file is not None
    keys = [p for _, p in config.key_files()] + [config.broker.key_file]
    for path in keys:
        assert path.is_relative_to(etc), path
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for public in (config.directory.file, config.broker.ca_file, config.broker.cert_file):
        assert public is not None
        assert stat.S_IMODE(public.stat().st_mode) == 0o640, public
    assert stat.S_IMODE((etc / "keys").stat().st_mode) == 0o700
    assert stat.S_IMODE(etc.stat().st_mode) == 0o750
    unit = etc.parents[1] / "systemd" / "system" / "zvg-node@.service"
    assert unit.read_bytes() == (DEPLOY / "systemd" / "zvg-node@.service").read_bytes()


def _check_kubernetes_render(rendered: Path, kinds: tuple[str, ...] = K8S_BASE_KINDS) -> None:
    """The guide's kustomization renders the base plus its ConfigMap, no Secret, every object
    valid against the Kubernetes API schemas with unknown fields refused."""
    docs = [d for d in yaml.safe_load_all(rendered.read_text(encoding="utf-8")) if d]
    assert sorted(d["kind"] for d in docs) == sorted([*kinds, "ConfigMap"])
    for doc in docs:
        validate_strictly(doc)
    (config_map,) = [d for d in docs if d["kind"] == "ConfigMap"]
    assert set(config_map["data"]) == {"node.toml", "directory.json", "ca.pem", "client.pem"}
    assert "PRIVATE KEY" not in rendered.read_text(encoding="utf-8")
    assert "postgresql://" not in config_map["data"]["node.toml"], "no store URL in a ConfigMap"


def test_settings_table_matches_the_config_models() -> None:
    text = GUIDE.read_text(encoding="utf-8")
    start, end = text.index(BEGIN), text.index(END) + len(END)
    assert text[start:end] == render_settings_table(), (
        "regenerate: python -m gateway.deploy.settings_doc docs/ops.md"
    )


def test_settings_table_names_every_setting_of_the_example_config() -> None:
    """The guide's example node.toml uses only settings the table explains."""
    table = render_settings_table()
    (example,) = [b for b in _blocks() if b.file == "politie/node.toml"]
    section = ""
    for raw in example.body.splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.startswith("["):
            section = line.strip("[]")
            section = "api.tokens[]" if section == "api.tokens" else section
            section = re.sub(r'^purposes\."[^"]+"$', 'purposes."<CODE>"', section)
        elif "=" in line:
            key = line.split("=", 1)[0].strip()
            assert f"| `{section}.{key}` |" in table, f"{section}.{key}"


def test_metric_names_in_the_guide_are_the_ones_the_node_exports() -> None:
    names = {
        re.sub(r"_(bucket|count|sum|created)$", "", n)
        for n in exported_names()
        if n.startswith("zvg_")
    }
    text = GUIDE.read_text(encoding="utf-8")
    section = text[text.index("<!-- metrics:") :]
    documented = set(re.findall(r"^\| `(zvg_[a-z_]+)` \|", section, re.M))
    assert documented == names


def test_regenerating_replaces_only_the_table(tmp_path: Path) -> None:
    from gateway.deploy.settings_doc import main

    doc = tmp_path / "guide.md"
    doc.write_text(f"before\n{BEGIN}\nstale\n{END}\nafter\n", encoding="utf-8")
    assert main(["settings_doc", str(doc)]) == 0
    assert doc.read_text(encoding="utf-8") == f"before\n{render_settings_table()}\nafter\n"
    assert main(["settings_doc"]) == 2
