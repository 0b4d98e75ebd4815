"""The node image (deploy/Dockerfile) without Docker: what it copies, what it installs, and the
scripts it runs, each run here as the image would run it.

Threats: example keys (or any key) baked into an image; a wheel missing a data file the node
needs at run time (``example_kids.json`` missing would silently stop production mode from
recognising the example keys); a container that runs as root; an entrypoint that starts a node
without checking its config, or that keeps SIGTERM from reaching it (no drain); key files
installed readable by others.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

import gateway
import zvg_client
from gateway.node.runner import DRAIN_GRACE_S
from gateway.testing.nodes import write_node_config
from gateway.testing.veenstad import org_by_key
from schemas.catalogue import default_catalogue
from tests.deploy.conftest import DEPLOY, ROOT, tool_env

DOCKERFILE = DEPLOY / "Dockerfile"
ENTRYPOINT = DEPLOY / "docker-entrypoint.sh"
HEALTHCHECK = DEPLOY / "healthcheck.py"
INSTALL_SECRETS = DEPLOY / "install-secrets.sh"
#: Package → the distribution whose wheel holds it (decision 0095: the client's is its own).
PACKAGES = {
    "gateway": "zv_gateway",
    "adapters": "zv_gateway",
    "schemas": "zv_gateway_client",
    "zvg_client": "zv_gateway_client",
}
NODE_START_S = 30.0
"""Bound on a node's start-up here (≈ 1 s); only stops a hang."""


def _instructions() -> list[tuple[str, str, str]]:
    """(stage, instruction, arguments) for every Dockerfile instruction, continuations joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    stage, out = "", []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        word, _, args = line.strip().partition(" ")
        if word.upper() == "FROM":
            stage = args.split(" AS ")[-1].strip() if " AS " in args else args.strip()
        out.append((stage, word.upper(), args.strip()))
    return out


def _copy_sources(stage: str) -> list[str]:
    sources = []
    for st, word, args in _instructions():
        if st == stage and word == "COPY" and "--from=" not in args:
            parts = [p for p in args.split() if not p.startswith("--")]
            sources += parts[:-1]
    return sources


# ------------------------------------------------------------------ the Dockerfile


def test_image_runs_as_a_fixed_non_root_user() -> None:
    runtime = [(w, a) for st, w, a in _instructions() if st == "node"]
    users = [a for w, a in runtime if w == "USER"]
    assert users == ["10001:10001"], "numeric, so Kubernetes' runAsNonRoot can verify it"
    assert any(w == "RUN" and "useradd" in a and "--uid 10001" in a for w, a in runtime)


def test_image_declares_the_volume_healthcheck_and_entrypoint() -> None:
    runtime = {w: a for st, w, a in _instructions() if st == "node"}
    assert runtime["VOLUME"] == "/var/lib/zvg"
    assert runtime["ENTRYPOINT"] == '["zvg-entrypoint"]'
    assert "zvg-healthcheck" in runtime["HEALTHCHECK"]
    assert '"/healthz"' in runtime["HEALTHCHECK"]
    assert runtime["STOPSIGNAL"] == "SIGTERM"
    assert runtime["EXPOSE"] == "8400"
    froms = [a for _, w, a in _instructions() if w == "FROM"]
    assert len(froms) == 2, "multi-stage: build the wheel, install it into a slim image"
    assert "python:3.11-slim" in DOCKERFILE.read_text(encoding="utf-8")


def test_image_copies_no_keys_tests_or_docs() -> None:
    """Only the packages, pyproject/README and the three deploy scripts enter the image."""
    build, runtime = _copy_sources("build"), _copy_sources("node")
    assert sorted(build) == sorted(
        ["pyproject.toml", "README.md", "LICENSE", "clients/python/", *(f"{p}/" for p in PACKAGES)]
    )
    assert sorted(runtime) == sorted(
        [
            "deploy/requirements.lock",
            "deploy/docker-entrypoint.sh",
            "deploy/healthcheck.py",
            "deploy/install-secrets.sh",
        ]
    )
    for source in build + runtime:
        assert (ROOT / source).exists(), source
        assert not any((ROOT / source).rglob("*.pem")) if (ROOT / source).is_dir() else True


def test_dockerignore_keeps_example_keys_and_local_state_out_of_the_context() -> None:
    patterns = {
        line.strip().rstrip("/")
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    for required in (
        "keys_example",
        ".venv",
        "tests",
        "docs/_build",
        "deploy/compose/state",
        "deploy/compose/state-ha",  # compose.ha.yaml's: database passwords, the Erlang cookie
        ".git",
        "**/*.key.pem",
    ):
        assert required in patterns, required


def test_image_installs_the_locked_dependencies_with_their_hashes() -> None:
    """Dependencies come from deploy/requirements.lock only (pinned, hashed, wheels), the two
    distributions of this checkout without theirs (tests/deploy/test_lock.py keeps the lock in
    step with pyproject.toml)."""
    runtime = [a for st, w, a in _instructions() if st == "node" and w == "RUN"]
    install = " ".join(next(a for a in runtime if "requirements.lock" in a).split())
    assert "--require-hashes --no-deps --only-binary :all: -r /tmp/requirements.lock" in install
    assert "--no-index --no-deps /wheels/*.whl" in install
    assert "pip check" in install
    build = [a for st, w, a in _instructions() if st == "build" and w == "RUN"]
    assert build == ["pip wheel --no-deps --wheel-dir /wheels ./clients/python ."]


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, zipfile.ZipFile]:
    """The two wheels built from exactly what the Dockerfile's build stage copies (≈ 5 s), by
    distribution; with the build's output, to check it warns of nothing."""
    src = tmp_path_factory.mktemp("context")
    for source in _copy_sources("build"):
        origin = ROOT / source
        if origin.is_dir():
            shutil.copytree(
                origin, src / source, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
            )
        else:
            shutil.copyfile(origin, src / source)
    out = tmp_path_factory.mktemp("wheels")
    client = src / "clients" / "python"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-v",
            "-w",
            str(out),
            str(client),
            str(src),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (out / "build.log").write_text(result.stdout + result.stderr, encoding="utf-8")
    built = {w.name.split("-")[0]: zipfile.ZipFile(w) for w in out.glob("*.whl")}
    assert sorted(built) == ["zv_gateway", "zv_gateway_client"]
    return built


