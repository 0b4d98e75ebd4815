"""The case the demo plays: "Veenstad-2026-031" of ``docs/demo.md``, step by step, as data.

Each :class:`Step` is one step of the ZVH case flow; each :class:`Send` one message a partner's
system hands to its adapter: who sends (organisation, role, adapter), what (message type,
purpose), to whom, and the content. The content is the content of ``tests/examples/`` — the
same man, the same incidents, the same contacts — so the demo and the tests tell one story
(``tests/demo/test_story.py`` holds them together). What differs is *when*: the examples are
dated in March 2026, the demo plays the case now, so the fields that schedule something
(``respond_before``, ``starts_at``, ``due``, ``observed_at``, ``effective_at``, ``closed_at``, …)
are computed from the moment the demo runs. Facts about the past (incident dates, the care
period) keep their dates.

Two messages come from the partners' own exports, read by the real folder adapter with the
documented mapping files: the police referral is ``docs/adapters/examples/politie/
aanmelding-voorbeeld.csv`` as it is, the OM's content answer is ``docs/adapters/examples/om/
antwoord-voorbeeld.csv`` with the id of the question the OM actually received.

One message is meant to be refused: GGZ first answers the bekendheidsvraag declaring health data
(GEZONDHEID, art. 9, under its professional secrecy). The contract allows declaring a category
the body does not use, so the message is well-formed; the federation policy (rule
``bekendheid-antwoord``: hit/no-hit, involvement and a contact only) refuses it at GGZ's own node,
before anything is sealed (docs/decisions/0077).

Nothing here does I/O except :func:`export_file` reading the committed example exports.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any, Literal

from gateway.testing.veenstad import org_by_key

__all__ = [
    "CASE_REF",
    "EXAMPLES_DIR",
    "STEPS",
    "Adapter",
    "Context",
    "Send",
    "Step",
    "export_file",
    "om_answer_csv",
]

CASE_REF = "Veenstad-2026-031"
PROGRAMME = "VERWARD_GEDRAG"

#: The documented adapter examples (mapping files and the partners' example exports).
EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "docs" / "adapters" / "examples"

#: The ZVH's pseudonym of the man (``tests/examples``); partners answer about it.
BETROKKENE = "sub-7f3KqZ2mLw9xTa"
SUBJECT = {"subject_ref": BETROKKENE, "role": "betrokkene", "minor": False}

#: Processing activities in each partner's register (as in ``tests/examples``).
ZVH_ACTIVITY = "https://register.veenstad.example/verwerkingen/zvh-procesregie/v2"
POL_ACTIVITY = "https://register.politie.example/verwerkingen/zvh-aanmelding/v3"
GGZ_BEKENDHEID = "https://register.ggz-veenland.example/verwerkingen/zvh-bekendheid/v1"
GGZ_INFORMATIE = "https://register.ggz-veenland.example/verwerkingen/zvh-informatie/v1"
VT_BEKENDHEID = "https://register.veiligthuis.example/verwerkingen/zvh-bekendheid/v1"
OM_BEKENDHEID = "https://register.om.example/verwerkingen/zvh-bekendheid/v1"

#: How a partner's system reaches its node in the demo.
Adapter = Literal["folder-csv", "folder-json", "webhook", "sdk"]

ADAPTER_LABELS: dict[str, str] = {
    "folder-csv": "folder adapter, CSV export",
    "folder-json": "folder adapter, JSON file",
    "webhook": "webhook adapter",
    "sdk": "client SDK",
}


def _oin(key: str) -> str:
    return org_by_key(key).oin


def _to(*parties: tuple[str, str]) -> list[dict[str, str]]:
    return [{"org": _oin(key), "role": role} for key, role in parties]


@dataclass
class Context:
    """What a message needs from the moment and from earlier messages.

    ``ids`` maps a :attr:`Send.label` to the message id *as the recipient received it* (the
    demo fills it from the recipients' inboxes, outbox files and webhook pushes).
    """

    now: datetime
    ids: dict[str, str] = field(default_factory=dict)
    claims: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per label, the claims of that message as a recipient received them."""

    def id(self, label: str) -> str:
        """The message id of an earlier message (``KeyError`` when it was not sent)."""
        return self.ids[label]

    def at(self, days: int, hour: int, minute: int = 0) -> str:
        """``days`` from today at ``hour:minute`` UTC, as an RFC 3339 string."""
        day = (self.now + timedelta(days=days)).date()
        return _rfc3339(datetime.combine(day, time(hour, minute), tzinfo=self.now.tzinfo))

    def ago(self, minutes: int) -> str:
        return _rfc3339(self.now - timedelta(minutes=minutes))

    def stamp(self) -> str:
        return _rfc3339(self.now)

    def date(self, days: int) -> str:
        return (self.now + timedelta(days=days)).date().isoformat()


def _rfc3339(moment: datetime) -> str:
    return moment.replace(microsecond=0).isoformat().replace("+00:00", "Z")


Build = Callable[[Context], dict[str, Any]]
"""Builds the ``SendRequest`` (the node API's JSON) of a message."""

BuildFile = Callable[[Context], bytes]
"""Builds the file a partner's system exports (CSV) for its folder adapter."""


@dataclass(frozen=True)
class Send:
    """One message a partner's system hands to its adapter."""

    label: str
    sender: str  # org key
    role: str  # the role it sends in
    adapter: Adapter
    message_type: str
    purpose: str
    to: tuple[tuple[str, str], ...]  # (org key, role)
    what: str  # a few words: "known + contact", "health summary", ...
    build: Build | None = None
    build_file: BuildFile | None = None
    example: str | None = None  # the tests/examples file holding the same content
    denied: bool = False  # the policy is meant to refuse it at the sender's node
    note: str = ""


@dataclass(frozen=True)
class Step:
    """One step of the case flow (docs/demo.md, steps 1-10)."""

    number: int
    name: str
    title: str
    sends: tuple[Send, ...]
    after: str = ""  # a line to print once the step is done


# ------------------------------------------------------------------ content


def _referral_csv(_ctx: Context) -> bytes:
    """The police incident system's export, exactly as documented."""
    return export_file("politie", "aanmelding-voorbeeld.csv")


def export_file(org_dir: str, name: str) -> bytes:
    """A committed example export of a partner's system (``docs/adapters/examples``)."""
    return (EXAMPLES_DIR / org_dir / name).read_bytes()


def _screening(ctx: Context) -> dict[str, Any]:
    return {
        "message_type": "case.status",
        "sender_role": "ZVH",
        "purpose": "ZVH.AANMELDING",
        "programme": PROGRAMME,
        "recipients": _to(("politie", "POL")),
        "case_ref": CASE_REF,
        "in_reply_to": ctx.id("referral"),
        "correlation_id": ctx.id("referral"),
        "legal_basis": ["WGS"],
        "processing_activity": ZVH_ACTIVITY,
        "data_categories": ["ID_PSEUDO"],
        "flags": {},
        "subjects": [SUBJECT],
        "body": {"status": "accepted", "effective_at": ctx.stamp()},
    }


def _bekendheid(ctx: Context) -> dict[str, Any]:
    return {
        "message_type": "info.request",
        "sender_role": "ZVH",
        "purpose": "ZVH.BEKENDHEID",
        "programme": PROGRAMME,
        "recipients": _to(("ggz", "GGZ"), ("veiligthuis", "VT"), ("om", "OM")),
        "case_ref": CASE_REF,
        "correlation_id": ctx.id("referral"),
        "legal_basis": ["WGS"],
        "processing_activity": ZVH_ACTIVITY,
        "data_categories": ["ID_PSEUDO", "ID_DIRECT"],
        "flags": {},
        "subjects": [SUBJECT],
        "body": {
            "mode": "bekendheid",
            "requested_categories": ["BETROKKENHEID", "CONTACT_PROF"],
            "respond_before": ctx.at(2, 17),
            "identification": {
                "bsn": "999990019",
                "surname": "Vermeer",
                "birth_date": "1992-05-14",
            },
        },
    }


GGZ_CONTACT = {
    "name": "A. Kuipers",
    "function": "psychiater, FACT-team Veenstad",
    "unit": "FACT Veenstad",
    "phone": "+31 592 111 222",
    "email": "fact.veenstad@ggz-veenland.example",
}


def _ggz_known_body() -> dict[str, Any]:
    return {
        "disposition": "known",
        "involvement": [
            {"kind": "former_care", "active": False, "since": "2024-02-01", "until": "2025-11-15"}
        ],
        "contact": dict(GGZ_CONTACT),
    }


def _answer(
    ctx: Context, question: str, activity: str, categories: list[str], body: dict[str, Any]
) -> dict[str, Any]:
    return {
        "message_type": "info.response",
        "purpose": "ZVH.BEKENDHEID",
        "programme": PROGRAMME,
        "recipients": _to(("gemeente", "ZVH")),
        "case_ref": CASE_REF,
        "in_reply_to": ctx.id(question),
        "correlation_id": ctx.id("referral"),
        "legal_basis": ["WGS"],
        "processing_activity": activity,
        "data_categories": categories,
        "flags": {},
        "subjects": [SUBJECT],
        "body": body,
    }


def _ggz_health_attempt(ctx: Context) -> dict[str, Any]:
    """GGZ's EHR marks the answer as health data: the policy refuses it at GGZ's node."""
    request = _answer(
        ctx,
        "bekendheid",
        GGZ_BEKENDHEID,
        ["ID_PSEUDO", "BETROKKENHEID", "CONTACT_PROF", "GEZONDHEID"],
        _ggz_known_body(),
    )
    request["flags"] = {"art9": True, "professional_secrecy": True}
    return request


def _ggz_known(ctx: Context) -> dict[str, Any]:
    return _answer(
        ctx,
        "bekendheid",
        GGZ_BEKENDHEID,
        ["ID_PSEUDO", "BETROKKENHEID", "CONTACT_PROF"],
        _ggz_known_body(),
    )


def _vt_known(ctx: Context) -> dict[str, Any]:
    request = _answer(
        ctx,
        "bekendheid",
        VT_BEKENDHEID,
        ["ID_PSEUDO", "BETROKKENHEID", "CONTACT_PROF"],
        {
            "disposition": "known",
            "involvement": [
                {
                    "kind": "reports",
                    "active": False,
                    "since": "2025-04-01",
                    "summary": "Two reports about the former household in the past year",
                }
            ],
            "contact": {
                "name": "T. Bakker",
                "function": "aandachtsfunctionaris",
                "unit": "Veilig Thuis Veenland",
                "phone": "+31 592 555 666",
            },
        },
    )
    request["legal_basis"] = ["WMO_VT", "WGS"]
    request["flags"] = {"professional_secrecy": True}
    return request


def _om_known(ctx: Context) -> dict[str, Any]:
    request = _answer(
        ctx,
        "bekendheid",
        OM_BEKENDHEID,
        ["ID_PSEUDO", "BETROKKENHEID", "CONTACT_PROF"],
        {
            "disposition": "known",
            "involvement": [
                {
                    "kind": "pending_case",
                    "active": True,
                    "since": "2026-02-27",
                    "summary": "Pending case for threats; a conditional sentence is running",
                }
            ],
            "contact": {
                "name": "mr. L. Visser",
                "function": "officier van justitie",
                "phone": "+31 592 333 444",
            },
        },
    )
    request["legal_basis"] = ["WJSG_39F", "WGS"]
    return request


def _inhoud(ctx: Context) -> dict[str, Any]:
    return {
        "message_type": "info.request",
        "sender_role": "ZVH",
        "purpose": "ZVH.INFORMATIE",
        "programme": PROGRAMME,
        "recipients": _to(("ggz", "GGZ"), ("om", "OM")),
        "case_ref": CASE_REF,
        "correlation_id": ctx.id("referral"),
        "legal_basis": ["WGS"],
        "processing_activity": ZVH_ACTIVITY,
        "data_categories": ["ID_PSEUDO", "VRIJE_TEKST"],
        "flags": {},
        "subjects": [SUBJECT],
        "body": {
            "mode": "inhoud",
            "requested_categories": ["RISICO", "GEZONDHEID", "JUSTITIEEL"],
            "questions": [
                {
                    "category": "RISICO",
                    "text": "What is your current assessment of the risk to himself and others?",
                },
                {
                    "category": "GEZONDHEID",
                    "text": "GGZ: a short summary of the care history, as far as needed.",
                },
                {
                    "category": "JUSTITIEEL",
                    "text": "OM: which special conditions apply and until when?",
                },
            ],
            "respond_before": ctx.at(3, 12),
            "context": (
                "Positive screening: the case meets the landelijke criteria; casusoverleg "
                "planned this week."
            ),
        },
    }


def _ggz_provided(ctx: Context) -> dict[str, Any]:
    return {
        "message_type": "info.response",
        "purpose": "ZVH.INFORMATIE",
        "programme": PROGRAMME,
        "recipients": _to(("gemeente", "ZVH")),
        "case_ref": CASE_REF,
        "in_reply_to": ctx.id("inhoud"),
        "correlation_id": ctx.id("referral"),
        "legal_basis": ["WGS"],
        "processing_activity": GGZ_INFORMATIE,
        "data_categories": ["ID_PSEUDO", "CONTACT_PROF", "RISICO", "GEZONDHEID"],
        "flags": {"art9": True, "professional_secrecy": True},
        "subjects": [SUBJECT],
        "body": {
            "disposition": "provided",
            "risk": {
                "level": "high",
                "kinds": ["self_harm", "threats"],
                "summary": "Psychotic episodes when care lapses; risk rises with drug use.",
            },
            "health": {
                "summary": (
                    "Recurrent psychotic episodes; refuses medication when not in care. "
                    "FACT care is the advised route."
                ),
                "care_history": "FACT care from February 2024 until November 2025; dropped out.",
            },
            "contact": dict(GGZ_CONTACT),
        },
    }


def om_answer_csv(question: dict[str, Any]) -> bytes:
    """The OM case system's export answering ``question`` (the claims the OM received): the
    committed example row with the question's message id, correlation id and subject."""
    raw = export_file("om", "antwoord-voorbeeld.csv").decode("utf-8")
    rows = list(csv.DictReader(io.StringIO(raw), delimiter=";"))
    subjects = question.get("subjects") or [SUBJECT]
    for row in rows:
        row["vraag_bericht_id"] = question["message_id"]
        row["correlatie_id"] = question.get("correlation_id") or question["message_id"]
        row["casus"] = question["case_ref"]
        row["subject_ref"] = subjects[0]["subject_ref"]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), delimiter=";", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode("utf-8")


