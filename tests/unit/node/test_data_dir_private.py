"""No file of a node is readable by another local user, from the first byte of its first start.

Threat: a local user on the node's machine reads the store. The store holds decrypted inbox
messages (with BSNs) and case references; SQLite's write-ahead log (``node.db-wal``) and its
index (``node.db-shm``) hold the same pages. With the usual umask 022 a first start used to leave
the data directory 0755 and the WAL and index 0644, and a second user read the decrypted message
from the WAL. Here a real first start runs under umask 022 and a second, unprivileged user
(``nobody``) tries to list the data directory and read every file in it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from click.testing import CliRunner

from gateway.cli import cli
from gateway.node.config import load_config
from tests.e2e.harness import free_port
from tests.unit.node.conftest import NO_BROKER, NodeSetup, StartNode

ROOT = Path(__file__).resolve().parents[3]
NOBODY = 65534

needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="acting as a second user (nobody) needs root to switch users"
)


@pytest.fixture
def open_base() -> Iterator[Path]:
    """A folder every user may enter (0755, outside pytest's private 0700 temp folder), so only
    the node's own modes stand between another user and its files."""
    base = Path(tempfile.mkdtemp(prefix="zvg-datadir-"))
    base.chmod(0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The usual default umask of a shell or service manager (files 0644, folders 0755)."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _move_data_dir(setup: NodeSetup, data: Path) -> None:
    setup.edit(f'data_dir = "{setup.node.data_dir}"', f'data_dir = "{data}"')


def _as_nobody(*command: str) -> subprocess.CompletedProcess[bytes]:
    """Run ``command`` as the unprivileged user nobody (no supplementary groups)."""
    return subprocess.run(
        command, user=NOBODY, group=NOBODY, extra_groups=[], capture_output=True, check=False
    )


def _modes(data: Path) -> dict[str, str]:
    """Name → octal mode of the data directory (``.``) and everything in it."""
    modes = {".": oct(stat.S_IMODE(data.stat().st_mode))}
    for path in sorted(data.rglob("*")):
        modes[str(path.relative_to(data))] = oct(stat.S_IMODE(path.lstat().st_mode))
    return modes


def _assert_private(data: Path, *, running: bool = True) -> None:
    """Nobody can list ``data`` or read a file in it, and the modes are exactly 0700 and 0600.
    While the node runs, SQLite's -wal and -shm files exist (a clean stop removes them)."""
    modes = _modes(data)
    names = set(modes) - {"."}
    expected = {"node.db", "trusted-directory.json"}
    if running:
        expected |= {"node.db-wal", "node.db-shm"}
    assert expected <= names, modes
    if os.geteuid() == 0:
        listing = _as_nobody("ls", str(data))
        readable = [n for n in sorted(names) if _as_nobody("cat", str(data / n)).returncode == 0]
        assert (listing.returncode, readable) == (2, []), (
            f"nobody listed the data directory ({listing.stdout.split()}) and read {readable}"
        )
    loose = {
        name: mode
        for name, mode in modes.items()
        if int(mode, 8) != (0o700 if (data / name).is_dir() else 0o600)
    }
    assert loose == {}, f"not 0700/0600: {loose}"


@needs_root
@pytest.mark.usefixtures("umask_022")
async def test_a_first_start_leaves_no_node_file_readable_by_another_user(
    setup: NodeSetup, start_node: StartNode, open_base: Path
) -> None:
    data = open_base / "var" / "data"
    _move_data_dir(setup, data)
    node = await start_node()
    assert (data / "node.db-wal").stat().st_size > 0, "the WAL holds pages while the node runs"
    _assert_private(data)
    await start_node.stop(node)
    _assert_private(data, running=False)


@needs_root
def test_zvg_node_run_under_umask_022_leaves_no_file_readable_by_another_user(
    setup: NodeSetup, open_base: Path
) -> None:
    data = open_base / "data"
    _move_data_dir(setup, data)
    setup.edit('url = "amqp://127.0.0.1:5672/zvg-veenstad"', f'url = "{NO_BROKER}"')
    port = free_port()
    setup.edit('listen = "127.0.0.1:8400"', f'listen = "127.0.0.1:{port}"')
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "node", "run", "--config", str(setup.config)],
        cwd=ROOT,
        umask=0o022,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_healthy(port, process)
        _assert_private(data)
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr.decode()
    _assert_private(data, running=False)


def _wait_healthy(port: int, process: subprocess.Popen[bytes]) -> None:
    """Poll /healthz until the node answers (generous bound: it only stops a hang)."""

    async def poll() -> None:
        async with asyncio.timeout(60), aiohttp.ClientSession() as session:
            while process.poll() is None:
                try:
                    async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
            raise AssertionError(f"the node exited with {process.returncode}")

    asyncio.run(poll())


def test_check_config_warns_about_a_data_directory_others_can_read(setup: NodeSetup) -> None:
    data = load_config(setup.config).node.data_dir
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    (data / "node.db-wal").write_bytes(b"")
    (data / "node.db-wal").chmod(0o644)
    result = CliRunner().invoke(cli, ["node", "check-config", "--config", str(setup.config)])
    assert result.exit_code == 0, result.output
    assert f"node.data_dir: {data} is accessible to group or others (mode 0755)" in result.stderr
    assert f"chmod 700 {data}" in result.stderr
    assert f"{data / 'node.db-wal'} is accessible to group or others (mode 0644)" in result.stderr


def test_check_config_is_quiet_about_a_private_data_directory(setup: NodeSetup) -> None:
    data = load_config(setup.config).node.data_dir
    data.mkdir(mode=0o700)
    data.chmod(0o700)
    result = CliRunner().invoke(cli, ["node", "check-config", "--config", str(setup.config)])
    assert result.exit_code == 0, result.output
    assert result.stderr == ""


async def test_start_up_warns_about_a_data_directory_others_can_read(
    setup: NodeSetup, start_node: StartNode, caplog: pytest.LogCaptureFixture
) -> None:
    data = load_config(setup.config).node.data_dir
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    with caplog.at_level(logging.WARNING, logger="gateway.node"):
        await start_node()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        f"node.data_dir: {data} is accessible to group or others (mode 0755)" in w for w in warnings
    ), warnings
    assert stat.S_IMODE(data.stat().st_mode) == 0o755, "ops' choice is reported, not changed"


async def test_a_wal_left_world_readable_by_an_older_version_is_made_private_on_start(
    setup: NodeSetup, start_node: StartNode
) -> None:
    data = load_config(setup.config).node.data_dir
    await start_node.stop(await start_node())
    for name in ("node.db", "node.db-wal", "node.db-shm"):
        path = data / name
        if path.exists():
            path.chmod(0o644)
    (data / "node.db-wal").touch()
    (data / "node.db-wal").chmod(0o644)
    await start_node()
    for name in ("node.db", "node.db-wal", "node.db-shm"):
        assert stat.S_IMODE((data / name).stat().st_mode) == 0o600, name
