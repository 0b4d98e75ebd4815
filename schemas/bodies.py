"""Typed bodies of the message types (docs/contract.md), as a ZVH procesregisseur and a
partner need them. A body exists only inside the encryption.

Fields holding personal data carry a :class:`~schemas.common.Carries` marker with their data
category; the claims validator checks that the message declares every category its body uses.
Rules within one body (e.g. a refusal needs a reason code) are enforced here, each error naming
its field; rules that need the claims (purpose, subjects, flags) live in :mod:`schemas.claims`.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import AwareDatetime, Discriminator, Field, Tag, model_validator

from schemas import limits
from schemas._base import CategoryCode, FreeText, ShortText, Uuid, Uuid7, Wire, rule_error
from schemas.common import (
    Carries,
    HealthSummary,
    HouseholdMember,
    Involvement,
    JusticeInfo,
    LifeDomain,
    OrgRef,
    PersonIdentification,
    PoliceIncident,
    ProfessionalContact,
    RiskAssessment,
    RiskKind,
)
from schemas.reasons import RejectReason
from schemas.rights import RightsRequestBody, RightsResponseBody

__all__ = [
    "BODY_TYPES",
    "CaseStatusBody",
    "ClosureBody",
    "HandoverBody",
    "InfoRequestBody",
    "InfoResponseBody",
    "LandelijkeCriteria",
    "MeetingInvitationBody",
    "PlanTaskBody",
    "ReceiptBatchBody",
    "ReceiptBodies",
    "ReceiptBody",
    "ReceiptEntry",
    "ReferralBody",
    "RightsNoticeBody",
    "RiskSignalBody",
]

_items = Field(max_length=limits.MAX_LIST_ITEMS)


def _items_min1() -> object:
    return Field(min_length=1, max_length=limits.MAX_LIST_ITEMS)


# ---------------------------------------------------------------- case.referral


class LandelijkeCriteria(Wire):
    """The four landelijke criteria for complexe casuistiek.

    A case qualifies when 1 and 2 and 3 hold, or when 4 holds; the ZVH decides at screening.
    """

    multiple_life_domains: bool
    """1. Problems on more than one leefgebied leading to crime, nuisance or further decline."""
    multi_chain_cooperation: bool
    """2. Several chains must cooperate (at least dwang en drang); one chain cannot solve it."""
    system_impact: bool
    """3. The problems affect the (family) system and/or the direct social surroundings."""
    local_safety_problem: bool
    """4. Serious local or area-bound safety problems that need a cross-chain approach."""

    @property
    def met(self) -> bool:
        """True when the criteria are met ((1 and 2 and 3) or 4)."""
        return (
            self.multiple_life_domains and self.multi_chain_cooperation and self.system_impact
        ) or self.local_safety_problem


class ReferralBody(Wire):
    """``case.referral`` (ZVH.AANMELDING): a partner refers a case to the ZVH."""

    criteria: LandelijkeCriteria
    urgency: Literal["regular", "urgent"]
    reason: Annotated[FreeText, Carries("VRIJE_TEKST")]
    leefgebieden: Annotated[tuple[LifeDomain, ...], _items, Carries("LEEFGEBIEDEN")] = ()
    household: Annotated[tuple[HouseholdMember, ...], _items, Carries("SYSTEEM")] = ()
    betrokkene_informed: bool
    not_informed_reason: Literal["overriding_safety_interest", "not_reachable", "other"] | None = (
        None
    )
    police_incidents: Annotated[tuple[PoliceIncident, ...], _items, Carries("POLITIE")] = ()
    risk: Annotated[RiskAssessment | None, Carries("RISICO")] = None
    referrer: Annotated[ProfessionalContact, Carries("CONTACT_PROF")]
    identification: Annotated[PersonIdentification | None, Carries("ID_DIRECT")] = None

    @model_validator(mode="after")
    def _informed(self) -> ReferralBody:
        if not self.betrokkene_informed and self.not_informed_reason is None:
            raise rule_error(
                ("not_informed_reason",),
                "required when betrokkene_informed is false (the aanmelder must say why)",
            )
        if self.betrokkene_informed and self.not_informed_reason is not None:
            raise rule_error(
                ("not_informed_reason",), "only allowed when betrokkene_informed is false"
            )
        return self


# ---------------------------------------------------------------- case.status


class CaseStatusBody(Wire):
    """``case.status``: screening outcome and the case's progress (incl. opschalen/afschalen)."""

    status: Literal[
        "received",
        "accepted",
        "rejected",
        "redirected",
        "in_progress",
        "monitoring",
        "escalated",
        "de_escalated",
        "closed",
    ]
    effective_at: AwareDatetime
    reason_code: (
        Literal["criteria_not_met", "handled_elsewhere", "insufficient_information", "other"] | None
    ) = None
    redirected_to: OrgRef | None = None
    note: Annotated[FreeText | None, Carries("VRIJE_TEKST")] = None

    @model_validator(mode="after")
    def _status_rules(self) -> CaseStatusBody:
        if self.status in ("rejected", "redirected") and self.reason_code is None:
            raise rule_error(("reason_code",), f"required when status is '{self.status}'")
        if (self.status == "redirected") != (self.redirected_to is not None):
            raise rule_error(
                ("redirected_to",), "required when, and only when, status is 'redirected'"
            )
        return self


