"""Who may use which route of the node's API, and who is recorded as acting (in process).

Tokens: an ``adapter`` may use everything under ``/v1``; an ``auditor`` only reads status and
the directory; the ops routes need none (docs/api.md, "Authentication"). The actor headers
(``ZVG-Actor``, ``ZVG-Actor-Role``, ``ZVG-Responsible``) put the acting person into a separate
``access`` record of the node's audit log, in its personal part.

Replaces, e2e on RabbitMQ → here:

- test_node_flow.py::test_auditor_may_read_but_not_send
  → test_an_auditor_may_read_status_and_the_directory, test_an_auditor_may_not_send_or_receive
- test_api_guide.py, the authentication block (401 without a token)
  → test_every_v1_route_needs_a_known_bearer_token
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.node._inproc import GEM, InProcFederation, request_from_example

MID = "019cbd58-c2a0-7000-8000-000000000001"
#: Every ``/v1`` route of gateway/node/api.py that needs a token.
V1 = [
    ("POST", "/v1/messages"),
    ("GET", f"/v1/messages/{MID}"),
    ("GET", "/v1/inbox"),
    ("GET", "/v1/inbox/stream"),
    ("POST", f"/v1/inbox/{MID}/ack"),
    ("POST", f"/v1/inbox/{MID}/reject"),
    ("GET", "/v1/directory"),
]
ACTOR = {"ZVG-Actor": "emp-4711", "ZVG-Actor-Role": "intake", "ZVG-Responsible": "emp-0815"}


def _actors(records: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(message id, actor) of each access record."""
    return [(r["view"]["message_id"], r["personal"]["actor"]) for r in records]


@pytest.mark.parametrize(("method", "path"), V1, ids=[f"{m} {p}" for m, p in V1])
@pytest.mark.parametrize("token", [None, "not-a-known-token"], ids=["none", "unknown"])
async def test_every_v1_route_needs_a_known_bearer_token(
    inproc: InProcFederation, method: str, path: str, token: str | None
) -> None:
    pol = await inproc.start("politie", connect=False)
    answer = await pol.call(method, path, token=token)
    assert answer.problem("unauthorized")["instance"] == path
    assert answer.headers["WWW-Authenticate"] == 'Bearer realm="zv-gateway"'


async def test_the_openapi_document_needs_a_token_like_every_v1_route(
    inproc: InProcFederation,
) -> None:
    pol = await inproc.start("politie", connect=False)
    (await pol.call("GET", "/v1/openapi.json", token=None)).problem("unauthorized")
    for token in ("adapter", "auditor"):
        assert (await pol.call("GET", "/v1/openapi.json", token=token)).status == 200


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
async def test_the_ops_routes_need_no_token(inproc: InProcFederation, path: str) -> None:
    pol = await inproc.start("politie")
    assert (await pol.call("GET", path, token=None)).status == 200


async def test_an_auditor_may_read_status_and_the_directory(inproc: InProcFederation) -> None:
    pol = await inproc.start("politie", connect=False)
    message_id = await pol.send(request_from_example("case.referral"))
    status = await pol.call("GET", f"/v1/messages/{message_id}", token="auditor")
    assert status.status == 200, status.body
    assert status.json()["recipients"][0]["org"] == GEM
    directory = await pol.call("GET", "/v1/directory", token="auditor")
    assert directory.status == 200, directory.body
    assert any(r["purpose"] == "ZVH.RISICO" for r in directory.json()["may_send"])


@pytest.mark.parametrize(
    ("method", "path"),
    [(m, p) for m, p in V1 if p == "/v1/messages" or p.startswith("/v1/inbox")],
)
async def test_an_auditor_may_not_send_or_receive(
    inproc: InProcFederation, method: str, path: str
) -> None:
    pol = await inproc.start("politie", connect=False)
    body = request_from_example("case.referral") if method == "POST" else None
    answer = await pol.call(method, path, body=body, token="auditor")
    assert "auditor" in answer.problem("forbidden")["detail"]
    assert pol.node.store.read("SELECT count(*) FROM outbox") == [(0,)]


async def test_an_actor_who_sends_gets_an_access_record_linked_to_the_message(
    inproc: InProcFederation,
) -> None:
    pol = await inproc.start("politie", connect=False)
    message_id = await pol.send(request_from_example("case.referral"), headers=ACTOR)
    assert pol.node.audit_names(message_id) == ["policy.decision", "message.send", "access"]
    (access,) = pol.node.audit(operation="access")
    assert _actors([access]) == [
        (message_id, {"id": "emp-4711", "role": "intake", "responsible": "emp-0815"})
    ]
    (send,) = pol.node.audit(operation="message.send")
    assert access["view"]["trace_id"] == send["view"]["trace_id"]


async def test_a_send_without_actor_headers_writes_no_access_record(
    inproc: InProcFederation,
) -> None:
    pol = await inproc.start("politie", connect=False)
    await pol.send(request_from_example("case.referral"))
    assert pol.node.audit(operation="access") == []


async def test_an_actor_reading_the_inbox_is_recorded_once_per_message(
    inproc: InProcFederation,
) -> None:
    pol = await inproc.start("politie")
    gem = await inproc.start("gemeente")
    message_id = await pol.send(request_from_example("case.referral"))
    actor = {"ZVG-Actor": "emp-4711"}
    assert [i["message_id"] for i in await gem.inbox(wait=30, headers=actor)] == [message_id]
    assert [i["message_id"] for i in await gem.inbox(headers=actor)] == [message_id]
    assert _actors(gem.node.audit(operation="access")) == [
        (message_id, {"id": "emp-4711", "role": None, "responsible": None})
    ]


async def test_an_actor_who_acks_gets_an_access_record(inproc: InProcFederation) -> None:
    pol = await inproc.start("politie")
    gem = await inproc.start("gemeente")
    message_id = await pol.send(request_from_example("case.referral"))
    await gem.inbox(wait=30)
    answer = await gem.call("POST", f"/v1/inbox/{message_id}/ack", headers={"ZVG-Actor": "e-1"})
    assert answer.status == 204
    # The receipt loop logs the `accepted` receipt concurrently, before or after these two: only
    # the records an ack writes are compared, so their order is the ack's, not the race's.
    ack_writes = {"adapter.ack", "access"}
    names = [n for n in gem.node.audit_names(message_id) if n in ack_writes]
    assert names[-2:] == ["adapter.ack", "access"]
    assert [a["id"] for _m, a in _actors(gem.node.audit(operation="access"))] == ["e-1"]


@pytest.mark.parametrize(
    "headers",
    [{"ZVG-Actor": "x" * 129}, {"ZVG-Actor": "emp", "ZVG-Actor-Role": "tab\there"}],
    ids=["too-long", "not-printable"],
)
async def test_an_actor_header_that_is_not_1_to_128_printable_characters_is_a_400(
    inproc: InProcFederation, headers: dict[str, str]
) -> None:
    pol = await inproc.start("politie", connect=False)
    answer = await pol.call("GET", "/v1/inbox", headers=headers)
    assert "ZVG-Actor" in answer.problem("invalid-request")["detail"]
