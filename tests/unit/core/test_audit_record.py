"""gateway.core.audit: the fast paths of new_record (one BSN search over all strings), _iso
(isoformat) and split (common value shapes first) decide and produce exactly what the plain
per-field code does.

Threat: a fast path that lets a BSN into an audit record (kept for ever in the leaf view), or a
leaf view that differs from what a partner or ``zvg audit verify`` recomputes.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import fields, replace
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core import audit
from gateway.core.audit import Actor, Record, new_record, split
from gateway.core.commit import canonical_json, commitment
from gateway.core.merkle import leaf_hash
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


def test_a_review_sign_off_whose_report_digest_holds_bsn_digits_is_recorded() -> None:
    """The bug (a console sign-off answered 500 in CI, about one report in thirty): the BSN guard
    searched ``detail``'s values, and the review report's SHA-256 digest (64 hex characters)
    held nine digits in a row that pass the 11-proef. A ``digest`` (or another opaque name) in
    ``detail`` is a random identifier, as the record's own ``digest`` field is."""
    t = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
    digest = "ab" * 10 + A_BSN + "cd" * 17 + "e"  # 64 hex characters
    record = new_record(
        name="console.review", status="ok", start_time=t, end_time=t, detail={"digest": digest}
    )
    assert record.detail["digest"] == digest
    with pytest.raises(LocalError, match="detail"):  # any other detail is still searched
        new_record(
            name="console.review", status="ok", start_time=t, end_time=t, detail={"x": A_BSN}
        )


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


@settings(max_examples=100)
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


# ------------------------------------------------------- records of one message: the guard once

_clear = st.one_of(
    st.text(max_size=8).map(lambda t: "".join(c for c in t if not c.isdigit())),
    st.sampled_from(["99999", "0020", "1" + A_BSN, "é٣", "ZVH.ZORG"]),
)
_clears = st.lists(_clear, max_size=2).map(tuple)
_bsn_bearing = st.sampled_from([A_BSN, f"x {A_BSN}", OPAQUE_WITH_BSN])
_FIELD_STRS = ("legal_basis", "recipients", "data_categories", "flags", "data_subjects")
_FIELD_STR = ("processing_activity_id", "message_type", "purpose", "sender", "case_ref")
_OWN = ("reason", "note", "adapter_reason", "detail", "policy_rule")


@st.composite
def _message_and_record(draw: st.DrawFn) -> tuple[audit.MessageFields, dict[str, Any]]:
    """Clear fields and record arguments, then a BSN-bearing value (a BSN, one in text, one in
    an opaque-looking value the guard does not refuse) in at most one place, field or own."""
    values: dict[str, Any] = {name: draw(_clear) for name in _FIELD_STR}
    values |= {name: draw(_clears) for name in _FIELD_STRS}
    opaque = ("trace_id", "span_id", "message_id", "digest", "key_id")
    values |= {name: draw(_clear | _bsn_bearing) for name in opaque}
    values["foreign_operation"] = draw(st.none() | st.dictionaries(st.just("x"), _bsn_bearing))
    rule = draw(st.none() | _clear)
    args: dict[str, Any] = {
        "name": draw(st.sampled_from(["message.send", "policy.decision", "no.such"])),
        "status": draw(st.sampled_from(["ok", "denied"])),
        "reason": draw(st.none() | _clear),
        "note": draw(st.none() | _clear),
        "adapter_reason": draw(st.none() | _clear),
        "detail": draw(
            st.dictionaries(st.sampled_from(["category", "flag"]), _clear | st.integers(0, 10**12))
        ),
    }
    place = draw(st.sampled_from([None, *_FIELD_STR, *_FIELD_STRS, *_OWN]))
    bsn = draw(_bsn_bearing)
    if place in _FIELD_STR:
        values[place] = bsn
    elif place in _FIELD_STRS:
        values[place] = (*values[place], bsn)
    elif place == "detail":
        args["detail"] = {**args["detail"], "recipient": bsn}
    elif place == "policy_rule":
        rule = bsn
    elif place is not None:
        args[place] = bsn
    if rule is not None or draw(st.booleans()):
        args["policy"] = (draw(st.integers(0, 99)), rule, draw(st.sampled_from(["allow", "deny"])))
    return audit.MessageFields(**values), args