@pytest.fixture(scope="module")
def wheel(wheels: dict[str, zipfile.ZipFile]) -> zipfile.ZipFile:
    return wheels["zv_gateway"]


def test_wheel_holds_every_package_file_and_the_runtime_data(
    wheels: dict[str, zipfile.ZipFile],
) -> None:
    names = {dist: set(w.namelist()) for dist, w in wheels.items()}
    for dist, required in (
        ("zv_gateway_client", "schemas/catalogue.json"),
        ("zv_gateway", "gateway/node/example_kids.json"),
        ("zv_gateway", "gateway/py.typed"),
        ("zv_gateway_client", "schemas/py.typed"),
        ("zv_gateway", "adapters/py.typed"),
        ("zv_gateway_client", "zvg_client/py.typed"),
    ):
        assert required in names[dist], required
    schema_files = {p.name for p in (ROOT / "schemas" / "json").glob("*.json")}
    assert schema_files, "schemas/json/*.json exist"
    assert {f"schemas/json/{n}" for n in schema_files} <= names["zv_gateway_client"]
    missing = []
    for package, dist in PACKAGES.items():
        for path in (ROOT / package).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                rel = path.relative_to(ROOT).as_posix()
                if rel not in names[dist]:
                    missing.append(rel)
    assert missing == [], f"in the source tree but not in its wheel: {missing}"
    for package, dist in PACKAGES.items():
        for other in set(names) - {dist}:
            assert not any(n.startswith(f"{package}/") for n in names[other]), (package, other)


VERSIONS = {"zv_gateway": gateway.__version__, "zv_gateway_client": zvg_client.__version__}


def test_wheels_carry_the_spdx_licence_and_the_licence_text(
    wheels: dict[str, zipfile.ZipFile],
) -> None:
    """Issue 18: `license = { text = ... }` made setuptools warn on every build and install."""
    for dist, wheel in wheels.items():
        metadata = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
        text = wheel.read(metadata).decode()
        assert "License-Expression: EUPL-1.2" in text, dist
        assert f"Version: {VERSIONS[dist]}\n" in text, "one source for each version"
        assert "License-File: LICENSE" in text, dist
        licence = next(n for n in wheel.namelist() if n.endswith(".dist-info/licenses/LICENSE"))
        assert wheel.read(licence) == (ROOT / "LICENSE").read_bytes(), dist
    log = (Path(next(iter(wheels.values())).filename or "").parent / "build.log").read_text()
    assert "Deprecat" not in log, [x for x in log.splitlines() if "Deprecat" in x]


def test_wheel_holds_no_key_material(wheels: dict[str, zipfile.ZipFile]) -> None:
    for wheel in wheels.values():
        for name in wheel.namelist():
            assert "keys_example" not in name
            assert not name.endswith((".pem", ".key")), name
            assert b"PRIVATE KEY" not in wheel.read(name), name


def test_wheel_installs_the_zvg_command(wheel: zipfile.ZipFile) -> None:
    entry_points = next(n for n in wheel.namelist() if n.endswith("entry_points.txt"))
    assert "zvg = gateway.cli:main" in wheel.read(entry_points).decode()


# ------------------------------------------------------------------ the entrypoint


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _entrypoint(*args: str, config: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(ENTRYPOINT), *args],
        env=tool_env(ZVG_CONFIG=str(config)),
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )


def test_entrypoint_refuses_example_keys_before_starting_the_node(tmp_path: Path) -> None:
    """A production config pointing at keys_example/ stops at check-config: exit 2, no store."""
    org = org_by_key("politie")
    example = ROOT / "keys_example"
    data = tmp_path / "data"
    node = write_node_config(
        tmp_path / "node.toml",
        org=org,
        keys_dir=example / "orgs" / org.key,
        directory=example / "directory.json",
        data_dir=data,
        broker_url="amqp://127.0.0.1:1/",
        password_file=None,
        listen=f"127.0.0.1:{_free_port()}",
        token="t" * 43,
        catalogue=default_catalogue(),
        mode="production",
    )
    result = _entrypoint(config=node.config)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "zvg: error:" in result.stderr
    assert "production mode refuses example keys" in result.stderr
    assert not data.exists(), "the node must not have started"