def _om_answer(ctx: Context) -> bytes:
    return om_answer_csv(ctx.claims["inhoud"])


def _invitation(ctx: Context) -> dict[str, Any]:
    everyone = _to(
        ("politie", "POL"), ("ggz", "GGZ"), ("om", "OM"), ("veiligthuis", "VT"), ("gemeente", "GEM")
    )
    return {
        "message_type": "meeting.invitation",
        "sender_role": "ZVH",
        "purpose": "ZVH.CASUSOVERLEG",
        "programme": PROGRAMME,
        "recipients": everyone,
        "case_ref": CASE_REF,
        "correlation_id": ctx.id("referral"),
        "legal_basis": ["WGS"],
        "processing_activity": ZVH_ACTIVITY,
        "data_categories": ["ID_PSEUDO", "CONTACT_PROF", "VRIJE_TEKST"],
        "flags": {},
        "subjects": [SUBJECT],
        "body": {
            "meeting_id": "6f1c2a4e-8b3d-4c5f-9a7e-2d1b0c9e8f7a",
            "kind": "casusoverleg",
            "starts_at": ctx.at(3, 13),
            "duration_minutes": 60,
            "mode": "hybrid",
            "venue": "Zorg- en Veiligheidshuis Veenstad, zaal 2",
            "invitees": everyone,
            "agenda": [
                "Gezamenlijke analyse",
                "Plan van aanpak en taakverdeling",
                "Afspraken over monitoring",
            ],
            "chair": {
                "name": "S. Jansen",
                "function": "procesregisseur",
                "unit": "Zorg- en Veiligheidshuis Veenstad",
                "email": "procesregie@veenstad.example",
            },
            "respond_before": ctx.at(2, 12),
        },
    }


