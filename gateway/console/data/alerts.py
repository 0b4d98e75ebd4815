"""Alerts: what an officer must look at, computed from the audit log and the node's state, and
acknowledged with a comment that goes into the audit log.

An alert is a value with a stable ``id`` (its kind and what it is about, e.g.
``uncosigned:1200`` or ``denials:<OIN>:2026-03-20``): the same condition gives the same id on
every computation, so an acknowledgement (a ``console.acknowledge`` record naming the id) stays
with it, and a new occurrence (a later checkpoint, another day's spike) is a new alert.
Computed alerts (:func:`compute_alerts`):

- ``fork``: a witness kept evidence that a partner's log forked or was truncated (critical);
- ``uncosigned``: our latest checkpoint not cosigned by a partner after N checkpoint intervals;
- ``witness-unreachable``: a partner that has not cosigned our log for longer than a set time;
- ``expiry``: the directory or a key expires within 30, 14 or 3 days (one alert per threshold);
- ``denials`` / ``refusals``: a spike of policy denials or refused messages with one partner in
  the last 24 hours against its 30-day daily mean;
- ``contradiction``: a partner's signed receipt contradicts its earlier one (critical);
- ``failed-logins``: repeated failed console logins in the last hour;
- ``review-overdue``: a daily log review report not signed off after N days.

Each kind is also a metric (:func:`gauge_points`: open and acknowledged alerts per kind), for
Prometheus through the node's telemetry gauges. Nothing here holds personal data: ids, kinds and
facts name organisations, sizes, dates and counts; the comment of an acknowledgement is
personal (it goes into the record's personal part).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Literal

from gateway.audit.search import notable, sum_by_hour
from gateway.console.data.records import BadQuery, NotAllowed, OrgRef, org_ref
from gateway.console.identity import Identity
from gateway.console.roles import OFFICERS
from gateway.core.audit import Actor, Record, new_record
from schemas import ids

__all__ = [
    "KINDS",
    "MAX_COMMENT",
    "Acknowledgement",
    "Alert",
    "AlertSettings",
    "acknowledge_record",
    "compute_alerts",
    "gauge_points",
    "officer_comment_record",
]

KINDS = (
    "fork",
    "uncosigned",
    "witness-unreachable",
    "expiry",
    "denials",
    "refusals",
    "contradiction",
    "failed-logins",
    "review-overdue",
)

MAX_COMMENT = 2_000
"""Characters of an acknowledgement's or sign-off's comment: a few sentences of reasoning; the
audit log is not a case file."""

Severity = Literal["critical", "warning"]


@dataclass(frozen=True)
class AlertSettings:
    """Thresholds (the console section of node.toml can set them; these are the defaults)."""

    checkpoint_interval_s: float = 60.0
    uncosigned_intervals: int = 5
    """Checkpoint intervals our latest checkpoint may wait for a partner's cosignature: a
    partner cosigns within one interval when it is up; five rides out a restart."""
    witness_unreachable_s: float = 3600.0
    expiry_days: tuple[int, ...] = (30, 14, 3)
    spike_min: int = 10
    """Denials or refusals in 24 h below which no spike is raised, however low the baseline."""
    spike_factor: float = 3.0
    """A spike: at least this many times the partner's 30-day daily mean."""
    failed_logins: int = 5
    """Failed console logins in one hour that raise an alert."""
    review_overdue_days: int = 2


@dataclass(frozen=True)
class Acknowledgement:
    by: str  # the officer's display name
    role: str
    at: datetime
    comment: str | None  # None for a role that may not see it


@dataclass(frozen=True)
class Alert:
    id: str
    kind: str
    severity: Severity
    since: datetime
    partner: OrgRef | None = None
    facts: tuple[tuple[str, str], ...] = ()
    """What the page shows besides the kind: (name, value), e.g. ``("size", "1200")``."""
    acknowledged: Acknowledgement | None = field(default=None, compare=False)


