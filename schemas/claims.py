"""The message claims (docs/contract.md): what a sending node signs, and the cross-field rules.

``MessageClaims`` is a union of models discriminated by ``message_type``, one per message type,
each with its typed body. All derive from :class:`ClaimsBase`. Parse untrusted bytes with
:func:`parse_claims` (strict JSON; raises ``pydantic.ValidationError``, whose ``errors()`` name
the field of every broken rule and never echo input values); serialise with
:func:`claims_to_json` (the exact bytes that get signed).

Rules enforced on top of the field shapes, each error located at the field it is about:

- ``created_at`` < ``expires_at`` ≤ ``created_at`` + :data:`~schemas.limits.MAX_MESSAGE_LIFETIME`;
- the message type is allowed for the purpose (catalogue); ``bekendheid`` requests and
  known/not-known answers only under ``ZVH.BEKENDHEID``, content requests and answers only under
  content purposes;
- recipients are unique, and the sender (org and role) is not one of them;
- flags agree with data categories: ``art9`` ⇔ GEZONDHEID, ``art10`` ⇔ JUSTITIEEL,
  ``police_data`` ⇔ POLITIE, ``minors`` ⇔ a subject is a minor; ``emergency`` only under a purpose
  that allows it; ``professional_secrecy`` needs a legal basis that may lift it, and is required
  when a sender role bound by beroepsgeheim shares health data;
- the body uses only declared data categories; subjects need ID_PSEUDO; every subject the body
  references is listed in ``subjects`` with the same minor status;
- identifying data only inside ``body``: a BSN-shaped value (nine digits passing the 11-proef)
  anywhere else — and anywhere in the body but ``identification.bsn`` — is refused;
- answers (``info.response``, ``receipt``) name the message they answer in ``in_reply_to``; a
  receipt carries no data categories or subjects; a meeting invites only recipients.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, TypeAdapter, ValidationInfo, model_validator

from schemas import ids, limits, strictjson
from schemas._base import (
    CaseRef,
    CategoryCode,
    LegalBasisCode,
    NodeId,
    Oin,
    ProgrammeCode,
    PurposeCode,
    RoleCode,
    SubjectRef,
    TraceParent,
    Uuid7,
    Wire,
    WireTime,
    catalogue_of,
    rule_error,
)
from schemas.bodies import (
    CaseStatusBody,
    ClosureBody,
    HandoverBody,
    InfoRequestBody,
    InfoResponseBody,
    MeetingInvitationBody,
    PlanTaskBody,
    ReceiptBatchBody,
    ReceiptBodies,
    ReceiptBody,
    ReferralBody,
    RightsNoticeBody,
    RiskSignalBody,
)
from schemas.catalogue import Catalogue, MessageType
from schemas.common import OrgRef, categories_used, iter_strings, subject_refs_used
from schemas.rights import RightsRequestBody, RightsResponseBody

__all__ = [
    "SPEC_VERSION",
    "CaseClosure",
    "CaseHandover",
    "CaseReferral",
    "CaseStatus",
    "ClaimsBase",
    "Flags",
    "InfoRequest",
    "InfoResponse",
    "LogAnchor",
    "MeetingInvitation",
    "MessageClaims",
    "PlanTask",
    "Receipt",
    "RightsNotice",
    "RightsRequest",
    "RightsResponse",
    "RiskSignal",
    "Sender",
    "Subject",
    "claims_to_json",
    "parse_claims",
]

SPEC_VERSION = "zvg/1"

#: Purposes under which content (beyond hit/no-hit) is requested and given.
_CONTENT_PURPOSES = frozenset({"ZVH.INFORMATIE", "ZVH.VERANTWOORDING"})
_BEKENDHEID = "ZVH.BEKENDHEID"


class Sender(Wire):
    """The sending organisation, the node that sealed the message, and the role it acts in."""

    org: Oin
    node: NodeId
    role: RoleCode


class Flags(Wire):
    """Markers a receiver and an auditor see at a glance; they must agree with the categories."""

    art9: bool = False
    """Special-category data (GDPR art. 9) — set exactly when GEZONDHEID is declared."""
    art10: bool = False
    """Criminal-law data (GDPR art. 10) — set exactly when JUSTITIEEL is declared."""
    police_data: bool = False
    """Police data under the Wpg — set exactly when POLITIE is declared."""
    professional_secrecy: bool = False
    """Covered by a beroepsgeheim; needs a legal basis that may lift it."""
    minors: bool = False
    """A subject is a minor — set exactly when a subject has ``minor: true``."""
    emergency: bool = False
    """Acute danger; only under a purpose that allows emergencies (ZVH.RISICO)."""


class Subject(Wire):
    """A data subject of the message, by pseudonym only."""

    subject_ref: SubjectRef
    role: Literal["betrokkene", "household_member", "victim", "other"]
    minor: bool


class LogAnchor(Wire):
    """The sender's latest audit checkpoint (tree size and RFC 6962 root, base64), for gossip."""

    size: Annotated[int, Field(ge=0, lt=2**63)]
    root: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9+/]{43}=$")]