#: The plan van aanpak (docs/demo.md step 6): one task per partner (org key, role, short name,
#: task id, content).
TASKS: tuple[tuple[str, str, str, str, dict[str, Any]], ...] = (
    (
        "ggz",
        "GGZ",
        "FACT outreach",
        "0b7e4d52-1f6a-4e3b-8c2d-5a9f7e6d4c3b",
        {
            "title": "Outreach visit by the FACT team",
            "goal": "Restore care contact",
            "description": "FACT team visits within a week, together with the wijkagent if needed.",
            "assignee_contact": {
                "name": "A. Kuipers",
                "function": "psychiater, FACT-team Veenstad",
            },
        },
    ),
    (
        "gemeente",
        "GEM",
        "debt counselling",
        "3c9d8e7f-6a5b-4c3d-9e2f-1a0b9c8d7e6f",
        {
            "title": "Debt counselling (schuldhulpverlening) intake follow-up",
            "goal": "Stop the debts growing; keep the flat",
            "description": "Intake for debt counselling and a talk with the housing corporation.",
            "assignee_contact": {"name": "R. Smit", "function": "wijkteam Veenstad-Noord"},
        },
    ),
    (
        "om",
        "OM",
        "supervision",
        "5d2e7f80-9b1c-4d3e-8f4a-6b7c8d9e0f1a",
        {
            "title": "Ask the reclassering to supervise the special conditions",
            "goal": "Supervision of the conditional sentence",
            "assignee_contact": {"name": "mr. L. Visser", "function": "officier van justitie"},
        },
    ),
    (
        "politie",
        "POL",
        "weekly check-in",
        "7e3f9a1b-2c4d-4e5f-9a6b-8c7d6e5f4a3b",
        {
            "title": "Wijkagent checks in weekly",
            "goal": "Early warning in the neighbourhood",
            "assignee_contact": {"name": "M. de Boer", "function": "wijkagent"},
        },
    ),
)


