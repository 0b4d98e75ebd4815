"""One node process per data directory (issue 14 §8).

Threat: a second ``zvg node run`` on the same data directory (a second unit file, a restart
script that does not wait, two containers on one volume) opens the same store and the same audit
log: two writers appending to one hash chain, two outbox loops publishing the same entries, two
consumers each acking what the other stored.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.errors import LocalError
from gateway.node.lock import LOCK_FILE, DataDirLock


def test_a_second_lock_on_one_data_directory_is_refused_naming_the_holder(
    tmp_path: Path,
) -> None:
    held = DataDirLock.acquire(tmp_path)
    try:
        with pytest.raises(LocalError) as refused:
            DataDirLock.acquire(tmp_path)
        message = str(refused.value)
        assert str(tmp_path / LOCK_FILE) in message
        assert f"pid {os.getpid()}" in message
        assert "\n" not in message
    finally:
        held.release()


def test_the_lock_file_is_private_and_names_the_holder(tmp_path: Path) -> None:
    held = DataDirLock.acquire(tmp_path / "new" / "data")
    try:
        path = tmp_path / "new" / "data" / LOCK_FILE
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.read_text("ascii").strip() == str(os.getpid())
    finally:
        held.release()


def test_release_lets_the_next_process_in(tmp_path: Path) -> None:
    DataDirLock.acquire(tmp_path).release()
    DataDirLock.acquire(tmp_path).release()


def test_a_lock_file_left_by_a_killed_process_does_not_block(tmp_path: Path) -> None:
    """The kernel's lock is what counts, not the file: kill -9 leaves the file, not the lock."""
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import sys, time; from pathlib import Path; from gateway.node.lock import "
                "DataDirLock; DataDirLock.acquire(Path(sys.argv[1])); print('held', flush=True); "
                "time.sleep(600)"
            ),
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == b"held"
        with pytest.raises(LocalError, match=f"pid {child.pid}"):
            DataDirLock.acquire(tmp_path)
    finally:
        child.kill()
        child.wait(timeout=30)
    assert (tmp_path / LOCK_FILE).read_text("ascii").strip() == str(child.pid)
    DataDirLock.acquire(tmp_path).release()


def test_a_symlinked_lock_file_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("", "ascii")
    data = tmp_path / "data"
    data.mkdir()
    (data / LOCK_FILE).symlink_to(target)
    with pytest.raises(LocalError, match="lock file"):
        DataDirLock.acquire(data)
