"""The inzageverzoek between nodes in one process (issue 17 point 3; docs/subject-rights.md).

The ZVH's contactpunt starts a request; GGZ's node answers by itself from its own log (found
through its own pseudonym key and the ZVH's pseudonym); the police node defers (``[rights]
defer``) and an officer releases the answer later. Envelopes are carried by hand
(tests/node_pair.py): every step is a value a test waits for, never a time.

Threats: the BSN leaking into an audit record, the kept request or the claims outside the body; an
answer naming another person's exchanges; an employee's identity in an answer; a deferral that
answers anyway.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.console.data.subject import subject_pseudonym
from gateway.errors import LocalError
from gateway.testing.federation import FederationFiles
from gateway.testing.veenstad import org_by_key
from schemas.limits import MAX_MESSAGE_LIFETIME
from tests.node_pair import ROOT, InProcessNode, open_node
from tests.pg import schema_url

BSN = "999990019"  # the demo case's man (test range)
OTHER_BSN = "999990020"  # someone else in the same case
IDENTITY_CHECK = "paspoort getoond aan de balie van het ZVH"

ZVH = org_by_key("gemeente").oin
GGZ = org_by_key("ggz").oin
POL = org_by_key("politie").oin


def _key_file(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "pseudonym.key"
    path.write_bytes(os.urandom(32).hex().encode())
    path.chmod(0o600)
    return path


def _pseudonym(path: Path, bsn: str) -> str:
    return subject_pseudonym(path.read_bytes().rstrip(b"\r\n"), bsn)


class Federation:
    def __init__(self, nodes: dict[str, InProcessNode], keys: dict[str, Path]) -> None:
        self.nodes = nodes
        self.keys = keys

    def __getitem__(self, key: str) -> InProcessNode:
        return self.nodes[key]

    def today(self) -> str:
        return self.nodes["politie"].service.ctx.now().date().isoformat()

    async def carry(self, sender: str, recipient: str) -> None:
        await self.nodes[sender].carry_to(self.nodes[recipient])


async def _open(
    tmp_path: Path, veenstad: FederationFiles, stores: dict[str, str] | None = None
) -> Federation:
    keys = {k: _key_file(tmp_path / f"{k}-secrets") for k in ("gemeente", "ggz", "politie")}
    more: dict[str, dict[str, Any]] = {
        k: {"store__url": stores[k]} if stores else {} for k in ("gemeente", "ggz", "politie")
    }
    more["politie"] |= {"rights__defer": True, "rights__defer_ground": "WPG"}
    nodes = {
        key: await open_node(
            veenstad,
            key,
            tmp_path / key,
            rights__pseudonym_key_file=str(keys[key]),
            **more[key],
        )
        for key in ("gemeente", "ggz", "politie")
    }
    return Federation(nodes, keys)


async def opened_on(
    request: pytest.FixtureRequest, tmp_path: Path, veenstad: FederationFiles, schema: str
) -> AsyncIterator[Federation]:
    """The ZVH (gemeente), GGZ and the police (which defers), on SQLite, or on PostgreSQL
    (schemas ``<schema>_<key>``) when the fixture's parameter is ``postgres``; closed after."""
    stores = None
    if getattr(request, "param", "sqlite") == "postgres":
        url = request.getfixturevalue("pg_url")
        stores = {k: schema_url(url, f"{schema}_{k}") for k in ("gemeente", "ggz", "politie")}
    opened = await _open(tmp_path, veenstad, stores)
    try:
        yield opened
    finally:
        for node in opened.nodes.values():
            await node.close()


@pytest.fixture
async def fed(
    request: pytest.FixtureRequest, tmp_path: Path, veenstad: FederationFiles
) -> AsyncIterator[Federation]:
    async for opened in opened_on(request, tmp_path, veenstad, "rights"):
        yield opened


async def _send(node: InProcessNode, example: str, **changes: Any) -> str:
    claims = json.loads((ROOT / "tests" / "examples" / f"{example}.json").read_text("utf-8"))
    fills = ("spec", "message_id", "created_at", "expires_at", "sender", "trace", "log_anchor")
    request = {k: v for k, v in claims.items() if k not in fills}
    request["sender_role"] = claims["sender"]["role"]
    request.update(changes)
    message_id, _ = await node.service.outbound.send(json.dumps(request).encode(), client="test")
    return message_id


