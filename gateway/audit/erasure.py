"""Erasure of one person's data at this node (AVG art. 17, ``rights.notice`` of kind ``erase``),
without breaking the audit log; and the log reads that find whom a notice must reach (art. 19).

An audit record's leaf commits to its personal fields (case reference, subject pseudonyms,
actor, note) only through salted commitments (:func:`gateway.core.audit.split`): the leaf view
holds ``commitments``, the row keeps ``personal`` and ``salt`` beside it. Deleting the personal
part *and its salt* leaves the leaf hash, every inclusion proof and every signed checkpoint as
they were, and the commitments become unopenable: nobody can test a guessed pseudonym against
them. Retention already does this by time; an erasure does it for one person's records, now.

What an erasure takes (:func:`plan`, then the :class:`ShredForErasure` command, in one
transaction with the ``rights.erase`` record that lists what it shredded):

- the personal parts of the records that name the person's pseudonym, and of every record of
  the messages those records are about or the notice names;
- the stored payloads of those messages: outbox envelopes, inbox claims and signed bytes (an
  inbox message the adapter has not taken yet is not handed out any more: ``refused``,
  reason ``erased``; its sender sees no ``accepted`` receipt for it) —
  except of ``rights.notice`` messages themselves, which must still be published or handed to
  the adapter (they go at the end of their retention like any payload).

``zvg audit verify`` accepts a shredded record inside its retention period only when a later
``rights.erase`` record lists its index (:func:`parse_indexes`). Decision 0107.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.core.notices import NoticeTarget, notice_targets
from gateway.node.store import ShredForErasure
from gateway.node.store.engine import CommitState

__all__ = [
    "ERASE_OPERATION",
    "ErasurePlan",
    "format_indexes",
    "parse_indexes",
    "plan",
    "shred_for_erasure",
    "targets",
]

#: The operation of the record an erasure writes (``detail.erased_records`` lists the indexes).
ERASE_OPERATION = "rights.erase"
#: Payloads of these message types are kept (a notice must still be published, or handed to the
#: adapter); their records' personal parts are shredded like any other.
KEPT_TYPES = frozenset({"rights.notice"})
#: Records that say who sent a message (and so whether a notice's sender may have it erased).
_MESSAGE_OPERATIONS = frozenset({"message.send", "message.receive"})
_CHUNK = 500  # parameters per IN (...) list: well under SQLite's limit


@dataclass(frozen=True)
class ErasurePlan:
    """What an erasure of one person shreds: audit record indexes and message ids."""

    indexes: tuple[int, ...]
    message_ids: tuple[str, ...]

    def command(self) -> ShredForErasure:
        return ShredForErasure(self.indexes, self.message_ids)


def _chunks(values: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for i in range(0, len(values), _CHUNK):
        yield values[i : i + _CHUNK]


def _rows_of_messages(db: sqlite3.Connection, message_ids: Sequence[str]) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = []
    for chunk in _chunks(message_ids):
        marks = ",".join("?" * len(chunk))
        rows += db.execute(
            f"SELECT idx, view, personal FROM audit_records WHERE message_id IN ({marks})",  # noqa: S608 - only placeholders
            tuple(chunk),
        ).fetchall()
    return rows


def _subject_rows(db: sqlite3.Connection, subject: str) -> list[tuple[Any, ...]]:
    return db.execute(
        "SELECT r.idx, r.view, r.personal FROM audit_subjects s"
        " JOIN audit_records r ON r.idx = s.idx WHERE s.subject = ? ORDER BY r.idx",
        (subject,),
    ).fetchall()


def plan(
    db: sqlite3.Connection,
    subject: str,
    concerns: Sequence[str] = (),
    *,
    from_sender: str | None = None,
) -> ErasurePlan:
    """What erasing ``subject`` (this node's pseudonym of the person, or the one a notice names)
    shreds, read from ``db``; ``concerns``: message ids a received notice names.

    ``from_sender``: a received notice's sender. It erases only what that organisation sent us:
    records and payloads of other messages — another partner's, our own — stay, whatever the
    notice names."""

    def ours_to_erase(view: dict[str, Any]) -> bool:
        return from_sender is None or view.get("sender") == from_sender

    message_ids: dict[str, None] = {}
    indexes: set[int] = set()
    for idx, view_text, personal in _subject_rows(db, subject):
        view = json.loads(view_text)
        if personal is None or not ours_to_erase(view):
            continue
        indexes.add(int(idx))
        mid = view.get("message_id")
        if isinstance(mid, str) and view.get("message_type") not in KEPT_TYPES:
            message_ids[mid] = None
    named = [m for m in concerns if m not in message_ids]
    for _idx, view_text, _personal in _rows_of_messages(db, named):
        view = json.loads(view_text)
        if (
            view.get("name") in _MESSAGE_OPERATIONS
            and view.get("message_type") not in KEPT_TYPES
            and ours_to_erase(view)
        ):
            message_ids[view["message_id"]] = None
    for idx, _view_text, personal in _rows_of_messages(db, list(message_ids)):
        if personal is not None:
            indexes.add(int(idx))
    return ErasurePlan(tuple(sorted(indexes)), tuple(message_ids))


def shred_for_erasure(db: sqlite3.Connection, c: ShredForErasure, _state: CommitState) -> bool:
    """The store handler of :class:`ShredForErasure` (module docstring). On SQLite it turns
    ``secure_delete`` on for the connection first, so the freed bytes are zeroed in the file
    rather than left in free space."""
    if isinstance(db, sqlite3.Connection):
        db.execute("PRAGMA secure_delete=ON")
    for chunk in _chunks(c.message_ids):
        marks = ",".join("?" * len(chunk))
        db.execute(f"UPDATE outbox SET envelope=NULL WHERE message_id IN ({marks})", tuple(chunk))  # noqa: S608 - only placeholders
        # One the adapter never took is not handed out any more (nothing is left to hand out).
        untaken = f"UPDATE inbox SET status='refused', reason='erased' WHERE status='delivered' AND message_id IN ({marks})"  # noqa: S608, E501 - only placeholders
        db.execute(untaken, tuple(chunk))
        db.execute(
            f"UPDATE inbox SET claims=NULL, inner_jws=NULL WHERE message_id IN ({marks})",  # noqa: S608 - only placeholders
            tuple(chunk),
        )
    for chunk in _chunks(c.indexes):
        marks = ",".join("?" * len(chunk))
        params = tuple(chunk)
        db.execute(f"DELETE FROM audit_subjects WHERE idx IN ({marks})", params)  # noqa: S608 - only placeholders
        db.execute(f"DELETE FROM audit_evidence WHERE idx IN ({marks})", params)  # noqa: S608 - only placeholders
        shred = f"UPDATE audit_records SET personal=NULL, salt=NULL, case_ref=NULL WHERE idx IN ({marks})"  # noqa: S608, E501 - only placeholders
        db.execute(shred, params)
    return True


def format_indexes(indexes: Iterable[int]) -> str:
    """``[3, 5, 6, 7, 9]`` → ``"3,5-7,9"`` (the ``erased_records`` detail of the record)."""
    parts: list[str] = []
    run: list[int] = []
    for i in sorted(set(indexes)):
        if run and i == run[-1] + 1:
            run.append(i)
            continue
        if run:
            parts.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
        run = [i]
    if run:
        parts.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
    return ",".join(parts)


def parse_indexes(text: str) -> set[int]:
    """The inverse of :func:`format_indexes`. Raises ``ValueError`` on anything else."""
    out: set[int] = set()
    for part in text.split(",") if text else ():
        first, _, last = part.partition("-")
        lo, hi = int(first), int(last or first)
        if lo < 0 or hi < lo:
            raise ValueError("not an index range")
        out.update(range(lo, hi + 1))
    return out


def targets(db: sqlite3.Connection, subject: str, own_org: str) -> tuple[NoticeTarget, ...]:
    """Whom a notice about ``subject`` must reach: :func:`notice_targets` on this node's records
    about the person and the publish records of their messages."""
    rows = _subject_rows(db, subject)
    sends = [r for r in rows if json.loads(r[1]).get("name") == "message.send"]
    ids = [json.loads(r[1]).get("message_id") for r in sends]
    publish = [
        r
        for r in _rows_of_messages(db, [i for i in ids if isinstance(i, str)])
        if json.loads(r[1]).get("name") == "message.publish"
    ]
    ordered = sorted({int(r[0]): r for r in (*rows, *publish)}.items())
    return notice_targets(
        (
            (json.loads(view), None if personal is None else json.loads(personal))
            for _, (_, view, personal) in ordered
        ),
        subject=subject,
        own_org=own_org,
    )
