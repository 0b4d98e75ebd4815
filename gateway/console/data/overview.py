"""The overview's figures: the log's health, the partners' logs this node witnesses, and 30 days
of messages per day per purpose and per partner, with policy denials — as tables and as
server-side SVG charts (the table is the accessible form; the chart repeats it for the eye).

Counts come from the audit log's hourly counts (:mod:`gateway.audit.search`), never from
reading records: the overview costs the same with a thousand records or a million. A message
counts once per node event: ``message.send`` when this node sent it, ``message.receive`` when it
received one; per partner, a message to two partners counts for each.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Literal
from xml.sax.saxutils import escape, quoteattr

from gateway.audit.search import sum_by_day, utc_offsets
from gateway.console.data.records import OrgRef, org_ref

__all__ = [
    "CHART_DAYS",
    "Chart",
    "LogHealth",
    "Overview",
    "PeerCosign",
    "Series",
    "WitnessedLog",
    "chart_rows",
    "chart_svg",
    "overview",
]

CHART_DAYS = 30
_MESSAGE_OPS = ("message.send", "message.receive")
_MAX_SERIES = 8
"""Series drawn per chart: more colours than this are not told apart; the rest are summed as
"other" (the table beside the chart has them all)."""
_PALETTE = ("#01689b", "#e17000", "#39870c", "#a90061", "#673327", "#007bc7", "#ca005d", "#275937")


@dataclass(frozen=True)
class Series:
    label: str
    counts: tuple[int, ...]  # one per day of the chart

    @property
    def total(self) -> int:
        return sum(self.counts)


@dataclass(frozen=True)
class Chart:
    """Counts per day (``days``, oldest first) per series, largest series first."""

    title: str
    days: tuple[date, ...]
    series: tuple[Series, ...]

    def totals(self) -> tuple[int, ...]:
        return tuple(sum(s.counts[i] for s in self.series) for i in range(len(self.days)))


@dataclass(frozen=True)
class PeerCosign:
    """A partner witnessing our log: the largest size it cosigned, and when."""

    peer: OrgRef
    size: int
    at: datetime
    covers_latest: bool


@dataclass(frozen=True)
class LogHealth:
    records: int
    checkpoint_size: int | None
    checkpoint_age_s: float | None
    cosigners: tuple[PeerCosign, ...]


@dataclass(frozen=True)
class WitnessedLog:
    """A partner's log this node witnesses: the size it last cosigned, its lag behind the
    partner's latest checkpoint we saw, and how much fork evidence it kept about it."""

    origin: str
    size: int
    cosigned_at: datetime
    fork_evidence: int


@dataclass(frozen=True)
class Overview:
    health: LogHealth
    witnessed: tuple[WitnessedLog, ...]
    per_purpose: Chart
    per_partner: Chart
    denials: Chart  # policy denials per day per partner


def _days(now: datetime, tz: tzinfo) -> tuple[date, ...]:
    today = now.astimezone(tz).date()
    return tuple(today - timedelta(days=CHART_DAYS - 1 - i) for i in range(CHART_DAYS))


def _chart(title: str, days: tuple[date, ...], by_label: Mapping[str, dict[date, int]]) -> Chart:
    series = [
        Series(label, tuple(counts.get(d, 0) for d in days)) for label, counts in by_label.items()
    ]
    series.sort(key=lambda s: (-s.total, s.label))
    return Chart(title, days, tuple(series))


def _start(days: tuple[date, ...], tz: tzinfo) -> float:
    return datetime.combine(days[0], datetime.min.time(), tz).timestamp()


def overview(
    db: sqlite3.Connection,
    *,
    now: datetime,
    own_org: str,
    names: Mapping[str, str],
    log_size: int,
    tz: tzinfo = UTC,
) -> Overview:
    """The overview at ``now`` (days in ``tz``; ``log_size`` from the running log's tree)."""
    days = _days(now, tz)
    since, until = _start(days, tz), now.timestamp() + 1
    offsets = utc_offsets(since, until, tz)
    label_of: dict[str, str] = {}

    def label(party: str) -> str:
        text = label_of.get(party)
        if text is None:
            text = label_of[party] = str(org_ref(party, names))
        return text

    def add(target: dict[str, dict[date, int]], key: str, day: date, n: int) -> None:
        per = target.setdefault(key, {})
        per[day] = per.get(day, 0) + n

    def summed(
        names_: Sequence[str], by: Literal["purpose", "party"], status: str | None = None
    ) -> list[tuple[date, str, int]]:
        return sum_by_day(db, since, until, names=names_, by=by, offsets=offsets, status=status)

    purposes: dict[str, dict[date, int]] = {}
    for day, purpose, n in summed(_MESSAGE_OPS, "purpose"):
        add(purposes, purpose or "-", day, n)
    partners: dict[str, dict[date, int]] = {}
    for day, party, n in summed(_MESSAGE_OPS, "party"):
        if party != own_org:
            add(partners, label(party), day, n)
    denials: dict[str, dict[date, int]] = {}
    for day, party, n in summed(("policy.decision",), "party", "denied"):
        if party != own_org:
            add(denials, label(party), day, n)
    return Overview(
        health=_health(db, now, log_size, names),
        witnessed=_witnessed(db),
        per_purpose=_chart("messages per purpose", days, purposes),
        per_partner=_chart("messages per partner", days, partners),
        denials=_chart("policy denials per partner", days, denials),
    )


