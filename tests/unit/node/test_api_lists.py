"""The API's lists, in process (issue 18, point 3): ``GET /v1/inbox`` pages by opaque cursor, so
an adapter sees the message after a full page without acking it; ``GET /v1/messages`` lists
what this node sent, filtered by status, case reference, purpose and time, paged the same way.
A cursor holds a position only: no case reference, no filter value."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest

from gateway.node.lists import encode_cursor
from tests.unit.node._inproc import ApiNode, InProcFederation, request_from_example
from tests.unit.node.conftest import BOTH_STORES

pytestmark = BOTH_STORES  # each test runs on SQLite and on PostgreSQL


def _decoded(cursor: str) -> str:
    return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()


async def _pages(node: ApiNode, path: str) -> list[list[dict[str, Any]]]:
    """Follow ``next_cursor`` from ``path`` to the last page (checking the Link header)."""
    pages = []
    while True:
        answer = await node.call("GET", path)
        assert answer.status == 200, answer.body
        doc = answer.json()
        pages.append(doc["items"])
        if doc["next_cursor"] is None:
            assert "Link" not in answer.headers
            return pages
        link = answer.headers["Link"]
        assert link.endswith('>; rel="next"'), link
        path = link[1 : -len('>; rel="next"')]
        assert parse_qs(urlsplit(path).query)["cursor"] == [doc["next_cursor"]]


async def test_an_adapter_sees_the_messages_after_a_full_page_without_acking_it(
    inproc: InProcFederation,
) -> None:
    pol = await inproc.start("politie")
    gem = await inproc.start("gemeente")
    sent = []
    for _ in range(5):
        sent.append(await pol.send(request_from_example("case.referral")))
        await inproc.wait_status("politie", sent[-1], "delivered")
    pages = await _pages(gem, "/v1/inbox?limit=2")
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [i["message_id"] for p in pages for i in p] == sent, "oldest first, each once"
    # Nothing was acked: all five still wait. A cursor stays valid when earlier ones are acked.
    first = (await gem.call("GET", "/v1/inbox?limit=2")).json()
    assert await gem.settle(sent[0]) == 204
    after = await gem.call("GET", f"/v1/inbox?limit=2&cursor={first['next_cursor']}")
    assert [i["message_id"] for i in after.json()["items"]] == sent[2:4]
    assert [i["message_id"] for i in await gem.inbox()] == sent[1:]
    assert "ZVH" not in _decoded(first["next_cursor"])


_MESSAGES_CURSOR = encode_cursor("m", 1.0, "01a2b3c4-0000-7000-8000-000000000000")
_FAR = encode_cursor("m", 1e300, "x")  # a time no datetime holds
_BAD = ["not-a-cursor", "%FF%FE", "W10", encode_cursor("i", -1), encode_cursor("m", "x", 1)]


@pytest.mark.parametrize(
    ("path", "cursor"),
    [
        *(("/v1/inbox", c) for c in [*_BAD, _MESSAGES_CURSOR, encode_cursor("i", True)]),
        *(
            ("/v1/messages", c)
            for c in [*_BAD, encode_cursor("i", 3), encode_cursor("m", 1e300, "x")]
        ),
    ],
)
async def test_a_cursor_the_node_did_not_issue_is_a_400_problem(
    inproc: InProcFederation, path: str, cursor: str
) -> None:
    gem = await inproc.start("gemeente", connect=False)
    answer = await gem.call("GET", f"{path}?cursor={cursor}")
    assert "cursor" in answer.problem("invalid-request")["detail"]


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=101",
        "status=lost",
        "since=yesterday",
        "until=2026-03-01T00:00:00",  # no offset
        "case_ref=a",
        "purpose=%20",
    ],
)
async def test_a_bad_filter_or_limit_of_the_sent_list_is_a_400(
    inproc: InProcFederation, query: str
) -> None:
    pol = await inproc.start("politie", connect=False)
    answer = await pol.call("GET", f"/v1/messages?{query}")
    assert query.partition("=")[0] in answer.problem("invalid-request")["detail"]


async def test_the_sent_list_filters_by_status_case_ref_purpose_and_time(
    inproc: InProcFederation,
) -> None:
    pol = await inproc.start("politie")
    gem = await inproc.start("gemeente")
    start = inproc.clock()
    sent = []
    for n in range(3):
        request = {**request_from_example("case.referral"), "case_ref": f"Veenstad-2026-10{n}"}
        sent.append(await pol.send(request))
        await inproc.wait_status("politie", sent[-1], "delivered")
        inproc.clock.move(minutes=1)
    assert await gem.settle(sent[1]) == 204
    await inproc.wait_status("politie", sent[1], "accepted")

    async def ids(query: str, token: str = "adapter") -> list[str]:
        answer = await pol.call("GET", f"/v1/messages?{query}", token=token)
        assert answer.status == 200, answer.body
        return [m["message_id"] for m in answer.json()["items"]]

    assert await ids("") == sent[::-1], "newest first, receipts left out"
    assert await ids("", token="auditor") == sent[::-1]
    assert await ids("status=accepted") == [sent[1]]
    assert await ids("status=delivered") == [sent[2], sent[0]]
    assert await ids("case_ref=Veenstad-2026-102") == [sent[2]]
    assert await ids("purpose=ZVH.AANMELDING&limit=100") == sent[::-1]
    assert await ids("purpose=ZVH.PLAN") == []
    since = (start.replace(microsecond=0)).isoformat().replace("+00:00", "Z")
    assert set(await ids(f"since={since}")) == set(sent)
    t1 = datetime.fromtimestamp(start.timestamp() + 30, UTC).isoformat()
    t2 = datetime.fromtimestamp(start.timestamp() + 90, UTC).isoformat()
    assert await ids(f"since={quote(t1)}&until={quote(t2)}") == [sent[1]]
    pages = await _pages(pol, "/v1/messages?limit=2&status=delivered")
    assert [[m["message_id"] for m in p] for p in pages] == [[sent[2], sent[0]], []]
    status = pages[0][0]
    assert status["case_ref"] == "Veenstad-2026-102"
    assert {r["status"] for r in status["recipients"]} == {"delivered"}
    cursor = (await pol.call("GET", "/v1/messages?limit=1&case_ref=Veenstad-2026-102")).json()
    assert "Veenstad" not in _decoded(cursor["next_cursor"]), "no case reference in a cursor"


async def test_sent_pages_split_messages_created_in_the_same_instant(
    inproc: InProcFederation,
) -> None:
    """The keyset is (created_at, message_id): messages of one clock tick page apart, each once."""
    pol = await inproc.start("politie", connect=False)
    sent = {await pol.send(request_from_example("case.referral")) for _ in range(3)}
    pages = await _pages(pol, "/v1/messages?limit=1")
    seen = [m["message_id"] for p in pages for m in p]
    assert sorted(seen) == sorted(sent)
    assert seen == sorted(sent, reverse=True), "newest first, then by id"
    assert len({m["created_at"] for p in pages for m in p}) == 1, "one instant"
