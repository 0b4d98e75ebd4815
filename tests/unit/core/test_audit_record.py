"""gateway.core.audit: the fast paths of new_record (one BSN search over all strings), _iso
(isoformat) and split (common value shapes first) decide and produce exactly what the plain
per-field code does.

Threat: a fast path that lets a BSN into an audit record (kept for ever in the leaf view), or a
leaf view that differs from what a partner or ``zvg audit verify`` recomputes.
"""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core import audit
from gateway.core.audit import Actor, Record, new_record, split
from gateway.core.commit import canonical_json
from gateway.errors import LocalError
from schemas import ids

A_BSN = "999990020"  # test range, passes the 11-proef
NOW = datetime(2026, 3, 2, 9, 15, 0, 123456, tzinfo=UTC)
SALT = bytes(range(32))
OPAQUE_WITH_BSN = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" + A_BSN + "A"  # 43 base64 characters


def reference_guard(record: Record) -> str | None:
    """new_record's BSN guard as first written: the first field with a BSN-shaped string."""
    for f in fields(Record):
        if f.name in audit._OPAQUE_FIELDS:
            continue
        for text in audit._strings(getattr(record, f.name)):
            if ids.find_bsn(text):
                return f.name
    return None


def reference_iso(t: datetime) -> str:
    offset = t.utcoffset()
    if offset is None or offset.total_seconds() != 0:
        raise LocalError("audit record times must be aware UTC datetimes")
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def reference_view(record: Record) -> dict[str, Any]:
    """split's leaf view as first written (strftime times, one isinstance chain per field)."""
    view: dict[str, Any] = {}
    for f in fields(Record):
        value = getattr(record, f.name)
        if f.name in ("case_ref", "data_subjects", "actor", "note", "adapter_reason"):
            continue
        if isinstance(value, datetime):
            view[f.name] = reference_iso(value)
        elif isinstance(value, tuple):
            view[f.name] = list(value)
        elif isinstance(value, dict):
            view[f.name] = dict(value)
        else:
            view[f.name] = value
    view["commitments"] = audit._commitments(audit._personal_values(record), SALT)
    return view


def build(**values: Any) -> tuple[str | None, Record | None]:
    """(field named in the refusal or None, the record or None)."""
    try:
        return None, new_record(**values)
    except LocalError as exc:
        message = str(exc)
        assert message.startswith("audit record field ")
        assert "BSN" in message
        return message.split()[3], None


def base(**extra: Any) -> dict[str, Any]:
    return {"name": "message.send", "status": "ok", "start_time": NOW, "end_time": NOW, **extra}


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"reason": f"bsn {A_BSN}"}, "reason"),
        ({"case_ref": A_BSN}, "case_ref"),
        ({"data_subjects": ("sub-1", f"sub-{A_BSN}")}, "data_subjects"),
        ({"actor": Actor("emp-1", responsible=A_BSN)}, "actor"),
        ({"detail": {"category": A_BSN}}, "detail"),
        ({"legal_basis": ("WGS",), "flags": (A_BSN,)}, "flags"),
        ({"purpose": "p", "peer": A_BSN, "reason": A_BSN}, "reason"),  # the first field
    ],
)
def test_bsn_shaped_values_are_refused_and_the_field_named(
    extra: dict[str, Any], field: str
) -> None:
    assert build(**base(**extra))[0] == field


@pytest.mark.parametrize(
    "extra",
    [
        {"message_id": A_BSN},  # opaque fields are not searched
        {"foreign_operation": {"x": A_BSN}},
        {"reason": OPAQUE_WITH_BSN},  # an opaque-looking value is not searched either
        {"reason": "1" + A_BSN},  # ten digits
        {"reason": "00000001999000002000"},  # an OIN
        {"data_subjects": ("99999", "0020")},  # the join must not glue runs together
        {"policy_version": 999990020},  # not a string
    ],
)
def test_values_the_guard_does_not_refuse_are_still_accepted(extra: dict[str, Any]) -> None:
    field, record = build(**base(**extra))
    assert field is None
    assert record is not None
    assert reference_guard(record) is None


