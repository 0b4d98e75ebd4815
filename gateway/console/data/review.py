"""The log review report: what an officer reviews every day (and for any period on demand), and
the sign-off that records the review.

A report covers ``[start, end)`` (a day in the officer's time zone by default) and holds:

- volumes per partner and per purpose against the 30-day baseline before the period (the
  baseline's daily mean times the period's length), from the hourly counts;
- activity outside office hours (before 08:00, from 18:00, weekends: configurable) per partner;
- policy denials and refused messages per partner;
- rejected receipts (a partner's or ours) and contradictory receipts, one by one;
- urgent risk signals (``risk.signal`` messages, and any message flagged ``emergency``);
- console accesses (who, which page, how many records) and failed console logins.

A privacy or security officer signs it off with a comment: a ``console.review`` record naming the
period and the report's digest (so the sign-off binds to what was shown); the comment and the
officer are in the record's personal part. :func:`unreviewed_days` lists the days without a
sign-off, for the ``review-overdue`` alert. The PDF and the print view are the web layer's.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo

from gateway.audit.search import AuditHit, findings, notable, sum_by_hour
from gateway.console.data.alerts import officer_comment_record
from gateway.console.data.records import NotAllowed, OrgRef, org_ref
from gateway.console.identity import Identity
from gateway.console.roles import OFFICERS, Role
from gateway.core.audit import Record

__all__ = [
    "BASELINE_DAYS",
    "ConsoleAccess",
    "OfficeHours",
    "ReviewItem",
    "ReviewReport",
    "SignOff",
    "Volume",
    "day_bounds",
    "review_report",
    "signoff_record",
    "unreviewed_days",
]

BASELINE_DAYS = 30
MAX_LISTED = 1_000
"""Items listed one by one per section (the counts above them are complete): a day with more
rejected receipts than this is an incident, and the search page pages through all of them."""
_MESSAGES = ("message.send", "message.receive")


@dataclass(frozen=True)
class OfficeHours:
    start: time = time(8, 0)
    end: time = time(18, 0)
    weekdays: frozenset[int] = frozenset(range(5))  # Monday 0 … Friday 4

    def contains(self, t: datetime) -> bool:
        return t.weekday() in self.weekdays and self.start <= t.time() < self.end


@dataclass(frozen=True)
class Volume:
    """Messages in the period with one partner (or under one purpose) and the baseline."""

    label: str
    count: int
    baseline: float  # the 30-day daily mean times the period's days

    @property
    def ratio(self) -> float | None:
        return None if self.baseline == 0 else self.count / self.baseline


@dataclass(frozen=True)
class ReviewItem:
    """One record the review lists: when, what, with whom, which message."""

    time: datetime
    operation: str
    status: str
    partner: OrgRef | None
    message_id: str | None
    message_type: str | None
    detail: str
    record_idx: int


@dataclass(frozen=True)
class ConsoleAccess:
    time: datetime
    who: str
    role: str
    page: str
    count: int
    outside_office_hours: bool


@dataclass(frozen=True)
class SignOff:
    by: str
    role: str
    at: datetime
    digest: str
    comment: str | None


@dataclass(frozen=True)
class ReviewReport:
    start: datetime
    end: datetime
    per_partner: tuple[Volume, ...]
    per_purpose: tuple[Volume, ...]
    outside_office_hours: tuple[Volume, ...]  # per partner; baseline: 30-day mean outside hours
    denials: tuple[Volume, ...]  # policy denials and refusals per partner
    rejected_receipts: tuple[ReviewItem, ...]
    contradictions: tuple[ReviewItem, ...]
    risk_signals: tuple[ReviewItem, ...]
    console_accesses: tuple[ConsoleAccess, ...]
    failed_logins: tuple[ReviewItem, ...]
    signoffs: tuple[SignOff, ...]
    truncated: bool  # a section listed MAX_LISTED items and there were more

    def digest(self) -> str:
        """SHA-256 over the report's findings (not its sign-offs): what a sign-off binds to."""
        findings = (
            self.start.isoformat(),
            self.end.isoformat(),
            self.per_partner,
            self.per_purpose,
            self.outside_office_hours,
            self.denials,
            self.rejected_receipts,
            self.contradictions,
            self.risk_signals,
            self.console_accesses,
            self.failed_logins,
        )
        return hashlib.sha256(repr(findings).encode("utf-8")).hexdigest()

    @property
    def period(self) -> str:
        return f"{self.start.isoformat()}/{self.end.isoformat()}"


