"""A ``rights.*`` message stored in the inbox but never handled (decision 0116, "After a crash").

The node stores a ``rights.request`` or ``rights.response`` in its inbox (one commit) and then
handles it itself (answers or files it, settling it in a second commit). Runs on both stores.

Threats: the node crashes between the two commits, or the handling fails (an unreadable
pseudonym key, the database gone for a moment), and the message stays ``delivered`` for ever:
the partner's answer never sent, the ZVH's report never showing it; handling it again sends a
second answer; an adapter is handed a message only the node may answer (with the BSN in its
body).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.node.problems import ApiError
from gateway.testing.federation import FederationFiles
from schemas.claims import ClaimsBase
from tests.node_pair import InProcessNode, MemoryBroker, reopen_node
from tests.pg import STORES
from tests.unit.node.test_rights import (
    BSN,
    GGZ,
    IDENTITY_CHECK,
    POL,
    ZVH,
    Federation,
    _send,
    opened_on,
)

KEYS = ("gemeente", "ggz", "politie")


@pytest.fixture(params=STORES)
async def fed(
    request: pytest.FixtureRequest, tmp_path: Path, veenstad: FederationFiles
) -> AsyncIterator[Federation]:
    """The ZVH (gemeente), GGZ and the police (which defers), on SQLite or on PostgreSQL."""
    async for opened in opened_on(request, tmp_path, veenstad, "rights_resume"):
        yield opened


def _crash_before_handling(node: InProcessNode, monkeypatch: pytest.MonkeyPatch) -> None:
    """``node`` stores its ``rights.*`` messages and then stops before handling them (the
    crash window between the inbox commit and the node's own handling)."""

    async def crashed(_claims: ClaimsBase) -> None:
        return None

    monkeypatch.setattr(node.service.inbound, "_rights", crashed)


async def _restart(fed: Federation, key: str, *settled: str) -> InProcessNode:
    """Stop ``key``'s node and start it again with its loops (no broker connected); return
    once its inbox messages ``settled`` are settled."""
    await fed[key].close()
    node = fed.nodes[key] = await reopen_node(fed[key])
    events = MemoryBroker(node.service.clock)
    events.watch(node)  # every commit in its store is an event
    node.service.start_loops()

    async def done() -> bool:
        return all([await _status(node, m) != "delivered" for m in settled])

    await events.until(done, f"{settled} settled after the restart")
    return node


async def _status(node: InProcessNode, message_id: str) -> str:
    row = await node.store.inbox_message(message_id)
    assert row is not None
    return row.status


async def _answers_to(fed: Federation, key: str, org: str) -> list[Any]:
    """The ``rights.response`` messages ``key``'s node has not published to ``org`` yet."""
    pending = await fed[key].store.pending_publishes(1000)
    return [p for p in pending if p.org == org and p.message_type == "rights.response"]


def _answers(node: InProcessNode, request_id: str) -> dict[str, str]:
    doc = node.service.contactpunt.request(request_id)
    assert doc is not None
    return {org: entry["status"] for org, entry in doc["organisations"].items()}


async def test_a_rights_request_stored_but_never_handled_is_answered_after_a_restart(
    fed: Federation, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = await fed["gemeente"].service.contactpunt.start(bsn=BSN, identity_check=IDENTITY_CHECK)
    asked = doc["organisations"][GGZ]["request_message_id"]
    _crash_before_handling(fed["ggz"], monkeypatch)
    await fed.carry("gemeente", "ggz")
    assert await _status(fed["ggz"], asked) == "delivered"
    assert await _answers_to(fed, "ggz", ZVH) == []
    monkeypatch.undo()

    ggz = await _restart(fed, "ggz", asked)
    assert await _status(ggz, asked) == "accepted"
    assert len(await _answers_to(fed, "ggz", ZVH)) == 1
    await fed.carry("ggz", "gemeente")
    assert _answers(fed["gemeente"], doc["request_id"])[GGZ] == "answered"

    # handled once: another restart (another pass) sends no second answer
    await fed["ggz"].close()
    ggz = fed.nodes["ggz"] = await reopen_node(fed["ggz"])
    assert await ggz.service.rights.resume() == 0
    assert await _answers_to(fed, "ggz", ZVH) == []
    assert len(ggz.audit(operation="rights.answer")) == 1
    assert len(ggz.audit(operation="message.send")) == 1


async def test_a_rights_response_stored_but_never_handled_is_filed_after_a_restart(
    fed: Federation, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = await fed["gemeente"].service.contactpunt.start(bsn=BSN, identity_check=IDENTITY_CHECK)
    await fed.carry("gemeente", "ggz")
    await fed.carry("gemeente", "politie")
    answers = [p.message_id for k in ("ggz", "politie") for p in await _answers_to(fed, k, ZVH)]
    assert len(answers) == 2
    _crash_before_handling(fed["gemeente"], monkeypatch)
    await fed.carry("ggz", "gemeente")
    await fed.carry("politie", "gemeente")
    assert _answers(fed["gemeente"], doc["request_id"]) == {
        ZVH: "answered",
        GGZ: "asked",
        POL: "asked",
    }
    monkeypatch.undo()

    gem = await _restart(fed, "gemeente", *answers)
    assert _answers(gem, doc["request_id"]) == {
        ZVH: "answered",
        GGZ: "answered",
        POL: "deferred",
    }
    names = [r["view"]["name"] for r in gem.audit()]
    assert names.count("adapter.ack") == 2  # each settled once, its receipt queued once
    assert await gem.service.rights.resume() == 0
    assert [r["view"]["name"] for r in gem.audit()].count("adapter.ack") == 2


async def test_a_failed_handling_is_retried(
    fed: Federation, caplog: pytest.LogCaptureFixture
) -> None:
    """The partner's pseudonym key cannot be read when the request arrives: the request stays in
    the inbox (a warning says so) and is answered by the next pass once the key is back."""
    doc = await fed["gemeente"].service.contactpunt.start(bsn=BSN, identity_check=IDENTITY_CHECK)
    asked = doc["organisations"][GGZ]["request_message_id"]
    key = fed.keys["ggz"]
    away = key.with_suffix(".away")
    key.rename(away)
    await fed.carry("gemeente", "ggz")
    assert await _status(fed["ggz"], asked) == "delivered"
    await fed["ggz"].service.rights.resume()  # still failing: still delivered, nothing sent
    assert await _status(fed["ggz"], asked) == "delivered"
    assert await _answers_to(fed, "ggz", ZVH) == []
    warned = [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "not handled" in r.getMessage()
    ]
    assert len(warned) == 1  # once, not on every pass
    assert warned[0].startswith(f"rights.request {asked} not handled")

    away.rename(key)
    await fed["ggz"].service.rights.resume()  # what the node's rights loop runs
    assert await _status(fed["ggz"], asked) == "accepted"
    assert len(await _answers_to(fed, "ggz", ZVH)) == 1
    await fed["ggz"].service.rights.resume()
    assert len(await _answers_to(fed, "ggz", ZVH)) == 1


async def test_an_unhandled_rights_message_is_never_handed_to_an_adapter(
    fed: Federation, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Left delivered (before the node handles it), a ``rights.request`` is not in GET
    /v1/inbox, the long-poll or the event stream (``Inbox.page``, store ``take_inbox``), and an
    adapter cannot settle it by its id; an ordinary message next to it is handed out."""
    doc = await fed["gemeente"].service.contactpunt.start(bsn=BSN, identity_check=IDENTITY_CHECK)
    asked = doc["organisations"][GGZ]["request_message_id"]
    ordinary = await _send(
        fed["gemeente"], "info.request", recipients=[{"org": GGZ, "role": "GGZ"}]
    )
    _crash_before_handling(fed["ggz"], monkeypatch)
    await fed.carry("gemeente", "ggz")
    ggz = fed["ggz"]
    assert await _status(ggz, asked) == "delivered"
    assert [r.message_id for r in await ggz.store.take_inbox(10)] == [ordinary]
    items, _ = await ggz.service.inbox.page(limit=10, wait=0)
    assert [i.message_id for i in items] == [ordinary]
    with pytest.raises(ApiError) as refused:
        await ggz.service.inbox.settle(asked, accept=True, by_adapter=True)
    assert refused.value.slug == "not-found"
    assert await _status(ggz, asked) == "delivered"
    monkeypatch.undo()

    await ggz.service.rights.resume()
    assert await _status(ggz, asked) == "accepted"