async def _case_history(fed: Federation) -> dict[str, str]:
    """The ZVH asks GGZ about the man and about someone else; GGZ answers about the man."""
    man_zvh = _pseudonym(fed.keys["gemeente"], BSN)
    other_zvh = _pseudonym(fed.keys["gemeente"], OTHER_BSN)
    man_ggz = _pseudonym(fed.keys["ggz"], BSN)
    to_ggz = [{"org": GGZ, "role": "GGZ"}]
    subject = {"role": "betrokkene", "minor": False}
    asked = await _send(
        fed["gemeente"],
        "info.request",
        recipients=to_ggz,
        subjects=[{**subject, "subject_ref": man_zvh}],
    )
    await _send(
        fed["gemeente"],
        "info.request",
        recipients=to_ggz,
        subjects=[{**subject, "subject_ref": other_zvh}],
        programme=None,
    )
    await fed.carry("gemeente", "ggz")
    # GGZ answers under the ZVH's pseudonym (decision 0062), and once more under its own
    answered = await _send(
        fed["ggz"],
        "info.response",
        in_reply_to=asked,
        subjects=[{**subject, "subject_ref": man_zvh}],
    )
    again = await _send(
        fed["ggz"],
        "info.response",
        in_reply_to=asked,
        subjects=[{**subject, "subject_ref": man_ggz}],
    )
    await fed.carry("ggz", "gemeente")
    return {"asked": asked, "answered": answered, "again": again}


def _all_text(node: InProcessNode) -> str:
    """Every audit record (view and personal part) and every request and deferral ``node``
    keeps (in its store)."""
    records = json.dumps(node.audit())
    kept = json.dumps([node.service.contactpunt.requests(), node.service.rights.deferrals()])
    return records + kept


async def test_a_partner_answers_by_itself_from_its_own_log(fed: Federation) -> None:
    await _case_history(fed)
    doc = await fed["gemeente"].service.contactpunt.start(bsn=BSN, identity_check=IDENTITY_CHECK)
    assert doc["organisations"][GGZ]["status"] == "asked"
    await fed.carry("gemeente", "ggz")
    await fed.carry("ggz", "gemeente")
    answers = fed["gemeente"].service.contactpunt.request(doc["request_id"])
    assert answers is not None
    ggz = answers["organisations"][GGZ]
    assert ggz["status"] == "answered"
    exchanges = ggz["response"]["exchanges"]
    got = sorted((e["direction"], e["message_type"], e["count"]) for e in exchanges)
    # the question about the man and GGZ's two answers (under the ZVH's pseudonym and under
    # GGZ's own, found through GGZ's key); not the question about the other person
    assert got == [("received", "info.request", 1), ("sent", "info.response", 2)]
    for e in exchanges:
        assert e["organisations"] == [ZVH]
        assert e["purpose"] == "ZVH.BEKENDHEID"
        assert e["legal_basis"] == ["WGS"]
    # the ZVH's own part, under its pseudonym: the question sent and the answer that reused it
    own = answers["organisations"][ZVH]["response"]["exchanges"]
    assert sorted((e["direction"], e["message_type"], e["count"]) for e in own) == [
        ("received", "info.response", 1),
        ("sent", "info.request", 1),
    ]


async def test_the_bsn_stays_inside_the_encrypted_body(fed: Federation) -> None:
    await _case_history(fed)
    await fed["gemeente"].service.contactpunt.start(bsn=BSN, identity_check=IDENTITY_CHECK)
    await fed.carry("gemeente", "ggz")
    await fed.carry("gemeente", "politie")
    await fed.carry("ggz", "gemeente")
    await fed.carry("politie", "gemeente")
    for key in ("gemeente", "ggz", "politie"):
        assert BSN not in _all_text(fed[key]), key
    for p in await fed["gemeente"].store.pending_publishes(1000):
        assert BSN.encode() not in p.envelope