def _volumes(
    now_counts: Mapping[str, int], base_counts: Mapping[str, int], days: float
) -> tuple[Volume, ...]:
    labels = sorted(set(now_counts) | set(base_counts))
    out = [
        Volume(label, now_counts.get(label, 0), base_counts.get(label, 0) / BASELINE_DAYS * days)
        for label in labels
    ]
    out.sort(key=lambda v: (-v.count, v.label))
    return tuple(out)


def _item(hit: AuditHit, names: Mapping[str, str], detail: str = "") -> ReviewItem:
    v = hit.view
    own_view_partner = v.get("peer") or v.get("sender")
    return ReviewItem(
        time=datetime.fromtimestamp(hit.time, UTC),
        operation=str(v["name"]),
        status=str(v["status"]),
        partner=org_ref(str(own_view_partner), names) if own_view_partner else None,
        message_id=v.get("message_id"),
        message_type=v.get("message_type"),
        detail=detail,
        record_idx=hit.idx,
    )


def review_report(
    db: sqlite3.Connection,
    role: Role,
    *,
    start: datetime,
    end: datetime,
    own_org: str,
    names: Mapping[str, str],
    tz: tzinfo = UTC,
    hours: OfficeHours = OfficeHours(),
) -> ReviewReport:
    """The review report of ``[start, end)`` as ``role`` may read it (officers and the
    auditor; the auditor sees no sign-off comments). Office hours are in ``tz``."""
    if role not in OFFICERS and role is not Role.AUDITOR:
        raise NotAllowed("the log review is for officers and auditors")
    s, e = start.timestamp(), end.timestamp()
    days = (e - s) / 86400
    base_s = s - BASELINE_DAYS * 86400

    local_of: dict[int, datetime] = {}
    label_of: dict[str, str] = {}

    def local(hour: int) -> datetime:
        t = local_of.get(hour)
        if t is None:
            t = local_of[hour] = datetime.fromtimestamp(hour * 3600, UTC).astimezone(tz)
        return t

    def label(party: str) -> str:
        text = label_of.get(party)
        if text is None:
            text = label_of[party] = str(org_ref(party, names))
        return text

    def add(now_: dict[str, int], base: dict[str, int], hour: int, key: str, n: int) -> None:
        target = now_ if hour * 3600 >= s else base
        target[key] = target.get(key, 0) + n

    partner_now: dict[str, int] = {}
    partner_base: dict[str, int] = {}
    off_now: dict[str, int] = {}
    off_base: dict[str, int] = {}
    for hour, party, n in sum_by_hour(db, base_s, e, names=_MESSAGES, by="party"):
        if party == own_org:
            continue
        add(partner_now, partner_base, hour, label(party), n)
        if not hours.contains(local(hour)):
            add(off_now, off_base, hour, label(party), n)
    denied_now: dict[str, int] = {}
    denied_base: dict[str, int] = {}
    for names_, status in ((("policy.decision",), "denied"), (("message.refuse",), None)):
        for hour, party, n in sum_by_hour(db, base_s, e, names=names_, by="party", status=status):
            if party != own_org:
                add(denied_now, denied_base, hour, label(party), n)
    purpose_now: dict[str, int] = {}
    purpose_base: dict[str, int] = {}
    for hour, purpose, n in sum_by_hour(db, base_s, e, names=_MESSAGES, by="purpose"):
        add(purpose_now, purpose_base, hour, purpose or "-", n)

    receipts, more_receipts = findings(db, "rejected_receipts", s, e, limit=MAX_LISTED)
    risks, more_risks = findings(db, "risk_signals", s, e, limit=MAX_LISTED)
    contradictions, more_contradictions = notable(
        db, ("receipt.contradiction",), s, e, limit=MAX_LISTED
    )
    truncated = more_receipts or more_risks or more_contradictions
    accesses, more = notable(db, ("console.access",), s, e, limit=MAX_LISTED)
    truncated |= more
    logins, more = notable(db, ("console.login",), s, e, limit=MAX_LISTED)
    truncated |= more
    return ReviewReport(
        start=start,
        end=end,
        per_partner=_volumes(partner_now, partner_base, days),
        per_purpose=_volumes(purpose_now, purpose_base, days),
        outside_office_hours=_volumes(off_now, off_base, days),
        denials=_volumes(denied_now, denied_base, days),
        rejected_receipts=tuple(_item(h, names, "rejected") for h in receipts),
        contradictions=tuple(_item(h, names) for h in reversed(contradictions)),
        risk_signals=tuple(_item(h, names, ",".join(h.view.get("flags") or ())) for h in risks),
        console_accesses=tuple(_access(h, tz, hours) for h in reversed(accesses)),
        failed_logins=tuple(
            _item(h, names, str(h.view.get("reason") or ""))
            for h in reversed(logins)
            if h.view.get("status") == "denied"
        ),
        signoffs=_signoffs(db, start, end, show_comment=role in OFFICERS),
        truncated=truncated,
    )


