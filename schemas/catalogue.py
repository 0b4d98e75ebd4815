"""The purpose catalogue: purposes, roles, data categories, legal bases and programme tags, as data.

The catalogue is versioned JSON (``schemas/catalogue.json`` is the packaged default) so the
federation can add a purpose or a legal basis without a code change: :func:`load_catalogue` reads
any catalogue file, and the federation directory pins the version its nodes must use. Every entry
has a Dutch name (``name_nl``) and an English description (``description_en``). How versions
change is written down in ``docs/decisions/0002-catalogue-versioning.md``.

Rules the loader enforces (a broken catalogue is a :class:`~gateway.errors.LocalError` for the
node, a ``ValueError`` here): codes are unique per kind, purposes only name known message types
and data categories, every purpose allows ``receipt``, and the version is semantic (``X.Y.Z``).
"""

from __future__ import annotations

from functools import cache, cached_property
from pathlib import Path
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "DEFAULT_CATALOGUE_PATH",
    "MESSAGE_TYPES",
    "Catalogue",
    "CatalogueEntry",
    "DataCategory",
    "LegalBasis",
    "MessageType",
    "Programme",
    "Purpose",
    "Role",
    "default_catalogue",
    "load_catalogue",
]

#: The message types (docs/architecture.md §5.3). A new type needs a new body model, so this
#: is code.
MessageType = Literal[
    "case.referral",
    "case.status",
    "info.request",
    "info.response",
    "risk.signal",
    "meeting.invitation",
    "plan.task",
    "case.handover",
    "case.closure",
    "rights.notice",
    "receipt",
    "rights.request",
    "rights.response",
]
MESSAGE_TYPES: tuple[str, ...] = get_args(MessageType)

DEFAULT_CATALOGUE_PATH = Path(__file__).with_name("catalogue.json")

_CODE = r"^[A-Z][A-Z0-9_]{0,31}(\.[A-Z][A-Z0-9_]{0,31})?$"
FlagName = Literal["art9", "art10", "police_data"]


class _Entry(BaseModel):
    model_config = ConfigDict(strict=True, frozen=True, extra="forbid")


class CatalogueEntry(_Entry):
    """Fields every catalogue entry has."""

    code: str = Field(pattern=_CODE)
    name_nl: str = Field(min_length=1, max_length=200)
    description_en: str = Field(min_length=1, max_length=500)


class Purpose(CatalogueEntry):
    """A purpose (doel): which message types may carry it and which data categories it can ever
    allow (the ceiling; the directory's policy narrows it per sender and recipient)."""

    message_types: tuple[MessageType, ...] = Field(min_length=1)
    data_categories: tuple[str, ...]
    emergency: bool


class Role(CatalogueEntry):
    """A partner role. ``professional_secrecy``: its professionals have a beroepsgeheim."""

    professional_secrecy: bool


class DataCategory(CatalogueEntry):
    """A data category. ``implies_flag``: the claims flag that must be set when it is present."""

    identifying: bool
    implies_flag: FlagName | None


class LegalBasis(CatalogueEntry):
    """A legal-basis code. ``discloses_professional_secret``: may lift a beroepsgeheim."""

    discloses_professional_secret: bool


class Programme(CatalogueEntry):
    """A programme tag (thematic approach) a message may carry."""


class Catalogue(_Entry):
    """One version of the catalogue. Look codes up with the ``*_by_code`` mappings."""

    catalogue: Literal["zvg-catalogue"]
    version: str = Field(pattern=r"^[0-9]{1,4}\.[0-9]{1,4}\.[0-9]{1,4}$")
    published: str = Field(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
    note_en: str = Field(max_length=1000)
    purposes: tuple[Purpose, ...] = Field(min_length=1)
    roles: tuple[Role, ...] = Field(min_length=1)
    data_categories: tuple[DataCategory, ...] = Field(min_length=1)
    legal_bases: tuple[LegalBasis, ...] = Field(min_length=1)
    programmes: tuple[Programme, ...]

    @model_validator(mode="after")
    def _consistent(self) -> Catalogue:
        for kind in ("purposes", "roles", "data_categories", "legal_bases", "programmes"):
            codes = [e.code for e in getattr(self, kind)]
            dupes = sorted({c for c in codes if codes.count(c) > 1})
            if dupes:
                raise ValueError(f"{kind}: duplicate codes {dupes}")
        known = {c.code for c in self.data_categories}
        for p in self.purposes:
            unknown = sorted(set(p.data_categories) - known)
            if unknown:
                raise ValueError(f"purposes.{p.code}.data_categories: unknown {unknown}")
            if "receipt" not in p.message_types:
                raise ValueError(f"purposes.{p.code}.message_types: must include 'receipt'")
        return self

    @cached_property
    def purpose_by_code(self) -> dict[str, Purpose]:
        return {p.code: p for p in self.purposes}

    @cached_property
    def role_by_code(self) -> dict[str, Role]:
        return {r.code: r for r in self.roles}

    @cached_property
    def category_by_code(self) -> dict[str, DataCategory]:
        return {c.code: c for c in self.data_categories}

    @cached_property
    def implied_flags(self) -> tuple[tuple[str, FlagName], ...]:
        """(category code, flag) for every category that implies a claims flag, in order."""
        return tuple(
            (c.code, c.implies_flag) for c in self.data_categories if c.implies_flag is not None
        )

    @cached_property
    def legal_basis_by_code(self) -> dict[str, LegalBasis]:
        return {b.code: b for b in self.legal_bases}

    @cached_property
    def programme_codes(self) -> frozenset[str]:
        return frozenset(p.code for p in self.programmes)


def load_catalogue(path: Path | str | None = None) -> Catalogue:
    """Read and validate a catalogue file (default: the packaged ``catalogue.json``).

    Raises ``OSError`` when the file cannot be read and ``pydantic.ValidationError`` when it is
    not a valid catalogue.
    """
    source = Path(path) if path is not None else DEFAULT_CATALOGUE_PATH
    return Catalogue.model_validate_json(source.read_bytes())


@cache
def default_catalogue() -> Catalogue:
    """The packaged catalogue, loaded once."""
    return load_catalogue()
