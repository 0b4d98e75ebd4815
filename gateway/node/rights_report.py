"""The report of one inzageverzoek, computed from the request on view (docs/subject-rights.md): per
organisation its answer (the exchanges in Dutch words, or its deferral), the term and its alerts.
The console renders it as HTML and PDF; ``zvg rights show`` as text. Dutch first: the person
receives it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from gateway.core.rights import alerts_due, deadline
from schemas.catalogue import Catalogue
from schemas.rights import DEFERRAL_GROUNDS

__all__ = ["ExchangeRow", "OrgAnswer", "Report", "build_report", "report_text"]

_STATUS_NL = {
    "answered": "beantwoord",
    "deferred": "uitgesteld",
    "asked": "gevraagd, nog geen antwoord",
    "not_sent": "niet verstuurd",
}
_DIRECTION_NL = {"sent": "verstrekt aan", "received": "ontvangen van"}


@dataclass(frozen=True)
class ExchangeRow:
    on: str
    direction: str
    organisations: str
    purpose: str
    legal_basis: str
    categories: str
    count: int


@dataclass(frozen=True)
class OrgAnswer:
    org: str
    name: str
    status: str
    status_nl: str
    rows: tuple[ExchangeRow, ...]
    complete: bool
    deferral: str | None
    review_on: str | None
    released_from: str | None


@dataclass(frozen=True)
class Report:
    request_id: str
    case_ref: str
    received_on: str
    identity_check: str
    deadline: str
    extension: str | None
    days_left: int
    alerts: tuple[int, ...]
    answers: tuple[OrgAnswer, ...]
    waiting: tuple[str, ...]

    @property
    def complete(self) -> bool:
        """Every organisation answered (none is asked, deferred or unsent)."""
        return not self.waiting


def _names(codes: Any, table: Mapping[str, Any]) -> str:
    return ", ".join(table[c].name_nl if c in table else str(c) for c in codes or ())


def build_report(
    doc: Mapping[str, Any], *, names: Mapping[str, str], catalogue: Catalogue, today: date
) -> Report:
    """The report of the request ``doc`` (as the store gives it: ``Contactpunt.request``),
    naming organisations by ``names`` (OIN → name)."""
    received = date.fromisoformat(doc["received_on"])
    due = deadline(received, extended=doc.get("extension") is not None)
    answers = []
    for org, entry in doc["organisations"].items():
        response = entry.get("response") or {}
        rows = tuple(
            ExchangeRow(
                on=e["on"],
                direction=_DIRECTION_NL[e["direction"]],
                organisations=", ".join(names.get(o, o) for o in e["organisations"]),
                purpose=_names([e["purpose"]], catalogue.purpose_by_code),
                legal_basis=_names(e["legal_basis"], catalogue.legal_basis_by_code),
                categories=_names(e["data_categories"], catalogue.category_by_code),
                count=e.get("count", 1),
            )
            for e in response.get("exchanges", ())
        )
        deferral = response.get("deferral")
        answers.append(
            OrgAnswer(
                org=org,
                name=names.get(org, org),
                status=entry["status"],
                status_nl=_STATUS_NL.get(entry["status"], entry["status"]),
                rows=rows,
                complete=response.get("complete", True),
                deferral=None if deferral is None else DEFERRAL_GROUNDS[deferral["ground"]],
                review_on=None if deferral is None else deferral["review_on"],
                released_from=response.get("released_from"),
            )
        )
    extension = doc.get("extension")
    return Report(
        request_id=doc["request_id"],
        case_ref=doc["case_ref"],
        received_on=doc["received_on"],
        identity_check=doc["identity_check"],
        deadline=due.isoformat(),
        extension=None if extension is None else extension["reason"],
        days_left=(due - today).days,
        alerts=alerts_due(due, today),
        answers=tuple(answers),
        waiting=tuple(a.name for a in answers if a.status != "answered"),
    )


def report_text(report: Report) -> str:
    """The report as plain text (Dutch), for ``zvg rights show``."""
    lines = [
        f"Inzageverzoek {report.request_id} ({report.case_ref})",
        f"ontvangen op {report.received_on}; uiterlijk beantwoorden op {report.deadline}"
        + (f" (verlengd: {report.extension})" if report.extension else "")
        + f"; nog {report.days_left} dagen",
        f"identiteit vastgesteld: {report.identity_check}",
    ]
    if report.waiting:
        lines.append("wacht nog op: " + ", ".join(report.waiting))
    for a in report.answers:
        lines += ["", f"{a.name}: {a.status_nl}"]
        if a.deferral:
            lines.append(f"  uitgesteld op grond van {a.deferral}; heroverweging op {a.review_on}")
        if a.released_from:
            lines.append(f"  eerder uitgesteld (sinds {a.released_from}), nu vrijgegeven")
        if a.status == "answered" and not a.rows:
            lines.append("  geen uitwisselingen over deze persoon gevonden")
        lines += [
            f"  {r.on}  {r.direction} {r.organisations}  doel: {r.purpose}; grondslag: "
            f"{r.legal_basis}; gegevens: {r.categories}"
            + (f"  ({r.count}x)" if r.count > 1 else "")
            for r in a.rows
        ]
        if not a.complete:
            lines.append("  (meer uitwisselingen dan één antwoord bevat; vraag de rest op)")
    return "\n".join(lines) + "\n"