def _access(hit: AuditHit, tz: tzinfo, hours: OfficeHours) -> ConsoleAccess:
    detail = hit.view.get("detail") or {}
    actor = (hit.personal or {}).get("actor") or {}
    t = datetime.fromtimestamp(hit.time, UTC)
    return ConsoleAccess(
        time=t,
        who=str(actor.get("id") or "(shredded)"),
        role=str(actor.get("role") or ""),
        page=str(detail.get("page") or ""),
        count=int(detail.get("count") or 0),
        outside_office_hours=not hours.contains(t.astimezone(tz)),
    )


def _signoffs(
    db: sqlite3.Connection, start: datetime, end: datetime, *, show_comment: bool
) -> tuple[SignOff, ...]:
    period = f"{start.isoformat()}/{end.isoformat()}"
    hits, _ = notable(db, ("console.review",), start.timestamp(), float("inf"))
    out = []
    for h in reversed(hits):
        detail = h.view.get("detail") or {}
        if detail.get("period") != period:
            continue
        personal = h.personal or {}
        actor = personal.get("actor") or {}
        out.append(
            SignOff(
                by=str(actor.get("id") or "(shredded)"),
                role=str(actor.get("role") or ""),
                at=datetime.fromtimestamp(h.time, UTC),
                digest=str(detail.get("digest") or ""),
                comment=personal.get("note") if show_comment else None,
            )
        )
    return tuple(out)


def signoff_record(
    identity: Identity, report: ReviewReport, comment: str, *, at: datetime
) -> Record:
    """The ``console.review`` record of ``identity`` signing off ``report``: period and digest
    in the view, officer and comment in the personal part.

    Raises :class:`NotAllowed` unless the role is a privacy or security officer, and
    :class:`~gateway.console.data.records.BadQuery` for an empty, too long or BSN-holding
    comment."""
    if identity.role not in OFFICERS:
        raise NotAllowed("only a privacy or security officer signs off a log review")
    return officer_comment_record(
        "console.review",
        identity,
        comment,
        at=at,
        detail={"period": report.period, "digest": report.digest()},
    )


def day_bounds(day: date, tz: tzinfo) -> tuple[datetime, datetime]:
    """The start and end of ``day`` in ``tz`` (23 or 25 hours on a DST change)."""
    start = datetime.combine(day, time(0), tz)
    end = datetime.combine(day + timedelta(days=1), time(0), tz)
    return start, end


def unreviewed_days(
    db: sqlite3.Connection, *, today: date, days: int, tz: tzinfo = UTC, since: date | None = None
) -> tuple[date, ...]:
    """The days of the last ``days`` before ``today`` (not ``since`` earlier: the console's
    first day) whose daily report has no sign-off."""
    first = today - timedelta(days=days)
    if since is not None and since > first:
        first = since
    start, _ = day_bounds(first, tz)
    hits, _ = notable(db, ("console.review",), start.timestamp(), float("inf"), limit=10_000)
    signed = {str((h.view.get("detail") or {}).get("period")) for h in hits}
    out = []
    d = first
    while d < today:
        s, e = day_bounds(d, tz)
        if f"{s.isoformat()}/{e.isoformat()}" not in signed:
            out.append(d)
        d += timedelta(days=1)
    return tuple(out)
