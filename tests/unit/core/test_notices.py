"""Who must hear of a correction or erasure (AVG art. 19): :func:`notice_targets` reads the
node's own audit records (leaf view and personal part, as :func:`split` stores them)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from gateway.core.audit import new_record, split
from gateway.core.notices import NoticeTarget, notice_request, notice_targets
from schemas.api import parse_send_request
from schemas.catalogue import default_catalogue

T = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
US, POL, OM, GGZ = (
    "00000001999000001000",
    "00000001999000002000",
    "00000001999000003000",
    ("00000001999000004000"),
)
ANNA, BOB = "sub-7f3KqZ2mLw9xTa", "sub-c1Ra8Hn4Pe2Ydk"
M1, M2, M3, M4 = (f"019e0000-0000-7000-8000-00000000000{i}" for i in range(1, 5))
SALT = bytes(32)

Row = tuple[dict[str, Any], dict[str, Any] | None]


def _row(**values: Any) -> Row:
    record = new_record(start_time=T, end_time=T, **values)
    view, personal = split(record, SALT)
    return view, personal


def send(mid: str, subjects: tuple[str, ...], recipients: tuple[str, ...], **kw: Any) -> Row:
    values: dict[str, Any] = {
        "name": "message.send",
        "status": "ok",
        "message_id": mid,
        "message_type": "info.response",
        "sender": US,
        "recipients": recipients,
        "data_categories": ("ID_PSEUDO", "GEZONDHEID"),
        "case_ref": "Veenstad-2026-031",
        "data_subjects": subjects,
    }
    values.update(kw)
    return _row(**values)


def publish(mid: str, peer: str, status: str = "ok") -> Row:
    return _row(name="message.publish", status=status, message_id=mid, peer=peer)


def test_every_recipient_the_broker_confirmed_gets_one_target_with_its_messages() -> None:
    rows = [
        send(M1, (ANNA,), (POL, OM)),
        publish(M1, POL),
        publish(M1, OM),
        send(M2, (ANNA, BOB), (OM,), data_categories=("ID_PSEUDO", "POLITIE")),
        publish(M2, OM),
    ]
    targets = notice_targets(rows, subject=ANNA, own_org=US)
    assert [(t.org, t.message_ids) for t in targets] == [(POL, (M1,)), (OM, (M1, M2))]
    om = targets[1]
    assert om.data_categories == ("ID_PSEUDO", "GEZONDHEID", "POLITIE")
    assert om.case_ref == "Veenstad-2026-031"


def test_messages_about_someone_else_make_no_target() -> None:
    rows = [send(M1, (BOB,), (POL,)), publish(M1, POL)]
    assert notice_targets(rows, subject=ANNA, own_org=US) == ()


def test_a_message_never_published_reached_nobody() -> None:
    rows = [send(M1, (ANNA,), (POL,)), publish(M1, POL, status="error")]
    assert notice_targets(rows, subject=ANNA, own_org=US) == ()


def test_messages_received_refused_or_sent_by_others_make_no_target() -> None:
    rows = [
        send(M1, (ANNA,), (POL,), sender=GGZ),
        publish(M1, POL),
        send(M2, (ANNA,), (POL,), status="denied"),
        publish(M2, POL),
        _row(
            name="message.receive",
            status="ok",
            message_id=M3,
            sender=GGZ,
            recipients=(US,),
            case_ref="c",
            data_subjects=(ANNA,),
        ),
    ]
    assert notice_targets(rows, subject=ANNA, own_org=US) == ()


def test_receipts_and_notices_and_our_own_org_are_never_targets() -> None:
    rows = [
        send(M1, (ANNA,), (POL,), message_type="rights.notice"),
        publish(M1, POL),
        send(M2, (ANNA,), (US,)),
        publish(M2, US),
    ]
    assert notice_targets(rows, subject=ANNA, own_org=US) == ()


def test_a_shredded_record_says_nothing_about_whom_it_concerned() -> None:
    view, _ = send(M1, (ANNA,), (POL,))
    rows: list[Row] = [(view, None), publish(M1, POL)]
    assert notice_targets(rows, subject=ANNA, own_org=US) == ()


def test_the_target_names_the_case_of_the_latest_message() -> None:
    rows = [
        send(M1, (ANNA,), (POL,), case_ref="Veenstad-2026-001"),
        publish(M1, POL),
        send(M4, (ANNA,), (POL,), case_ref="Veenstad-2026-031"),
        publish(M4, POL),
    ]
    (target,) = notice_targets(rows, subject=ANNA, own_org=US)
    assert target.message_ids == (M1, M4)
    assert target.case_ref == "Veenstad-2026-031"


def test_the_request_is_a_valid_notice_naming_only_that_recipients_messages() -> None:
    target = NoticeTarget(OM, (M1, M2), ("ID_PSEUDO", "GEZONDHEID"), "Veenstad-2026-031")
    request = notice_request(
        target,
        role="OM",
        subject=ANNA,
        kind="erase",
        ground="request_of_data_subject",
        at=T,
        correlation_id=M4,
        bsn="999990019",
    )
    parsed = parse_send_request(json.dumps(request).encode(), catalogue=default_catalogue())
    assert parsed.message_type == "rights.notice"
    assert [(r.org, r.role) for r in parsed.recipients] == [(OM, "OM")]
    assert request["body"]["concerns"] == [M1, M2]
    assert request["body"]["categories"] == ["GEZONDHEID"], "what changed, not the pseudonym"
    assert request["data_categories"] == ["ID_PSEUDO", "ID_DIRECT"]
    without = notice_request(
        target, role="OM", subject=ANNA, kind="rectify", ground="inaccurate", at=T,
        correlation_id=M4, categories=("RISICO",),
    )  # fmt: skip
    assert "identification" not in without["body"]
    assert without["data_categories"] == ["ID_PSEUDO"]
    assert without["body"]["categories"] == ["RISICO"]