ProcessingActivity = Annotated[
    str,
    StringConstraints(
        max_length=300, pattern=r"^(https://[^\s/]+/[^\s]*|urn:[a-z0-9][a-z0-9-]{0,31}:[^\s]+)$"
    ),
]


class ClaimsBase(Wire):
    """Fields every message has (docs/contract.md). Use the per-type subclasses, via
    :data:`MessageClaims` / :func:`parse_claims`."""

    spec: Literal["zvg/1"]
    message_id: Uuid7
    message_type: MessageType
    created_at: WireTime
    expires_at: WireTime
    sender: Sender
    recipients: Annotated[tuple[OrgRef, ...], Field(min_length=1, max_length=limits.MAX_RECIPIENTS)]
    case_ref: CaseRef
    in_reply_to: Uuid7 | None = None
    correlation_id: Uuid7 | None = None
    purpose: PurposeCode
    programme: ProgrammeCode | None = None
    legal_basis: Annotated[tuple[LegalBasisCode, ...], Field(min_length=1, max_length=8)]
    processing_activity: ProcessingActivity
    data_categories: Annotated[tuple[CategoryCode, ...], Field(max_length=32)]
    flags: Flags
    subjects: Annotated[tuple[Subject, ...], Field(max_length=limits.MAX_SUBJECTS)] = ()
    trace: TraceParent
    log_anchor: LogAnchor | None = None
    body: Wire

    @model_validator(mode="after")
    def _contract_rules(self, info: ValidationInfo) -> ClaimsBase:
        cat = catalogue_of(info)
        _check_times(self)
        _check_purpose(self, cat)
        _check_parties(self)
        _check_categories_and_flags(self, cat)
        _check_subjects(self)
        ctx = info.context if isinstance(info.context, dict) else {}
        raw, parsed = ctx.get("raw"), ctx.get("parsed")
        if not isinstance(raw, bytes | str):
            # Built from Python values: the model's own JSON (the serializer never escapes a
            # digit) holds every string, so the same one-pass pre-check applies.
            raw, parsed = self.__pydantic_serializer__.to_json(self), None
        if not _bsn_runs_accounted_for(self, raw):
            _check_no_bsn(iter_strings(self) if parsed is None else _json_strings(parsed, ()))
        _check_type_specific(self)
        return self

    def recipient_orgs(self) -> tuple[str, ...]:
        """The distinct recipient organisations, in order (one envelope entry each)."""
        return tuple(dict.fromkeys(r.org for r in self.recipients))


def _check_times(c: ClaimsBase) -> None:
    if c.expires_at <= c.created_at:
        raise rule_error(("expires_at",), "must be later than created_at")
    if c.expires_at - c.created_at > limits.MAX_MESSAGE_LIFETIME:
        days = limits.MAX_MESSAGE_LIFETIME.days
        raise rule_error(("expires_at",), f"must be at most {days} days after created_at")


