"""The five organisations of ZVH Veenstad and the federation policy they agreed (issue 4 §4).

The policy is built from the catalogue (docs/architecture.md §5.3) and the ZVH case flow: the ZVH
(hosted by the municipality) asks, partners answer with what their role may share under each
purpose, and sensitive categories only travel where a purpose needs them. Highlights a privacy
officer checks:

- ``ZVH.BEKENDHEID`` answers are hit/no-hit with involvement and a contact: GGZ may not add
  GEZONDHEID there (it may under ``ZVH.INFORMATIE``, with professional secrecy lifted by the Wgs).
- Directly identifying data (ID_DIRECT) goes to the police only under ``ZVH.RISICO``.
- Only ``ZVH.RISICO`` rules allow the emergency flag; only VT, GEM, POL and the ZVH may share data
  about minors (the household system).
- The OM shares criminal-law data (JUSTITIEEL) with the ZVH only; nobody forwards it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from schemas.directory import (
    Authority,
    DirectoryPayload,
    KeyEntry,
    Member,
    PartySelector,
    Policy,
    PolicyFlag,
    PolicyRule,
)

__all__ = [
    "CATALOGUE_VERSION",
    "FEDERATION",
    "FEDERATION_NAME",
    "LEGAL_BASES",
    "ORGS",
    "DemoOrg",
    "demo_members",
    "demo_payload",
    "demo_rules",
    "org_by_key",
]

FEDERATION = "veenstad"
FEDERATION_NAME = "ZVH Veenstad"
CATALOGUE_VERSION = "1.1.0"


@dataclass(frozen=True)
class DemoOrg:
    key: str  # short name used for folders and CLI arguments
    oin: str
    name: str
    roles: tuple[str, ...]
    node_id: str
    system: str  # what the partner's own system is (docs/demo.md)


ORGS: tuple[DemoOrg, ...] = (
    DemoOrg(
        "gemeente",
        "00000001999000001000",
        "Gemeente Veenstad (Zorg- en Veiligheidshuis Veenstad)",
        ("ZVH", "GEM"),
        "zvh-veenstad-1",
        "case management behind a ZGW Zaken API",
    ),
    DemoOrg(
        "politie",
        "00000001999000002000",
        "Politie, basisteam Veenstad",
        ("POL",),
        "pol-veenstad-1",
        "incident registration; file exports",
    ),
    DemoOrg(
        "om",
        "00000001999000003000",
        "Openbaar Ministerie, arrondissement Veenstad",
        ("OM",),
        "om-veenstad-1",
        "case system; file exports",
    ),
    DemoOrg(
        "ggz",
        "00000001999000004000",
        "GGZ Veenland",
        ("GGZ",),
        "ggz-veenland-1",
        "EHR speaking FHIR R4",
    ),
    DemoOrg(
        "veiligthuis",
        "00000001999000005000",
        "Veilig Thuis Veenland",
        ("VT",),
        "vt-veenland-1",
        "registration system; webhooks",
    ),
)

#: The legal bases each demo role names by default (each partner's privacy officer would confirm
#: them).
LEGAL_BASES: dict[str, tuple[str, ...]] = {
    "ZVH": ("WGS",),
    "GEM": ("WGS",),
    "POL": ("WPG_20", "WGS"),
    "OM": ("WJSG_39F", "WGS"),
    "GGZ": ("WGS",),
    "VT": ("WMO_VT", "WGS"),
}


def org_by_key(key: str) -> DemoOrg:
    """The demo organisation with this short name (``ggz``, ``politie``, ...)."""
    for org in ORGS:
        if org.key == key:
            return org
    raise KeyError(key)


PARTNERS = ("POL", "OM", "GGZ", "VT", "GEM")
_NO_POL = ("OM", "GGZ", "VT", "GEM")


def _r(
    rule_id: str,
    description: str,
    purpose: str,
    sender: tuple[str, ...],
    recipient: tuple[str, ...],
    types: tuple[str, ...],
    categories: tuple[str, ...],
    flags: tuple[PolicyFlag, ...] = (),
) -> PolicyRule:
    return PolicyRule.model_validate(
        {
            "id": rule_id,
            "description": description,
            "purpose": purpose,
            "sender": PartySelector(roles=sender),
            "recipient": PartySelector(roles=recipient),
            "message_types": types,
            "data_categories": categories,
            "flags": flags,
        }
    )


def demo_rules() -> tuple[PolicyRule, ...]:
    """The demo federation's policy rules."""
    base = ("ID_PSEUDO", "CONTACT_PROF")
    return (
        # --- aanmelding and screening
        _r(
            "aanmelding-pol",
            "Police refer a case to the ZVH",
            "ZVH.AANMELDING",
            ("POL",),
            ("ZVH",),
            ("case.referral",),
            (*base, "ID_DIRECT", "LEEFGEBIEDEN", "SYSTEEM", "POLITIE", "RISICO", "VRIJE_TEKST"),
            ("minors",),
        ),
        _r(
            "aanmelding-ggz",
            "GGZ refers a case to the ZVH",
            "ZVH.AANMELDING",
            ("GGZ",),
            ("ZVH",),
            ("case.referral",),
            (
                *base,
                "ID_DIRECT",
                "BETROKKENHEID",
                "LEEFGEBIEDEN",
                "SYSTEEM",
                "GEZONDHEID",
                "RISICO",
                "VRIJE_TEKST",
            ),
            ("minors", "professional_secrecy"),
        ),
        _r(
            "aanmelding-vt",
            "Veilig Thuis refers a case to the ZVH",
            "ZVH.AANMELDING",
            ("VT",),
            ("ZVH",),
            ("case.referral",),
            (
                *base,
                "ID_DIRECT",
                "BETROKKENHEID",
                "LEEFGEBIEDEN",
                "SYSTEEM",
                "RISICO",
                "VRIJE_TEKST",
            ),
            ("minors", "professional_secrecy"),
        ),
        _r(
            "aanmelding-om",
            "The OM refers a case to the ZVH",
            "ZVH.AANMELDING",
            ("OM",),
            ("ZVH",),
            ("case.referral",),
            (*base, "ID_DIRECT", "BETROKKENHEID", "JUSTITIEEL", "RISICO", "VRIJE_TEKST"),
        ),
        _r(
            "aanmelding-gem",
            "The municipality refers a case to the ZVH",
            "ZVH.AANMELDING",
            ("GEM",),
            ("ZVH",),
            ("case.referral",),
            (*base, "ID_DIRECT", "LEEFGEBIEDEN", "SYSTEEM", "RISICO", "VRIJE_TEKST"),
            ("minors",),
        ),
        _r(
            "screening-status",
            "The ZVH tells the referrer the screening outcome",
            "ZVH.AANMELDING",
            ("ZVH",),
            PARTNERS,
            ("case.status",),
            ("ID_PSEUDO", "VRIJE_TEKST"),
        ),
        # --- bekendheidsvraag: hit/no-hit and a contact
        _r(
            "bekendheid-vraag",
            "The ZVH asks whether a partner knows the person",
            "ZVH.BEKENDHEID",
            ("ZVH",),
            _NO_POL,
            ("info.request",),
            ("ID_PSEUDO", "ID_DIRECT"),
        ),
        _r(
            "bekendheid-vraag-pol",
            "The ZVH asks the police, pseudonymously",
            "ZVH.BEKENDHEID",
            ("ZVH",),
            ("POL",),
            ("info.request",),
            ("ID_PSEUDO",),
        ),
        _r(
            "bekendheid-antwoord",
            "A partner answers hit/no-hit with involvement and a contact",
            "ZVH.BEKENDHEID",
            PARTNERS,
            ("ZVH",),
            ("info.response",),
            ("ID_PSEUDO", "BETROKKENHEID", "CONTACT_PROF"),
            ("professional_secrecy",),
        ),
        # --- verrijking: content by role
        _r(
            "informatie-vraag",
            "The ZVH asks partners targeted content questions",
            "ZVH.INFORMATIE",
            ("ZVH",),
            _NO_POL,
            ("info.request",),
            ("ID_PSEUDO", "ID_DIRECT", "VRIJE_TEKST"),
        ),
        _r(
            "informatie-vraag-pol",
            "The ZVH asks the police content questions, pseudonymously",
            "ZVH.INFORMATIE",
            ("ZVH",),
            ("POL",),
            ("info.request",),
            ("ID_PSEUDO", "VRIJE_TEKST"),
        ),
        _r(
            "informatie-ggz",
            "GGZ shares a risk and care summary",
            "ZVH.INFORMATIE",
            ("GGZ",),
            ("ZVH",),
            ("info.response",),
            (*base, "BETROKKENHEID", "RISICO", "GEZONDHEID", "LEEFGEBIEDEN", "VRIJE_TEKST"),
            ("professional_secrecy",),
        ),
        _r(
            "informatie-om",
            "The OM shares supervision conditions and pending cases",
            "ZVH.INFORMATIE",
            ("OM",),
            ("ZVH",),
            ("info.response",),
            (*base, "BETROKKENHEID", "JUSTITIEEL", "RISICO", "VRIJE_TEKST"),
        ),
        _r(
            "informatie-pol",
            "The police share incidents (Wpg art. 20)",
            "ZVH.INFORMATIE",
            ("POL",),
            ("ZVH",),
            ("info.response",),
            (*base, "BETROKKENHEID", "POLITIE", "RISICO", "VRIJE_TEKST"),
        ),
        _r(
            "informatie-vt",
            "Veilig Thuis shares reports about the household",
            "ZVH.INFORMATIE",
            ("VT",),
            ("ZVH",),
            ("info.response",),
            (*base, "BETROKKENHEID", "SYSTEEM", "RISICO", "VRIJE_TEKST"),
            ("minors", "professional_secrecy"),
        ),
        _r(
            "informatie-gem",
            "The municipality shares social-domain information",
            "ZVH.INFORMATIE",
            ("GEM",),
            ("ZVH",),
            ("info.response",),
            (*base, "BETROKKENHEID", "LEEFGEBIEDEN", "SYSTEEM", "VRIJE_TEKST"),
            ("minors",),
        ),
        # --- casusoverleg, plan, monitoring
        _r(
            "casusoverleg",
            "The ZVH invites partners and records agreements",
            "ZVH.CASUSOVERLEG",
            ("ZVH",),
            PARTNERS,
            ("meeting.invitation", "plan.task"),
            (*base, "PLAN", "VRIJE_TEKST"),
        ),
        _r(
            "plan-taak",
            "The ZVH assigns plan tasks and reports progress",
            "ZVH.PLAN",
            ("ZVH",),
            PARTNERS,
            ("plan.task", "case.status"),
            (*base, "PLAN", "VRIJE_TEKST"),
        ),
        _r(
            "plan-voortgang",
            "Partners report progress on their tasks",
            "ZVH.PLAN",
            PARTNERS,
            ("ZVH",),
            ("plan.task",),
            (*base, "PLAN", "VRIJE_TEKST"),
        ),
        # --- acute risk, opschalen
        _r(
            "risico-pol",
            "Police signal acute risk to the ZVH, GGZ crisis service and municipality",
            "ZVH.RISICO",
            ("POL",),
            ("ZVH", "GGZ", "GEM"),
            ("risk.signal",),
            (*base, "ID_DIRECT", "POLITIE", "RISICO", "SYSTEEM", "VRIJE_TEKST"),
            ("emergency", "minors"),
        ),
        _r(
            "risico-ggz",
            "GGZ signals acute risk to the ZVH and the municipality (Wvggz)",
            "ZVH.RISICO",
            ("GGZ",),
            ("ZVH", "GEM"),
            ("risk.signal",),
            (*base, "ID_DIRECT", "RISICO", "GEZONDHEID", "VRIJE_TEKST"),
            ("emergency", "professional_secrecy"),
        ),
        _r(
            "risico-vt",
            "Veilig Thuis signals acute risk in a household",
            "ZVH.RISICO",
            ("VT",),
            ("ZVH", "GEM", "POL"),
            ("risk.signal",),
            (*base, "ID_DIRECT", "RISICO", "SYSTEEM", "VRIJE_TEKST"),
            ("emergency", "minors", "professional_secrecy"),
        ),
        _r(
            "risico-naar-pol",
            "The ZVH asks the police to act on an acute risk",
            "ZVH.RISICO",
            ("ZVH",),
            ("POL",),
            ("risk.signal",),
            (*base, "ID_DIRECT", "RISICO", "VRIJE_TEKST"),
            ("emergency",),
        ),
        _r(
            "risico-status",
            "The ZVH reports opschalen and afschalen",
            "ZVH.RISICO",
            ("ZVH",),
            PARTNERS,
            ("case.status",),
            ("ID_PSEUDO", "VRIJE_TEKST"),
        ),
        # --- afschalen and warme overdracht
        _r(
            "overdracht",
            "The ZVH hands the case over to the regular chain",
            "ZVH.OVERDRACHT",
            ("ZVH",),
            ("GEM", "GGZ", "VT"),
            ("case.handover",),
            (
                *base,
                "ID_DIRECT",
                "BETROKKENHEID",
                "PLAN",
                "RISICO",
                "LEEFGEBIEDEN",
                "SYSTEEM",
                "VRIJE_TEKST",
            ),
            ("minors",),
        ),
        _r(
            "overdracht-status",
            "The ZVH reports the de-escalation",
            "ZVH.OVERDRACHT",
            ("ZVH",),
            PARTNERS,
            ("case.status",),
            ("ID_PSEUDO", "VRIJE_TEKST"),
        ),
        # --- closure, retention
        _r(
            "afsluiting",
            "The ZVH closes the case and instructs retention",
            "ZVH.AFSLUITING",
            ("ZVH",),
            PARTNERS,
            ("case.closure", "case.status"),
            ("ID_PSEUDO", "VRIJE_TEKST"),
        ),
        # --- accountability and data-subject rights via the ZVH contactpunt
        _r(
            "verantwoording-vraag",
            "The contactpunt forwards a rights request",
            "ZVH.VERANTWOORDING",
            ("ZVH",),
            _NO_POL,
            ("info.request",),
            ("ID_PSEUDO", "ID_DIRECT", "VRIJE_TEKST"),
        ),
        _r(
            "verantwoording-vraag-pol",
            "The contactpunt forwards a rights request to the police",
            "ZVH.VERANTWOORDING",
            ("ZVH",),
            ("POL",),
            ("info.request",),
            ("ID_PSEUDO", "VRIJE_TEKST"),
        ),
        _r(
            "verantwoording-antwoord",
            "Partners answer a rights request",
            "ZVH.VERANTWOORDING",
            PARTNERS,
            ("ZVH",),
            ("info.response",),
            ("ID_PSEUDO", "BETROKKENHEID", "CONTACT_PROF", "VRIJE_TEKST"),
        ),
        _r(
            "verantwoording-notice",
            "A partner passes a rectification, erasure or restriction on to every organisation it "
            "sent the person's data to (AVG art. 19)",
            "ZVH.VERANTWOORDING",
            ("ZVH", *PARTNERS),
            ("ZVH", *PARTNERS),
            ("rights.notice",),
            ("ID_PSEUDO", "ID_DIRECT"),
        ),
        # --- the inzageverzoek (AVG art. 15): every partner, the police too, gets the BSN
        # inside the encrypted body, because each finds its records under its own pseudonym
        _r(
            "inzage-verzoek",
            "The contactpunt asks every partner which exchanges about a person it logged",
            "ZVH.VERANTWOORDING",
            ("ZVH",),
            PARTNERS,
            ("rights.request",),
            ("ID_PSEUDO", "ID_DIRECT"),
        ),
        _r(
            "inzage-antwoord",
            "A partner answers an inzageverzoek with its exchanges, or defers",
            "ZVH.VERANTWOORDING",
            PARTNERS,
            ("ZVH",),
            ("rights.response",),
            ("BETROKKENHEID",),
        ),
    )


