"""Bodies of a federated inzageverzoek (AVG art. 15): ``rights.request`` and ``rights.response``,
both under purpose ``ZVH.VERANTWOORDING`` (docs/subject-rights.md).

The ZVH's contactpunt sends a ``rights.request`` to every partner; the person is identified by
BSN **inside the body only** (the encrypted part), so that each partner's node can turn it into
its *own* pseudonym and find its own records (and by the pseudonyms the ZVH used for the person in
its messages, ``subject_refs``). Each partner answers with a ``rights.response``:

- ``answered``: one :class:`Exchange` per kind of exchange its log holds about the person — the
  day, whether it sent or received, the purpose, legal basis, message type, the organisations on
  the other side and the data categories. Never an employee's identity (EU Court C-579/21: the
  person may learn dates, purposes and recipients from the log data, not who at the organisation
  consulted it). Identical exchanges of one day are counted, not repeated.
- ``deferred``: the organisation invokes a legal exception (art. 23 AVG as laid down in the UAVG,
  the Wpg or the Wjsg) and names the day it reviews the deferral; it answers later with an
  ``answered`` response that says it releases a deferral (``released_from``).
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import AwareDatetime, Field, model_validator

from schemas._base import (
    CategoryCode,
    LegalBasisCode,
    Oin,
    PurposeCode,
    SubjectRef,
    Uuid,
    Wire,
    rule_error,
)
from schemas.catalogue import MessageType
from schemas.common import Carries, PersonIdentification

__all__ = [
    "DEFERRAL_GROUNDS",
    "MAX_RIGHTS_EXCHANGES",
    "Deferral",
    "DeferralGround",
    "Exchange",
    "RightsRequestBody",
    "RightsResponseBody",
]

#: The most exchanges one response lists (identical exchanges of a day are already one entry
#: with a count); a log with more says so with ``complete: false`` and the contactpunt asks the
#: organisation's privacy officer for the rest.
MAX_RIGHTS_EXCHANGES = 500

#: Legal grounds a partner may invoke to defer its answer (indicative, as the catalogue's legal
#: bases: each partner's privacy officer confirms which applies to it).
DeferralGround = Literal["AVG_23", "WPG", "WJSG"]
DEFERRAL_GROUNDS: dict[str, str] = {
    "AVG_23": "art. 23 AVG (art. 41 UAVG): beperking van de rechten van betrokkene",
    "WPG": "Wet politiegegevens: beperking van het recht op kennisneming",
    "WJSG": "Wet justitiële en strafvorderlijke gegevens: beperking van het recht op inzage",
}


class RightsRequestBody(Wire):
    """``rights.request`` (ZVH.VERANTWOORDING): the contactpunt asks a partner which exchanges
    about the person its log holds. ``request_id`` is the contactpunt's id of the request (the
    same in every partner's copy; every answer repeats it)."""

    request_id: Uuid
    right: Literal["inzage"]
    received_on: date
    """The day the contactpunt received the person's request (the deadline counts from it)."""
    period_from: date | None = None
    period_to: date | None = None
    respond_before: AwareDatetime
    identification: Annotated[PersonIdentification, Carries("ID_DIRECT")]
    subject_refs: Annotated[tuple[SubjectRef, ...], Field(max_length=8), Carries("ID_PSEUDO")] = ()
    """The pseudonyms under which the ZVH named the person in its messages (the ZVH is the
    matching authority): the partner's log holds the messages it received from the ZVH under
    them, and answers that reused them. The partner also searches its own pseudonym of the BSN."""

    @model_validator(mode="after")
    def _rules(self) -> RightsRequestBody:
        if self.identification.bsn is None:
            raise rule_error(
                ("identification", "bsn"),
                "an inzageverzoek names the person by BSN (each partner pseudonymises it)",
            )
        if (
            self.period_from is not None
            and self.period_to is not None
            and self.period_from > self.period_to
        ):
            raise rule_error(("period_to",), "must not be before period_from")
        return self


class Exchange(Wire):
    """One kind of exchange about the person on one day, as the answering organisation's log
    holds it. No employee identities, no content."""

    on: date
    direction: Literal["sent", "received"]
    message_type: MessageType
    purpose: PurposeCode
    legal_basis: Annotated[tuple[LegalBasisCode, ...], Field(min_length=1, max_length=8)]
    organisations: Annotated[tuple[Oin, ...], Field(min_length=1, max_length=16)]
    """The organisations the data was sent to, or the one it was received from."""
    data_categories: Annotated[tuple[CategoryCode, ...], Field(max_length=32)]
    count: Annotated[int, Field(ge=1, le=1_000_000)] = 1


class Deferral(Wire):
    """Why and until when an organisation defers its answer."""

    ground: DeferralGround
    review_on: date


class RightsResponseBody(Wire):
    """``rights.response`` (ZVH.VERANTWOORDING): a partner's answer to a ``rights.request``."""

    request_id: Uuid
    status: Literal["answered", "deferred"]
    exchanges: Annotated[
        tuple[Exchange, ...], Field(max_length=MAX_RIGHTS_EXCHANGES), Carries("BETROKKENHEID")
    ] = ()
    complete: bool = True
    """False when the log held more exchanges than one response lists."""
    deferral: Deferral | None = None
    released_from: date | None = None
    """On an ``answered`` response that ends a deferral: the day the deferral was recorded."""

    @model_validator(mode="after")
    def _status_rules(self) -> RightsResponseBody:
        if (self.status == "deferred") != (self.deferral is not None):
            raise rule_error(("deferral",), "required when, and only when, status is 'deferred'")
        if self.status == "deferred" and (self.exchanges or self.released_from is not None):
            raise rule_error(("exchanges",), "a deferred answer lists no exchanges")
        return self
