"""A case's messages in time order, one lane per partner, its steps named."""

from __future__ import annotations

import sqlite3
from datetime import timedelta

import pytest

from gateway.console.data.records import NotAllowed
from gateway.console.data.timeline import case_timeline
from gateway.console.roles import Role
from tests.console.data.conftest import GGZ, NAMES, NOW, POLITIE, ZVH, Log, msg

CASE = "Veenstad-2026-031"


async def test_a_case_shows_each_message_once_per_partner_lane_in_time_order(
    audit: Log, reader: sqlite3.Connection
) -> None:
    t = NOW - timedelta(days=10)
    await audit.add(
        msg(
            1,
            "message.receive",
            at=t,
            sender=POLITIE,
            recipients=(ZVH,),
            message_type="case.referral",
            purpose="ZVH.AANMELDING",
        ),
        msg(2, "message.send", at=t + timedelta(days=1), recipients=(POLITIE, GGZ)),
        msg(2, "message.publish", at=t + timedelta(days=1), peer=POLITIE),
        msg(
            2, "receipt.receive", at=t + timedelta(days=2), peer=GGZ, detail={"status": "accepted"}
        ),
        msg(
            3,
            "message.receive",
            at=t + timedelta(days=3),
            sender=GGZ,
            recipients=(ZVH,),
            message_type="risk.signal",
            purpose="ZVH.RISICO",
        ),
        msg(
            4,
            "message.send",
            at=t + timedelta(days=5),
            recipients=(GGZ,),
            message_type="case.handover",
            purpose="ZVH.OVERDRACHT",
        ),
        msg(5, "message.send", at=t + timedelta(days=6), recipients=(POLITIE,), case_ref="other"),
    )
    tl = case_timeline(reader, Role.PRIVACY_OFFICER, CASE, own_org=ZVH, names=NAMES)
    assert [lane.name for lane in tl.lanes] == ["Politie Eenheid Veenland", "GGZ Veenland"]
    got = [(e.message_id[-1], e.lane, e.direction, e.step, e.receipt) for e in tl.events]
    assert got == [
        ("1", 0, "in", None, None),
        ("2", 0, "out", None, None),
        ("2", 1, "out", None, "accepted"),
        ("3", 1, "in", "opschalen", None),
        ("4", 1, "out", "overdracht", None),
    ]
    assert [e.time for e in tl.events] == sorted(e.time for e in tl.events)
    assert not tl.truncated


async def test_a_refused_message_shows_in_its_lane_as_refused(
    audit: Log, reader: sqlite3.Connection
) -> None:
    await audit.add(
        msg(1, "message.refuse", at=NOW, recipients=(GGZ,), status="denied"),
    )
    tl = case_timeline(reader, Role.SECURITY_OFFICER, CASE, own_org=ZVH, names=NAMES)
    assert [(e.status, tl.lanes[e.lane].oin) for e in tl.events] == [("denied", GGZ)]


@pytest.mark.parametrize("role", [Role.AUDITOR, Role.CONTACTPUNT])
async def test_only_officers_open_a_case_timeline(reader: sqlite3.Connection, role: Role) -> None:
    with pytest.raises(NotAllowed):
        case_timeline(reader, role, CASE, own_org=ZVH, names=NAMES)
