"""Search the audit log: what an officer asks, what each role may ask and see, and CSV export.

Rules (deny by default, :mod:`gateway.console.roles`):

- ``security-officer`` and ``privacy-officer`` search by every field and see every field that is
  still held (case reference and subject pseudonyms until they are shredded).
- ``auditor`` sees metadata only: no case reference, no pseudonyms, and may not search by them
  (a search by a personal value would disclose it as surely as a column).
- ``contactpunt`` may only search by subject (subject-access work), and sees that search's
  records with their case references and pseudonyms.

A subject is asked as a pseudonym (``sub-…``) or as a BSN, which :func:`search_records` turns into
this organisation's pseudonym (:mod:`.subject`) and forgets: the page it returns never holds the
BSN, and says only that a BSN was asked (so the web layer can log "subject (BSN)" without it).
"""

from __future__ import annotations

import csv
import io
import re
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gateway.audit.search import AuditHit, RecordQuery, receipt_statuses, search
from gateway.console.data.subject import looks_like_bsn, subject_pseudonym
from gateway.console.roles import Role

__all__ = [
    "CSV_COLUMNS",
    "DEFAULT_PAGE",
    "MAX_PAGE",
    "BadQuery",
    "NotAllowed",
    "OrgRef",
    "RecordRow",
    "SearchPage",
    "SearchRequest",
    "org_ref",
    "record_row",
    "search_records",
    "to_csv",
]

DEFAULT_PAGE = 50
MAX_PAGE = 500
"""Rows per page at most: a page is one indexed seek of ``limit + 1`` rows, and 500 rows is what
an officer can still scan on one screen or export as one CSV slice."""


class BadQuery(ValueError):  # noqa: N818 - an answer to the form, not a fault
    """The query cannot be run as asked (an invalid BSN, a bad cursor or page size); the message
    is safe to show and never repeats what was typed."""


class NotAllowed(Exception):  # noqa: N818 - a refusal to the role, not a fault
    """The role may not ask this (the web layer answers 403)."""


_CURSOR = re.compile(r"^(\d{1,12}(?:\.\d{1,6})?)~(\d{1,15})$")


@dataclass(frozen=True)
class SearchRequest:
    """What an officer asked. Empty filters are ``None``; ``subject`` is a pseudonym or a BSN;
    ``cursor`` the :attr:`SearchPage.next_cursor` of the previous page."""

    message_id: str | None = None
    case_ref: str | None = None
    trace_id: str | None = None
    subject: str | None = None
    partner: str | None = None
    purpose: str | None = None
    operation: str | None = None
    legal_basis: str | None = None
    status: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    cursor: str | None = None
    page_size: int = DEFAULT_PAGE

    def filters(self) -> dict[str, str]:
        """The filters that are set, by name (values as typed: never log ``subject`` from
        here, it may be a BSN; see :attr:`SearchPage.asked`)."""
        out = {}
        for name in (
            "message_id",
            "case_ref",
            "trace_id",
            "subject",
            "partner",
            "purpose",
            "operation",
            "legal_basis",
            "status",
        ):
            value = getattr(self, name)
            if value:
                out[name] = str(value)
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value.isoformat()
        return out


@dataclass(frozen=True)
class OrgRef:
    """An organisation as the console shows it: its OIN and, when the directory knows it, its
    name."""

    oin: str
    name: str | None = None

    def __str__(self) -> str:
        return f"{self.name} ({self.oin})" if self.name else self.oin


@dataclass(frozen=True)
class RecordRow:
    """One record as a row of the search page or the CSV (never a message body).

    ``case_ref`` and ``subjects`` are empty when the role may not see them or the record's
    personal part was shredded (``shredded``); ``receipts`` is the latest receipt status per
    organisation for the record's message."""

    idx: int
    time: datetime
    operation: str
    status: str
    message_id: str | None
    message_type: str | None
    purpose: str | None
    legal_basis: tuple[str, ...]
    sender: OrgRef | None
    recipients: tuple[OrgRef, ...]
    peer: OrgRef | None
    data_categories: tuple[str, ...]
    policy_decision: str | None
    policy_rule: str | None
    policy_version: int | None
    reason: str | None
    trace_id: str | None
    receipts: tuple[tuple[OrgRef, str], ...]
    case_ref: str | None
    subjects: tuple[str, ...]
    shredded: bool


@dataclass(frozen=True)
class SearchPage:
    """A page of results, newest first. ``asked`` are the filters as the access record should
    name them (a BSN replaced by ``"(BSN)"``; pseudonyms kept); ``next_cursor`` is ``None`` on the
    last page."""

    rows: tuple[RecordRow, ...]
    next_cursor: str | None
    asked: Mapping[str, str]
    shows_personal: bool


def org_ref(oin: str, names: Mapping[str, str]) -> OrgRef:
    return OrgRef(oin, names.get(oin))


