"""``[store]`` of node.toml: where the node's state lives (SQLite or PostgreSQL) and, on
PostgreSQL with several processes, how long an outbox claim lasts (docs/ops.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator
from pydantic_core import PydanticCustomError

__all__ = ["StoreSettings"]


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class StoreSettings(_Settings):
    url: Annotated[str, StringConstraints(pattern=r"^postgres(ql)?://")] | None = None
    """Where the node's state lives: unset (the default) for the SQLite file ``node.db`` in
    ``node.data_dir``, or a ``postgresql://user@host/db`` URL for a PostgreSQL database
    (decision 0094; create its schema with ``zvg node migrate``). Put a password in
    ``PGPASSFILE``, not here."""
    url_file: Path | None = None
    """Instead of ``url``: a 0600 file holding that URL on one line, password allowed (a
    Kubernetes Secret, a database operator's ``uri``; decision 0112). Read at start-up."""
    claim_seconds: Annotated[float, Field(ge=1, le=3600)] = 30.0
    """PostgreSQL, several processes (decision 0109): how long a process's claim on an outbox
    entry it publishes lasts; each outbox scan of a live process renews it. When a process dies,
    the others publish what it had claimed once this has passed. Shorter: a dead process's
    messages go out sooner; keep it well above ``limits.outbox_retry_seconds`` and a publish's
    usual time, or a slow but live process's messages are published twice (the recipient's
    node drops the copy)."""

    @model_validator(mode="after")
    def _one_source(self) -> StoreSettings:
        if self.url is not None and self.url_file is not None:
            raise PydanticCustomError("store_url", "give url or url_file, not both")
        return self
