"""The daily log review report and its sign-off."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from gateway.console.data.records import BadQuery, NotAllowed
from gateway.console.data.review import (
    ReviewReport,
    day_bounds,
    review_report,
    signoff_record,
    unreviewed_days,
)
from gateway.console.identity import Identity
from gateway.console.roles import Role
from gateway.core.audit import Actor, new_record
from tests.console.data.conftest import GGZ, NAMES, NOW, POLITIE, ZVH, Log, msg

AMS = ZoneInfo("Europe/Amsterdam")
DAY = date(2026, 3, 19)  # a Thursday
START, END = day_bounds(DAY, AMS)
PRIVACY = Identity("fg-1", "Eva Bos", Role.PRIVACY_OFFICER, "oidc")


def at(hour: int, minute: int = 0, day: date = DAY) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=AMS).astimezone(UTC)


def report(db: sqlite3.Connection, role: Role = Role.PRIVACY_OFFICER) -> ReviewReport:
    return review_report(db, role, start=START, end=END, own_org=ZVH, names=NAMES, tz=AMS)


async def test_the_report_finds_each_kind_of_finding_of_its_day(
    audit: Log, reader: sqlite3.Connection
) -> None:
    await audit.add(
        # Baseline: one message a day with POLITIE for 30 days before.
        *(msg(i, "message.send", at=at(10) - timedelta(days=i + 1)) for i in range(30)),
        # The day: 3 with POLITIE (one at night), 1 from GGZ (a risk signal), one denial.
        msg(100, "message.send", at=at(9)),
        msg(101, "message.send", at=at(11)),
        msg(102, "message.send", at=at(23, 30)),
        msg(
            103,
            "message.receive",
            at=at(14),
            sender=GGZ,
            recipients=(ZVH,),
            message_type="risk.signal",
            purpose="ZVH.RISICO",
        ),
        msg(104, "policy.decision", at=at(15), status="denied", recipients=(GGZ,)),
        msg(100, "receipt.receive", at=at(16), peer=POLITIE, detail={"status": "rejected"}),
        msg(101, "receipt.receive", at=at(16), peer=POLITIE, detail={"status": "accepted"}),
        msg(
            101,
            "receipt.contradiction",
            at=at(17),
            peer=POLITIE,
            detail={"status": "rejected", "earlier_status": "accepted"},
        ),
        new_record(
            name="console.access",
            status="ok",
            start_time=at(22),
            end_time=at(22),
            actor=Actor("so-1", "security-officer"),
            detail={"page": "search", "count": 7},
        ),
        new_record(
            name="console.login",
            status="denied",
            start_time=at(3),
            end_time=at(3),
            reason="bad_totp",
        ),
        # The next day: not in the report.
        msg(200, "message.send", at=at(10, day=DAY + timedelta(days=1))),
    )
    r = report(reader)
    politie = f"Politie Eenheid Veenland ({POLITIE})"
    volumes = {v.label: (v.count, round(v.baseline, 1)) for v in r.per_partner}
    assert volumes == {politie: (3, 1.0), f"GGZ Veenland ({GGZ})": (1, 0.0)}
    assert {v.label: v.count for v in r.outside_office_hours} == {politie: 1}
    assert {v.label: v.count for v in r.per_purpose} == {"ZVH.BEKENDHEID": 3, "ZVH.RISICO": 1}
    assert {v.label: v.count for v in r.denials} == {f"GGZ Veenland ({GGZ})": 1}
    assert [i.message_id for i in r.rejected_receipts] == [f"0190a0b0-0000-7000-8000-{100:012d}"]
    assert [i.operation for i in r.contradictions] == ["receipt.contradiction"]
    assert [i.message_type for i in r.risk_signals] == ["risk.signal"]
    assert [(a.who, a.page, a.count, a.outside_office_hours) for a in r.console_accesses] == [
        ("so-1", "search", 7, True)
    ]
    assert [i.detail for i in r.failed_logins] == ["bad_totp"]
    assert r.signoffs == ()
    assert not r.truncated


async def test_a_signoff_binds_to_the_report_and_closes_the_day(
    audit: Log, reader: sqlite3.Connection
) -> None:
    await audit.add(msg(1, "message.send", at=at(10)))
    r = report(reader)
    today = DAY + timedelta(days=1)
    assert unreviewed_days(reader, today=today, days=3, tz=AMS) == (
        DAY - timedelta(days=2),
        DAY - timedelta(days=1),
        DAY,
    )
    await audit.add(signoff_record(PRIVACY, r, "Nachtelijk bericht nagevraagd: dienst.", at=NOW))
    signed = report(reader)
    (s,) = signed.signoffs
    assert (s.by, s.role, s.digest) == ("fg-1", "privacy-officer", r.digest())
    assert s.comment == "Nachtelijk bericht nagevraagd: dienst."
    assert signed.digest() == r.digest()  # the sign-off is not part of the findings
    assert DAY not in unreviewed_days(reader, today=today, days=3, tz=AMS)
    (hidden,) = report(reader, Role.AUDITOR).signoffs
    assert hidden.comment is None


async def test_a_new_finding_changes_the_digest(audit: Log, reader: sqlite3.Connection) -> None:
    await audit.add(msg(1, "message.send", at=at(10)))
    before = report(reader).digest()
    await audit.add(msg(2, "message.send", at=at(12)))
    assert report(reader).digest() != before


async def test_only_officers_sign_off_and_a_contactpunt_reads_no_review(
    reader: sqlite3.Connection,
) -> None:
    r = report(reader)
    with pytest.raises(NotAllowed):
        signoff_record(Identity("a", "A", Role.AUDITOR, "oidc"), r, "ok", at=NOW)
    with pytest.raises(NotAllowed):
        report(reader, Role.CONTACTPUNT)
    with pytest.raises(BadQuery):
        signoff_record(PRIVACY, r, "  ", at=NOW)


def test_a_day_in_amsterdam_has_23_hours_when_summer_time_starts() -> None:
    start, end = day_bounds(date(2026, 3, 29), AMS)
    assert end.timestamp() - start.timestamp() == timedelta(hours=23).total_seconds()


async def test_any_message_flagged_emergency_is_an_urgent_risk_signal(
    audit: Log, reader: sqlite3.Connection
) -> None:
    flagged = msg(1, "message.receive", at=at(12), sender=GGZ, recipients=(ZVH,))
    await audit.add(
        replace(flagged, flags=("emergency",)),
        msg(2, "message.receive", at=at(13), sender=GGZ, recipients=(ZVH,)),
    )
    assert [(i.message_id, i.detail) for i in report(reader).risk_signals] == [
        (flagged.message_id, "emergency")
    ]