def _check_purpose(c: ClaimsBase, cat: Catalogue) -> None:
    purpose = cat.purpose_by_code[c.purpose]
    if c.message_type not in purpose.message_types:
        raise rule_error(
            ("message_type",),
            f"'{c.message_type}' is not allowed for purpose {c.purpose} "
            f"(allowed: {', '.join(purpose.message_types)})",
        )
    if isinstance(c.body, InfoRequestBody) and (
        (c.body.mode == "bekendheid") != (c.purpose == _BEKENDHEID)
    ):
        raise rule_error(
            ("body", "mode"), "mode 'bekendheid' goes with purpose ZVH.BEKENDHEID, and only it"
        )
    if isinstance(c.body, InfoResponseBody):
        d = c.body.disposition
        if c.purpose == _BEKENDHEID and d not in ("known", "not_known", "refused"):
            raise rule_error(
                ("body", "disposition"),
                f"'{d}' is a content answer; under ZVH.BEKENDHEID answer known/not_known/refused",
            )
        if c.purpose in _CONTENT_PURPOSES and d == "known":
            raise rule_error(
                ("body", "disposition"),
                f"'known' is a hit/no-hit answer; under {c.purpose} "
                "answer provided/partially_provided/not_known/refused",
            )


def _check_parties(c: ClaimsBase) -> None:
    seen: set[tuple[str, str]] = set()
    for i, r in enumerate(c.recipients):
        key = (r.org, r.role)
        if key in seen:
            raise rule_error(("recipients", i), "the same organisation and role are named twice")
        if key == (c.sender.org, c.sender.role):
            raise rule_error(("recipients", i), "the sender cannot be a recipient in the same role")
        seen.add(key)


def _check_categories_and_flags(c: ClaimsBase, cat: Catalogue) -> None:
    declared = set(c.data_categories)
    if len(declared) != len(c.data_categories):
        raise rule_error(("data_categories",), "a category is declared twice")
    flags = c.flags
    for code, implied in cat.implied_flags:
        if (code in declared) != getattr(flags, implied):
            raise rule_error(
                ("flags", implied),
                f"must be {str(code in declared).lower()}: it is set exactly when "
                f"data_categories declares {code}",
            )
    purpose = cat.purpose_by_code[c.purpose]
    if flags.emergency and not purpose.emergency:
        raise rule_error(
            ("flags", "emergency"), f"purpose {c.purpose} does not allow the emergency flag"
        )
    lifting = [b for b in c.legal_basis if cat.legal_basis_by_code[b].discloses_professional_secret]
    if flags.professional_secrecy and not lifting:
        raise rule_error(
            ("legal_basis",),
            "professional_secrecy is set, so a legal basis that may lift a beroepsgeheim is "
            "needed (e.g. WGS, CONSENT, CONFLICT_VAN_PLICHTEN, WMO_VT, WVGGZ)",
        )
    if (
        cat.role_by_code[c.sender.role].professional_secrecy
        and flags.art9
        and not flags.professional_secrecy
    ):
        raise rule_error(
            ("flags", "professional_secrecy"),
            f"must be true: role {c.sender.role} shares health data under a beroepsgeheim",
        )
    for category, path in categories_used(c.body).items():
        if category not in declared:
            raise rule_error(
                path, f"holds {category} data, but data_categories does not declare {category}"
            )


def _check_subjects(c: ClaimsBase) -> None:
    minor_of: dict[str, bool] = {}
    for i, s in enumerate(c.subjects):
        if s.subject_ref in minor_of:
            raise rule_error(("subjects", i, "subject_ref"), "the same subject is listed twice")
        minor_of[s.subject_ref] = s.minor
    if minor_of and "ID_PSEUDO" not in c.data_categories:
        raise rule_error(("data_categories",), "subjects are listed, so ID_PSEUDO must be declared")
    if c.flags.minors != any(minor_of.values()):
        raise rule_error(("flags", "minors"), "must be set exactly when a subject has minor: true")
    for ref, path in subject_refs_used(c.body).items():
        if ref not in minor_of:
            raise rule_error(path, "references a subject that is not listed in subjects")
    for path, value in _body_minor_flags(c.body):
        ref, minor = value
        if minor_of.get(ref) != minor:
            raise rule_error(path, "minor differs from the same subject in subjects")