def _task(key: str, role: str, task_id: str, content: dict[str, Any]) -> Build:
    def build(ctx: Context) -> dict[str, Any]:
        return {
            "message_type": "plan.task",
            "sender_role": "ZVH",
            "purpose": "ZVH.PLAN",
            "programme": PROGRAMME,
            "recipients": _to((key, role)),
            "case_ref": CASE_REF,
            "correlation_id": ctx.id("referral"),
            "legal_basis": ["WGS"],
            "processing_activity": ZVH_ACTIVITY,
            "data_categories": ["ID_PSEUDO", "PLAN", "CONTACT_PROF"],
            "flags": {},
            "subjects": [SUBJECT],
            "body": {
                "task_id": task_id,
                "action": "assign",
                "status": "open",
                **content,
                "assignee": {"org": _oin(key), "role": role},
                "due": ctx.date(7),
            },
        }

    return build


def _risk(ctx: Context) -> dict[str, Any]:
    return {
        "message_type": "risk.signal",
        "purpose": "ZVH.RISICO",
        "programme": PROGRAMME,
        "recipients": _to(("gemeente", "ZVH"), ("ggz", "GGZ"), ("gemeente", "GEM")),
        "case_ref": CASE_REF,
        "correlation_id": ctx.id("referral"),
        "legal_basis": ["WPG_20", "WVGGZ", "AVG_6_1_D"],
        "processing_activity": POL_ACTIVITY,
        "data_categories": ["ID_PSEUDO", "ID_DIRECT", "CONTACT_PROF", "POLITIE", "RISICO"],
        "flags": {"police_data": True, "emergency": True},
        "subjects": [SUBJECT],
        "body": {
            "level": "acute",
            "kinds": ["self_harm", "threats"],
            "observed_at": ctx.ago(15),
            "requested_action": "crisis_intervention",
            "situation": (
                "Barricaded in his flat, threatens to harm himself; police on site, crisis "
                "service requested."
            ),
            "contact": {
                "name": "Officier van dienst",
                "function": "OvD basisteam Veenstad",
                "phone": "+31 592 000 001",
            },
            "location": "Lindelaan 17B, Veenstad",
            "identification": {
                "bsn": "999990019",
                "surname": "Vermeer",
                "birth_date": "1992-05-14",
            },
            "police_incidents": [{"occurred_on": ctx.date(0), "kind": "confused_behaviour"}],
        },
    }