async def test_a_partner_keeps_no_bsn_in_its_inbox_once_it_answered(fed: Federation) -> None:
    """The bug: a partner's inbox kept the request's verified claims and the ZVH's signed bytes,
    BSN included, for ``retention.inbox_after_ack_days`` after it answered. A ``rights.request``
    is settled with its payload dropped (the answer, deferral and records keep what is needed)."""
    await _case_history(fed)
    await fed["gemeente"].service.contactpunt.start(bsn=BSN, identity_check=IDENTITY_CHECK)
    for key in ("ggz", "politie"):  # an answer, and a deferral
        await fed.carry("gemeente", key)
        rows = fed[key].store.read(
            "SELECT status, claims, inner_jws FROM inbox WHERE message_type = 'rights.request'"
        )
        assert [(status, claims, signed) for status, claims, signed in rows] == [
            ("accepted", None, None)
        ], key


async def test_the_identity_check_is_recorded_as_personal_data(fed: Federation) -> None:
    doc = await fed["gemeente"].service.contactpunt.start(bsn=BSN, identity_check=IDENTITY_CHECK)
    [record] = fed["gemeente"].audit(operation="rights.request")
    assert record["personal"]["note"] == IDENTITY_CHECK
    assert IDENTITY_CHECK not in json.dumps(record["view"])
    assert record["view"]["detail"]["request_id"] == doc["request_id"]
    assert record["view"]["trace_id"]
    assert record["view"]["span_id"]


def _request(fed: Federation, request_id: str) -> dict[str, Any]:
    """The ZVH's kept request ``request_id`` (it must exist)."""
    doc = fed["gemeente"].service.contactpunt.request(request_id)
    assert doc is not None
    return doc


async def test_the_police_defer_and_release_later(fed: Federation) -> None:
    await _case_history(fed)
    doc = await fed["gemeente"].service.contactpunt.start(bsn=BSN, identity_check=IDENTITY_CHECK)
    request_id = doc["request_id"]
    request_message = doc["organisations"][POL]["request_message_id"]
    await fed.carry("gemeente", "politie")
    await fed.carry("politie", "gemeente")
    pol = _request(fed, request_id)["organisations"][POL]
    assert pol["status"] == "deferred"
    assert pol["response"]["deferral"]["ground"] == "WPG"
    assert "exchanges" not in pol["response"] or pol["response"]["exchanges"] == []
    [deferral] = fed["politie"].service.rights.deferrals()
    assert deferral["released_on"] is None
    assert BSN not in json.dumps(deferral)

    await fed["politie"].service.rights.release(request_message)
    await fed.carry("politie", "gemeente")
    pol = _request(fed, request_id)["organisations"][POL]
    assert pol["status"] == "answered"
    assert pol["response"]["released_from"] == fed.today()
    names = [r["view"]["name"] for r in fed["politie"].audit()]
    assert "rights.answer" in names
    assert "rights.release" in names
    with pytest.raises(LocalError, match="released already"):
        await fed["politie"].service.rights.release(request_message)


async def test_an_unknown_deferral_cannot_be_released(fed: Federation) -> None:
    with pytest.raises(LocalError, match="no deferred"):
        await fed["politie"].service.rights.release("019d4d6b-be80-7001-8203-040506070809")


async def test_the_request_is_settled_by_the_node_not_handed_to_the_adapter(
    fed: Federation,
) -> None:
    await fed["gemeente"].service.contactpunt.start(bsn=BSN, identity_check=IDENTITY_CHECK)
    await fed.carry("gemeente", "ggz")
    assert await fed["ggz"].store.take_inbox(10) == []
    await fed.carry("ggz", "gemeente")
    assert await fed["gemeente"].store.take_inbox(10) == []


async def test_a_start_without_an_identity_check_or_with_a_bad_bsn_is_refused(
    fed: Federation,
) -> None:
    desk = fed["gemeente"].service.contactpunt
    with pytest.raises(LocalError, match="identity"):
        await desk.start(bsn=BSN, identity_check=" ")
    with pytest.raises(LocalError, match="not a valid BSN"):
        await desk.start(bsn="123456789", identity_check=IDENTITY_CHECK)
    assert desk.requests() == []


async def test_the_term_is_extended_once_with_a_reason(fed: Federation) -> None:
    desk = fed["gemeente"].service.contactpunt
    doc = await desk.start(bsn=BSN, identity_check=IDENTITY_CHECK)
    with pytest.raises(LocalError, match="reason"):
        await desk.extend(doc["request_id"], reason="")
    doc = await desk.extend(doc["request_id"], reason="vijf organisaties, complexe casus")
    assert doc["extension"]["reason"] == "vijf organisaties, complexe casus"
    with pytest.raises(LocalError, match="extended already"):
        await desk.extend(doc["request_id"], reason="nog eens")
    [record] = fed["gemeente"].audit(operation="rights.extend")
    assert record["personal"]["note"] == "vijf organisaties, complexe casus"