def _outcome(fields: audit.MessageFields, args: dict[str, Any]) -> tuple[str, object]:
    try:
        return "ok", audit.message_record(fields=fields, at=NOW, **args)
    except LocalError as exc:
        return "refused", str(exc)


@settings(max_examples=100)
@given(case=_message_and_record())
def test_message_record_with_checked_fields_refuses_exactly_what_the_full_guard_refuses(
    case: tuple[audit.MessageFields, dict[str, Any]],
) -> None:
    fields, args = case
    # Fields whose guard ran once (as MessageFields.of does) against the same fields unchecked
    # (built directly: every record runs the full _checked guard), and both against the
    # per-field guard as first written.
    assert fields._bsn_free is None
    guarded = audit._guarded(
        audit.MessageFields(
            **{
                f.name: getattr(fields, f.name)
                for f in fields.__dataclass_fields__.values()
                if f.init
            }
        )
    )
    assert guarded == fields
    fast, full = _outcome(guarded, args), _outcome(fields, args)
    assert fast == full
    if full[0] == "ok":
        record = full[1]
        assert isinstance(record, Record)
        assert reference_guard(record) is None
    else:
        assert "BSN" in str(full[1]) or "unknown audit operation" in str(full[1])


def test_the_guard_result_survives_only_opaque_changes() -> None:
    fields = audit._guarded(
        audit.MessageFields(
            trace_id="t",
            span_id="s",
            processing_activity_id="pa",
            message_id="m",
            message_type="case.referral",
            purpose="ZVH.X",
            legal_basis=("WGS",),
            sender="o",
            recipients=("r",),
            data_categories=(),
            flags=(),
            case_ref="c",
            data_subjects=(),
        )
    )
    assert fields._bsn_free is True
    assert fields.with_digest("d", "k")._bsn_free is True
    with_bsn = audit._guarded(replace(fields, case_ref=A_BSN))
    assert with_bsn._bsn_free is False
    assert with_bsn.with_digest("d")._bsn_free is False
    with pytest.raises(LocalError, match="case_ref"):
        audit.message_record("message.send", with_bsn.with_digest("d"), at=NOW)
    with pytest.raises(LocalError, match="reason"):
        audit.message_record("message.refuse", fields, at=NOW, reason=f"x {A_BSN}")
    with pytest.raises(LocalError, match="detail"):
        audit.message_record("message.refuse", fields, at=NOW, detail={"category": A_BSN})


def test_with_digest_and_foreign_operation_are_dataclass_replace() -> None:
    fields = audit.MessageFields(
        trace_id="t",
        span_id="s",
        processing_activity_id="p",
        message_id="m",
        message_type="case.referral",
        purpose="x",
        legal_basis=("WGS",),
        sender="o",
        recipients=("r",),
        data_categories=("c",),
        flags=("f",),
        case_ref="c",
        data_subjects=("d",),
    )
    digested = fields.with_digest("d", "k")
    assert digested == replace(fields, digest="d", key_id="k")
    assert digested.with_digest("e") == replace(fields, digest="e", key_id=None)
    claims = SimpleNamespace(
        trace="00-" + "a" * 32 + "-" + "b" * 16 + "-01", sender=SimpleNamespace(org="z")
    )
    foreign = digested.with_foreign_operation(claims)  # type: ignore[arg-type]  # a stand-in with only the two fields it reads
    assert foreign == replace(
        digested, foreign_operation={"trace_id": "a" * 32, "span_id": "b" * 16, "org": "z"}
    )