_CASE_PARTNERS = (("politie", "POL"), ("ggz", "GGZ"), ("om", "OM"), ("veiligthuis", "VT"))


def _status(purpose: str, status: str, note: str) -> Build:
    def build(ctx: Context) -> dict[str, Any]:
        return {
            "message_type": "case.status",
            "sender_role": "ZVH",
            "purpose": purpose,
            "programme": PROGRAMME,
            "recipients": _to(*_CASE_PARTNERS),
            "case_ref": CASE_REF,
            "correlation_id": ctx.id("referral"),
            "legal_basis": ["WGS"],
            "processing_activity": ZVH_ACTIVITY,
            "data_categories": ["ID_PSEUDO", "VRIJE_TEKST"],
            "flags": {},
            "subjects": [SUBJECT],
            "body": {"status": status, "effective_at": ctx.stamp(), "note": note},
        }

    return build


def _handover(ctx: Context) -> dict[str, Any]:
    return {
        "message_type": "case.handover",
        "sender_role": "ZVH",
        "purpose": "ZVH.OVERDRACHT",
        "programme": PROGRAMME,
        "recipients": _to(("gemeente", "GEM")),
        "case_ref": CASE_REF,
        "correlation_id": ctx.id("referral"),
        "legal_basis": ["WGS"],
        "processing_activity": ZVH_ACTIVITY,
        "data_categories": [
            "ID_PSEUDO",
            "ID_DIRECT",
            "PLAN",
            "CONTACT_PROF",
            "RISICO",
            "LEEFGEBIEDEN",
        ],
        "flags": {},
        "subjects": [SUBJECT],
        "body": {
            "receiving_team": "Wijkteam Veenstad-Noord",
            "reason": "de_escalation",
            "plan_summary": (
                "Stable after crisis admission; FACT care accepted; debt counselling started; "
                "housing corporation agreed to a behaviour contract."
            ),
            "open_tasks": [
                {
                    "task_id": "3c9d8e7f-6a5b-4c3d-9e2f-1a0b9c8d7e6f",
                    "title": "Debt counselling (schuldhulpverlening) intake follow-up",
                }
            ],
            "contacts": [
                {"name": "A. Kuipers", "function": "psychiater, FACT-team Veenstad"},
                {
                    "name": "S. Jansen",
                    "function": "procesregisseur",
                    "unit": "Zorg- en Veiligheidshuis Veenstad",
                },
            ],
            "risk": {
                "level": "elevated",
                "kinds": ["self_harm"],
                "summary": "Relapse risk when care contact lapses.",
            },
            "leefgebieden": [
                {"domain": "mental_health", "severity": "moderate"},
                {"domain": "finances", "severity": "moderate"},
            ],
            "betrokkene_participated": True,
            "handover_meeting_at": ctx.at(2, 9, 30),
            "accept_before": ctx.at(4, 17),
            "identification": {
                "bsn": "999990019",
                "surname": "Vermeer",
                "birth_date": "1992-05-14",
                "address": {
                    "street": "Lindelaan",
                    "house_number": 17,
                    "house_number_addition": "B",
                    "postcode": "9401 ZX",
                    "city": "Veenstad",
                },
            },
        },
    }


