"""gateway.core.rights: the exchanges an inzageverzoek lists, the answer, the deadline.

Threats: an answer that names an employee (C-579/21), counts the rights messages or receipts as
exchanges about the person, lists the organisation itself as its own counterpart, or a deadline
that passes a day late at the end of a month.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

import pytest

from gateway.core.audit import Actor, MessageFields, access_record, message_record, split
from gateway.core.rights import DeferPolicy, alerts_due, answer, deadline, exchanges_of
from schemas.rights import Exchange, RightsRequestBody

ZVH = "00000001999000001000"
POL = "00000001999000002000"
GGZ = "00000001999000004000"
VT = "00000001999000005000"
SALT = bytes(32)
PERSON = "sub-7f3KqZ2mLw9xTa"


def _fields(n: int, *, sender: str, recipients: tuple[str, ...], **over: Any) -> MessageFields:
    values: dict[str, Any] = {
        "trace_id": f"{n:032x}",
        "span_id": f"{n:016x}",
        "processing_activity_id": "urn:zvg:test:verwerkingsactiviteit:x",
        "message_id": f"019cb92f-22c0-7751-a20c-{n:012x}",
        "message_type": "info.request",
        "purpose": "ZVH.BEKENDHEID",
        "legal_basis": ("WGS",),
        "sender": sender,
        "recipients": recipients,
        "data_categories": ("ID_PSEUDO", "ID_DIRECT"),
        "flags": (),
        "case_ref": "Veenstad-2026-031",
        "data_subjects": (PERSON,),
    }
    values.update(over)
    return MessageFields(**values)


def _view(name: str, fields: MessageFields, day: int, **kw: Any) -> dict[str, Any]:
    at = datetime(2026, 3, day, 10, 0, tzinfo=UTC)
    view, _personal = split(message_record(name, fields, at=at, **kw), SALT)
    return view


def test_sent_and_received_messages_become_exchanges_with_the_other_side() -> None:
    views = [
        _view("message.receive", _fields(1, sender=ZVH, recipients=(GGZ, VT)), 4),
        _view(
            "message.send",
            _fields(
                2,
                sender=GGZ,
                recipients=(ZVH,),
                message_type="info.response",
                data_categories=("ID_PSEUDO", "BETROKKENHEID", "CONTACT_PROF"),
            ),
            5,
        ),
    ]
    exchanges, complete = exchanges_of(views, org=GGZ)
    assert complete
    assert [(e.on, e.direction, e.message_type, e.organisations) for e in exchanges] == [
        (date(2026, 3, 4), "received", "info.request", (ZVH,)),
        (date(2026, 3, 5), "sent", "info.response", (ZVH,)),
    ]
    assert exchanges[1].data_categories == ("ID_PSEUDO", "BETROKKENHEID", "CONTACT_PROF")
    assert exchanges[0].legal_basis == ("WGS",)
    assert exchanges[0].purpose == "ZVH.BEKENDHEID"


def test_an_exchange_never_names_an_employee() -> None:
    fields = _fields(1, sender=ZVH, recipients=(GGZ,))
    actor = Actor(id="medewerker-4711", role="behandelaar", responsible="teamleider-12")
    at = datetime(2026, 3, 4, 10, 0, tzinfo=UTC)
    views = [
        _view("message.receive", fields, 4),
        split(access_record(actor, at=at, fields=fields), SALT)[0],
    ]
    exchanges, _ = exchanges_of(views, org=GGZ)
    assert len(exchanges) == 1
    assert set(Exchange.model_fields) == {
        "on",
        "direction",
        "message_type",
        "purpose",
        "legal_basis",
        "organisations",
        "data_categories",
        "count",
    }
    dumped = exchanges[0].model_dump_json()
    assert "medewerker" not in dumped
    assert "teamleider" not in dumped


def test_receipts_rights_messages_refusals_and_other_operations_are_not_exchanges() -> None:
    views = [
        _view("message.receive", _fields(1, sender=ZVH, recipients=(GGZ,)), 4),
        _view("message.receive", _fields(2, sender=ZVH, recipients=(GGZ,)), 4, status="denied"),
        _view("message.refuse", _fields(3, sender=ZVH, recipients=(GGZ,)), 4, status="denied"),
        _view("message.deliver", _fields(1, sender=ZVH, recipients=(GGZ,)), 4),
        _view("message.publish", _fields(4, sender=GGZ, recipients=(ZVH,)), 4),
        _view(
            "message.receive",
            _fields(5, sender=ZVH, recipients=(GGZ,), message_type="rights.request"),
            4,
        ),
        _view(
            "message.send",
            _fields(6, sender=GGZ, recipients=(ZVH,), message_type="receipt"),
            4,
        ),
    ]
    exchanges, _ = exchanges_of(views, org=GGZ)
    assert [e.message_type for e in exchanges] == ["info.request"]
    assert exchanges[0].count == 1


def test_identical_exchanges_of_one_day_are_counted_and_a_record_seen_twice_once() -> None:
    a = _fields(1, sender=ZVH, recipients=(GGZ,))
    b = _fields(2, sender=ZVH, recipients=(GGZ,))
    views = [_view("message.receive", f, 4) for f in (a, b, a)]
    views.append(_view("message.receive", _fields(3, sender=ZVH, recipients=(GGZ,)), 6))
    exchanges, _ = exchanges_of(views, org=GGZ)
    assert [(e.on.day, e.count) for e in exchanges] == [(4, 2), (6, 1)]


def test_a_message_to_several_lists_them_without_the_organisation_itself() -> None:
    views = [_view("message.send", _fields(1, sender=ZVH, recipients=(GGZ, VT, ZVH)), 4)]
    exchanges, _ = exchanges_of(views, org=ZVH)
    assert exchanges[0].organisations == (GGZ, VT)


def test_the_period_of_the_request_limits_the_exchanges() -> None:
    views = [
        _view("message.receive", _fields(n, sender=ZVH, recipients=(GGZ,)), day)
        for n, day in ((1, 2), (2, 4), (3, 9))
    ]
    exchanges, _ = exchanges_of(
        views, org=GGZ, period_from=date(2026, 3, 3), period_to=date(2026, 3, 4)
    )
    assert [e.on.day for e in exchanges] == [4]


def test_more_exchanges_than_the_limit_are_cut_and_said_to_be_incomplete() -> None:
    views = [
        _view("message.receive", _fields(n, sender=ZVH, recipients=(GGZ,)), n) for n in (1, 2, 3)
    ]
    exchanges, complete = exchanges_of(views, org=GGZ, limit=2)
    assert not complete
    assert [e.on.day for e in exchanges] == [1, 2]


REQUEST = RightsRequestBody.model_validate_json(
    json.dumps(
        {
            "request_id": "5b0f8c1e-2d7a-4e11-9c3b-7a1d2e3f4a5b",
            "right": "inzage",
            "received_on": "2026-04-01",
            "respond_before": "2026-04-15T17:00:00Z",
            "identification": {"bsn": "999990019"},
        }
    )
)


def test_an_organisation_that_defers_answers_deferred_with_its_ground_and_review_day() -> None:
    body = answer(
        REQUEST,
        exchanges=(),
        complete=True,
        defer=DeferPolicy(ground="WPG", review_days=30),
        today=date(2026, 4, 2),
    )
    assert body.status == "deferred"
    assert body.deferral is not None
    assert body.deferral.ground == "WPG"
    assert body.deferral.review_on == date(2026, 5, 2)
    assert body.exchanges == ()


def test_a_release_answers_with_the_exchanges_and_the_day_of_the_deferral() -> None:
    views = [_view("message.receive", _fields(1, sender=ZVH, recipients=(POL,)), 4)]
    exchanges, complete = exchanges_of(views, org=POL)
    body = answer(
        REQUEST,
        exchanges=exchanges,
        complete=complete,
        defer=DeferPolicy(ground="WPG", review_days=30),
        today=date(2026, 4, 20),
        released_from=date(2026, 4, 2),
    )
    assert body.status == "answered"
    assert body.released_from == date(2026, 4, 2)
    assert body.exchanges == exchanges


def test_without_a_deferral_policy_the_answer_is_immediate() -> None:
    body = answer(REQUEST, exchanges=(), complete=True, defer=None, today=date(2026, 4, 2))
    assert body.status == "answered"
    assert body.released_from is None


@pytest.mark.parametrize(
    ("received", "extended", "due"),
    [
        (date(2026, 4, 1), False, date(2026, 5, 1)),
        (date(2026, 1, 31), False, date(2026, 2, 28)),
        (date(2028, 1, 31), False, date(2028, 2, 29)),
        (date(2026, 11, 30), True, date(2027, 2, 28)),
        (date(2026, 12, 15), False, date(2027, 1, 15)),
        (date(2026, 4, 1), True, date(2026, 7, 1)),
    ],
)
def test_the_deadline_is_one_month_or_three_when_extended(
    received: date, extended: bool, due: date
) -> None:
    assert deadline(received, extended=extended) == due


def test_alerts_at_two_weeks_and_three_days_and_when_passed() -> None:
    due = date(2026, 5, 1)
    assert alerts_due(due, date(2026, 4, 16)) == ()
    assert alerts_due(due, date(2026, 4, 17)) == (14,)
    assert alerts_due(due, date(2026, 4, 28)) == (14, 3)
    assert alerts_due(due, date(2026, 5, 1)) == (14, 3)
    assert alerts_due(due, date(2026, 5, 2)) == (14, 3, 0)