async def test_an_answer_that_does_not_answer_our_request_message_is_not_filed(
    fed: Federation,
) -> None:
    """A partner may only answer the request message the ZVH sent it (``in_reply_to``)."""
    doc = await fed["gemeente"].service.contactpunt.start(bsn=BSN, identity_check=IDENTITY_CHECK)
    forged = {
        "request_id": doc["request_id"],
        "status": "answered",
        "exchanges": [],
    }
    await _send(
        fed["ggz"],
        "rights.response",
        body=forged,
        data_categories=[],
        in_reply_to="019d4d6b-be80-7001-8203-040506070809",  # not our request to GGZ
    )
    await fed.carry("ggz", "gemeente")
    filed = fed["gemeente"].service.contactpunt.request(doc["request_id"])
    assert filed is not None
    assert filed["organisations"][GGZ]["status"] == "asked"


async def test_an_answer_that_cannot_be_sent_is_kept_for_the_officer(
    fed: Federation, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gateway.node.problems import ApiError

    desk = fed["ggz"].service.rights

    async def outbox_full(*_args: Any) -> str:
        raise ApiError("outbox-full", "the node's outbox is full", retry_after=1)

    doc = await fed["gemeente"].service.contactpunt.start(bsn=BSN, identity_check=IDENTITY_CHECK)
    with monkeypatch.context() as patch:
        patch.setattr(desk, "_respond", outbox_full)
        await fed.carry("gemeente", "ggz")
    assert await fed["ggz"].store.take_inbox(10) == []  # settled by the node, not the adapter
    [kept] = desk.deferrals()
    assert kept["failed"] == "outbox-full"
    [record] = fed["ggz"].audit(operation="rights.answer")
    assert record["view"]["status"] == "error"

    await desk.release(kept["request_message_id"])
    await fed.carry("ggz", "gemeente")
    filed = fed["gemeente"].service.contactpunt.request(doc["request_id"])
    assert filed is not None
    ggz = filed["organisations"][GGZ]
    assert ggz["status"] == "answered"
    assert "released_from" not in ggz["response"]  # it was never deferred


@pytest.mark.postgres
async def test_a_partner_on_postgresql_answers_from_its_own_log(
    tmp_path: Path, veenstad: FederationFiles, pg_url: str
) -> None:
    """The log search runs on the node's store: on PostgreSQL as on SQLite."""
    stores = {k: schema_url(pg_url, f"rights_{k}") for k in ("gemeente", "ggz", "politie")}
    fed = await _open(tmp_path, veenstad, stores)
    try:
        await _case_history(fed)
        doc = await fed["gemeente"].service.contactpunt.start(
            bsn=BSN, identity_check=IDENTITY_CHECK
        )
        await fed.carry("gemeente", "ggz")
        await fed.carry("ggz", "gemeente")
        filed = fed["gemeente"].service.contactpunt.request(doc["request_id"])
        assert filed is not None
        exchanges = filed["organisations"][GGZ]["response"]["exchanges"]
        got = sorted((e["direction"], e["message_type"], e["count"]) for e in exchanges)
        assert got == [("received", "info.request", 1), ("sent", "info.response", 2)]
    finally:
        for node in fed.nodes.values():
            await node.close()


async def test_the_rights_messages_live_as_long_as_the_contract_allows(fed: Federation) -> None:
    """A partner node that is down for days still receives the request (and the ZVH the answer)."""
    await fed["gemeente"].service.contactpunt.start(bsn=BSN, identity_check=IDENTITY_CHECK)
    await fed.carry("gemeente", "ggz")
    seen = set()
    for node in (fed["gemeente"], fed["ggz"]):
        for r in node.audit(operation="message.send"):
            if r["view"]["message_type"].startswith("rights."):
                row = await node.store.message(r["view"]["message_id"])
                assert row is not None
                assert row.expires_at - row.created_at == MAX_MESSAGE_LIFETIME
                seen.add(row.message_type)
    assert seen == {"rights.request", "rights.response"}
