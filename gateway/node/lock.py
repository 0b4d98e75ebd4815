"""One node process per data directory: an exclusive lock on ``<data_dir>/node.lock``.

A second process on the same data directory would open the same store and audit log: two
writers appending to one hash chain, two outbox loops publishing the same entries. So
:meth:`DataDirLock.acquire` comes first in a node's start-up, before anything in the data
directory is read or written, and refuses with one line naming the directory, the lock file and
the pid of the process that holds it.

What counts is the kernel's ``flock(LOCK_EX | LOCK_NB)`` on the open file, which the kernel drops
when the process ends however it ends (``kill -9`` included); the pid written into the file is
only for the message, so a file left behind by a killed process is no obstacle. The file is
``0600``, opened without following a symbolic link, and never deleted (deleting it would let a
third process lock a new file while the second still holds the old one). ``flock`` needs a local
file system; so does the SQLite store.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from dataclasses import dataclass
from pathlib import Path

from gateway.errors import LocalError
from gateway.node.datadir import private_dir

__all__ = ["LOCK_FILE", "DataDirLock"]

LOCK_FILE = "node.lock"
"""Name of the lock file in the data directory."""

_PID_BYTES = 32
"""How much of the lock file is read for the holder's pid."""


@dataclass
class DataDirLock:
    """A held lock; :meth:`release` it when the node has stopped (closing the store first)."""

    path: Path
    _fd: int | None

    @classmethod
    def acquire(cls, data_dir: Path) -> DataDirLock:
        """Take the data directory's lock (creating the directory, 0700, if needed). Raises
        :class:`LocalError` when another process holds it or the file cannot be used."""
        path = data_dir / LOCK_FILE
        try:
            private_dir(data_dir)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise LocalError(f"cannot open the lock file {path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise LocalError(
                f"data directory {data_dir} is in use by another node process ({holder}; "
                f"lock {path}): one process per data directory"
            ) from None
        except OSError as exc:
            os.close(fd)
            raise LocalError(f"cannot lock {path}: {exc.strerror}") from None
        try:
            os.fchmod(fd, 0o600)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        except OSError as exc:
            os.close(fd)
            raise LocalError(f"cannot write the lock file {path}: {exc.strerror}") from None
        return cls(path, fd)

    def release(self) -> None:
        """Let the next process in. Idempotent."""
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, _PID_BYTES, 0).decode("ascii", errors="replace").strip()
    except OSError:
        text = ""
    return f"pid {text}" if text.isdigit() else "pid unknown"
