"""Where a node keeps the state of inzageverzoeken (docs/subject-rights.md): one private JSON
file per request in ``<data_dir>/rights/`` (docs/decisions/0105).

- ``requests/<request_id>.json`` (the ZVH): the request, its term, the identity check, and per
  organisation its latest answer — the report is computed from it on view.
- ``deferrals/<request message id>.json`` (a partner that defers): what it needs to answer when
  an officer releases the deferral — the pseudonyms it searched, never the BSN.

Files are written atomically with mode ``0600`` in a ``0700`` directory (decision 0047); they
hold personal data (pseudonyms, and in a report the exchanges about the person).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

from gateway.errors import LocalError
from gateway.node.datadir import private_dir, write_private

__all__ = ["RightsBook"]

Kind = Literal["requests", "deferrals"]

_NAME = re.compile(r"^[0-9a-f-]{36}$")


class RightsBook:
    """The request and deferral files of one node."""

    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir / "rights"

    def _path(self, kind: Kind, key: str) -> Path:
        if not _NAME.fullmatch(key):
            raise LocalError("not a request id or message id")
        return self.root / kind / f"{key}.json"

    def save(self, kind: Kind, key: str, doc: dict[str, Any]) -> None:
        path = self._path(kind, key)
        private_dir(self.root)
        private_dir(path.parent)
        write_private(path, json.dumps(doc, indent=1, sort_keys=True).encode("utf-8"))

    def load(self, kind: Kind, key: str) -> dict[str, Any] | None:
        path = self._path(kind, key)
        try:
            doc: dict[str, Any] = json.loads(path.read_text("utf-8"))
        except FileNotFoundError:
            return None
        return doc

    def all(self, kind: Kind) -> list[dict[str, Any]]:
        folder = self.root / kind
        if not folder.is_dir():
            return []
        return [json.loads(p.read_text("utf-8")) for p in sorted(folder.glob("*.json"))]