# ---------------------------------------------------------------- info.request / info.response


class Question(Wire):
    """One targeted content question of an ``inhoud`` request."""

    category: CategoryCode
    text: ShortText


#: Categories a bekendheidsvraag may ask for: hit/no-hit with involvement and a contact.
BEKENDHEID_CATEGORIES = frozenset({"BETROKKENHEID", "CONTACT_PROF"})


class InfoRequestBody(Wire):
    """``info.request``: a bekendheidsvraag (is the person known, who is the contact) or an
    ``inhoud`` request (targeted content questions after positive screening)."""

    mode: Literal["bekendheid", "inhoud"]
    requested_categories: Annotated[tuple[CategoryCode, ...], _items_min1()]
    questions: Annotated[tuple[Question, ...], _items, Carries("VRIJE_TEKST")] = ()
    respond_before: AwareDatetime
    context: Annotated[FreeText | None, Carries("VRIJE_TEKST")] = None
    identification: Annotated[PersonIdentification | None, Carries("ID_DIRECT")] = None

    @model_validator(mode="after")
    def _mode_rules(self) -> InfoRequestBody:
        if self.mode == "bekendheid":
            extra = sorted(set(self.requested_categories) - BEKENDHEID_CATEGORIES)
            if extra:
                raise rule_error(
                    ("requested_categories",),
                    f"a bekendheidsvraag asks only for {sorted(BEKENDHEID_CATEGORIES)}, "
                    f"not {extra}",
                )
            if self.questions:
                raise rule_error(("questions",), "a bekendheidsvraag has no content questions")
        elif not self.questions:
            raise rule_error(("questions",), "an inhoud request needs at least one question")
        return self


#: Fields of an info.response that carry content (beyond hit/no-hit, involvement and contact).
_RESPONSE_CONTENT = ("risk", "health", "justice", "police_incidents", "leefgebieden", "household")

Disposition = Literal["known", "not_known", "provided", "partially_provided", "refused"]


class InfoResponseBody(Wire):
    """``info.response``: the answer to an ``info.request`` with a disposition and, where the
    answer is not complete, a reason code."""

    disposition: Disposition
    reason_code: (
        Literal[
            "not_necessary",
            "no_legal_basis",
            "professional_secrecy",
            "no_consent",
            "disproportionate",
            "other",
        ]
        | None
    ) = None
    involvement: Annotated[tuple[Involvement, ...], _items, Carries("BETROKKENHEID")] = ()
    contact: Annotated[ProfessionalContact | None, Carries("CONTACT_PROF")] = None
    risk: Annotated[RiskAssessment | None, Carries("RISICO")] = None
    health: Annotated[HealthSummary | None, Carries("GEZONDHEID")] = None
    justice: Annotated[tuple[JusticeInfo, ...], _items, Carries("JUSTITIEEL")] = ()
    police_incidents: Annotated[tuple[PoliceIncident, ...], _items, Carries("POLITIE")] = ()
    leefgebieden: Annotated[tuple[LifeDomain, ...], _items, Carries("LEEFGEBIEDEN")] = ()
    household: Annotated[tuple[HouseholdMember, ...], _items, Carries("SYSTEEM")] = ()
    note: Annotated[FreeText | None, Carries("VRIJE_TEKST")] = None

    @model_validator(mode="after")
    def _disposition_rules(self) -> InfoResponseBody:
        d = self.disposition
        needs_reason = d in ("refused", "partially_provided")
        if needs_reason and self.reason_code is None:
            raise rule_error(("reason_code",), f"required when disposition is '{d}'")
        if not needs_reason and self.reason_code is not None:
            raise rule_error(
                ("reason_code",), "only for disposition 'refused' or 'partially_provided'"
            )
        content = [f for f in _RESPONSE_CONTENT if getattr(self, f) not in (None, ())]
        if d in ("not_known", "refused"):
            given = content + [f for f in ("involvement", "contact") if getattr(self, f)]
            if given:
                raise rule_error((given[0],), f"must be empty when disposition is '{d}'")
        if d == "known":
            if content:
                raise rule_error(
                    (content[0],), "a 'known' answer is hit/no-hit: involvement and contact only"
                )
            if self.contact is None:
                raise rule_error(("contact",), "a 'known' answer names a contact person")
        if d in ("provided", "partially_provided") and not content and self.note is None:
            raise rule_error(("disposition",), f"'{d}' but the answer holds no content")
        return self


