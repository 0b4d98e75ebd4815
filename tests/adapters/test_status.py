"""Following delivery statuses (``adapters._status``): every change reaches the partner once, a
partner or node that is down loses nothing, and the followed set stays bounded.

The node is an in-memory stand-in (:class:`Statuses`) so each rule is shown without HTTP; the
folder and webhook tests show the same follower against the node test double.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from adapters._runtime import StateFile
from adapters._status import FINAL, StatusFollower
from schemas.api import MessageStatus
from tests.adapters.conftest import ORG
from zvg_client.errors import NodeError, NotFound, Unavailable

IDS = [f"019cc5a1-8c00-7b3e-9a41-3f2c1d0e5b7{n}" for n in range(10)]
POLITIE, OM = ORG["politie"].oin, ORG["om"].oin


def status_of(mid: str, *per_recipient: str) -> MessageStatus:
    recipients = [
        {"org": org, "role": role, "status": st, "updated_at": "2026-03-21T21:00:00Z"}
        for (org, role), st in zip([(POLITIE, "POL"), (OM, "OM")], per_recipient, strict=False)
    ]
    doc = {
        "message_id": mid,
        "message_type": "case.referral",
        "purpose": "ZVH.AANMELDING",
        "case_ref": "Veenstad-2026-031",
        "created_at": "2026-03-21T21:00:00Z",
        "expires_at": "2026-04-21T21:00:00Z",
        "recipients": recipients,
    }
    return MessageStatus.model_validate_json(json.dumps(doc))


class Statuses:
    """The node's ``GET /v1/messages/{id}``: a status, or the error it would raise."""

    def __init__(self) -> None:
        self.now: dict[str, MessageStatus | NodeError] = {}
        self.asked: list[str] = []

    async def status(self, message_id: str) -> MessageStatus:
        self.asked.append(message_id)
        answer = self.now[message_id]
        if isinstance(answer, NodeError):
            raise answer
        return answer


class Partner:
    """What the adapter does with a changed status; ``down`` refuses them (partner offline)."""

    def __init__(self) -> None:
        self.got: list[tuple[str, tuple[str, ...]]] = []
        self.down = False

    async def take(self, mid: str, status: MessageStatus) -> bool:
        if self.down:
            return False
        self.got.append((mid, tuple(r.status for r in status.recipients)))
        return True


@pytest.fixture
def state(tmp_path: Path) -> StateFile:
    return StateFile.open(tmp_path / "state.json")


def on_disk(state: StateFile) -> dict[str, object]:
    return dict(StateFile(state.path).load()["tracked"])


async def test_each_change_is_handed_on_once_until_every_recipient_is_final(
    state: StateFile,
) -> None:
    follower, node, partner = StatusFollower(state), Statuses(), Partner()
    follower.track(IDS[0])
    node.now[IDS[0]] = status_of(IDS[0], "queued", "queued")
    assert await follower.poll(node, partner.take) == 1
    assert await follower.poll(node, partner.take) == 0, "unchanged: nothing handed on"
    node.now[IDS[0]] = status_of(IDS[0], "accepted", "delivered")
    assert await follower.poll(node, partner.take) == 1
    assert IDS[0] in follower.tracked, "one recipient is not final yet"
    node.now[IDS[0]] = status_of(IDS[0], "accepted", "expired")
    assert await follower.poll(node, partner.take) == 1
    assert partner.got == [
        (IDS[0], ("queued", "queued")),
        (IDS[0], ("accepted", "delivered")),
        (IDS[0], ("accepted", "expired")),
    ]
    assert follower.tracked == {}
    assert on_disk(state) == {}
    assert {"accepted", "expired"} <= FINAL


async def test_a_partner_that_is_down_gets_the_change_next_round(state: StateFile) -> None:
    follower, node, partner = StatusFollower(state), Statuses(), Partner()
    for mid in IDS[:2]:
        follower.track(mid)
        node.now[mid] = status_of(mid, "accepted")
    partner.down = True
    assert await follower.poll(node, partner.take) == 0
    assert node.asked == [IDS[0]], "the round stops at the first refused change"
    assert set(follower.tracked) == set(IDS[:2]), "a final status not handed on is kept"
    partner.down = False
    assert await follower.poll(node, partner.take) == 2
    assert [mid for mid, _ in partner.got] == IDS[:2]
    assert follower.tracked == {}


async def test_an_unavailable_node_stops_the_round_and_keeps_what_it_learnt(
    state: StateFile,
) -> None:
    follower, node, partner = StatusFollower(state), Statuses(), Partner()
    for mid in IDS[:3]:
        follower.track(mid)
    node.now[IDS[0]] = status_of(IDS[0], "rejected")
    node.now[IDS[1]] = Unavailable(503, None)
    node.now[IDS[2]] = status_of(IDS[2], "queued")
    assert await follower.poll(node, partner.take) == 1
    assert node.asked == IDS[:2], "nothing asked after the node became unavailable"
    assert on_disk(state) == {IDS[1]: None, IDS[2]: None}, "the final one is gone on disk too"


async def test_a_message_the_node_does_not_know_is_dropped_and_reported(
    state: StateFile,
) -> None:
    follower, node, partner = StatusFollower(state), Statuses(), Partner()
    follower.track(IDS[0])
    node.now[IDS[0]] = NotFound(404, None)
    unknown: list[tuple[str, int]] = []
    assert await follower.poll(node, partner.take, lambda m, e: unknown.append((m, e.status))) == 0
    assert unknown == [(IDS[0], 404)]
    assert follower.tracked == {}
    assert partner.got == []


def test_the_followed_set_is_bounded_oldest_first_and_survives_a_restart(
    state: StateFile,
) -> None:
    follower = StatusFollower(state, limit=3)
    dropped = [follower.track(mid) for mid in IDS[:5]]
    assert dropped == [[], [], [], [IDS[0]], [IDS[1]]]
    assert follower.track(IDS[2]) == [], "following again changes nothing"
    assert list(follower.tracked) == IDS[2:5]
    again = StatusFollower(StateFile.open(state.path), limit=3)
    assert list(again.tracked) == IDS[2:5]


async def test_entries_with_a_summary_key_keep_the_adapters_other_fields(
    state: StateFile,
) -> None:
    follower, node, partner = StatusFollower(state, summary_key="last"), Statuses(), Partner()
    follower.track(IDS[0], {"source": "referral.json", "last": None})
    node.now[IDS[0]] = status_of(IDS[0], "queued")
    assert await follower.poll(node, partner.take) == 1
    assert on_disk(state) == {
        IDS[0]: {"source": "referral.json", "last": [[POLITIE, "POL", "queued", None]]}
    }
    follower.track(IDS[0], {"source": "the same file again.json", "last": None})
    assert await follower.poll(node, partner.take) == 0, "tracking again forgets nothing"
    assert follower.tracked[IDS[0]]["source"] == "referral.json"
