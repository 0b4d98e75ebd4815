"""The delivery state machines (gateway/core/delivery.py): the tables allow exactly the moves
docs/architecture.md §9 and decisions 0043/0045 describe."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.core.delivery import (
    FINAL_OUTBOUND,
    InboundEvent,
    InboundState,
    OutboundEvent,
    OutboundState,
    all_final,
    contradicts,
    inbound_initial,
    inbound_move,
    outbound_move,
    receipt_event,
    receipt_status,
)

OS, OE = OutboundState, OutboundEvent

#: The order statuses climb in (the ranking the store used before the table).
_RANK = {"queued": 0, "sent": 1, "delivered": 2, "accepted": 3, "rejected": 3, "expired": 3}
_TARGET = {
    OE.PUBLISHED: OS.SENT,
    OE.EXPIRED: OS.EXPIRED,
    OE.RECEIPT_DELIVERED: OS.DELIVERED,
    OE.RECEIPT_ACCEPTED: OS.ACCEPTED,
    OE.RECEIPT_REJECTED: OS.REJECTED,
}


def _ranked_rule(current: str, target: str) -> bool:
    """Decision 0045 in words: up the ranking only; expired replaces only queued or sent and
    yields to a receipt."""
    if target == "expired":
        return current in ("queued", "sent")
    if current == "expired":
        return target in ("delivered", "accepted", "rejected")
    return _RANK[target] > _RANK[current]


@pytest.mark.parametrize(("state", "event"), list(itertools.product(OS, OE)))
def test_outbound_table_is_the_ranking_of_decision_0045(
    state: OutboundState, event: OutboundEvent
) -> None:
    moved = outbound_move(state, event)
    if _ranked_rule(state, _TARGET[event]):
        assert moved == _TARGET[event]
    else:
        assert moved is None


def test_states_are_the_strings_the_store_keeps() -> None:
    assert [str(s) for s in OS] == [
        "queued",
        "sent",
        "delivered",
        "accepted",
        "rejected",
        "expired",
    ]
    assert [str(s) for s in InboundState] == ["delivered", "accepted", "rejected", "refused"]
    assert outbound_move("sent", OE.RECEIPT_DELIVERED) == "delivered"


def test_an_unknown_stored_state_raises() -> None:
    with pytest.raises(ValueError, match="bogus"):
        outbound_move("bogus", OE.PUBLISHED)
    with pytest.raises(ValueError, match="bogus"):
        inbound_move("bogus", InboundEvent.ACK)


def test_a_receipt_overrides_an_assumed_expiry_but_nothing_moves_a_signed_final_status() -> None:
    assert outbound_move(OS.EXPIRED, OE.RECEIPT_ACCEPTED) == OS.ACCEPTED
    assert outbound_move(OS.EXPIRED, OE.PUBLISHED) is None
    for final in (OS.ACCEPTED, OS.REJECTED):
        assert all(outbound_move(final, e) is None for e in OE)


@given(st.lists(st.sampled_from(list(OE)), max_size=12))
def test_any_event_sequence_ends_final_once_a_receipt_is_final(events: list[OutboundEvent]) -> None:
    state = OS.QUEUED
    signed_final = False
    for event in events:
        moved = outbound_move(state, event)
        if signed_final:
            assert moved is None  # accepted/rejected are terminal
        if moved is not None:
            assert moved != state
            state = moved
        signed_final = state in (OS.ACCEPTED, OS.REJECTED)
    if any(e in (OE.RECEIPT_ACCEPTED, OE.RECEIPT_REJECTED) for e in events):
        assert state in (OS.ACCEPTED, OS.REJECTED)


def test_receipt_event_and_final_states() -> None:
    assert receipt_event("accepted") == OE.RECEIPT_ACCEPTED
    with pytest.raises(ValueError, match="receipt status"):
        receipt_event("expired")
    assert frozenset({"accepted", "rejected", "expired"}) == FINAL_OUTBOUND
    assert all_final(["accepted", "expired"])
    assert not all_final(["accepted", "delivered"])


def test_inbound_settles_once_and_never_a_refused_message() -> None:
    assert inbound_initial(allowed=True) == InboundState.DELIVERED
    assert inbound_initial(allowed=False) == InboundState.REFUSED
    assert inbound_move("delivered", InboundEvent.ACK) == InboundState.ACCEPTED
    assert inbound_move("delivered", InboundEvent.REJECT) == InboundState.REJECTED
    for state, event in itertools.product(
        (InboundState.ACCEPTED, InboundState.REJECTED, InboundState.REFUSED), InboundEvent
    ):
        assert inbound_move(state, event) is None


def test_each_inbound_state_is_reported_by_a_receipt_status() -> None:
    assert [receipt_status(s) for s in InboundState] == [
        "delivered",
        "accepted",
        "rejected",
        "rejected",
    ]


@pytest.mark.parametrize(
    ("earlier", "later", "expected"),
    [
        ("accepted", "rejected", True),
        ("rejected", "accepted", True),
        ("accepted", "accepted", False),
        ("accepted", "delivered", False),
        ("delivered", "rejected", False),
        ("expired", "accepted", False),
    ],
)
def test_contradicts(earlier: str, later: str, expected: bool) -> None:
    assert contradicts(earlier, later) is expected