# ---------------------------------------------------------------- risk.signal


class RiskSignalBody(Wire):
    """``risk.signal`` (ZVH.RISICO): an acute or rising risk that needs action (opschalen)."""

    level: Literal["elevated", "high", "acute"]
    kinds: Annotated[tuple[RiskKind, ...], Field(min_length=1, max_length=10)]
    observed_at: AwareDatetime
    requested_action: Literal["inform", "assess", "crisis_intervention", "immediate_response"]
    situation: Annotated[FreeText, Carries("RISICO")]
    contact: Annotated[ProfessionalContact, Carries("CONTACT_PROF")]
    location: Annotated[ShortText | None, Carries("ID_DIRECT")] = None
    identification: Annotated[PersonIdentification | None, Carries("ID_DIRECT")] = None
    police_incidents: Annotated[tuple[PoliceIncident, ...], _items, Carries("POLITIE")] = ()
    health: Annotated[HealthSummary | None, Carries("GEZONDHEID")] = None
    household: Annotated[tuple[HouseholdMember, ...], _items, Carries("SYSTEEM")] = ()


# ---------------------------------------------------------------- meeting.invitation


class MeetingInvitationBody(Wire):
    """``meeting.invitation`` (ZVH.CASUSOVERLEG): invitation to a casusoverleg."""

    meeting_id: Uuid
    kind: Literal[
        "casusoverleg",
        "multidisciplinair_overleg",
        "justitieel_casusoverleg",
        "bestuurlijk_overleg",
    ]
    starts_at: AwareDatetime
    duration_minutes: Annotated[int, Field(ge=15, le=480)]
    mode: Literal["in_person", "online", "hybrid"]
    venue: ShortText | None = None
    invitees: Annotated[tuple[OrgRef, ...], _items_min1()]
    agenda: Annotated[tuple[ShortText, ...], _items, Carries("VRIJE_TEKST")] = ()
    chair: Annotated[ProfessionalContact, Carries("CONTACT_PROF")]
    respond_before: AwareDatetime | None = None

    @model_validator(mode="after")
    def _venue(self) -> MeetingInvitationBody:
        if self.mode != "online" and self.venue is None:
            raise rule_error(("venue",), f"required for a '{self.mode}' meeting")
        return self


# ---------------------------------------------------------------- plan.task


class PlanTaskBody(Wire):
    """``plan.task`` (ZVH.PLAN, ZVH.CASUSOVERLEG): a task of the plan van aanpak."""

    task_id: Uuid
    action: Literal["assign", "update", "complete", "cancel"]
    status: Literal["open", "in_progress", "done", "cancelled"]
    title: Annotated[ShortText, Carries("PLAN")]
    goal: Annotated[ShortText | None, Carries("PLAN")] = None
    description: Annotated[FreeText | None, Carries("PLAN")] = None
    assignee: OrgRef
    assignee_contact: Annotated[ProfessionalContact | None, Carries("CONTACT_PROF")] = None
    due: date | None = None
    progress_note: Annotated[FreeText | None, Carries("VRIJE_TEKST")] = None

    @model_validator(mode="after")
    def _action_status(self) -> PlanTaskBody:
        expected = {"complete": "done", "cancel": "cancelled"}.get(self.action)
        if expected and self.status != expected:
            raise rule_error(("status",), f"must be '{expected}' for action '{self.action}'")
        if self.action == "assign" and self.status != "open":
            raise rule_error(("status",), "must be 'open' for action 'assign'")
        return self