@settings(max_examples=100)
@given(
    case_ref=_opt,
    subjects=st.lists(_text, max_size=3),
    actor=st.none() | st.builds(Actor, _text, _opt, _opt),
    note=_opt,
    adapter_reason=_opt,
    salt=st.binary(min_size=32, max_size=32),
)
def test_commitments_are_the_commitment_of_each_personal_value(
    case_ref: str | None,
    subjects: list[str],
    actor: Actor | None,
    note: str | None,
    adapter_reason: str | None,
    salt: bytes,
) -> None:
    record = Record(
        name="access",
        status="ok",
        start_time=NOW,
        end_time=NOW,
        case_ref=case_ref,
        data_subjects=tuple(subjects),
        actor=actor,
        note=note,
        adapter_reason=adapter_reason,
    )
    personal = audit._personal_values(record)

    def c(value: str, name: str) -> str:
        return commitment(salt, value.encode("utf-8"), field=name).hex()

    expected: dict[str, Any] = {
        "case_ref": None if case_ref is None else c(case_ref, "case_ref"),
        "data_subjects": [c(s, "data_subject") for s in subjects],
        "actor": None
        if personal["actor"] is None
        else c(canonical_json(personal["actor"]).decode("utf-8"), "actor"),
    }
    if note is not None:
        expected["note"] = c(note, "note")
    if adapter_reason is not None:
        expected["adapter_reason"] = c(adapter_reason, "adapter_reason")
    assert audit._commitments(personal, salt) == expected
    assert audit.check_personal({"commitments": expected}, personal, salt)


def test_commitments_refuse_a_salt_of_the_wrong_size() -> None:
    with pytest.raises(LocalError):
        audit._commitments({"case_ref": "c"}, bytes(31))
    assert not audit.check_personal({"commitments": {}}, {}, bytes(31))


def _canonical_outcome(encode: Any, value: Any) -> tuple[str, object]:
    try:
        return "ok", encode(value)
    except LocalError as exc:
        return "refused", str(exc)


_surrogate_text = st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1)
_json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**60), 2**60),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
    _surrogate_text,
)
_json_value = st.recursive(
    _json_leaf,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.lists(inner, max_size=3).map(tuple)
        | st.dictionaries(st.text(max_size=4) | _surrogate_text, inner, max_size=3)
    ),
    max_leaves=12,
)


@settings(max_examples=100)
@given(view=st.dictionaries(st.text(max_size=6), _json_value, max_size=6))
def test_view_json_is_canonical_json_for_any_map(view: dict[str, Any]) -> None:
    # Same bytes or the same refusal as canonical_json, whatever the map holds (floats, unsafe
    # integers, invalid Unicode, non-ASCII keys, tuples, nesting).
    assert _canonical_outcome(audit.view_json, view) == _canonical_outcome(canonical_json, view)


@settings(max_examples=100)
@given(values=_records)
def test_view_json_of_a_records_view_is_its_canonical_json(values: dict[str, Any]) -> None:
    try:
        record = new_record(**values)
    except LocalError:
        return  # refused by the BSN guard (the test above covers that)
    view, _ = split(record, SALT)
    assert audit.view_json(view) == canonical_json(view)
    assert audit.leaf_of(view) == leaf_hash(canonical_json(view))


def test_view_json_refuses_what_canonical_json_refuses() -> None:
    refused: list[Any] = [{"x": 1.5}, {"x": 2**53}, {"x": "\ud800"}, {"d": {"x": [1.0]}}]
    for bad in refused:
        with pytest.raises(LocalError):
            canonical_json(bad)
        with pytest.raises(LocalError):
            audit.view_json(bad)
    # Keys sort in UTF-16 order (RFC 8785), not in code point order: U+1F600 before U+FF61.
    for non_ascii_keys in ({"\U0001f600": 1, "\uff61": 2}, {"z": {"\U0001f600": 1, "\uff61": 2}}):
        assert audit.view_json(non_ascii_keys) == canonical_json(non_ascii_keys)


# ---------------------------------------------------------------------------- stored parts

_odd_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**60), 2**60),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=6),
    _surrogate_text,
)
_odd_records = st.fixed_dictionaries(
    {
        **{k: st.just(v) for k, v in base().items()},
        "start_time": st.sampled_from([NOW, NOW - timedelta(seconds=1), NOW.replace(year=999)]),
    },
    optional={
        "purpose": _odd_leaf,
        "reason": _surrogate_text | st.text(max_size=6),
        "case_ref": st.none() | st.text(max_size=6) | _surrogate_text,
        "note": st.none() | st.text(max_size=6) | _surrogate_text,
        "legal_basis": st.lists(_odd_leaf, max_size=3).map(tuple),
        "recipients": st.lists(st.text(max_size=4), max_size=3).map(tuple),
        "flags": st.lists(_odd_leaf, max_size=2),  # a list, not a tuple
        "data_subjects": st.lists(st.text(max_size=6) | _surrogate_text, max_size=3).map(tuple),
        "policy_version": _odd_leaf,
        "detail": st.dictionaries(st.text(max_size=4) | _surrogate_text, _json_value, max_size=3),
        "foreign_operation": st.none() | st.dictionaries(st.text(max_size=3), _odd_leaf),
        "actor": st.none() | st.builds(Actor, st.text(max_size=4), _opt, _opt),
    },
)


