"""The inzageverzoek (AVG art. 15) as pure decisions (docs/subject-rights.md).

- :func:`exchanges_of` turns a node's audit records about one person (the leaf views the log
  search returns) into the exchanges a ``rights.response`` lists: per day, direction, message
  type, purpose, legal basis, counterpart organisations and data categories, counted. Only what
  the organisation *exchanged* counts (``message.send`` and ``message.receive`` with status
  ``ok``); receipts and the rights messages themselves are not exchanges about the person, and no
  field of an actor (the employee, C-579/21) is ever read.
- :func:`answer` decides the response body: ``answered`` with the exchanges, or ``deferred``
  with the organisation's configured legal ground and a review day.
- :func:`deadline` and :func:`alerts_due` keep the contactpunt's term: one month from the day
  the request was received (art. 12(3) AVG), extendable by two months with a reason; alerts at
  two weeks and at three days before it passes.

No clock, no I/O: ``today`` and the records are arguments.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Literal

from schemas.rights import (
    MAX_RIGHTS_EXCHANGES,
    Deferral,
    DeferralGround,
    Exchange,
    RightsRequestBody,
    RightsResponseBody,
)

__all__ = [
    "ALERT_DAYS",
    "DeferPolicy",
    "alerts_due",
    "answer",
    "deadline",
    "exchanges_of",
]

#: Days before the deadline at which the contactpunt is alerted (two weeks, three days).
ALERT_DAYS = (14, 3)

_DIRECTION: dict[str, Literal["sent", "received"]] = {
    "message.send": "sent",
    "message.receive": "received",
}
#: Message types that are not exchanges about the person (receipts say a message arrived; the
#: rights messages are the request about the exchanges itself).
_NOT_EXCHANGES = frozenset({"receipt", "rights.request", "rights.response"})


def _day(view: Mapping[str, Any]) -> date:
    return datetime.fromisoformat(str(view["start_time"])).date()


def exchanges_of(
    views: Iterable[Mapping[str, Any]],
    *,
    org: str,
    period_from: date | None = None,
    period_to: date | None = None,
    limit: int = MAX_RIGHTS_EXCHANGES,
) -> tuple[tuple[Exchange, ...], bool]:
    """The exchanges ``org``'s records ``views`` show (oldest first), and whether the list is
    complete (False when more than ``limit`` distinct exchanges were found: the oldest
    ``limit`` are listed). A record seen twice (same message, same operation) counts once."""
    counted: dict[tuple[Any, ...], int] = {}
    seen: set[tuple[str, str]] = set()
    for view in views:
        direction = _DIRECTION.get(str(view.get("name")))
        if direction is None or view.get("status") != "ok":
            continue
        message_type = view.get("message_type")
        if message_type is None or message_type in _NOT_EXCHANGES:
            continue
        message_id = str(view.get("message_id"))
        if (message_id, direction) in seen:
            continue
        seen.add((message_id, direction))
        on = _day(view)
        if (period_from is not None and on < period_from) or (
            period_to is not None and on > period_to
        ):
            continue
        if direction == "sent":
            orgs = tuple(o for o in view.get("recipients") or () if o != org)
        else:
            orgs = (str(view.get("sender")),)
        if not orgs:
            continue
        key = (
            on,
            direction,
            message_type,
            view.get("purpose"),
            tuple(view.get("legal_basis") or ()),
            orgs,
            tuple(view.get("data_categories") or ()),
        )
        counted[key] = counted.get(key, 0) + 1
    keys = sorted(counted, key=lambda k: (k[0], k[1], k[2], k[3] or "", k[5]))
    exchanges = tuple(
        Exchange.model_validate(
            {
                "on": k[0],
                "direction": k[1],
                "message_type": k[2],
                "purpose": k[3],
                "legal_basis": k[4],
                "organisations": k[5],
                "data_categories": k[6],
                "count": counted[k],
            }
        )
        for k in keys[:limit]
    )
    return exchanges, len(keys) <= limit


@dataclass(frozen=True, slots=True)
class DeferPolicy:
    """An organisation's standing decision to defer its answers (police, OM): the legal ground
    it invokes and how many days later it reviews each deferral."""

    ground: DeferralGround
    review_days: int


def answer(
    request: RightsRequestBody,
    *,
    exchanges: tuple[Exchange, ...],
    complete: bool,
    defer: DeferPolicy | None,
    today: date,
    released_from: date | None = None,
) -> RightsResponseBody:
    """The response to ``request``: deferred when ``defer`` is set (and this is not the release
    of an earlier deferral, ``released_from``), else answered with ``exchanges``."""
    if defer is not None and released_from is None:
        return RightsResponseBody(
            request_id=request.request_id,
            status="deferred",
            deferral=Deferral(ground=defer.ground, review_on=today + timedelta(defer.review_days)),
        )
    return RightsResponseBody(
        request_id=request.request_id,
        status="answered",
        exchanges=exchanges,
        complete=complete,
        released_from=released_from,
    )


def _add_months(d: date, months: int) -> date:
    """The same day ``months`` later; the month's last day where it has no such day."""
    index = d.month - 1 + months
    year, month = d.year + index // 12, index % 12 + 1
    return date(year, month, min(d.day, calendar.monthrange(year, month)[1]))


def deadline(received_on: date, *, extended: bool = False) -> date:
    """The last day to answer a request received on ``received_on``: one month later, or three
    when the term was extended by two months (art. 12(3) AVG)."""
    return _add_months(received_on, 3 if extended else 1)


def alerts_due(due: date, today: date) -> tuple[int, ...]:
    """Which of :data:`ALERT_DAYS` have been reached by ``today`` for a deadline ``due`` (the
    caller raises each once); ``0`` is added once the deadline has passed."""
    left = (due - today).days
    reached = tuple(days for days in ALERT_DAYS if left <= days)
    return (*reached, 0) if left < 0 else reached