# ---------------------------------------------------------------- case.handover


class TaskRef(Wire):
    """An open task handed over with the case."""

    task_id: Uuid
    title: ShortText


class HandoverBody(Wire):
    """``case.handover`` (ZVH.OVERDRACHT): warme overdracht to the regular chain."""

    receiving_team: ShortText
    reason: Literal["de_escalation", "case_closed", "transfer_of_care"]
    plan_summary: Annotated[FreeText, Carries("PLAN")]
    open_tasks: Annotated[tuple[TaskRef, ...], _items, Carries("PLAN")] = ()
    contacts: Annotated[tuple[ProfessionalContact, ...], _items_min1(), Carries("CONTACT_PROF")]
    risk: Annotated[RiskAssessment | None, Carries("RISICO")] = None
    leefgebieden: Annotated[tuple[LifeDomain, ...], _items, Carries("LEEFGEBIEDEN")] = ()
    household: Annotated[tuple[HouseholdMember, ...], _items, Carries("SYSTEEM")] = ()
    betrokkene_participated: bool
    handover_meeting_at: AwareDatetime | None = None
    accept_before: AwareDatetime | None = None
    identification: Annotated[PersonIdentification | None, Carries("ID_DIRECT")] = None


# ---------------------------------------------------------------- case.closure


class RetentionInstruction(Wire):
    """What every participant does with its data of one category after closure."""

    category: CategoryCode
    retain_days: Annotated[int, Field(ge=0, le=limits.MAX_RETENTION_DAYS)]
    then: Literal["delete", "anonymise"]


class ClosureBody(Wire):
    """``case.closure`` (ZVH.AFSLUITING): the case is closed; retention timers start."""

    reason: Literal[
        "goals_achieved",
        "handed_over",
        "no_longer_needed",
        "moved_away",
        "deceased",
        "other",
    ]
    closed_at: AwareDatetime
    retention: Annotated[tuple[RetentionInstruction, ...], _items_min1()]
    evaluation: Annotated[FreeText | None, Carries("VRIJE_TEKST")] = None

    @model_validator(mode="after")
    def _unique_categories(self) -> ClosureBody:
        seen: set[str] = set()
        for i, r in enumerate(self.retention):
            if r.category in seen:
                raise rule_error(("retention", i, "category"), f"'{r.category}' given twice")
            seen.add(r.category)
        return self


# ---------------------------------------------------------------- rights.notice


class RightsNoticeBody(Wire):
    """``rights.notice`` (ZVH.VERANTWOORDING, AVG art. 19): the sender rectified, erased or
    restricted data about a person, and tells an organisation it sent that data to.

    It says *what kind* of data changed (data categories) and *which earlier messages* carried
    it, never the data itself: a recipient finds the messages it received by ``concerns`` and
    the person by ``identification`` (the BSN travels only here, inside the encryption).
    ``erase``: the recipient erases what it holds of those messages about the person;
    ``rectify``: the earlier data was inaccurate (a corrected message may follow);
    ``restrict``: the recipient stops processing it except for storage (art. 18).
    """

    kind: Literal["rectify", "erase", "restrict"]
    ground: Literal[
        "request_of_data_subject",
        "inaccurate",
        "unlawfully_processed",
        "no_longer_necessary",
        "objection",
        "court_order",
        "other",
    ]
    effective_at: AwareDatetime
    concerns: Annotated[tuple[Uuid7, ...], _items_min1()]
    """Message ids of the earlier messages to this recipient that carried the data."""
    categories: Annotated[tuple[CategoryCode, ...], _items_min1()]
    """The data categories rectified, erased or restricted (codes only, never the data)."""
    identification: Annotated[PersonIdentification | None, Carries("ID_DIRECT")] = None

    @model_validator(mode="after")
    def _distinct(self) -> RightsNoticeBody:
        for name in ("concerns", "categories"):
            values: tuple[str, ...] = getattr(self, name)
            if len(set(values)) != len(values):
                raise rule_error((name,), "names the same value twice")
        return self