def _reference_parts(record: Record) -> tuple[str, object]:
    """What the audit log stored before stored_parts: view_json of split's view, and
    json.dumps of its personal part (compact)."""
    try:
        view, personal = split(record, SALT)
        return "ok", (canonical_json(view), json.dumps(personal, separators=(",", ":")))
    except (LocalError, UnicodeEncodeError) as exc:  # a lone surrogate in a personal value
        return "refused", repr(exc)


def _stored_parts(record: Record) -> tuple[str, object]:
    try:
        return "ok", audit.stored_parts(record, SALT)
    except (LocalError, UnicodeEncodeError) as exc:
        return "refused", repr(exc)


@settings(max_examples=300)
@given(values=_odd_records)
def test_stored_parts_are_the_canonical_view_and_compact_personal_json_of_split(
    values: dict[str, Any],
) -> None:
    # Any field values (unchecked records: floats, unsafe integers, lone surrogates, non-ASCII
    # text and keys, lists, non-string tuples): the same bytes and text, or the same refusal.
    record = Record(**values)
    assert _stored_parts(record) == _reference_parts(record)


@settings(max_examples=100)
@given(values=_records)
def test_stored_parts_of_checked_records_are_what_split_gives(values: dict[str, Any]) -> None:
    try:
        record = new_record(**values)
    except LocalError:
        return  # refused by the BSN guard
    assert _stored_parts(record) == _reference_parts(record)


def test_personal_json_escapes_every_ascii_character_as_json_does() -> None:
    every = "".join(map(chr, range(128)))
    cases: list[dict[str, Any]] = [
        {"case_ref": every, "data_subjects": [every, "x"], "actor": None},
        {"case_ref": None, "data_subjects": [], "actor": {"id": every, "role": None}},
        {"case_ref": "é", "data_subjects": ["\ud800"], "actor": None, "note": "\u2028"},
        {"case_ref": "\x7f", "data_subjects": [], "actor": None},
    ]
    for personal in cases:
        assert audit.personal_json(personal) == json.dumps(personal, separators=(",", ":"))


@settings(max_examples=200)
@given(
    personal=st.dictionaries(
        st.text(max_size=4),
        st.none()
        | st.text(max_size=6)
        | _surrogate_text
        | st.lists(st.text(max_size=4) | _odd_leaf, max_size=3)
        | st.dictionaries(st.text(max_size=3), st.none() | st.text(max_size=4) | _odd_leaf)
        | _odd_leaf,
        max_size=5,
    )
)
def test_personal_json_is_compact_json_dumps(personal: dict[str, Any]) -> None:
    assert audit.personal_json(personal) == json.dumps(personal, separators=(",", ":"))


@settings(max_examples=100)
@given(case=_message_and_record())
def test_message_record_builds_the_record_its_init_builds(
    case: tuple[audit.MessageFields, dict[str, Any]],
) -> None:
    # message_record fills the record's __dict__ instead of calling the dataclass __init__:
    # the same fields, the same values, and nothing __init__ would do besides.
    fields, args = case
    kind, record = _outcome(fields, args)
    if kind != "ok":
        return
    assert isinstance(record, Record)
    assert type(record) is Record
    assert list(vars(record)) == [f.name for f in dataclasses.fields(Record)]
    assert record == Record(**vars(record))
    assert not hasattr(Record, "__post_init__")


def test_complete_record_takes_init_for_anything_but_every_field_in_order() -> None:
    record = new_record(**base())
    values = dict(reversed(list(vars(record).items())))
    assert audit._complete_record(values) == record
    with pytest.raises(TypeError):
        audit._complete_record({**vars(record), "extra": 1})