def _body_minor_flags(body: Wire) -> list[tuple[tuple[str | int, ...], tuple[str, bool]]]:
    out: list[tuple[tuple[str | int, ...], tuple[str, bool]]] = []
    household = getattr(body, "household", ())
    for i, member in enumerate(household):
        out.append((("body", "household", i, "minor"), (member.subject_ref, member.minor)))
    return out


def _json_strings(
    value: Any, path: tuple[str | int, ...]
) -> list[tuple[tuple[str | int, ...], str]]:
    """Every string in decoded JSON with its path (faster than walking the models)."""
    out: list[tuple[tuple[str | int, ...], str]] = []
    stack: list[tuple[tuple[str | int, ...], Any]] = [(path, value)]
    while stack:
        here, item = stack.pop()
        if isinstance(item, str):
            out.append((here, item))
        elif isinstance(item, dict):
            stack.extend(((*here, k), v) for k, v in item.items())
        elif isinstance(item, list):
            stack.extend(((*here, i), v) for i, v in enumerate(item))
    out.reverse()
    return out


#: A JSON escape that decodes to an ASCII digit (``\u0030`` to ``\u0039``, either case).
_ESCAPED_DIGIT = re.compile(rb"\\u003[0-9]", re.IGNORECASE)


def _bsn_runs_accounted_for(c: ClaimsBase, raw: bytes | str) -> bool:
    """True when every BSN-shaped run in the raw JSON sits in a field allowed to hold it (the
    identification's ``bsn``, or an opaque id at the top level): then no field needs scanning.
    Counting runs is a single pass; the precise scan walks every string. JSON that spells a
    digit as an escape (``\u0031``) is never accounted for: its digit runs are not the decoded
    ones."""
    data = raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogatepass")
    if _ESCAPED_DIGIT.search(data):
        return False
    runs = ids.bsn_runs(data)
    if not runs:
        return True
    allowed: list[str] = []
    identification = getattr(c.body, "identification", None)
    if identification is not None and identification.bsn is not None:
        allowed.append(identification.bsn)
    for value in (c.message_id, c.in_reply_to, c.correlation_id, c.trace):
        if value is not None:
            allowed += ids.bsn_runs(value)
    return sorted(runs) == sorted(allowed)


def _check_no_bsn(strings: Iterable[tuple[tuple[str | int, ...], str]]) -> None:
    message = (
        "looks like a BSN (nine digits passing the 11-proef); a BSN may only appear in "
        "body.identification.bsn"
    )
    for path, value in strings:
        in_body = path[:1] == ("body",)
        if in_body and (
            path[-1] in ids.NOT_PERSONAL_BODY_FIELDS
            or path[-2:] == ("identification", ids.BSN_FIELD)
        ):
            continue
        if ids.find_bsn(value):
            raise rule_error(path, message)


def _check_type_specific(c: ClaimsBase) -> None:
    if c.message_type in ("info.response", "receipt", "rights.response") and c.in_reply_to is None:
        raise rule_error(("in_reply_to",), f"a {c.message_type} names the message it answers")
    if isinstance(c.body, ReceiptBody | ReceiptBatchBody):
        if c.data_categories or c.subjects:
            raise rule_error(
                ("data_categories",), "a receipt carries no data categories or subjects"
            )
        if isinstance(c.body, ReceiptBody) and c.in_reply_to != c.body.message_id:
            raise rule_error(("in_reply_to",), "must equal body.message_id")
        if isinstance(c.body, ReceiptBatchBody) and c.in_reply_to != c.body.entries[0].message_id:
            raise rule_error(("in_reply_to",), "must equal body.entries[0].message_id")
    if isinstance(c.body, RightsNoticeBody) and not c.subjects:
        raise rule_error(("subjects",), "a rights.notice names the person it is about")
    if isinstance(c.body, MeetingInvitationBody):
        invited = {(r.org, r.role) for r in c.recipients}
        for i, inv in enumerate(c.body.invitees):
            if (inv.org, inv.role) not in invited:
                raise rule_error(("body", "invitees", i), "is not a recipient of the invitation")


