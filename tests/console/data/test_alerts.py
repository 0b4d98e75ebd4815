"""Alerts computed from the log and the node's witnessing state, and their acknowledgement."""

from __future__ import annotations

import sqlite3
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from gateway.console.data.alerts import (
    Alert,
    AlertSettings,
    acknowledge_record,
    compute_alerts,
    gauge_points,
)
from gateway.console.data.records import BadQuery, NotAllowed
from gateway.console.identity import Identity
from gateway.console.roles import Role
from gateway.core.audit import new_record
from tests.console.data.conftest import GGZ, NAMES, NOW, POLITIE, ZVH, Log, msg

OFFICER = Identity("u-1", "Fatima de Wit", Role.SECURITY_OFFICER, "local")


def alerts(db: sqlite3.Connection, **kw: Any) -> dict[str, tuple[str, ...]]:
    got = compute_alerts(db, now=NOW, own_org=ZVH, names=NAMES, **kw)
    return {a.id: (a.kind, a.severity) for a in got}


async def test_a_quiet_log_raises_no_alert(audit: Log, reader: sqlite3.Connection) -> None:
    await audit.add(msg(1, "message.send", at=NOW))
    assert alerts(reader) == {}
    assert all(v == 0.0 for v, _ in gauge_points(()))


async def test_fork_evidence_from_a_witness_is_a_critical_alert(
    audit: Log, reader: sqlite3.Connection
) -> None:
    def keep(db: sqlite3.Connection) -> None:
        db.execute(
            "INSERT INTO witness_evidence (origin, code, evidence, created_at) VALUES (?,?,?,?)",
            ("zvh.example/" + POLITIE + "/audit-log", "fork", "{}", NOW.timestamp() - 60),
        )

    await audit.store.run(keep)
    (got,) = compute_alerts(reader, now=NOW, own_org=ZVH, names=NAMES)
    assert (got.kind, got.severity) == ("fork", "critical")


async def test_a_checkpoint_left_uncosigned_and_a_silent_witness_raise_alerts(
    audit: Log, reader: sqlite3.Connection
) -> None:
    def state(db: sqlite3.Connection) -> None:
        db.execute(
            "INSERT INTO audit_checkpoints VALUES (?,?,?,?)",
            (12, b"r", b"note", NOW.timestamp() - 600),  # 10 intervals of 60 s ago
        )
        db.execute("INSERT INTO peer_cosigned VALUES (?,?,?)", (POLITIE, 12, NOW.timestamp()))
        db.execute("INSERT INTO peer_cosigned VALUES (?,?,?)", (GGZ, 8, NOW.timestamp() - 7200))

    await audit.store.run(state)
    got = alerts(reader)
    assert got == {
        "uncosigned:12": ("uncosigned", "warning"),
        f"witness-unreachable:{GGZ}:{int(NOW.timestamp() - 7200)}": (
            "witness-unreachable",
            "warning",
        ),
    }
    # Within the allowed intervals, no alert about the checkpoint.
    assert "uncosigned:12" not in alerts(reader, settings=AlertSettings(uncosigned_intervals=20))


@pytest.mark.parametrize(
    ("left", "expected"),
    [
        (timedelta(days=40), None),
        (timedelta(days=20), ("expiry:directory:{d}:30", "warning")),
        (timedelta(days=10), ("expiry:directory:{d}:14", "warning")),
        (timedelta(days=2), ("expiry:directory:{d}:3", "critical")),
    ],
)
async def test_expiry_alerts_at_30_14_and_3_days(
    reader: sqlite3.Connection, left: timedelta, expected: tuple[str, str] | None
) -> None:
    at = NOW + left
    got = alerts(reader, expiries={"directory": at})
    if expected is None:
        assert got == {}
    else:
        assert got == {expected[0].format(d=at.date().isoformat()): ("expiry", expected[1])}


async def test_a_spike_of_denials_with_one_partner_is_an_alert(
    audit: Log, reader: sqlite3.Connection
) -> None:
    # A baseline of one denial a day with POLITIE, then 12 in the last day.
    await audit.add(
        *(
            msg(i, "policy.decision", at=NOW - timedelta(days=i + 2), status="denied")
            for i in range(20)
        ),
        *(
            msg(100 + i, "policy.decision", at=NOW - timedelta(hours=i + 1), status="denied")
            for i in range(12)
        ),
        *(
            msg(200 + i, "policy.decision", at=NOW - timedelta(hours=i + 1), recipients=(GGZ,))
            for i in range(30)  # allowed: not denials
        ),
    )
    got = alerts(reader)
    assert got == {f"denials:{POLITIE}:{NOW.date().isoformat()}": ("denials", "warning")}
    assert alerts(reader, settings=AlertSettings(spike_min=13)) == {}


