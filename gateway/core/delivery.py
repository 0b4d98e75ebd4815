"""Delivery state machines (docs/architecture.md §9.1, §9.2): where a message stands, per
recipient on the sending side and per message on the receiving side, as transition tables.

Written the way h11 writes its protocol state (``h11/_state.py``): the states and events are
enumerations, the allowed moves are one table ``{(state, event): new_state}``, and a pair that is
not in the table changes nothing. The store asks :func:`outbound_move` / :func:`inbound_move`
before it writes a status: this module is the only place that decides whether a status may
change. The states are :class:`enum.StrEnum`, so the store keeps the same strings it always did.

Rules enforced here:

- **Outbound, per recipient** (``queued → sent → delivered → accepted | rejected``; ``expired``):
  a status only moves forward — receipts can arrive out of order, and a ``delivered`` receipt
  after ``accepted`` changes nothing. ``expired`` is the sender's guess when no answer came in
  time: it replaces only ``queued`` or ``sent``, and a recipient's signed receipt that arrives
  later replaces it (docs/decisions/0045-a-receipt-overrides-an-assumed-expiry.md). ``accepted``
  and ``rejected`` are terminal.
- **Inbound, per message**: a verified message enters the inbox ``delivered`` (or ``refused`` when
  our policy denies it); the adapter's ack or reject moves ``delivered`` to ``accepted`` or
  ``rejected``, once; a refused message cannot be settled, and settling twice changes nothing.
- :func:`contradicts`: a recipient's later signed status that cannot be true beside its earlier
  final one (``accepted`` and ``rejected`` for the same message) is evidence, not an update
  (docs/decisions/0043-contradicting-receipts-are-evidence.md).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Final

__all__ = [
    "FINAL_OUTBOUND",
    "INBOUND_TRANSITIONS",
    "OUTBOUND_TRANSITIONS",
    "InboundEvent",
    "InboundState",
    "OutboundEvent",
    "OutboundState",
    "all_final",
    "contradicts",
    "inbound_initial",
    "inbound_move",
    "outbound_move",
    "receipt_event",
    "receipt_status",
]


class OutboundState(enum.StrEnum):
    """Where a sent message stands for one recipient (``outbox_recipients.status``)."""

    QUEUED = "queued"
    SENT = "sent"
    DELIVERED = "delivered"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    EXPIRED = "expired"


class OutboundEvent(enum.StrEnum):
    """What can happen to a sent message for one recipient."""

    PUBLISHED = "published"  # the broker confirmed the envelope for this recipient
    EXPIRED = "expired"  # the message's exp passed with no final answer
    RECEIPT_DELIVERED = "receipt.delivered"  # the recipient's signed receipt says ...
    RECEIPT_ACCEPTED = "receipt.accepted"
    RECEIPT_REJECTED = "receipt.rejected"


_O, _OE = OutboundState, OutboundEvent

#: Every allowed move of an outbound status; any other (state, event) changes nothing.
OUTBOUND_TRANSITIONS: Final[Mapping[tuple[OutboundState, OutboundEvent], OutboundState]] = (
    MappingProxyType(
        {
            (_O.QUEUED, _OE.PUBLISHED): _O.SENT,
            (_O.QUEUED, _OE.EXPIRED): _O.EXPIRED,
            (_O.QUEUED, _OE.RECEIPT_DELIVERED): _O.DELIVERED,  # the receipt overtook the confirm
            (_O.QUEUED, _OE.RECEIPT_ACCEPTED): _O.ACCEPTED,
            (_O.QUEUED, _OE.RECEIPT_REJECTED): _O.REJECTED,
            (_O.SENT, _OE.EXPIRED): _O.EXPIRED,
            (_O.SENT, _OE.RECEIPT_DELIVERED): _O.DELIVERED,
            (_O.SENT, _OE.RECEIPT_ACCEPTED): _O.ACCEPTED,
            (_O.SENT, _OE.RECEIPT_REJECTED): _O.REJECTED,
            (_O.DELIVERED, _OE.RECEIPT_ACCEPTED): _O.ACCEPTED,
            (_O.DELIVERED, _OE.RECEIPT_REJECTED): _O.REJECTED,
            # expired was our guess; the recipient's signed word replaces it (decision 0045)
            (_O.EXPIRED, _OE.RECEIPT_DELIVERED): _O.DELIVERED,
            (_O.EXPIRED, _OE.RECEIPT_ACCEPTED): _O.ACCEPTED,
            (_O.EXPIRED, _OE.RECEIPT_REJECTED): _O.REJECTED,
        }
    )
)

#: Outbound states after which the message needs nothing more for that recipient (the outbox
#: entry's retention clock starts when every recipient is in one of them).
FINAL_OUTBOUND: Final = frozenset({_O.ACCEPTED, _O.REJECTED, _O.EXPIRED})

_RECEIPT_EVENTS: Final[Mapping[str, OutboundEvent]] = MappingProxyType(
    {
        "delivered": _OE.RECEIPT_DELIVERED,
        "accepted": _OE.RECEIPT_ACCEPTED,
        "rejected": _OE.RECEIPT_REJECTED,
    }
)


def outbound_move(state: str, event: OutboundEvent) -> OutboundState | None:
    """The status a recipient moves to when ``event`` happens in ``state``; ``None`` when the
    status stays (a late or repeated receipt, an expiry after an answer). Raises
    :class:`ValueError` for a ``state`` that is not an :class:`OutboundState` (a corrupt store)."""
    return OUTBOUND_TRANSITIONS.get((OutboundState(state), event))


def receipt_event(status: str) -> OutboundEvent:
    """The event a verified receipt with body ``status`` is. Raises :class:`ValueError` for a
    status that is not a receipt status (the contract admits only these three)."""
    try:
        return _RECEIPT_EVENTS[status]
    except KeyError:
        raise ValueError(f"not a receipt status: {status!r}") from None


def all_final(states: Iterable[str]) -> bool:
    """True when every recipient's status is final (:data:`FINAL_OUTBOUND`)."""
    return all(OutboundState(s) in FINAL_OUTBOUND for s in states)


