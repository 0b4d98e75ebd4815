"""Partner-side connectors: the async client for a node's local API and one adapter per kind of
partner system (docs/architecture.md §11). Adapters depend on ``schemas/`` and the node's HTTP
API only, never on ``gateway`` (a test enforces it).

- :mod:`zvg_client.client` — ``NodeClient``: send (idempotent, retried), status, inbox (long-poll
  and server-sent events), ack and reject, typed errors.
- :mod:`adapters.folder` — files in, files out (legacy systems; police and OM examples).
- :mod:`adapters.webhook` — signed HTTPS pushes out, an HTTP endpoint in (Veilig Thuis example).
- :mod:`adapters.fhir` — FHIR R4 EHRs (GGZ).
- :mod:`adapters.zgw` — VNG Zaken API case systems (gemeente, ZVH).

Each runs as ``zvg adapter NAME --config FILE``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType

__all__ = ["ADAPTERS"]


def _module(name: str) -> Callable[[], ModuleType]:
    return lambda: importlib.import_module(f"adapters.{name}")


#: Adapter name → its module (imported on use), each with ``load(path)`` and
#: ``async run(path, stop)``.
ADAPTERS: dict[str, Callable[[], ModuleType]] = {
    name: _module(name) for name in ("folder", "webhook", "fhir", "zgw")
}