def test_entrypoint_refuses_a_missing_config(tmp_path: Path) -> None:
    result = _entrypoint(config=tmp_path / "absent.toml")
    assert result.returncode == 2
    assert "absent.toml" in result.stderr


def test_entrypoint_runs_another_command_instead_of_the_node(tmp_path: Path) -> None:
    result = _entrypoint("zvg", "--version", config=tmp_path / "absent.toml")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("zvg, version")


def _node_copy(prepared: Path, tmp_path: Path, org: str, port: int) -> Path:
    """A prepared node's folder with only the API address and the broker host rewritten."""
    root = tmp_path / org
    shutil.copytree(prepared / "nodes" / org, root)
    config = root / "etc" / "zvg" / "node.toml"
    text = config.read_text(encoding="utf-8")
    text = text.replace('listen = "0.0.0.0:8400"', f'listen = "127.0.0.1:{port}"')
    # Nothing listens on port 1: the node keeps retrying the broker in the background.
    text = text.replace('"amqps://rabbitmq:5671/', '"amqps://127.0.0.1:1/')
    config.write_text(text, encoding="utf-8")
    return config


def _healthcheck(config: Path, path: str) -> int:
    return subprocess.run(
        [sys.executable, str(HEALTHCHECK), path],
        env=tool_env(ZVG_CONFIG=str(config)),
        capture_output=True,
        check=False,
        timeout=30,
    ).returncode


def test_entrypoint_checks_then_execs_the_node_which_drains_on_sigterm(
    prepared: Path, tmp_path: Path
) -> None:
    """The prepared compose config runs through the entrypoint; the healthcheck sees /healthz
    up and /readyz down (no broker); SIGTERM reaches the node itself (exec) and it exits 0."""
    config = _node_copy(prepared, tmp_path, "politie", _free_port())
    log = (tmp_path / "node.log").open("w+")
    process = subprocess.Popen(
        ["sh", str(ENTRYPOINT)],
        env=tool_env(ZVG_CONFIG=str(config)),
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + NODE_START_S
        while _healthcheck(config, "/healthz") != 0:
            assert process.poll() is None, (tmp_path / "node.log").read_text()
            assert time.monotonic() < deadline, (tmp_path / "node.log").read_text()
            time.sleep(0.2)
        assert _healthcheck(config, "/readyz") == 1, "not ready without a broker"
        assert (config.parent / "../../var/lib/zvg/data/node.db").resolve().exists()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=DRAIN_GRACE_S + 20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    output = (tmp_path / "node.log").read_text()
    assert ": OK (production mode" in output, "check-config ran first"
    assert "draining" in output
    assert "stopped" in output


def test_healthcheck_refuses_unknown_paths_and_reports_no_answer(tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text(f'[api]\nlisten = "0.0.0.0:{_free_port()}"\n', encoding="utf-8")
    assert _healthcheck(config, "/metrics") == 2
    assert _healthcheck(config, "/healthz") == 1  # nothing listens there


# ------------------------------------------------------------------ the key installer


def _install(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(INSTALL_SECRETS), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )


def test_install_secrets_copies_files_private_and_follows_secret_volume_links(
    tmp_path: Path,
) -> None:
    """Like a Kubernetes secret volume: visible names are links into a hidden data folder,
    files are group-readable (fsGroup); the copies are 0600 in a 0700 folder."""
    src = tmp_path / "secret"
    (src / "..data").mkdir(parents=True)
    (src / "..data" / "signing.key.pem").write_text("k1", encoding="utf-8")
    (src / "..data" / "signing.key.pem").chmod(0o440)
    (src / "signing.key.pem").symlink_to("..data/signing.key.pem")
    (src / "plain.pem").write_text("k2", encoding="utf-8")
    (src / "plain.pem").chmod(0o644)
    dest = tmp_path / "volume" / "keys"
    owner = f"{os.getuid()}:{os.getgid()}"
    result = _install(str(src), str(dest), owner)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in dest.iterdir()) == ["plain.pem", "signing.key.pem"]
    assert stat.S_IMODE(dest.stat().st_mode) == 0o700
    for path in dest.iterdir():
        assert not path.is_symlink()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert (dest / "signing.key.pem").read_text(encoding="utf-8") == "k1"
    # Re-running (every `docker compose up`) replaces the files in place.
    (src / "plain.pem").write_text("k2-new", encoding="utf-8")
    assert _install(str(src), str(dest)).returncode == 0
    assert (dest / "plain.pem").read_text(encoding="utf-8") == "k2-new"


def test_install_secrets_fails_on_an_empty_or_missing_source(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert _install(str(tmp_path / "empty"), str(tmp_path / "d")).returncode == 1
    assert _install(str(tmp_path / "absent"), str(tmp_path / "d")).returncode == 2
    assert _install(str(tmp_path / "empty")).returncode == 2
