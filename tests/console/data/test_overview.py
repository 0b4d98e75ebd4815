"""The overview's 30-day figures from the hourly counts, and their SVG charts."""

from __future__ import annotations

import re
import sqlite3
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from gateway.console.data.overview import Chart, Series, chart_rows, chart_svg, overview
from tests.console.data.conftest import GGZ, NAMES, NOW, POLITIE, ZVH, Log, msg


async def test_messages_are_counted_per_day_per_purpose_and_per_partner(
    audit: Log, reader: sqlite3.Connection
) -> None:
    await audit.add(
        msg(1, "message.send", at=NOW - timedelta(days=40)),  # before the 30 days
        msg(2, "message.send", at=NOW - timedelta(days=2), recipients=(POLITIE, GGZ)),
        msg(
            3,
            "message.receive",
            at=NOW - timedelta(days=2),
            sender=GGZ,
            recipients=(ZVH,),
            purpose="ZVH.RISICO",
        ),
        msg(4, "message.send", at=NOW, purpose="ZVH.RISICO", recipients=(GGZ,)),
        msg(4, "message.publish", at=NOW, purpose="ZVH.RISICO", peer=GGZ),  # not a message
        msg(5, "policy.decision", at=NOW, status="denied", recipients=(POLITIE,)),
    )
    ov = overview(reader, now=NOW, own_org=ZVH, names=NAMES, log_size=audit.log.size)
    assert len(ov.per_purpose.days) == 30
    assert ov.per_purpose.days[-1] == NOW.date()
    purposes = {s.label: s.total for s in ov.per_purpose.series}
    assert purposes == {"ZVH.RISICO": 2, "ZVH.BEKENDHEID": 1}  # a message to two counts once
    assert ov.per_purpose.series[0].counts[-1] == 1
    assert ov.per_purpose.series[0].counts[-3] == 1
    partners = {s.label: s.total for s in ov.per_partner.series}
    assert partners == {f"GGZ Veenland ({GGZ})": 3, f"Politie Eenheid Veenland ({POLITIE})": 1}
    assert {s.label: s.total for s in ov.denials.series} == {
        f"Politie Eenheid Veenland ({POLITIE})": 1
    }
    assert ov.health.records == 6
    assert ov.health.checkpoint_size is None


async def test_days_are_the_officers_local_days(audit: Log, reader: sqlite3.Connection) -> None:
    late = NOW.replace(hour=23, minute=30) - timedelta(days=1)  # 00:30 in Amsterdam
    await audit.add(msg(1, "message.send", at=late))
    ov = overview(
        reader, now=NOW, own_org=ZVH, names=NAMES, log_size=1, tz=ZoneInfo("Europe/Amsterdam")
    )
    (series,) = ov.per_purpose.series
    assert series.counts[-1] == 1  # today in Amsterdam, yesterday in UTC


async def test_days_stay_local_across_the_change_to_summer_time(
    audit: Log, reader: sqlite3.Connection
) -> None:
    """The days are summed in SQL with the offset of each hour: on 29 March 2026 Amsterdam goes
    from UTC+1 to UTC+2 at 01:00 UTC, so 23:30 UTC is the next day on the 28th but not the
    29th."""
    amsterdam = ZoneInfo("Europe/Amsterdam")
    for i, at in enumerate(
        (
            datetime(2026, 3, 28, 23, 30, tzinfo=UTC),  # 00:30 CET on the 29th
            datetime(2026, 3, 29, 21, 30, tzinfo=UTC),  # 23:30 CEST on the 29th
            datetime(2026, 3, 29, 22, 30, tzinfo=UTC),  # 00:30 CEST on the 30th
        )
    ):
        await audit.add(msg(i, "message.send", at=at))
    now = datetime(2026, 4, 5, 12, 0, tzinfo=UTC)
    ov = overview(reader, now=now, own_org=ZVH, names=NAMES, log_size=3, tz=amsterdam)
    (series,) = ov.per_purpose.series
    counts = dict(zip(ov.per_purpose.days, series.counts, strict=True))
    assert {d.isoformat(): n for d, n in counts.items() if n} == {
        "2026-03-29": 2,
        "2026-03-30": 1,
    }


def test_the_svg_chart_escapes_its_labels_and_holds_no_script() -> None:
    days = tuple(NOW.date() - timedelta(days=2 - i) for i in range(3))
    chart = Chart(
        "per <partner>",
        days,
        (Series('<script>alert("x")</script>', (1, 0, 2)), Series("b & c", (0, 3, 0))),
    )
    svg = chart_svg(chart)
    assert "<script" not in svg
    assert "&lt;script&gt;" in svg
    assert "b &amp; c (3)" in svg
    assert "style=" not in svg
    assert len(re.findall(r"<rect [^>]*><title>", svg)) == 3  # one bar part per non-zero count
    assert [total for _, _, total in chart_rows(chart)] == [1, 3, 2]


def test_more_series_than_colours_are_summed_as_other_in_the_chart_only() -> None:
    days = (NOW.date(),)
    chart = Chart("x", days, tuple(Series(f"s{i}", (1,)) for i in range(12)))
    svg = chart_svg(chart)
    assert "other (5)" in svg
    assert len(chart_rows(chart)[0][1]) == 12  # the table keeps every series