_text = st.one_of(
    st.text(max_size=12),
    st.sampled_from([A_BSN, f"x{A_BSN}y", OPAQUE_WITH_BSN, "1" + A_BSN, "99999", "0020", "é٣"]),
)
_opt = st.none() | _text
_strs = st.lists(_text, max_size=3).map(tuple)
_records = st.fixed_dictionaries(
    {k: st.just(v) for k, v in base().items()},
    optional={
        "trace_id": _opt,
        "message_id": _opt,
        "purpose": _opt,
        "reason": _opt,
        "peer": _opt,
        "policy_rule": _opt,
        "case_ref": _opt,
        "legal_basis": _strs,
        "recipients": _strs,
        "flags": _strs,
        "data_subjects": _strs,
        "policy_version": st.none() | st.integers(0, 10**9),
        "detail": st.dictionaries(
            st.sampled_from(["category", "flag"]), _text | st.integers(0, 10**12)
        ),
        "foreign_operation": st.none() | st.dictionaries(st.just("x"), _text),
        "actor": st.none() | st.builds(Actor, _text, _opt, _opt),
    },
)


@settings(max_examples=400)
@given(values=_records)
def test_new_record_refuses_exactly_what_the_per_field_guard_refuses(
    values: dict[str, Any],
) -> None:
    field, record = build(**values)
    assert field == reference_guard(Record(**values))
    if record is not None:
        view, personal = split(record, SALT)
        assert view == reference_view(record)
        assert canonical_json(view) == canonical_json(reference_view(record))
        assert personal == audit._personal_values(record)


class _Zero(tzinfo):
    """A zero-offset tzinfo other than UTC (takes the strftime path)."""

    def utcoffset(self, _dt: datetime | None) -> timedelta:
        return timedelta(0)

    def dst(self, _dt: datetime | None) -> timedelta:
        return timedelta(0)

    def tzname(self, _dt: datetime | None) -> str:
        return "Z"


@given(
    t=st.datetimes(),
    tz=st.sampled_from([UTC, timezone(timedelta(0), "Z"), _Zero()]),
)
def test_iso_is_the_strftime_text(t: datetime, tz: tzinfo) -> None:
    aware = t.replace(tzinfo=tz)
    assert audit._iso(aware) == reference_iso(aware)


@pytest.mark.parametrize(
    "t",
    [
        datetime(2026, 3, 2),  # noqa: DTZ001 - naive on purpose
        datetime(2026, 3, 2, tzinfo=timezone(timedelta(hours=1))),
    ],
)
def test_iso_refuses_naive_and_non_utc_times(t: datetime) -> None:
    with pytest.raises(LocalError):
        audit._iso(t)


def test_iso_of_early_years_keeps_the_strftime_text() -> None:
    t = datetime(999, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    assert audit._iso(t) == reference_iso(t)


def test_a_note_is_personal_committed_and_never_in_the_view() -> None:
    """The reject note of an adapter: free text that may name people. A receipt's proof shows
    the sender our record's view, so the note must never be in it."""
    note = "wijkagent tasks go to team Noord"
    without = new_record(**base())
    with_note = new_record(**base(note=note))
    view, personal = split(with_note, SALT)
    assert note not in canonical_json(view).decode()
    assert personal["note"] == note
    assert audit.check_personal(view, personal, SALT)
    assert not audit.check_personal(view, {**personal, "note": "team Zuid"}, SALT)
    assert not audit.check_personal(view, {k: v for k, v in personal.items() if k != "note"}, SALT)
    # A record without a note keeps the leaf (and personal part) it had before notes existed.
    old_view, old_personal = split(without, SALT)
    assert "note" not in old_personal
    assert "note" not in old_view["commitments"]  # type: ignore[operator]  # a dict here
    assert {k: v for k, v in view.items() if k != "commitments"} == {
        k: v for k, v in old_view.items() if k != "commitments"
    }
