"""``[rights]`` of node.toml: how this organisation answers an inzageverzoek
(docs/subject-rights.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.rights import DeferralGround

__all__ = ["RightsSettings"]


class RightsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    pseudonym_key_file: Path | None = None
    """A 0600 file with this organisation's subject pseudonym key (the adapters'
    ``pseudonym_key_file``): the node turns the BSN of an inzageverzoek into the pseudonym its
    records hold. Unset: ``console.pseudonym_key_file``; neither set, the node searches only the
    pseudonyms the ZVH names in the request."""
    defer: bool = False
    """Answer every inzageverzoek ``deferred`` (police, OM: art. 23 AVG, the Wpg or the Wjsg)
    until an officer releases it with ``zvg rights release``."""
    defer_ground: DeferralGround | None = None
    """The legal ground a deferral names: ``AVG_23``, ``WPG`` or ``WJSG``; required with
    ``defer``."""
    defer_review_days: Annotated[int, Field(ge=1, le=92)] = 28
    """Days after a deferral on which the organisation reviews it (the review date the answer
    names)."""

    @model_validator(mode="after")
    def _ground(self) -> RightsSettings:
        if self.defer and self.defer_ground is None:
            raise ValueError("rights.defer needs rights.defer_ground (AVG_23, WPG or WJSG)")
        return self
