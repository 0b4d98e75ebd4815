"""Parts shared by several message bodies, and the markers that tie body fields to data categories.

A body field that carries personal data is annotated with :class:`Carries` naming its data
category (``Annotated[RiskAssessment | None, Carries("RISICO")]``). The claims validator walks the
body with :func:`categories_used` and refuses a message whose body uses a category it did not
declare, so the declared categories — which the policy checks and the audit log records — are
always a true account of what the message holds.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from functools import cache
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    Field,
    GetJsonSchemaHandler,
    StringConstraints,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from schemas import ids, limits
from schemas._base import (
    FreeText,
    Oin,
    RoleCode,
    ShortText,
    SubjectRef,
    Wire,
    rule_error,
)

__all__ = [
    "Address",
    "Carries",
    "HealthSummary",
    "HouseholdMember",
    "Involvement",
    "JusticeInfo",
    "LifeDomain",
    "OrgRef",
    "PersonIdentification",
    "PoliceIncident",
    "ProfessionalContact",
    "RiskAssessment",
    "RiskKind",
    "categories_used",
    "iter_strings",
    "subject_refs_used",
]


@dataclass(frozen=True)
class Carries:
    """Field marker: a non-empty value in this field means the message holds ``category``.

    The generated JSON Schema shows it as ``"x-zvg-category"`` on the field.
    """

    category: str

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        schema["x-zvg-category"] = self.category
        return schema


@dataclass(frozen=True)
class _IsSubjectRef:
    """Field marker: this field references a data subject (must be listed in claims.subjects)."""


IS_SUBJECT_REF = _IsSubjectRef()

Items = Field(max_length=limits.MAX_LIST_ITEMS)


def _present(value: Any) -> bool:
    return value is not None and value not in ((), "")


@cache
def _fields(cls: type[BaseModel]) -> tuple[tuple[str, str | None, bool], ...]:
    """Per model class: (field name, category it carries, whether it is a subject reference)."""
    plan = []
    for name, info in cls.model_fields.items():
        carries = next((m.category for m in info.metadata if isinstance(m, Carries)), None)
        plan.append((name, carries, IS_SUBJECT_REF in info.metadata))
    return tuple(plan)


def _walk(
    model: BaseModel, path: tuple[str | int, ...]
) -> Iterator[tuple[tuple[str | int, ...], str | None, bool, Any]]:
    for name, carries, is_ref in _fields(type(model)):
        value = getattr(model, name)
        here = (*path, name)
        yield here, carries, is_ref, value
        if isinstance(value, BaseModel):
            yield from _walk(value, here)
        elif isinstance(value, tuple):
            for i, item in enumerate(value):
                if isinstance(item, BaseModel):
                    yield from _walk(item, (*here, i))


def categories_used(body: BaseModel) -> dict[str, tuple[str | int, ...]]:
    """Each data category the body holds, with the path of the first field that holds it.

    Only a body's own fields carry categories (nested parts inherit their field's category)."""
    used: dict[str, tuple[str | int, ...]] = {}
    for name, carries, _is_ref in _fields(type(body)):
        if carries is not None and _present(getattr(body, name)):
            used.setdefault(carries, ("body", name))
    return used


def subject_refs_used(body: BaseModel) -> dict[str, tuple[str | int, ...]]:
    """Each subject reference the body mentions, with the path where it is mentioned.

    Subjects are referenced only by household members (``HouseholdMember.subject_ref``), which
    bodies hold in their ``household`` field; a test keeps that true for every body model."""
    refs: dict[str, tuple[str | int, ...]] = {}
    for i, member in enumerate(getattr(body, "household", ())):
        refs.setdefault(member.subject_ref, ("body", "household", i, "subject_ref"))
    return refs


def iter_strings(
    model: BaseModel, path: tuple[str | int, ...] = ()
) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Every string value in a model tree with its path (for the BSN scan)."""
    for here, _carries, _is_ref, value in _walk(model, path):
        items = value if isinstance(value, tuple) else (value,)
        for i, item in enumerate(items):
            if isinstance(item, str):
                yield ((*here, i) if isinstance(value, tuple) else here), item


# ---------------------------------------------------------------- organisations and people


class OrgRef(Wire):
    """An organisation in a given role (the same OIN can act as ZVH and as GEM)."""

    org: Oin
    role: RoleCode