async def test_a_contradictory_receipt_and_repeated_failed_logins_raise_alerts(
    audit: Log, reader: sqlite3.Connection
) -> None:
    await audit.add(
        msg(
            1,
            "receipt.contradiction",
            at=NOW - timedelta(days=1),
            peer=GGZ,
            detail={"status": "rejected", "earlier_status": "accepted"},
        ),
        *(
            new_record(
                name="console.login",
                status="denied",
                start_time=t,
                end_time=t,
                reason="bad_password",
            )
            for t in (NOW - timedelta(minutes=m) for m in range(5))
        ),
    )
    got = alerts(reader)
    assert got == {
        "contradiction:0": ("contradiction", "critical"),
        f"failed-logins:{int((NOW - timedelta(minutes=4)).timestamp() // 3600)}": (
            "failed-logins",
            "warning",
        ),
    }


async def test_an_acknowledgement_is_a_record_that_stays_with_its_alert(
    audit: Log, reader: sqlite3.Connection
) -> None:
    await audit.add(msg(1, "receipt.contradiction", at=NOW - timedelta(days=1), peer=GGZ))
    (alert,) = compute_alerts(reader, now=NOW, own_org=ZVH, names=NAMES)
    assert alert.acknowledged is None
    record = acknowledge_record(OFFICER, alert, "Gebeld met GGZ: dubbele verwerking.", at=NOW)
    await audit.add(record)
    (after,) = compute_alerts(reader, now=NOW, own_org=ZVH, names=NAMES)
    assert after.id == alert.id
    assert after.acknowledged is not None
    assert (after.acknowledged.by, after.acknowledged.role) == ("u-1", "security-officer")
    assert after.acknowledged.comment == "Gebeld met GGZ: dubbele verwerking."
    (hidden,) = compute_alerts(reader, now=NOW, own_org=ZVH, names=NAMES, show_comments=False)
    assert hidden.acknowledged is not None
    assert hidden.acknowledged.comment is None
    # The comment is personal: in the record's personal part, never in its kept-for-ever view.
    view = reader.execute("SELECT view FROM audit_records WHERE name='console.acknowledge'")
    assert "dubbele" not in view.fetchone()[0]
    points = {(p["kind"], p["state"]): v for v, p in gauge_points((after,))}
    assert points[("contradiction", "acknowledged")] == 1.0
    assert points[("contradiction", "open")] == 0.0


@pytest.mark.parametrize(
    "comment",
    ["", "   ", "x" * 2001, "klant 999990019 gebeld"],
    ids=["empty", "blank", "too-long", "bsn"],
)
def test_a_comment_must_be_there_short_and_free_of_bsns(comment: str) -> None:
    with pytest.raises(BadQuery):
        acknowledge_record(OFFICER, ALERT, comment, at=NOW)


@pytest.mark.parametrize("role", [Role.AUDITOR, Role.CONTACTPUNT])
def test_only_officers_acknowledge(role: Role) -> None:
    with pytest.raises(NotAllowed):
        acknowledge_record(Identity("u", "U", role, "oidc"), ALERT, "gezien", at=NOW)


async def test_an_unreviewed_report_older_than_the_set_days_is_an_alert(
    reader: sqlite3.Connection,
) -> None:
    got = compute_alerts(
        reader,
        now=NOW,
        own_org=ZVH,
        names=NAMES,
        unreviewed=(date(2026, 3, 19), date(2026, 3, 16)),
    )
    assert [a.id for a in got] == ["review-overdue:2026-03-16"]


async def test_a_report_is_overdue_by_the_consoles_days_not_utcs_after_local_midnight(
    reader: sqlite3.Connection,
) -> None:
    """Bug: the days of the reports are the console's (Europe/Amsterdam), but the alert counted
    them to UTC's date, a day behind between local midnight and UTC midnight: a report overdue
    since local midnight raised no alert until 01:00 (02:00 in summer)."""
    amsterdam = ZoneInfo("Europe/Amsterdam")
    just_after_midnight = datetime(2026, 3, 20, 0, 30, tzinfo=amsterdam)  # 23:30 UTC, the 19th
    got = compute_alerts(
        reader,
        now=just_after_midnight.astimezone(UTC),
        own_org=ZVH,
        names=NAMES,
        unreviewed=(date(2026, 3, 16),),
        tz=amsterdam,
    )
    assert [(a.id, a.since) for a in got] == [
        ("review-overdue:2026-03-16", datetime(2026, 3, 17, tzinfo=amsterdam))
    ]


ALERT = Alert("expiry:directory:2026-03-21:3", "expiry", "critical", NOW)
