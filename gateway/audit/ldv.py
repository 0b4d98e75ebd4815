"""The audit log in the form of *Logboek Dataverwerkingen* (LDV): ``zvg audit export --format
ldv`` (docs/security-officers.md, docs/decisions/0098).

One JSON object per line, shaped as the ``ProcessingActivity`` ("Dataverwerking") of the LDV
read extension's OpenAPI document (version 1.1.0): ``traceId``, ``spanId``, ``status``,
``name``, ``startTime``/``endTime`` (milliseconds since the epoch), ``parentSpanId``,
``resource`` and ``attributes`` with the standard's ``dpl.core.*`` names, plus the
``foreignOperation`` of the standard's text (``trace_id``, ``span_id``, ``entity``).

The standard logs one data subject per line. A record of ours concerns every subject of its
message, so the export writes **one line per subject**: a record's own subjects, else those of
the record of the same message that names them (the send or receive record; the publish,
deliver, receipt and access records of a message do not repeat them). The Merkle leaves are
untouched: the expansion happens here, on reading, and works on logs written before it.

A record is left out, and counted, when it concerns no data subject (directory, key, broker,
witness and console records: no processing of a person's data), when its personal part was
shredded at the end of retention (the subjects are gone), or when it has no trace id (written
before every record had one).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from gateway.core.audit import parse_record_time

__all__ = ["SUBJECT_ID_TYPE", "LdvExport", "ldv_lines", "message_subjects", "record_lines"]

SUBJECT_ID_TYPE = "urn:zvg:subject-ref"
"""``dpl.core.data_subject_id_type`` of our subjects: a ``subject_ref``, the keyed pseudonym an
organisation's adapters derive from a BSN or a system-local id (docs/contract.md); never the BSN
itself, which no record holds."""

#: Our record status -> the LDV status. A refusal (denied, rejected) is a processing that ran
#: without a server-side failure: ``Unset``, as the standard maps client errors (4xx).
STATUS = {"ok": "Ok", "denied": "Unset", "rejected": "Unset", "error": "Error"}


@dataclass
class LdvExport:
    """What :func:`ldv_lines` wrote and left out."""

    records: int = 0
    lines: int = 0
    no_subject: int = 0
    shredded: int = 0
    no_trace: int = 0
    names: dict[str, int] = field(default_factory=dict)


def _ms(text: object) -> int:
    t = parse_record_time(str(text))
    return int(t.timestamp() * 1000)


def _org_uri(org: str) -> str:
    return f"urn:zvg:{org}"


def message_subjects(personal_text: str | None) -> list[str]:
    """The subjects a record's personal part names (none when shredded)."""
    if personal_text is None:
        return []
    return list(json.loads(personal_text).get("data_subjects") or [])


def record_lines(
    idx: int,
    view: dict[str, Any],
    personal_text: str | None,
    known: tuple[list[str], str | None] | None,
    *,
    org: str,
    activity_of: Callable[[str], str],
) -> tuple[str | None, list[dict[str, Any]]]:
    """The LDV lines of the record at ``idx`` (one per subject), or why it has none
    (``"shredded"``, ``"no_subject"``, ``"no_trace"``). ``known`` is the subjects and
    processing activity of the record's message, from the record that names them."""
    if personal_text is None:
        return "shredded", []
    subjects = message_subjects(personal_text) or (known[0] if known else [])
    if not subjects:
        return "no_subject", []
    if not view.get("trace_id") or not view.get("span_id"):
        return "no_trace", []
    purpose = view.get("purpose")
    activity = (
        view.get("processing_activity_id")
        or (known[1] if known else None)
        or (activity_of(purpose) if purpose else None)
    )
    if not activity:
        return "no_subject", []  # neither purpose nor message: no processing activity
    base: dict[str, Any] = {
        "traceId": view["trace_id"],
        "spanId": view["span_id"],
        "status": STATUS.get(str(view.get("status")), "Unset"),
        "name": view["name"],
        "startTime": _ms(view["start_time"]),
        "endTime": _ms(view["end_time"]),
        "processingActivityId": activity,
        "resource": {"attributes": {"service.name": "zv-gateway", "zvg.org": org}},
    }
    if view.get("parent_span_id"):
        base["parentSpanId"] = view["parent_span_id"]
    foreign = view.get("foreign_operation")
    extra: dict[str, Any] = {"zvg.audit_index": idx, "zvg.status": view.get("status")}
    for key in ("message_id", "message_type", "purpose", "peer", "reason"):
        if view.get(key):
            extra[f"zvg.{key}"] = view[key]
    if isinstance(foreign, dict) and foreign.get("org"):
        base["foreignOperation"] = {
            "traceId": foreign.get("trace_id"),
            "spanId": foreign.get("span_id"),
            "entity": _org_uri(str(foreign["org"])),
        }
    lines = []
    for subject in subjects:
        attributes: dict[str, Any] = {
            "dpl.core.processing_activity_id": activity,
            "dpl.core.data_subject_id": subject,
            "dpl.core.data_subject_id_type": SUBJECT_ID_TYPE,
        }
        if "foreignOperation" in base:
            attributes["dpl.core.foreign_operation.processor"] = base["foreignOperation"]["entity"]
        lines.append({**base, "attributes": {**attributes, **extra}})
    return None, lines


def ldv_lines(
    db: sqlite3.Connection,
    *,
    org: str,
    activity_of: Callable[[str], str],
    report: LdvExport | None = None,
) -> Iterator[dict[str, Any]]:
    """The LDV lines of the log in ``db`` (module docstring), in log order. ``activity_of``
    maps a purpose code to this organisation's processing activity URI (the node's setting),
    for records written before they named it. ``report`` counts what was written and left out."""
    report = report if report is not None else LdvExport()
    # First pass: the subjects and processing activity of each message, from the records that
    # carry them.
    by_message: dict[str, tuple[list[str], str | None]] = {}
    rows = db.execute("SELECT view, personal FROM audit_records ORDER BY idx")
    for view_text, personal_text in rows:
        view = json.loads(view_text)
        message_id = view.get("message_id")
        subjects = message_subjects(personal_text)
        if message_id and subjects and message_id not in by_message:
            by_message[message_id] = (subjects, view.get("processing_activity_id"))
    for idx, view_text, personal_text in db.execute(
        "SELECT idx, view, personal FROM audit_records ORDER BY idx"
    ):
        report.records += 1
        view = json.loads(view_text)
        message_id = view.get("message_id")
        known = by_message.get(message_id) if message_id else None
        left_out, lines = record_lines(
            idx, view, personal_text, known, org=org, activity_of=activity_of
        )
        if left_out is not None:
            setattr(report, left_out, getattr(report, left_out) + 1)
            continue
        report.names[view["name"]] = report.names.get(view["name"], 0) + 1
        report.lines += len(lines)
        yield from lines