# ---------------------------------------------------------------- the message types


class CaseReferral(ClaimsBase):
    message_type: Literal["case.referral"]
    body: ReferralBody


class CaseStatus(ClaimsBase):
    message_type: Literal["case.status"]
    body: CaseStatusBody


class InfoRequest(ClaimsBase):
    message_type: Literal["info.request"]
    body: InfoRequestBody


class InfoResponse(ClaimsBase):
    message_type: Literal["info.response"]
    body: InfoResponseBody


class RiskSignal(ClaimsBase):
    message_type: Literal["risk.signal"]
    body: RiskSignalBody


class MeetingInvitation(ClaimsBase):
    message_type: Literal["meeting.invitation"]
    body: MeetingInvitationBody


class PlanTask(ClaimsBase):
    message_type: Literal["plan.task"]
    body: PlanTaskBody


class CaseHandover(ClaimsBase):
    message_type: Literal["case.handover"]
    body: HandoverBody


class CaseClosure(ClaimsBase):
    message_type: Literal["case.closure"]
    body: ClosureBody


class RightsNotice(ClaimsBase):
    message_type: Literal["rights.notice"]
    body: RightsNoticeBody


class Receipt(ClaimsBase):
    message_type: Literal["receipt"]
    body: ReceiptBodies


class RightsRequest(ClaimsBase):
    message_type: Literal["rights.request"]
    body: RightsRequestBody


class RightsResponse(ClaimsBase):
    message_type: Literal["rights.response"]
    body: RightsResponseBody


MessageClaims = Annotated[
    CaseReferral
    | CaseStatus
    | InfoRequest
    | InfoResponse
    | RiskSignal
    | MeetingInvitation
    | PlanTask
    | CaseHandover
    | CaseClosure
    | RightsNotice
    | RightsRequest
    | RightsResponse
    | Receipt,
    Field(discriminator="message_type"),
]

#: Message type → claims model.
CLAIMS_TYPES: dict[str, type[ClaimsBase]] = {
    m.model_fields["message_type"].annotation.__args__[0]: m  # type: ignore[union-attr]
    for m in (
        CaseReferral,
        CaseStatus,
        InfoRequest,
        InfoResponse,
        RiskSignal,
        MeetingInvitation,
        PlanTask,
        CaseHandover,
        CaseClosure,
        RightsNotice,
        Receipt,
        RightsRequest,
        RightsResponse,
    )
}

_ADAPTER: TypeAdapter[Any] = TypeAdapter(MessageClaims)


def parse_claims(data: bytes | str, *, catalogue: Catalogue | None = None) -> ClaimsBase:
    """Validate claims JSON against the contract (strict; all rules above).

    Raises ``pydantic.ValidationError``; its ``errors(include_input=False)`` locate each problem.
    JSON that :func:`schemas.strictjson.loads` refuses (duplicate keys, NaN, bad UTF-8, too deep)
    is refused here as a ``ValidationError`` of type ``zvg_json`` too.
    """
    try:
        parsed = strictjson.loads(data)
    except ValueError as exc:
        raise rule_error((), str(exc), "zvg_json") from None
    context: dict[str, Any] = {"raw": data, "parsed": parsed}
    if catalogue is not None:
        context["catalogue"] = catalogue
    claims: ClaimsBase = _ADAPTER.validate_json(data, context=context)
    return claims


def claims_to_json(claims: ClaimsBase) -> bytes:
    """The compact JSON bytes of ``claims`` (the bytes that get signed); ``None`` fields omitted.

    The bytes of ``model_dump_json(exclude_none=True)``, from the model's serializer directly
    (it writes bytes: no decoding to ``str`` and encoding back, on every seal).
    """
    return claims.__pydantic_serializer__.to_json(claims, exclude_none=True)