class InboundState(enum.StrEnum):
    """Where a received message stands in our inbox (``inbox.status``)."""

    DELIVERED = "delivered"  # verified, allowed, stored; waiting for the adapter
    ACCEPTED = "accepted"  # the adapter acked it
    REJECTED = "rejected"  # the adapter rejected it
    REFUSED = "refused"  # verified, but our policy denies it: never handed to the adapter


class InboundEvent(enum.StrEnum):
    """What the adapter does with a delivered message."""

    ACK = "adapter.ack"
    REJECT = "adapter.reject"


_I, _IE = InboundState, InboundEvent

#: Every allowed move of an inbound status; any other (state, event) changes nothing.
INBOUND_TRANSITIONS: Final[Mapping[tuple[InboundState, InboundEvent], InboundState]] = (
    MappingProxyType(
        {
            (_I.DELIVERED, _IE.ACK): _I.ACCEPTED,
            (_I.DELIVERED, _IE.REJECT): _I.REJECTED,
        }
    )
)

#: The receipt status that reports each inbound state to the sender.
_RECEIPT_STATUS: Final[Mapping[InboundState, str]] = MappingProxyType(
    {
        _I.DELIVERED: "delivered",
        _I.ACCEPTED: "accepted",
        _I.REJECTED: "rejected",
        _I.REFUSED: "rejected",  # with reason policy_denied
    }
)


def inbound_initial(allowed: bool) -> InboundState:
    """The state a verified message enters the inbox in: ``delivered`` when our policy allows
    it, ``refused`` when it denies it."""
    return _I.DELIVERED if allowed else _I.REFUSED


def inbound_move(state: str, event: InboundEvent) -> InboundState | None:
    """The state a message moves to when the adapter settles it; ``None`` when it stays (settled
    before: settling twice changes nothing). Raises :class:`ValueError` for an unknown ``state``.
    A ``refused`` message is not the adapter's to settle: callers answer not-found for it."""
    return INBOUND_TRANSITIONS.get((InboundState(state), event))


def receipt_status(state: InboundState) -> str:
    """The status of the receipt that reports ``state`` to the sender."""
    return _RECEIPT_STATUS[state]


def contradicts(earlier: str, later: str) -> bool:
    """True when a recipient's later signed status cannot be true beside its earlier final one:
    ``accepted`` and ``rejected`` for the same message (docs/decisions/0043). A repeated status,
    or ``delivered`` arriving after a final one (receipts overtake each other), is no
    contradiction."""
    final = (_O.ACCEPTED, _O.REJECTED)
    return earlier in final and later in final and earlier != later
