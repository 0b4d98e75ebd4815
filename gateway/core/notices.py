"""Who must hear of a rectification, erasure or restriction (AVG art. 19), from the audit log.

Art. 19 asks the organisation that rectified, erased or restricted data about a person to tell
every recipient it disclosed that data to. The node's own audit log is the record of those
disclosures: :func:`notice_targets` reads it and answers, per recipient organisation, which of
this node's messages about the person reached it and which data categories they carried — what
one ``rights.notice`` to that organisation names (docs/subject-rights.md §5).

A message counts as *sent to* an organisation when this node logged both

- a ``message.send`` record (status ``ok``) naming the person's pseudonym among its data
  subjects, sent by this organisation; and
- a ``message.publish`` record (status ``ok``) of that message with the organisation as peer:
  the broker confirmed the envelope for it. A message still queued reached nobody yet.

Receipts and notices themselves carry no data about the person beyond the notice, so they never
make a target. Pure: the caller reads the records (leaf view and personal part) and passes them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

__all__ = ["NOT_NOTIFIED_TYPES", "NoticeTarget", "notice_request", "notice_targets"]

#: Message types whose sending never calls for a notice: they carry no data about the person.
NOT_NOTIFIED_TYPES = frozenset({"receipt", "rights.notice"})


@dataclass(frozen=True)
class NoticeTarget:
    """One organisation this node sent data about the person to.

    ``message_ids`` in the order they were sent; ``data_categories`` the union of what they
    declared (in first-seen order); ``case_ref`` the case of the latest of them (the notice is
    sent under it)."""

    org: str
    message_ids: tuple[str, ...]
    data_categories: tuple[str, ...]
    case_ref: str


def notice_targets(
    records: Iterable[tuple[Mapping[str, Any], Mapping[str, Any] | None]],
    *,
    subject: str,
    own_org: str,
) -> tuple[NoticeTarget, ...]:
    """The organisations to notify about ``subject`` (a pseudonym of this organisation), ordered
    by organisation id, from ``records`` — (leaf view, personal part or ``None`` when shredded)
    in log order. A record whose personal part is gone says nothing about whom it concerned."""
    sent: dict[str, tuple[tuple[str, ...], str]] = {}  # message id -> (categories, case_ref)
    order: list[str] = []
    published: dict[str, list[str]] = {}  # message id -> peers, in log order
    for view, personal in records:
        name, status, message_id = view.get("name"), view.get("status"), view.get("message_id")
        if status != "ok" or not isinstance(message_id, str):
            continue
        if name == "message.send":
            if personal is None or view.get("sender") != own_org:
                continue
            if view.get("message_type") in NOT_NOTIFIED_TYPES:
                continue
            if subject not in (personal.get("data_subjects") or ()):
                continue
            if message_id not in sent:
                order.append(message_id)
            sent[message_id] = (
                tuple(view.get("data_categories") or ()),
                str(personal.get("case_ref")),
            )
        elif name == "message.publish" and isinstance(view.get("peer"), str):
            peers = published.setdefault(message_id, [])
            if view["peer"] not in peers:
                peers.append(view["peer"])
    per_org: dict[str, tuple[list[str], dict[str, None], str]] = {}
    for message_id in order:
        categories, case_ref = sent[message_id]
        for org in published.get(message_id, ()):
            if org == own_org:
                continue
            ids, cats, _ = per_org.get(org, ([], {}, case_ref))
            ids.append(message_id)
            cats.update(dict.fromkeys(categories))
            per_org[org] = (ids, cats, case_ref)
    return tuple(
        NoticeTarget(org, tuple(ids), tuple(cats), case_ref)
        for org, (ids, cats, case_ref) in sorted(per_org.items())
    )


def notice_request(
    target: NoticeTarget,
    *,
    role: str,
    subject: str,
    kind: str,
    ground: str,
    at: datetime,
    correlation_id: str,
    categories: Sequence[str] = (),
    bsn: str | None = None,
    sender_role: str | None = None,
) -> dict[str, Any]:
    """The ``POST /v1/messages`` body of the notice to ``target`` (addressed to its ``role``):
    the messages it received, the categories changed (``categories``, default: all those the
    messages declared but the pseudonym), the person by ``subject`` and, when given, by ``bsn``
    in the body's identification (inside the encryption). One ``correlation_id`` ties together
    the notices of one correction or erasure."""
    changed = tuple(categories) or tuple(c for c in target.data_categories if c != "ID_PSEUDO")
    body: dict[str, Any] = {
        "kind": kind,
        "ground": ground,
        "effective_at": at.isoformat().replace("+00:00", "Z"),
        "concerns": list(target.message_ids),
        "categories": list(changed or ("ID_PSEUDO",)),
    }
    if bsn is not None:
        body["identification"] = {"bsn": bsn}
    request: dict[str, Any] = {
        "message_type": "rights.notice",
        "purpose": "ZVH.VERANTWOORDING",
        "recipients": [{"org": target.org, "role": role}],
        "case_ref": target.case_ref,
        "data_categories": ["ID_PSEUDO", "ID_DIRECT"] if bsn is not None else ["ID_PSEUDO"],
        "subjects": [{"subject_ref": subject, "role": "betrokkene", "minor": False}],
        "correlation_id": correlation_id,
        "body": body,
    }
    if sender_role is not None:
        request["sender_role"] = sender_role
    return request
