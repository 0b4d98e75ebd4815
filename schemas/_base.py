"""Building blocks shared by every contract model: the closed wire base class and typed fields.

Every model that crosses an organisation's boundary derives from :class:`Wire`: frozen, strict,
``extra="forbid"``, and with input values hidden from error messages (an error about a body field
must never echo personal data into a log).

Fields that name a catalogue code (purpose, role, category, legal basis, programme) are checked
against the catalogue passed in the validation context (``context={"catalogue": c}``), or the
packaged default catalogue when none is given. Their JSON Schema lists the default catalogue's
codes as an enum.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from schemas import ids, limits
from schemas.catalogue import Catalogue, default_catalogue

__all__ = [
    "CaseRef",
    "CategoryCode",
    "FreeText",
    "LegalBasisCode",
    "NodeId",
    "Oin",
    "ProgrammeCode",
    "PurposeCode",
    "RoleCode",
    "ShortText",
    "SubjectRef",
    "TraceParent",
    "Uuid",
    "Uuid7",
    "Wire",
    "WireTime",
    "catalogue_of",
    "describe_errors",
    "rule_error",
]


class Wire(BaseModel):
    """Base of every contract model: frozen, strict, closed, and silent about input values."""

    model_config = ConfigDict(
        strict=True,
        frozen=True,
        extra="forbid",
        hide_input_in_errors=True,
        validate_default=False,
        use_attribute_docstrings=True,
    )


def catalogue_of(info: ValidationInfo) -> Catalogue:
    """The catalogue to validate against: the one in the validation context, else the default."""
    ctx = info.context
    if isinstance(ctx, dict):
        cat = ctx.get("catalogue")
        if isinstance(cat, Catalogue):
            return cat
    return default_catalogue()


def describe_errors(error: ValidationError) -> str:
    """One line per problem, ``field.path: message``, joined by ``; `` — never the values."""
    parts = []
    for e in error.errors(include_input=False, include_url=False):
        where = ".".join(str(p) for p in e["loc"]) or "(document)"
        parts.append(f"{where}: {e['msg']}")
    return "; ".join(parts)


def rule_error(loc: tuple[str | int, ...], message: str, kind: str = "zvg_rule") -> ValidationError:
    """A ``ValidationError`` located at ``loc`` for a cross-field rule (raise it from a validator).

    The message must name the rule, never echo a value that could be personal data.
    """
    return ValidationError.from_exception_data(
        "zvg",
        [InitErrorDetails(type=PydanticCustomError(kind, message), loc=loc, input=None)],
    )


def _code_check(kind: str, codes_of: Callable[[Catalogue], Any]) -> AfterValidator:
    def check(value: str, info: ValidationInfo) -> str:
        cat = catalogue_of(info)
        if value not in codes_of(cat):
            raise PydanticCustomError(
                "zvg_unknown_code",
                "unknown {kind} code '{code}' (catalogue {version})",
                {"kind": kind, "code": value, "version": cat.version},
            )
        return value

    return AfterValidator(check)


def _code_schema(kind: str, codes_of: Callable[[Catalogue], Any]) -> WithJsonSchema:
    codes = sorted(codes_of(default_catalogue()))
    return WithJsonSchema(
        {"type": "string", "enum": codes, "description": f"A {kind} code from the catalogue."}
    )


def _purposes(c: Catalogue) -> Any:
    return c.purpose_by_code


def _roles(c: Catalogue) -> Any:
    return c.role_by_code


def _categories(c: Catalogue) -> Any:
    return c.category_by_code


def _legal_bases(c: Catalogue) -> Any:
    return c.legal_basis_by_code


def _programmes(c: Catalogue) -> Any:
    return c.programme_codes


PurposeCode = Annotated[str, _code_check("purpose", _purposes), _code_schema("purpose", _purposes)]
RoleCode = Annotated[str, _code_check("role", _roles), _code_schema("role", _roles)]
CategoryCode = Annotated[
    str, _code_check("data category", _categories), _code_schema("data category", _categories)
]
LegalBasisCode = Annotated[
    str, _code_check("legal basis", _legal_bases), _code_schema("legal basis", _legal_bases)
]
ProgrammeCode = Annotated[
    str, _code_check("programme", _programmes), _code_schema("programme", _programmes)
]


def _uuid7(value: str) -> str:
    if not ids.is_uuid7(value):
        raise PydanticCustomError("zvg_uuid7", "must be a lower-case UUIDv7 (RFC 9562)")
    return value


def _traceparent(value: str) -> str:
    if not ids.is_traceparent(value):
        raise PydanticCustomError(
            "zvg_traceparent", "must be a W3C traceparent '00-<32 hex>-<16 hex>-<2 hex>', non-zero"
        )
    return value


def _whole_utc_seconds(value: datetime) -> datetime:
    offset = value.utcoffset()
    if offset is None or offset.total_seconds() != 0 or value.microsecond:
        raise PydanticCustomError(
            "zvg_wire_time", "must be UTC ('Z') with whole seconds, e.g. 2026-03-02T09:15:00Z"
        )
    return value


#: 20-digit Dutch government organisation identifier.
Oin = Annotated[str, StringConstraints(pattern=r"^[0-9]{20}$")]
#: A node of an organisation (one org may run several).
NodeId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]
#: Message id: lower-case UUIDv7.
Uuid7 = Annotated[
    str,
    StringConstraints(
        pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"
    ),
    AfterValidator(_uuid7),
]
#: Any lower-case UUID (meeting and task ids chosen by a partner system).
Uuid = Annotated[
    str,
    StringConstraints(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"),
]
#: W3C Trace Context traceparent.
TraceParent = Annotated[
    str,
    StringConstraints(pattern=r"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"),
    AfterValidator(_traceparent),
]
#: A random case reference chosen by the ZVH; never a BSN (checked on the whole claims).
CaseRef = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{2,63}$")]
#: A pseudonymous data-subject reference (no names, no BSN).
SubjectRef = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{11,63}$")]
#: Times in the signed claims: UTC, whole seconds (so they equal the JOSE NumericDates).
WireTime = Annotated[AwareDatetime, AfterValidator(_whole_utc_seconds)]

# Text: printable (no control characters except newline and tab in free text), bounded.
FreeText = Annotated[
    str,
    StringConstraints(
        min_length=1,
        max_length=limits.MAX_FREE_TEXT_CHARS,
        pattern=r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$",
    ),
]
ShortText = Annotated[
    str,
    StringConstraints(
        min_length=1, max_length=limits.MAX_SHORT_TEXT_CHARS, pattern=r"^[^\x00-\x1f\x7f]*$"
    ),
]