class ProfessionalContact(Wire):
    """A professional to contact (category CONTACT_PROF): never the data subject."""

    name: ShortText
    function: ShortText
    unit: ShortText | None = None
    phone: Annotated[str, StringConstraints(pattern=r"^\+?[0-9 ()-]{6,20}$")] | None = None
    email: Annotated[str, StringConstraints(pattern=r"^[^@\s]{1,64}@[^@\s]{1,190}$")] | None = None


class Address(Wire):
    """A Dutch address (category ID_DIRECT when it is the data subject's)."""

    street: ShortText
    house_number: Annotated[int, Field(ge=1, le=99999)]
    house_number_addition: (
        Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9 -]{1,6}$")] | None
    ) = None
    postcode: Annotated[str, StringConstraints(pattern=r"^[1-9][0-9]{3} ?[A-Z]{2}$")]
    city: ShortText


class PersonIdentification(Wire):
    """Directly identifying data of the data subject (category ID_DIRECT).

    The only place in a message where a BSN may appear. Either a BSN, or a surname with a birth
    date, must be given, so the receiving partner can look the person up.
    """

    bsn: Annotated[str, StringConstraints(pattern=r"^[0-9]{9}$")] | None = None
    given_names: ShortText | None = None
    surname_prefix: (
        Annotated[str, StringConstraints(max_length=20, pattern=r"^[a-z' ]+$")] | None
    ) = None
    surname: ShortText | None = None
    birth_date: date | None = None
    address: Address | None = None

    @model_validator(mode="after")
    def _identifies(self) -> PersonIdentification:
        if self.bsn is not None and not ids.is_bsn(self.bsn):
            raise rule_error(("bsn",), "is not a valid BSN (11-proef)")
        if self.bsn is None and (self.surname is None or self.birth_date is None):
            raise rule_error(("bsn",), "give a BSN, or a surname and a birth_date")
        return self


class HouseholdMember(Wire):
    """A member of the household or family system, as a pseudonymous reference (SYSTEEM)."""

    subject_ref: Annotated[SubjectRef, IS_SUBJECT_REF]
    relation: Literal["partner", "ex_partner", "child", "parent", "sibling", "other"]
    minor: bool
    lives_with_betrokkene: bool


LifeDomainCode = Literal[
    "mental_health",
    "physical_health",
    "addiction",
    "housing",
    "finances",
    "daytime_activities",
    "social_network",
    "domestic_relations",
    "parenting",
    "justice",
    "safety",
    "daily_living",
]
Severity = Literal["none", "mild", "moderate", "severe", "acute"]


class LifeDomain(Wire):
    """A leefgebied with its severity (LEEFGEBIEDEN)."""

    domain: LifeDomainCode
    severity: Severity
    note: FreeText | None = None


RiskKind = Literal[
    "self_harm",
    "suicide",
    "violence_to_others",
    "threats",
    "domestic_violence",
    "child_abuse",
    "neglect",
    "serious_nuisance",
    "radicalisation",
    "exploitation",
]
RiskLevel = Literal["low", "elevated", "high", "acute"]


class RiskAssessment(Wire):
    """A risk assessment (RISICO)."""

    level: RiskLevel
    kinds: Annotated[tuple[RiskKind, ...], Field(min_length=1, max_length=len(RiskKind.__args__))]
    summary: FreeText | None = None
    assessed_at: AwareDatetime | None = None


class Involvement(Wire):
    """How a partner is or was involved with the person (BETROKKENHEID): hit/no-hit detail."""

    kind: Literal[
        "in_care",
        "former_care",
        "reports",
        "pending_case",
        "supervision",
        "support",
        "other",
    ]
    active: bool
    since: date | None = None
    until: date | None = None
    summary: ShortText | None = None


class HealthSummary(Wire):
    """Health information (GEZONDHEID, GDPR art. 9): a professional's summary, never a file."""

    summary: FreeText
    care_history: FreeText | None = None


class JusticeInfo(Wire):
    """Criminal-law information (JUSTITIEEL, GDPR art. 10)."""

    kind: Literal[
        "pending_case",
        "conditional_sentence",
        "probation_supervision",
        "detention",
        "other",
    ]
    summary: FreeText
    conditions: Annotated[tuple[ShortText, ...], Items] = ()
    until: date | None = None


class PoliceIncident(Wire):
    """A police registration (POLITIE, Wpg)."""

    occurred_on: date
    kind: Literal[
        "nuisance",
        "threat",
        "violence",
        "confused_behaviour",
        "domestic_violence",
        "missing_person",
        "other",
    ]
    summary: FreeText | None = None