# ---------------------------------------------------------------- receipt


class ReceiptEntry(Wire):
    """One recipient node's signed statement about one message: a whole ``receipt`` body
    (:class:`ReceiptBody`) or one entry of a coalesced one (:class:`ReceiptBatchBody`).

    ``delivered``: stored in the recipient's inbox; ``accepted``: its adapter took it;
    ``rejected``: refused, with a coarse reason (never which internal check failed). ``proof`` is
    the recipient's C2SP tlog-proof of its audit record of the event, and required: a receipt
    without one proves nothing and is ignored (docs/decisions/0005-receipts-carry-their-proof.md).
    """

    status: Literal["delivered", "accepted", "rejected"]
    message_id: Uuid7
    inner_jws_sha256: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{43}$")]
    at: AwareDatetime
    reason: RejectReason | None = None
    proof: Annotated[str, Field(min_length=1, max_length=limits.MAX_PROOF_TEXT_CHARS)]

    @model_validator(mode="after")
    def _reason(self) -> ReceiptEntry:
        if (self.status == "rejected") != (self.reason is not None):
            raise rule_error(("reason",), "required when, and only when, status is 'rejected'")
        return self


class ReceiptBody(ReceiptEntry):
    """``receipt`` (docs/architecture.md §5.4): a recipient node's signed statement about one
    message.

    ``delivered``: stored in the recipient's inbox; ``accepted``: its adapter took it;
    ``rejected``: refused, with a coarse reason (never which internal check failed). ``proof`` is
    the recipient's C2SP tlog-proof of its audit record of the event, and required: a receipt
    without one proves nothing and is ignored (docs/decisions/0005-receipts-carry-their-proof.md);
    ``checkpoint`` is the recipient's latest checkpoint.
    """

    checkpoint: Annotated[str, Field(max_length=limits.MAX_PROOF_TEXT_CHARS)] | None = None


class ReceiptBatchBody(Wire):
    """``receipt`` with ``entries`` (docs/decisions/0006-coalesced-receipts.md): a recipient
    node's signed statements about several messages of one sender, sent under one purpose and
    legal basis, in one envelope.

    Each entry is what a single receipt's body says about its message, with its own inclusion
    proof; every proof is against the same checkpoint. No two entries state the same status
    about the same message. ``checkpoint`` is the recipient's latest checkpoint.
    """

    entries: Annotated[
        tuple[ReceiptEntry, ...], Field(min_length=2, max_length=limits.MAX_RECEIPT_ENTRIES)
    ]
    checkpoint: Annotated[str, Field(max_length=limits.MAX_PROOF_TEXT_CHARS)] | None = None

    @model_validator(mode="after")
    def _distinct(self) -> ReceiptBatchBody:
        seen: set[tuple[str, str]] = set()
        for i, e in enumerate(self.entries):
            if (e.message_id, e.status) in seen:
                raise rule_error(
                    ("entries", i), "states the same status about the same message twice"
                )
            seen.add((e.message_id, e.status))
        return self


def _receipt_shape(value: object) -> str:
    if isinstance(value, dict):
        return "batch" if "entries" in value else "single"
    return "batch" if isinstance(value, ReceiptBatchBody) else "single"


#: The body of a ``receipt``: one statement, or several coalesced (``entries``).
ReceiptBodies = Annotated[
    Annotated[ReceiptBody, Tag("single")] | Annotated[ReceiptBatchBody, Tag("batch")],
    Discriminator(_receipt_shape),
]


#: Message type → body model.
BODY_TYPES: dict[str, type[Wire]] = {
    "case.referral": ReferralBody,
    "case.status": CaseStatusBody,
    "info.request": InfoRequestBody,
    "info.response": InfoResponseBody,
    "risk.signal": RiskSignalBody,
    "meeting.invitation": MeetingInvitationBody,
    "plan.task": PlanTaskBody,
    "case.handover": HandoverBody,
    "case.closure": ClosureBody,
    "rights.notice": RightsNoticeBody,
    "receipt": ReceiptBody,
    "rights.request": RightsRequestBody,
    "rights.response": RightsResponseBody,
}
