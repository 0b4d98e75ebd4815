"""The inzageverzoeken of earlier versions: files in ``<data_dir>/rights/`` (decision 0105),
imported into the node's store once when the node starts (decision 0116).

Every request file (``requests/<request id>.json``) and deferral file
(``deferrals/<request message id>.json``) goes into the store in one commit; a row the store
holds already stays as it is (an import that runs again after a crash before the rename changes
nothing). Then the folder is renamed ``rights.imported``: kept, not deleted, until the operator
has checked the import and removes it (it holds personal data).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from gateway.node.contactpunt import keep_request
from gateway.node.store import Command, KeepDeferral, Store

__all__ = ["import_rights_files"]

log = logging.getLogger("gateway.node")


async def import_rights_files(data_dir: Path, store: Store) -> int:
    """Import ``data_dir``'s ``rights/`` folder, if there is one, and rename it; returns how many
    requests and deferrals it held."""
    folder = data_dir / "rights"
    if not folder.is_dir():
        return 0
    commands: list[Command] = [
        keep_request(json.loads(p.read_text("utf-8")))
        for p in sorted(folder.glob("requests/*.json"))
    ]
    for p in sorted(folder.glob("deferrals/*.json")):
        deferral = json.loads(p.read_text("utf-8"))
        commands.append(KeepDeferral(deferral["request_message_id"], json.dumps(deferral)))
    if commands:
        await store.commit(*commands)
    target = data_dir / "rights.imported"
    n = 1
    while target.exists():  # imported before, and a folder restored since
        n += 1
        target = data_dir / f"rights.imported.{n}"
    folder.rename(target)
    log.info(
        "imported %d inzageverzoek files into the store; %s kept as %s",
        len(commands),
        folder,
        target,
    )
    return len(commands)