def _health(
    db: sqlite3.Connection, now: datetime, log_size: int, names: Mapping[str, str]
) -> LogHealth:
    row = db.execute(
        "SELECT size, created_at FROM audit_checkpoints ORDER BY size DESC LIMIT 1"
    ).fetchone()
    size = int(row[0]) if row else None
    age = max(0.0, now.timestamp() - float(row[1])) if row else None
    peers = tuple(
        PeerCosign(
            org_ref(str(p), names),
            int(s),
            datetime.fromtimestamp(float(u), UTC),
            size is not None and int(s) >= size,
        )
        for p, s, u in db.execute("SELECT peer, size, updated_at FROM peer_cosigned ORDER BY peer")
    )
    return LogHealth(log_size, size, age, peers)


def _witnessed(db: sqlite3.Connection) -> tuple[WitnessedLog, ...]:
    evidence = dict(
        db.execute("SELECT origin, count(*) FROM witness_evidence GROUP BY origin").fetchall()
    )
    out = [
        WitnessedLog(str(o), int(s), datetime.fromtimestamp(float(t), UTC), int(evidence.pop(o, 0)))
        for o, s, t in db.execute(
            "SELECT origin, size, cosigned_at FROM witness_heads ORDER BY origin"
        )
    ]
    # Fork evidence about a log we never cosigned is shown too (it is the loudest signal).
    out += [
        WitnessedLog(str(o), 0, datetime.fromtimestamp(0, UTC), int(n))
        for o, n in sorted(evidence.items())
    ]
    return tuple(out)


# ---------------------------------------------------------------------------- SVG


def _shown(chart: Chart) -> list[Series]:
    if len(chart.series) <= _MAX_SERIES:
        return list(chart.series)
    head, rest = list(chart.series[: _MAX_SERIES - 1]), chart.series[_MAX_SERIES - 1 :]
    other = tuple(sum(s.counts[i] for s in rest) for i in range(len(chart.days)))
    return [*head, Series("other", other)]


def chart_svg(
    chart: Chart, *, width: int = 720, height: int = 240, label: str | None = None
) -> str:
    """``chart`` as a stacked bar chart in SVG (one bar per day), with a legend.

    Every text is XML-escaped; no script, no style attribute (the console's CSP allows none),
    colours as presentation attributes. ``role="img"`` with the title as its accessible name:
    the numbers themselves are in the table the page shows beside it."""
    series = _shown(chart)
    legend_h = 18 * ((len(series) + 2) // 3)
    plot_h = height - 30 - legend_h
    top = 10
    left = 40
    n = len(chart.days)
    bar_w = (width - left - 10) / max(n, 1)
    peak = max([*chart.totals(), 1])
    title = label or chart.title
    out = [
        (
            f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}"'
            f' width="{width}" height="{height}" role="img" aria-label={quoteattr(title)}>'
        ),
        f"<title>{escape(title)}</title>",
        (
            f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 10}" y2="{top + plot_h}"'
            ' stroke="#555" stroke-width="1"/>'
        ),
        f'<text x="{left - 4}" y="{top + 10}" text-anchor="end" font-size="11">{peak}</text>',
        f'<text x="{left - 4}" y="{top + plot_h}" text-anchor="end" font-size="11">0</text>',
    ]
    for i, d in enumerate(chart.days):
        x = left + i * bar_w
        y = float(top + plot_h)
        for k, s in enumerate(series):
            value = s.counts[i]
            if not value:
                continue
            h = plot_h * value / peak
            y -= h
            out.append(
                f'<rect x="{x + 1:.1f}" y="{y:.1f}" width="{max(bar_w - 2, 1):.1f}"'
                f' height="{h:.1f}" fill="{_PALETTE[k % len(_PALETTE)]}">'
                f"<title>{escape(f'{d.isoformat()} {s.label}: {value}')}</title></rect>"
            )
        if (i % 7 == 0 and n - 1 - i >= 3) or i == n - 1:  # weekly, without crowding the last
            out.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{top + plot_h + 14}" text-anchor="middle"'
                f' font-size="10">{escape(d.strftime("%d-%m"))}</text>'
            )
    for k, s in enumerate(series):
        lx = left + (k % 3) * ((width - left) / 3)
        ly = top + plot_h + 24 + 18 * (k // 3)
        out.append(
            f'<rect x="{lx:.1f}" y="{ly}" width="10" height="10"'
            f' fill="{_PALETTE[k % len(_PALETTE)]}"/>'
            f'<text x="{lx + 14:.1f}" y="{ly + 9}" font-size="11">'
            f"{escape(s.label)} ({s.total})</text>"
        )
    out.append("</svg>")
    return "".join(out)


def chart_rows(chart: Chart) -> Sequence[tuple[date, tuple[int, ...], int]]:
    """The chart as table rows: per day, the count per series (in :attr:`Chart.series` order)
    and the total."""
    totals = chart.totals()
    return [
        (d, tuple(s.counts[i] for s in chart.series), totals[i]) for i, d in enumerate(chart.days)
    ]