def _ts(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def _fork_alerts(db: sqlite3.Connection) -> list[Alert]:
    return [
        Alert(
            f"fork:{origin}:{int(first)}",
            "fork",
            "critical",
            _ts(first),
            facts=(("origin", str(origin)), ("evidence", str(n)), ("code", str(code))),
        )
        for origin, code, first, n in db.execute(
            "SELECT origin, min(code), min(created_at), count(*) FROM witness_evidence"
            " GROUP BY origin ORDER BY origin"
        )
    ]


def _witness_alerts(
    db: sqlite3.Connection, now: datetime, s: AlertSettings, names: Mapping[str, str]
) -> list[Alert]:
    out: list[Alert] = []
    latest = db.execute(
        "SELECT size, created_at FROM audit_checkpoints ORDER BY size DESC LIMIT 1"
    ).fetchone()
    peers = db.execute("SELECT peer, size, updated_at FROM peer_cosigned ORDER BY peer").fetchall()
    if latest is not None:
        size, created = int(latest[0]), float(latest[1])
        late = now.timestamp() - created > s.uncosigned_intervals * s.checkpoint_interval_s
        behind = [str(p) for p, psize, _ in peers if int(psize) < size]
        if late and (behind or not peers):
            out.append(
                Alert(
                    f"uncosigned:{size}",
                    "uncosigned",
                    "warning",
                    _ts(created),
                    facts=(("size", str(size)), ("missing", ", ".join(behind) or "-")),
                )
            )
    for peer, _, updated in peers:
        if now.timestamp() - float(updated) > s.witness_unreachable_s:
            out.append(
                Alert(
                    f"witness-unreachable:{peer}:{int(updated)}",
                    "witness-unreachable",
                    "warning",
                    _ts(float(updated)),
                    partner=org_ref(str(peer), names),
                )
            )
    return out


def _expiry_alerts(
    now: datetime, expiries: Mapping[str, datetime], s: AlertSettings
) -> list[Alert]:
    out = []
    for what, at in sorted(expiries.items()):
        left = at - now
        passed = [d for d in s.expiry_days if left <= timedelta(days=d)]
        if not passed:
            continue
        days = min(passed)
        out.append(
            Alert(
                f"expiry:{what}:{at.date().isoformat()}:{days}",
                "expiry",
                "critical" if days <= min(s.expiry_days) else "warning",
                at - timedelta(days=days),
                facts=(("what", what), ("expires", at.isoformat()), ("within_days", str(days))),
            )
        )
    return out


def _spike_alerts(
    db: sqlite3.Connection,
    now: datetime,
    s: AlertSettings,
    own: str,
    names: Mapping[str, str],
) -> list[Alert]:
    day_start = now - timedelta(hours=24)
    base_start = day_start - timedelta(days=30)
    recent: dict[tuple[str, str], int] = {}
    base: dict[tuple[str, str], int] = {}
    since, until = base_start.timestamp(), now.timestamp() + 1
    for kind, ops, status in (
        ("denials", ("policy.decision",), "denied"),
        ("refusals", ("message.refuse",), None),
    ):
        for hour, party, n in sum_by_hour(db, since, until, names=ops, by="party", status=status):
            if party == own:
                continue
            target = recent if hour * 3600 >= day_start.timestamp() else base
            target[(kind, party)] = target.get((kind, party), 0) + n
    out = []
    for (kind, party), n in sorted(recent.items()):
        mean = base.get((kind, party), 0) / 30
        if n >= s.spike_min and n >= s.spike_factor * mean:
            out.append(
                Alert(
                    f"{kind}:{party}:{now.date().isoformat()}",
                    kind,
                    "warning",
                    day_start,
                    partner=org_ref(party, names),
                    facts=(("last_24h", str(n)), ("daily_mean_30d", f"{mean:.1f}")),
                )
            )
    return out


def _log_alerts(
    db: sqlite3.Connection, now: datetime, s: AlertSettings, names: Mapping[str, str]
) -> list[Alert]:
    out = []
    hits, _ = notable(
        db, ("receipt.contradiction",), (now - timedelta(days=30)).timestamp(), now.timestamp() + 1
    )
    for h in hits:
        peer = h.view.get("peer") or h.view.get("sender")
        out.append(
            Alert(
                f"contradiction:{h.idx}",
                "contradiction",
                "critical",
                _ts(h.time),
                partner=org_ref(str(peer), names) if peer else None,
                facts=(
                    ("message_id", str(h.view.get("message_id") or "")),
                    ("record", str(h.idx)),
                ),
            )
        )
    hour_ago = now - timedelta(hours=1)
    logins, _ = notable(db, ("console.login",), hour_ago.timestamp(), now.timestamp() + 1)
    failed = [h for h in logins if h.view.get("status") == "denied"]
    if len(failed) >= s.failed_logins:
        first = min(h.time for h in failed)
        out.append(
            Alert(
                f"failed-logins:{int(first // 3600)}",
                "failed-logins",
                "warning",
                _ts(first),
                facts=(("last_hour", str(len(failed))),),
            )
        )
    return out


def _review_alerts(
    now: datetime, unreviewed: Sequence[date], s: AlertSettings, tz: tzinfo
) -> list[Alert]:
    # The report days are the console's (``tz``): count them to its date, not UTC's.
    today = now.astimezone(tz).date()
    overdue = [d for d in unreviewed if (today - d).days > s.review_overdue_days]
    return [
        Alert(
            f"review-overdue:{d.isoformat()}",
            "review-overdue",
            "warning",
            datetime.combine(d + timedelta(days=1), time(), tz),  # the end of the report's day
            facts=(("report_day", d.isoformat()),),
        )
        for d in sorted(overdue)
    ]


def _acknowledgements(
    db: sqlite3.Connection, since: datetime, now: datetime, *, show_comment: bool
) -> dict[str, Acknowledgement]:
    hits, _ = notable(
        db, ("console.acknowledge",), since.timestamp(), now.timestamp() + 1, limit=10_000
    )
    out: dict[str, Acknowledgement] = {}
    for h in reversed(hits):  # oldest first: the first acknowledgement of an alert counts
        alert = (h.view.get("detail") or {}).get("alert")
        if not isinstance(alert, str) or alert in out:
            continue
        personal = h.personal or {}
        actor = personal.get("actor") or {}
        out[alert] = Acknowledgement(
            by=str(actor.get("id") or "(shredded)"),
            role=str(actor.get("role") or ""),
            at=_ts(h.time),
            comment=personal.get("note") if show_comment else None,
        )
    return out


def compute_alerts(
    db: sqlite3.Connection,
    *,
    now: datetime,
    own_org: str,
    names: Mapping[str, str],
    settings: AlertSettings = AlertSettings(),
    expiries: Mapping[str, datetime] | None = None,
    unreviewed: Sequence[date] = (),
    tz: tzinfo = UTC,
    show_comments: bool = True,
    extra: Sequence[Alert] = (),
) -> tuple[Alert, ...]:
    """Every alert at ``now``, critical first, then newest first, each with its
    acknowledgement if any.

    ``expiries``: what expires when (``directory``, ``key:<kid>``) from the trusted directory;
    ``unreviewed``: the days whose review report is not signed off (:mod:`.review`), days of
    the console's time zone ``tz``;
    ``show_comments``: false for a role that may not read the acknowledgements' comments;
    ``extra``: alerts computed elsewhere (the inzageverzoek terms, gateway.console.rights_pages)."""
    alerts = [
        *_fork_alerts(db),
        *_witness_alerts(db, now, settings, names),
        *_expiry_alerts(now, expiries or {}, settings),
        *_spike_alerts(db, now, settings, own_org, names),
        *_log_alerts(db, now, settings, names),
        *_review_alerts(now, unreviewed, settings, tz),
        *extra,
    ]
    if alerts:
        oldest = min(a.since for a in alerts) - timedelta(days=1)
        acks = _acknowledgements(db, oldest, now, show_comment=show_comments)
        alerts = [
            Alert(a.id, a.kind, a.severity, a.since, a.partner, a.facts, acks.get(a.id))
            for a in alerts
        ]
    alerts.sort(key=lambda a: a.since, reverse=True)
    alerts.sort(key=lambda a: a.severity != "critical")
    return tuple(alerts)


def acknowledge_record(identity: Identity, alert: Alert, comment: str, *, at: datetime) -> Record:
    """The ``console.acknowledge`` record of ``identity`` acknowledging ``alert``: the alert's
    id and kind in the view, the officer and the comment in the personal part.

    Raises :class:`NotAllowed` for a role other than the officers', :class:`BadQuery` for an
    empty or too long comment, or one holding a BSN-shaped number."""
    if identity.role not in OFFICERS:
        raise NotAllowed("only officers acknowledge alerts")
    return officer_comment_record(
        "console.acknowledge",
        identity,
        comment,
        at=at,
        detail={"alert": alert.id, "kind": alert.kind},
    )


def officer_comment_record(
    name: str, identity: Identity, comment: str, *, at: datetime, detail: dict[str, int | str]
) -> Record:
    """A record of an officer's act with a comment (an acknowledgement, a sign-off): ``detail``
    in the view, the officer and the comment in the personal part. Raises :class:`BadQuery` for
    an empty or too long comment, or one holding a BSN-shaped number."""
    text = comment.strip()
    if not text:
        raise BadQuery("a comment is required")
    if len(text) > MAX_COMMENT:
        raise BadQuery(f"a comment has at most {MAX_COMMENT} characters")
    if ids.find_bsn(text):
        raise BadQuery("a comment may not hold a BSN")
    return new_record(
        name=name,
        status="ok",
        start_time=at,
        end_time=at,
        detail=detail,
        actor=Actor(id=identity.subject, role=identity.role.value),
        note=text,
    )


def gauge_points(alerts: Sequence[Alert]) -> list[tuple[float, dict[str, str]]]:
    """The alerts as points of one gauge (``zvg.console.alerts``): per kind, the open and the
    acknowledged count (zero included, so a cleared alert shows as 0, not as a missing
    series)."""
    counts = {(k, s): 0 for k in KINDS for s in ("open", "acknowledged")}
    for a in alerts:
        state = "open" if a.acknowledged is None else "acknowledged"
        counts[(a.kind, state)] = counts.get((a.kind, state), 0) + 1
    return [(float(n), {"kind": k, "state": s}) for (k, s), n in sorted(counts.items())]