def demo_members(
    keys: dict[str, tuple[KeyEntry, ...]], user_prefix: str = "zvg-"
) -> tuple[Member, ...]:
    """The five members, with the public keys given per org key (``"ggz"`` → key entries).
    Broker users are ``<user_prefix><org key>`` (tests use a unique prefix per run)."""
    return tuple(
        Member(
            oin=o.oin,
            name=o.name,
            roles=o.roles,
            node_ids=(o.node_id,),
            broker_user=f"{user_prefix}{o.key}",
            keys=keys.get(o.key, ()),
        )
        for o in ORGS
    )


def demo_payload(
    *,
    version: int,
    issued_at: datetime,
    expires: datetime,
    authority: Authority,
    keys: dict[str, tuple[KeyEntry, ...]],
    federation: str = FEDERATION,
    user_prefix: str = "zvg-",
) -> DirectoryPayload:
    """A directory payload for ZVH Veenstad with the demo policy."""
    return DirectoryPayload(
        type="zvg-directory",
        federation=federation,
        name=FEDERATION_NAME,
        version=version,
        issued_at=issued_at,
        expires=expires,
        catalogue_version=CATALOGUE_VERSION,
        authority=authority,
        members=demo_members(keys, user_prefix),
        policy=Policy(rules=demo_rules()),
    )
