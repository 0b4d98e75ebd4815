"""The node's data directory is private from the first byte (docs/decisions/0047).

The data directory holds the store (``node.db`` and SQLite's ``node.db-wal`` and ``node.db-shm``,
which hold the same pages: decrypted inbox messages, case references, audit records) and the
remembered directory (``trusted-directory.json``). Guarantees:

- :func:`private_dir` creates the data directory with mode ``0700``; :func:`private_file`
  creates a file with mode ``0600`` (``O_CREAT`` with the mode, then ``fchmod`` because the umask
  may only narrow it) or sets an existing one of the node's own files to ``0600`` (one that is
  ``0600`` already is not opened: that would drop SQLite's locks on it). SQLite creates
  ``-wal`` and ``-shm`` with the mode of ``node.db``, so creating ``node.db`` first makes them
  private too. :func:`write_private` replaces a file atomically with a ``0600`` one.
  None of this depends on the umask the node was started with.
- ``zvg node run`` also sets the process umask to :data:`NODE_UMASK` (``077``), so anything a
  library creates later is private as well.
- :func:`exposure` lists the data directory and the files in it that group or others may
  access, one line each with the ``chmod`` that fixes it; ``zvg node check-config`` and start-up
  print them as warnings. An existing data directory's mode is ops' choice (a backup group, a
  Kubernetes ``fsGroup``): the node reports it and does not change it.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from gateway.errors import LocalError

__all__ = [
    "NODE_UMASK",
    "PRIVATE_DIR_MODE",
    "PRIVATE_FILE_MODE",
    "exposure",
    "private_dir",
    "private_file",
    "write_private",
]

#: The umask of ``zvg node run``: nothing the process creates is accessible to group or others.
NODE_UMASK = 0o077
#: The data directory: only the node's user may list or enter it.
PRIVATE_DIR_MODE = 0o700
#: Every file in it: only the node's user may read or write it.
PRIVATE_FILE_MODE = 0o600
#: Mode bits that give group or others any access.
_GROUP_OTHER = 0o077


def private_dir(path: Path) -> None:
    """Create ``path`` (and missing parents) if needed; a directory this call creates is 0700.

    Parents it creates get the umask's mode (they are not the node's). An existing ``path`` is
    left as it is (see :func:`exposure`). Raises ``LocalError`` when it cannot be created."""
    if path.is_dir():
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):  # created meanwhile: leave it as it is
            path.mkdir(mode=PRIVATE_DIR_MODE)
            path.chmod(PRIVATE_DIR_MODE)  # mkdir's mode is narrowed by the umask; set it exactly
    except OSError as exc:
        raise LocalError(f"{path}: cannot create the directory ({exc.strerror})") from None


def private_file(path: Path) -> None:
    """Make sure ``path`` exists and has mode 0600 (creating it empty with that mode if missing).

    A plain file that is private already is not opened: closing any descriptor of a file drops
    every POSIX lock the process holds on it, SQLite's too. Without its lock on ``node.db-shm``
    a store open in this process looks gone to other processes, and the next one to open the
    database (``zvg audit verify``) resets the wal-index under the store's memory map: the
    store's writer thread dies of SIGBUS.

    Raises ``LocalError`` when it cannot, or when ``path`` is a symbolic link (the node's files
    are plain files; a link could point the mode change at another file)."""
    with contextlib.suppress(FileNotFoundError):
        st = path.lstat()
        if stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == PRIVATE_FILE_MODE:
            return
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW, PRIVATE_FILE_MODE)
    except OSError as exc:
        raise LocalError(f"{path}: cannot create or open the file ({exc.strerror})") from None
    try:
        os.fchmod(fd, PRIVATE_FILE_MODE)
    finally:
        os.close(fd)


def write_private(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically and durably: a new 0600 file, fsynced, renamed
    over it, then the folder fsynced, so that after a crash ``path`` holds the old or the new
    bytes, and the new ones once this returns."""
    tmp = path.with_name(path.name + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()  # left by a crash; it may have another mode
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, PRIVATE_FILE_MODE)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), PRIVATE_FILE_MODE)
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
    folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def exposure(data_dir: Path, setting: str = "node.data_dir") -> list[str]:
    """One line per entry that group or others may access: ``data_dir`` itself and what is
    directly in it. Empty when all is private or ``data_dir`` does not exist yet."""
    lines: list[str] = []
    try:
        entries = [data_dir, *sorted(data_dir.iterdir())]
    except OSError:
        return lines
    for entry in entries:
        try:
            st = entry.lstat()
        except OSError:
            continue
        mode = stat.S_IMODE(st.st_mode)
        if stat.S_ISLNK(st.st_mode) or not mode & _GROUP_OTHER:
            continue
        fix = PRIVATE_DIR_MODE if stat.S_ISDIR(st.st_mode) else PRIVATE_FILE_MODE
        lines.append(
            f"{setting}: {entry} is accessible to group or others (mode {mode:04o}); "
            f"run: chmod {fix:o} {entry}"
        )
    return lines