#: Retention per category after closure (what every participant's system does with its data).
RETENTION: tuple[dict[str, Any], ...] = (
    {"category": "ID_DIRECT", "retain_days": 365, "then": "delete"},
    {"category": "POLITIE", "retain_days": 365, "then": "delete"},
    {"category": "PLAN", "retain_days": 730, "then": "anonymise"},
    {"category": "GEZONDHEID", "retain_days": 365, "then": "delete"},
)


def _closure(ctx: Context) -> dict[str, Any]:
    return {
        "message_type": "case.closure",
        "sender_role": "ZVH",
        "purpose": "ZVH.AFSLUITING",
        "programme": PROGRAMME,
        "recipients": _to(*_CASE_PARTNERS, ("gemeente", "GEM")),
        "case_ref": CASE_REF,
        "correlation_id": ctx.id("referral"),
        "legal_basis": ["WGS"],
        "processing_activity": ZVH_ACTIVITY,
        "data_categories": ["ID_PSEUDO", "VRIJE_TEKST"],
        "flags": {},
        "subjects": [SUBJECT],
        "body": {
            "reason": "handed_over",
            "closed_at": ctx.stamp(),
            "retention": [dict(r) for r in RETENTION],
            "evaluation": (
                "Handed over to the wijkteam after de-escalation; goals of the plan largely met."
            ),
        },
    }


