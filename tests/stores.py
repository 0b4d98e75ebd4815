"""A test's own access to a node's SQLite store, done the way SQLite needs it in a process that
may hold the same store open in a running node.

``with sqlite3.connect(path) as db`` only commits: the connection stays open until it is garbage
collected. And copying a live store's files (``shutil.copytree``) gives a copy whose ``node.db``
and ``-wal`` are from different moments; closing the copier's descriptors also drops every POSIX
lock this process holds on those files, SQLite's included (https://www.sqlite.org/howtocorrupt.html
§2.2), after which the next process to open the database resets the wal-index under the running
node (a Bus error in its writer thread).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["connect", "snapshot"]


@contextmanager
def connect(path: Path) -> Iterator[sqlite3.Connection]:
    """A read-write connection to the store at ``path``: committed (or rolled back on an error)
    and closed when the block ends."""
    db = sqlite3.connect(path)
    try:
        with db:
            yield db
    finally:
        db.close()


def snapshot(source: Path, target: Path) -> None:
    """A consistent copy of the store at ``source`` (it may be live) as a new file ``target``,
    mode 0600 like the node's own, through SQLite's online backup."""
    target.touch(mode=0o600, exist_ok=False)
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    try:
        with connect(target) as dst:
            src.backup(dst)
    finally:
        src.close()
