"""Inzageverzoeken kept in the node's store, committed with their messages (decision 0116).

Runs on both stores. Threats: a crash between committing the sent ``rights.request`` messages
and keeping the request (the partners answer a request the ZVH no longer knows, and their
answers are refused); two answers handled at once, one overwriting the other; a second node
process on the same PostgreSQL database that does not know the request (the answer it consumes
refused); the files of an earlier version lost or imported twice on an upgrade.

And a ``rights.*`` message stored in the inbox but never handled (decision 0116, "After a
crash"): the node stores a ``rights.request`` or ``rights.response`` (one commit) and then
handles it itself (answers or files it, settling it in a second commit). Threats: the node
crashes between the two commits, or the handling fails (an unreadable pseudonym key, the
database gone for a moment), and the message stays ``delivered`` for ever: the partner's answer
never sent, the ZVH's report never showing it; handling it again sends a second answer; an
adapter is handed a message only the node may answer (with the BSN in its body).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import TransientError
from gateway.node.problems import ApiError
from gateway.node.rights import PURPOSE
from gateway.node.store import AppendAudit, Command, Committed, SentQuery
from gateway.testing.federation import FederationFiles
from schemas.claims import ClaimsBase
from tests.node_pair import InProcessNode, MemoryBroker, open_node, reopen_node
from tests.pg import STORES, schema_url
from tests.unit.node.test_rights import (
    BSN,
    GGZ,
    IDENTITY_CHECK,
    POL,
    ZVH,
    Federation,
    _open,
    _send,
    opened_on,
)

KEYS = ("gemeente", "ggz", "politie")


@pytest.fixture(params=STORES)
async def fed(
    request: pytest.FixtureRequest, tmp_path: Path, veenstad: FederationFiles
) -> AsyncIterator[Federation]:
    """The ZVH (gemeente), GGZ and the police (which defers), on SQLite or on PostgreSQL."""
    async for opened in opened_on(request, tmp_path, veenstad, "rights_store"):
        yield opened


def _answers(node: InProcessNode, request_id: str) -> dict[str, str]:
    doc = node.service.contactpunt.request(request_id)
    assert doc is not None
    return {org: entry["status"] for org, entry in doc["organisations"].items()}


async def _answers_to_zvh(fed: Federation, key: str, zvh: InProcessNode) -> list[Any]:
    """The deliveries of ``key``'s node's unsent messages to the ZVH, as the broker would make
    them (to ``zvh``: the ZVH's node, or another process of it)."""
    return [
        fed[key].delivery(p.envelope, zvh)
        for p in await fed[key].store.pending_publishes(1000)
        if p.org == ZVH
    ]


async def test_a_request_whose_commit_fails_leaves_neither_messages_nor_state(
    fed: Federation, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The crash window: the commit that keeps the request (its ``rights.request`` record)
    does not land, so neither do the messages to the partners."""
    gem = fed["gemeente"]
    commit = gem.store.commit

    async def fails_with_the_request(*commands: Command) -> Committed:
        names = {row.record.name for c in commands if isinstance(c, AppendAudit) for row in c.rows}
        if "rights.request" in names:
            raise TransientError("the database went away")
        return await commit(*commands)

    monkeypatch.setattr(gem.store, "commit", fails_with_the_request)
    with pytest.raises(TransientError):
        await gem.service.contactpunt.start(bsn=BSN, identity_check=IDENTITY_CHECK)
    monkeypatch.undo()
    assert gem.service.contactpunt.requests() == []
    assert await gem.store.messages(SentQuery(purpose=PURPOSE)) == []
    assert await gem.store.pending_publishes(1000) == []
    assert gem.audit(operation="message.send") == []


async def test_a_committed_request_takes_the_answers_after_a_restart(fed: Federation) -> None:
    doc = await fed["gemeente"].service.contactpunt.start(bsn=BSN, identity_check=IDENTITY_CHECK)
    await fed.carry("gemeente", "ggz")
    await fed.carry("gemeente", "politie")
    await fed["gemeente"].close()
    fed.nodes["gemeente"] = await reopen_node(fed["gemeente"])
    assert fed["gemeente"].service.contactpunt.request(doc["request_id"]) == doc
    await fed.carry("ggz", "gemeente")
    await fed.carry("politie", "gemeente")
    assert _answers(fed["gemeente"], doc["request_id"]) == {
        ZVH: "answered",
        GGZ: "answered",
        POL: "deferred",
    }
    assert await fed["gemeente"].store.take_inbox(10) == []  # both settled by the node


async def test_two_answers_handled_at_once_are_both_filed(fed: Federation) -> None:
    gem = fed["gemeente"]
    doc = await gem.service.contactpunt.start(bsn=BSN, identity_check=IDENTITY_CHECK)
    await fed.carry("gemeente", "ggz")
    await fed.carry("gemeente", "politie")
    deliveries = [
        *await _answers_to_zvh(fed, "ggz", gem),
        *await _answers_to_zvh(fed, "politie", gem),
    ]
    assert len(deliveries) == 2
    await asyncio.gather(*(gem.service.inbound.on_delivery(d) for d in deliveries))
    assert _answers(gem, doc["request_id"]) == {
        ZVH: "answered",
        GGZ: "answered",
        POL: "deferred",
    }


async def test_an_older_answer_does_not_replace_a_newer_one(fed: Federation) -> None:
    """The police's released answer filed first, its deferral after (redelivered late): the
    request keeps the released answer, and the late one is settled all the same."""
    gem = fed["gemeente"]
    doc = await gem.service.contactpunt.start(bsn=BSN, identity_check=IDENTITY_CHECK)
    await fed.carry("gemeente", "politie")
    [deferred] = await _answers_to_zvh(fed, "politie", gem)
    await fed["politie"].service.rights.release(doc["organisations"][POL]["request_message_id"])
    released = [d for d in await _answers_to_zvh(fed, "politie", gem) if d.body != deferred.body]
    assert len(released) == 1
    await gem.service.inbound.on_delivery(released[0])
    await gem.service.inbound.on_delivery(deferred)
    assert _answers(gem, doc["request_id"])[POL] == "answered"
    assert await gem.store.take_inbox(10) == []


async def test_a_deferral_is_released_once(fed: Federation) -> None:
    """Two officers release the same deferral at once: one answer is sent."""
    doc = await fed["gemeente"].service.contactpunt.start(bsn=BSN, identity_check=IDENTITY_CHECK)
    await fed.carry("gemeente", "politie")
    desk = fed["politie"].service.rights
    message = doc["organisations"][POL]["request_message_id"]
    results = await asyncio.gather(
        desk.release(message), desk.release(message), return_exceptions=True
    )
    sent = [r for r in results if isinstance(r, str)]
    assert len(sent) == 1, results
    [deferral] = desk.deferrals()
    assert deferral["released_on"] is not None
    assert len(deferral["response_message_ids"]) == 2  # the deferred answer and the release
    assert len(fed["politie"].audit(operation="rights.release")) == 1


@pytest.mark.postgres
async def test_a_second_process_on_postgresql_sees_the_request_and_files_answers(
    tmp_path: Path, veenstad: FederationFiles, pg_url: str
) -> None:
    """Two processes of the ZVH's node on one database (decision 0109): the request started by
    one is known to the other, and each files the answer it happens to consume."""
    stores = {k: schema_url(pg_url, f"rights_procs_{k}") for k in KEYS}
    fed = await _open(tmp_path, veenstad, stores)
    second = await open_node(
        veenstad,
        "gemeente",
        tmp_path / "gemeente-2",
        store__url=stores["gemeente"],
        rights__pseudonym_key_file=str(fed.keys["gemeente"]),
    )
    try:
        first = fed["gemeente"]
        doc = await first.service.contactpunt.start(bsn=BSN, identity_check=IDENTITY_CHECK)
        assert second.service.contactpunt.request(doc["request_id"]) == doc
        await fed.carry("gemeente", "ggz")
        await fed.carry("gemeente", "politie")
        [to_second] = await _answers_to_zvh(fed, "ggz", second)
        [to_first] = await _answers_to_zvh(fed, "politie", first)
        await asyncio.gather(
            second.service.inbound.on_delivery(to_second),
            first.service.inbound.on_delivery(to_first),
        )
        expected = {ZVH: "answered", GGZ: "answered", POL: "deferred"}
        assert _answers(first, doc["request_id"]) == expected
        assert _answers(second, doc["request_id"]) == expected
    finally:
        await second.close()
        for node in fed.nodes.values():
            await node.close()


# ---------------------------------------------------------------- the files of earlier versions

REQUEST_ID = "0a4f7c2e-93b1-4d5e-8f60-1c2d3e4f5a6b"
ASKED_GGZ = "019d4d6b-be80-7001-8203-040506070809"
ASKED_POL = "019d4d6b-be80-7001-8203-04050607080a"
ANSWER_GGZ = "019d4d6b-be80-7001-8203-04050607080b"
DEFERRED = "019d4d6b-be80-7001-8203-04050607080c"


def _old_request(data_dir: Path) -> dict[str, Any]:
    """A request file at the ZVH as decision 0105's version wrote it."""
    request = {
        "request_id": REQUEST_ID,
        "case_ref": "inzage-20261201-0a1b",
        "received_on": "2026-12-01",
        "started_at": "2026-12-01T10:00:00+00:00",
        "identity_check": IDENTITY_CHECK,
        "extension": {"reason": "vijf organisaties", "on": "2026-12-03"},
        "organisations": {
            ZVH: {
                "status": "answered",
                "own": True,
                "response": {"request_id": REQUEST_ID, "status": "answered", "exchanges": []},
            },
            GGZ: {
                "status": "answered",
                "role": "GGZ",
                "request_message_id": ASKED_GGZ,
                "response": {"request_id": REQUEST_ID, "status": "answered", "exchanges": []},
                "response_message_id": ANSWER_GGZ,
                "answered_at": "2026-12-02T09:30:00.250000+00:00",
            },
            POL: {"status": "asked", "role": "POL", "request_message_id": ASKED_POL},
        },
    }
    _write(data_dir / "rights" / "requests" / f"{REQUEST_ID}.json", request)
    return request


def _old_deferral(data_dir: Path) -> dict[str, Any]:
    """A deferral file at the police as decision 0105's version wrote it."""
    deferral = {
        "request_message_id": DEFERRED,
        "request_id": "7b1c2d3e-4f5a-4b6c-9d7e-8f9a0b1c2d3e",
        "sender": ZVH,
        "sender_role": "ZVH",
        "role": "POL",
        "case_ref": "inzage-20261130-9f8e",
        "subjects": ["c3ViamVjdC1wc2V1ZG9ueW0"],
        "period": [None, None],
        "deferred_on": "2026-11-30",
        "review_on": "2026-12-28",
        "ground": "WPG",
        "released_on": None,
        "response_message_ids": ["019d4d6b-be80-7001-8203-04050607080d"],
    }
    _write(data_dir / "rights" / "deferrals" / f"{DEFERRED}.json", deferral)
    return deferral


def _write(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc), "utf-8")


async def _restart(fed: Federation, key: str, files: Callable[[Path], Any]) -> Any:
    """Stop ``key``'s node, put ``files`` in its data directory, start it again."""
    await fed[key].close()
    written = files(fed[key].config.node.data_dir)
    fed.nodes[key] = await reopen_node(fed[key])
    return written


async def test_the_files_of_an_earlier_version_are_imported_once(fed: Federation) -> None:
    request = await _restart(fed, "gemeente", _old_request)
    deferral = await _restart(fed, "politie", _old_deferral)
    assert fed["gemeente"].service.contactpunt.request(REQUEST_ID) == request
    assert fed["politie"].service.rights.deferrals() == [deferral]
    for key, kind, name in (
        ("gemeente", "requests", REQUEST_ID),
        ("politie", "deferrals", DEFERRED),
    ):
        data_dir = fed[key].config.node.data_dir
        assert not (data_dir / "rights").exists()
        assert (data_dir / "rights.imported" / kind / f"{name}.json").is_file()

    # the store moves on; the same files again (a crash before the rename) change nothing
    await fed["politie"].service.rights.release(DEFERRED)
    await _restart(fed, "politie", _old_deferral)
    [kept] = fed["politie"].service.rights.deferrals()
    assert kept["released_on"] is not None
    assert len(kept["response_message_ids"]) == 2
    assert (fed["politie"].config.node.data_dir / "rights.imported.2").is_dir()


def _crash_before_handling(node: InProcessNode, monkeypatch: pytest.MonkeyPatch) -> None:
    """``node`` stores its ``rights.*`` messages and then stops before handling them (the
    crash window between the inbox commit and the node's own handling)."""

    async def crashed(_claims: ClaimsBase) -> None:
        return None

    monkeypatch.setattr(node.service.inbound, "_rights", crashed)


async def _restart_with_loops(fed: Federation, key: str, *settled: str) -> InProcessNode:
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

    ggz = await _restart_with_loops(fed, "ggz", asked)
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

    gem = await _restart_with_loops(fed, "gemeente", *answers)
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
