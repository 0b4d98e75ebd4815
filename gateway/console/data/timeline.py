"""A case's timeline: every message of one case reference in time order, one lane per partner.

Read from this node's audit log (the case-reference index): each message appears once, at the
time this node sent or received it (``message.send`` / ``message.receive``), in the lane of the
partner on the other side — the recipients of what this node sent, the sender of what it
received — with its latest receipt status per partner, and refusals and policy denials in red
(a ``message.refuse`` or a denying ``policy.decision`` of the case). Steps of the case's course are
named so the page can mark them: ``opschalen`` (a ``risk.signal``, or a ``case.status`` escalating
the case), ``afschalen`` (a ``case.status`` de-escalating), ``overdracht`` (``case.handover``:
warme overdracht to the regular chain) and ``afsluiting`` (``case.closure``). A ``case.status``
record does not say which way it went (the body is never logged), so every ``case.status`` is
marked ``status``: opschalen and afschalen are told apart only where the message type does it.

The case reference is personal data: only the officers' roles may open a timeline.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from gateway.audit.search import AuditHit, RecordQuery, receipt_statuses, search
from gateway.console.data.records import NotAllowed, OrgRef, org_ref
from gateway.console.roles import OFFICERS, Role

__all__ = ["MAX_CASE_RECORDS", "CaseEvent", "CaseTimeline", "Step", "case_timeline"]

MAX_CASE_RECORDS = 5_000
"""Records of one case read at most. A ZVH case runs for months with tens of messages (each a
handful of records); 5,000 is two orders of magnitude above that and still one indexed read."""

Step = Literal["opschalen", "status", "overdracht", "afsluiting"]

_STEPS: Mapping[str, Step] = {
    "risk.signal": "opschalen",
    "case.status": "status",
    "case.handover": "overdracht",
    "case.closure": "afsluiting",
}
_MESSAGES = ("message.send", "message.receive", "message.refuse")


@dataclass(frozen=True)
class CaseEvent:
    """One message of the case in one partner's lane (a message to two partners is an event in
    each lane). ``direction``: ``out`` (this node sent it) or ``in``."""

    time: datetime
    lane: int
    message_id: str
    message_type: str
    purpose: str
    direction: Literal["out", "in"]
    status: str  # the record's: ok, or denied/rejected for a refusal
    receipt: str | None  # the partner's latest receipt status (or ours, for what we received)
    step: Step | None
    record_idx: int


@dataclass(frozen=True)
class CaseTimeline:
    case_ref: str
    lanes: tuple[OrgRef, ...]
    events: tuple[CaseEvent, ...]
    truncated: bool


def _partners(hit: AuditHit, own: str) -> list[tuple[str, Literal["out", "in"]]]:
    """The lanes a message record belongs in: the recipients of what we sent, the sender of
    what we received."""
    v = hit.view
    sender = str(v.get("sender") or "")
    if sender == own:
        return [(str(r), "out") for r in v.get("recipients") or () if r != own]
    return [(sender, "in")] if sender else []


def case_timeline(
    db: sqlite3.Connection,
    role: Role,
    case_ref: str,
    *,
    own_org: str,
    names: Mapping[str, str],
) -> CaseTimeline:
    """The timeline of ``case_ref`` as this node (``own_org``) saw it.

    Raises :class:`NotAllowed` for a role other than the officers'."""
    if role not in OFFICERS:
        raise NotAllowed("only officers open a case timeline")
    hits, more = search(db, RecordQuery(case_ref=case_ref, limit=MAX_CASE_RECORDS))
    hits.reverse()  # oldest first
    messages = [h for h in hits if h.view["name"] in _MESSAGES and h.view.get("message_id")]
    receipts = receipt_statuses(db, sorted({str(h.view["message_id"]) for h in messages}))
    lanes: dict[str, int] = {}
    events: list[CaseEvent] = []
    seen: set[tuple[str, str]] = set()
    for hit in messages:
        v = hit.view
        mid = str(v["message_id"])
        for org, direction in _partners(hit, own_org):
            if (mid, org) in seen and hit.view["name"] != "message.refuse":
                continue
            seen.add((mid, org))
            lane = lanes.setdefault(org, len(lanes))
            mtype = str(v.get("message_type") or "")
            events.append(
                CaseEvent(
                    time=datetime.fromtimestamp(hit.time, UTC),
                    lane=lane,
                    message_id=mid,
                    message_type=mtype,
                    purpose=str(v.get("purpose") or ""),
                    direction=direction,
                    status=str(v["status"]),
                    receipt=receipts.get(mid, {}).get(org),
                    step=_STEPS.get(mtype),
                    record_idx=hit.idx,
                )
            )
    return CaseTimeline(
        case_ref,
        tuple(org_ref(o, names) for o in lanes),
        tuple(events),
        more,
    )