# ------------------------------------------------------------------ the script

_ZVH = ("gemeente", "ZVH")

STEPS: tuple[Step, ...] = (
    Step(
        1,
        "aanmelding",
        "The police refer a man with confused behaviour and a safety risk to the ZVH",
        (
            Send(
                "referral",
                "politie",
                "POL",
                "folder-csv",
                "case.referral",
                "ZVH.AANMELDING",
                (_ZVH,),
                "referral",
                build_file=_referral_csv,
                example="case.referral",
                note=(
                    "the incident system's CSV export (docs/adapters/examples/politie/"
                    "aanmelding-voorbeeld.csv), mapped by aanmelding.mapping.toml"
                ),
            ),
        ),
    ),
    Step(
        2,
        "screening",
        "The ZVH weighs the referral against the landelijke criteria: accepted",
        (
            Send(
                "screening",
                "gemeente",
                "ZVH",
                "sdk",
                "case.status",
                "ZVH.AANMELDING",
                (("politie", "POL"),),
                "accepted",
                build=_screening,
                example="case.status",
            ),
        ),
    ),
    Step(
        3,
        "bekendheidsvraag",
        "Is he known at GGZ, Veilig Thuis and the OM, and who is the contact?",
        (
            Send(
                "bekendheid",
                "gemeente",
                "ZVH",
                "sdk",
                "info.request",
                "ZVH.BEKENDHEID",
                (("ggz", "GGZ"), ("veiligthuis", "VT"), ("om", "OM")),
                "bekendheid",
                build=_bekendheid,
                example="info.request",
            ),
            Send(
                "ggz-health",
                "ggz",
                "GGZ",
                "sdk",
                "info.response",
                "ZVH.BEKENDHEID",
                (_ZVH,),
                "known + GEZONDHEID",
                build=_ggz_health_attempt,
                denied=True,
                note="GGZ's EHR marks the answer as health data (GEZONDHEID, art. 9)",
            ),
            Send(
                "ggz-known",
                "ggz",
                "GGZ",
                "sdk",
                "info.response",
                "ZVH.BEKENDHEID",
                (_ZVH,),
                "known + contact",
                build=_ggz_known,
                example="info.response",
            ),
            Send(
                "vt-known",
                "veiligthuis",
                "VT",
                "webhook",
                "info.response",
                "ZVH.BEKENDHEID",
                (_ZVH,),
                "known + contact",
                build=_vt_known,
            ),
            Send(
                "om-known",
                "om",
                "OM",
                "folder-json",
                "info.response",
                "ZVH.BEKENDHEID",
                (_ZVH,),
                "known + contact",
                build=_om_known,
            ),
        ),
    ),
    Step(
        4,
        "verrijking",
        "After positive screening the ZVH asks GGZ and the OM targeted questions",
        (
            Send(
                "inhoud",
                "gemeente",
                "ZVH",
                "sdk",
                "info.request",
                "ZVH.INFORMATIE",
                (("ggz", "GGZ"), ("om", "OM")),
                "inhoud",
                build=_inhoud,
            ),
            Send(
                "ggz-provided",
                "ggz",
                "GGZ",
                "sdk",
                "info.response",
                "ZVH.INFORMATIE",
                (_ZVH,),
                "risk + care history",
                build=_ggz_provided,
            ),
            Send(
                "om-provided",
                "om",
                "OM",
                "folder-csv",
                "info.response",
                "ZVH.INFORMATIE",
                (_ZVH,),
                "supervision conditions",
                build_file=_om_answer,
                note=(
                    "the case system's CSV export (docs/adapters/examples/om/"
                    "antwoord-voorbeeld.csv), mapped by antwoord.mapping.toml"
                ),
            ),
        ),
    ),
    Step(
        5,
        "casusoverleg",
        "The ZVH invites the partners and the municipality's wijkteam to a case meeting",
        (
            Send(
                "invitation",
                "gemeente",
                "ZVH",
                "sdk",
                "meeting.invitation",
                "ZVH.CASUSOVERLEG",
                (
                    ("politie", "POL"),
                    ("ggz", "GGZ"),
                    ("om", "OM"),
                    ("veiligthuis", "VT"),
                    ("gemeente", "GEM"),
                ),
                "casusoverleg",
                build=_invitation,
                example="meeting.invitation",
            ),
        ),
    ),
    Step(
        6,
        "plan van aanpak",
        "Tasks: FACT outreach, debt counselling, supervision, a weekly check-in",
        tuple(
            Send(
                f"task-{key}",
                "gemeente",
                "ZVH",
                "sdk",
                "plan.task",
                "ZVH.PLAN",
                ((key, role),),
                f"task: {short}",
                build=_task(key, role, task_id, content),
                example="plan.task" if key == "ggz" else None,
            )
            for key, role, short, task_id, content in TASKS
        ),
    ),
    Step(
        7,
        "opschalen",
        "He barricades himself and threatens to harm himself: the police signal acute risk",
        (
            Send(
                "risk",
                "politie",
                "POL",
                "folder-json",
                "risk.signal",
                "ZVH.RISICO",
                (_ZVH, ("ggz", "GGZ"), ("gemeente", "GEM")),
                "acute, emergency",
                build=_risk,
                example="risk.signal",
                note="identifying data only to the recipients the policy allows (rule risico-pol)",
            ),
            Send(
                "escalated",
                "gemeente",
                "ZVH",
                "sdk",
                "case.status",
                "ZVH.RISICO",
                _CASE_PARTNERS,
                "escalated",
                build=_status(
                    "ZVH.RISICO",
                    "escalated",
                    "Crisis: GGZ crisis service and Wvggz meldpunt involved.",
                ),
            ),
        ),
    ),
    Step(
        8,
        "afschalen",
        "After a crisis admission he is stable again: the ZVH de-escalates",
        (
            Send(
                "de-escalated",
                "gemeente",
                "ZVH",
                "sdk",
                "case.status",
                "ZVH.OVERDRACHT",
                _CASE_PARTNERS,
                "de-escalated",
                build=_status(
                    "ZVH.OVERDRACHT",
                    "de_escalated",
                    "Stable after crisis admission; handover to the wijkteam prepared.",
                ),
            ),
        ),
    ),
    Step(
        9,
        "warme overdracht",
        "Warm handover to the municipality's wijkteam, who accept it",
        (
            Send(
                "handover",
                "gemeente",
                "ZVH",
                "sdk",
                "case.handover",
                "ZVH.OVERDRACHT",
                (("gemeente", "GEM"),),
                "handover",
                build=_handover,
                example="case.handover",
                note="the wijkteam's acceptance is its ack: the `accepted` receipt",
            ),
        ),
    ),
    Step(
        10,
        "afsluiting",
        "The ZVH closes the case; every participant starts its retention timers",
        (
            Send(
                "closure",
                "gemeente",
                "ZVH",
                "sdk",
                "case.closure",
                "ZVH.AFSLUITING",
                (*_CASE_PARTNERS, ("gemeente", "GEM")),
                "closure",
                build=_closure,
                example="case.closure",
            ),
        ),
    ),
)