def _tuple(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


def record_row(
    hit: AuditHit,
    *,
    names: Mapping[str, str],
    personal: bool,
    receipts: Mapping[str, str] | None = None,
) -> RecordRow:
    """``hit`` as a row; with ``personal`` false, without case reference and pseudonyms."""
    v = hit.view
    held = hit.personal or {}

    def org(value: Any) -> OrgRef | None:
        return org_ref(str(value), names) if value else None

    version = v.get("policy_version")
    return RecordRow(
        idx=hit.idx,
        time=datetime.fromtimestamp(hit.time, UTC),
        operation=str(v["name"]),
        status=str(v["status"]),
        message_id=v.get("message_id"),
        message_type=v.get("message_type"),
        purpose=v.get("purpose"),
        legal_basis=_tuple(v.get("legal_basis")),
        sender=org(v.get("sender")),
        recipients=tuple(org_ref(str(o), names) for o in v.get("recipients") or ()),
        peer=org(v.get("peer")),
        data_categories=_tuple(v.get("data_categories")),
        policy_decision=v.get("policy_decision"),
        policy_rule=v.get("policy_rule"),
        policy_version=int(version) if isinstance(version, int) else None,
        reason=v.get("reason"),
        trace_id=v.get("trace_id"),
        receipts=tuple((org_ref(o, names), s) for o, s in sorted((receipts or {}).items())),
        case_ref=held.get("case_ref") if personal else None,
        subjects=_tuple(held.get("data_subjects")) if personal else (),
        shredded=hit.personal is None,
    )


def _check_role(role: Role, request: SearchRequest) -> None:
    if role in (Role.SECURITY_OFFICER, Role.PRIVACY_OFFICER):
        return
    if role is Role.AUDITOR:
        if request.subject or request.case_ref:
            raise NotAllowed("an auditor sees no personal fields and cannot search by them")
        return
    if role is Role.CONTACTPUNT:
        others = set(request.filters()) - {"subject"}
        if not request.subject or others:
            raise NotAllowed("a contactpunt can only search by subject")
        return
    raise NotAllowed("unknown role")  # deny by default


def _cursor(text: str) -> tuple[float, int]:
    match = _CURSOR.fullmatch(text)
    if match is None:
        raise BadQuery("not a page cursor of this search")
    return float(match[1]), int(match[2])


def search_records(
    db: sqlite3.Connection,
    role: Role,
    request: SearchRequest,
    *,
    pseudonym_key: bytes | None,
    names: Mapping[str, str],
) -> SearchPage:
    """A page of the records matching ``request`` that ``role`` may see.

    Raises :class:`NotAllowed` for a search the role may not make, :class:`BadQuery` for an
    invalid BSN, cursor or page size (or a BSN when no pseudonym key is configured)."""
    _check_role(role, request)
    if not 1 <= request.page_size <= MAX_PAGE:
        raise BadQuery(f"page size must be 1 to {MAX_PAGE}")
    asked = request.filters()
    subject = request.subject.strip() if request.subject else None
    if subject and looks_like_bsn(subject):
        if pseudonym_key is None:
            raise BadQuery("this console has no pseudonym key: search by pseudonym")
        try:
            subject = subject_pseudonym(pseudonym_key, subject)
        except ValueError:
            raise BadQuery("not a valid BSN (nine digits passing the elfproef)") from None
        asked["subject"] = "(BSN)"
    query = RecordQuery(
        message_id=request.message_id or None,
        trace_id=request.trace_id or None,
        case_ref=request.case_ref or None,
        subject=subject or None,
        party=request.partner or None,
        purpose=request.purpose or None,
        operation=request.operation or None,
        status=request.status or None,
        legal_basis=request.legal_basis or None,
        since=request.since.timestamp() if request.since else None,
        until=request.until.timestamp() if request.until else None,
        before=_cursor(request.cursor) if request.cursor else None,
        limit=request.page_size,
    )
    hits, more = search(db, query)
    personal = role is not Role.AUDITOR
    statuses = receipt_statuses(
        db, sorted({str(h.view["message_id"]) for h in hits if h.view.get("message_id")})
    )
    rows = tuple(
        record_row(
            h,
            names=names,
            personal=personal,
            receipts=statuses.get(str(h.view.get("message_id"))),
        )
        for h in hits
    )
    cursor = f"{hits[-1].time:.6f}~{hits[-1].idx}" if more and hits else None
    return SearchPage(rows, cursor, asked, personal)


CSV_COLUMNS = (
    "index",
    "time",
    "operation",
    "status",
    "message_id",
    "message_type",
    "purpose",
    "legal_basis",
    "sender",
    "recipients",
    "data_categories",
    "policy",
    "reason",
    "receipts",
    "case_ref",
    "subjects",
)


def _cell(value: str) -> str:
    """A CSV cell a spreadsheet shows as text: a leading ``= + - @`` (or tab, CR) would make it a
    formula (CSV injection), so it gets a leading apostrophe."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def to_csv(rows: Sequence[RecordRow]) -> str:
    """The rows as CSV (RFC 4180, a header line; personal columns empty where the row has
    none)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for r in rows:
        policy = ""
        if r.policy_decision:
            policy = f"{r.policy_decision} {r.policy_rule or ''} v{r.policy_version}"
        writer.writerow(
            [
                _cell(str(x))
                for x in (
                    r.idx,
                    r.time.isoformat(),
                    r.operation,
                    r.status,
                    r.message_id or "",
                    r.message_type or "",
                    r.purpose or "",
                    " ".join(r.legal_basis),
                    str(r.sender or r.peer or ""),
                    "; ".join(str(o) for o in r.recipients),
                    " ".join(r.data_categories),
                    policy,
                    r.reason or "",
                    "; ".join(f"{o}: {s}" for o, s in r.receipts),
                    r.case_ref or "",
                    " ".join(r.subjects),
                )
            ]
        )
    return out.getvalue()
