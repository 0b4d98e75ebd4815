"""Which directory a node trusts, across restarts (docs/decisions/0020-directory-trust.md).

The node remembers the last directory version it trusted in ``<data_dir>/trusted-directory.json``
and starts from it: ``directory.file`` must be that version or reachable from it by the update
rules (higher version, threshold of the remembered authority and of its own). So a restart never
rolls back, and swapping in another authority's directory file is refused. Without a remembered
version, ``directory.trust_anchor`` (if set) is the starting point, else ``directory.file`` is
trusted on first use (ops deliver it through a trusted channel).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from gateway.core.directory import TrustedDirectory
from gateway.errors import LocalError
from gateway.node.config import NodeConfig
from gateway.node.datadir import private_dir, write_private
from schemas.catalogue import Catalogue

__all__ = ["TRUSTED_FILE", "load_trusted_directory", "remember_directory"]

TRUSTED_FILE = "trusted-directory.json"


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise LocalError(f"{path}: cannot read ({exc.strerror})") from None


def load_trusted_directory(
    config: NodeConfig, catalogue: Catalogue, *, remember: bool = False
) -> TrustedDirectory:
    """The directory to run with (module docstring). With ``remember``, the result becomes the
    remembered version. Raises ``RemoteError`` (rollback, signatures, expiry) or ``LocalError``."""
    now = datetime.now(UTC)
    raw = _read(config.directory.file)
    remembered = config.node.data_dir / TRUSTED_FILE
    if remembered.exists():
        base = TrustedDirectory.first(
            _read(remembered), now=now, catalogue=catalogue, allow_expired=True
        )
    elif config.directory.trust_anchor is not None:
        base = TrustedDirectory.first(
            _read(config.directory.trust_anchor), now=now, catalogue=catalogue
        )
    else:
        base = None
    if base is None:
        trusted = TrustedDirectory.first(raw, now=now, catalogue=catalogue)
    elif base.raw == raw:
        trusted = base.require_not_expired(now)
    else:
        trusted = base.update(raw, now=now, catalogue=catalogue)
    if remember:
        remember_directory(config, trusted)
    return trusted


def remember_directory(config: NodeConfig, trusted: TrustedDirectory) -> None:
    """Write ``trusted`` as the remembered version (atomically, 0600)."""
    private_dir(config.node.data_dir)
    write_private(config.node.data_dir / TRUSTED_FILE, trusted.raw)
