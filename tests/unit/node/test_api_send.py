"""Sending through the node's API, in process: request validation, problem+json, idempotency.

The node is served by its own aiohttp app with a temporary store and a broker in memory
(tests/unit/node/_inproc.py).

Replaces, e2e on RabbitMQ → here:

- test_node_flow.py::test_bad_requests_get_problem_json → test_bad_requests_get_problem_json
- test_node_flow.py::test_invalid_message_names_the_field_and_never_echoes_the_value
  → test_an_invalid_field_is_named_and_its_value_never_echoed
- test_node_flow.py::test_idempotency_key_returns_the_same_message
  → test_the_same_idempotency_key_and_body_return_the_same_message,
  test_the_same_idempotency_key_with_another_body_is_a_409
- test_api_guide.py, the refusals block (missing field, 409, 415)
  → test_a_missing_field_is_named_in_errors, test_bad_requests_get_problem_json
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest

from gateway.node.store import OutboxEntry
from tests.unit.node._inproc import GEM, InProcFederation, request_from_example
from tests.unit.node.conftest import BOTH_STORES

pytestmark = BOTH_STORES  # each test runs on SQLite and on PostgreSQL

UUID7 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


async def test_an_accepted_message_answers_202_with_its_id_and_location(
    inproc: InProcFederation,
) -> None:
    pol = await inproc.start("politie", connect=False)
    answer = await pol.call("POST", "/v1/messages", body=request_from_example("case.referral"))
    assert answer.status == 202, answer.body
    doc = answer.json()
    assert UUID7.fullmatch(doc["message_id"]), doc
    assert doc["status_url"] == f"/v1/messages/{doc['message_id']}"
    assert answer.headers["Location"] == doc["status_url"]
    assert "Idempotent-Replayed" not in answer.headers
    # Durable in the outbox with its audit records before the answer.
    assert pol.node.audit_names(doc["message_id"]) == ["policy.decision", "message.send"]
    assert await pol.status(doc["message_id"]) == [(GEM, "ZVH", "queued", None)]


@pytest.mark.parametrize(
    ("headers", "raw", "slug"),
    [
        ({"Authorization": ""}, b"{}", "unauthorized"),
        ({"Authorization": "Bearer wrong"}, b"{}", "unauthorized"),
        ({}, b"{not json", "invalid-request"),
        ({}, b'{"a": 1, "a": 2}', "invalid-request"),
        ({"Content-Type": "text/plain"}, b"{}", "unsupported-media-type"),
        ({}, b"{}", "invalid-message"),
        ({}, b"x" * (600 * 1024), "too-large"),
        ({"ZVG-Actor": "x" * 129}, b"{}", "invalid-request"),
    ],
    ids=[
        "no-token",
        "wrong-token",
        "bad-json",
        "duplicate-key",
        "content-type",
        "empty",
        "too-large",
        "actor-too-long",
    ],
)
async def test_bad_requests_get_problem_json(
    inproc: InProcFederation, headers: dict[str, str], raw: bytes, slug: str
) -> None:
    pol = await inproc.start("politie", connect=False)
    answer = await pol.call("POST", "/v1/messages", raw=raw, headers=headers)
    problem = answer.problem(slug)
    assert problem["instance"] == "/v1/messages"
    if answer.status == 401:
        assert answer.headers["WWW-Authenticate"] == 'Bearer realm="zv-gateway"'
    assert pol.node.store.read("SELECT count(*) FROM outbox") == [(0,)]


async def test_a_missing_field_is_named_in_errors(inproc: InProcFederation) -> None:
    pol = await inproc.start("politie", connect=False)
    request = request_from_example("case.referral")
    del request["case_ref"]
    problem = (await pol.call("POST", "/v1/messages", body=request)).problem("invalid-message")
    assert problem["errors"] == [{"field": "case_ref", "message": "Field required"}]


async def test_an_invalid_field_is_named_and_its_value_never_echoed(
    inproc: InProcFederation,
) -> None:
    pol = await inproc.start("politie", connect=False)
    request = request_from_example("case.referral")
    request["body"]["reason"] = "Neighbour with BSN 999990020 called."
    answer = await pol.call("POST", "/v1/messages", body=request)
    problem = answer.problem("invalid-message")
    assert {"field": "body.reason"}.items() <= problem["errors"][0].items()
    assert b"999990020" not in answer.body


async def test_a_role_the_organisation_does_not_hold_is_named_as_sender_role(
    inproc: InProcFederation,
) -> None:
    pol = await inproc.start("politie", connect=False)
    request = request_from_example("case.referral", sender_role="ZVH")
    problem = (await pol.call("POST", "/v1/messages", body=request)).problem("invalid-message")
    assert [e["field"] for e in problem["errors"]] == ["sender_role"]


async def test_an_organisation_in_several_roles_must_say_which_one_sends(
    inproc: InProcFederation,
) -> None:
    gem = await inproc.start("gemeente", connect=False)
    request = request_from_example("case.status")
    del request["sender_role"]
    problem = (await gem.call("POST", "/v1/messages", body=request)).problem("invalid-message")
    assert [e["field"] for e in problem["errors"]] == ["sender_role"]


@pytest.mark.parametrize("key", ["", "x" * 201, "tab\there"], ids=["empty", "too-long", "tab"])
async def test_an_idempotency_key_that_is_not_1_to_200_printable_characters_is_a_400(
    inproc: InProcFederation, key: str
) -> None:
    pol = await inproc.start("politie", connect=False)
    request = request_from_example("case.referral")
    answer = await pol.call("POST", "/v1/messages", body=request, headers={"Idempotency-Key": key})
    assert "Idempotency-Key" in answer.problem("invalid-request")["detail"]


async def test_the_same_idempotency_key_and_body_return_the_same_message(
    inproc: InProcFederation,
) -> None:
    pol = await inproc.start("politie")
    request = request_from_example("case.referral")
    key = {"Idempotency-Key": "incident-2026-0227-17"}
    first = await pol.call("POST", "/v1/messages", body=request, headers=key)
    again = await pol.call("POST", "/v1/messages", body=request, headers=key)
    assert (first.status, again.status) == (202, 202)
    message_id = first.json()["message_id"]
    assert again.json()["message_id"] == message_id
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Location"] == f"/v1/messages/{message_id}"
    # Nothing is sent twice: one outbox entry, one publish.
    assert pol.node.store.read("SELECT message_id FROM outbox") == [(message_id,)]
    await inproc.wait_status("politie", message_id, "sent")
    assert [p.message_id for p in inproc.broker.published] == [message_id]


async def test_a_message_the_first_outbox_scan_published_is_not_published_again_by_its_hand_over(
    inproc: InProcFederation, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bug (a flaky double publish in CI): ``send`` commits the outbox row, then hands the
    entry to the publisher. When the outbox's first scan ran in between, it found the fresh row
    and published it, and the hand-over queued it a second time once that publish was done."""
    pol = await inproc.start("politie", connect=False)
    outbox = pol.node.service.outbox
    handed: list[OutboxEntry] = []
    real_hand_over = outbox.hand_over
    monkeypatch.setattr(outbox, "hand_over", handed.append)  # the hand-over comes late
    message_id = await pol.send(request_from_example("case.referral"))
    inproc.connect("politie")
    outbox.wake()  # the scan finds the committed row
    await inproc.wait_status("politie", message_id, "sent")
    (entry,) = handed
    real_hand_over(entry)  # ... and now the late hand-over

    async def settled() -> bool:
        return len(inproc.broker.published) > 1 or not (outbox._ready or outbox._in_flight)

    await inproc.broker.until(settled, "the late hand-over was dealt with")
    assert [p.message_id for p in inproc.broker.published] == [message_id]


async def test_a_publish_by_the_outbox_scan_joins_the_trace_of_the_send(
    inproc: InProcFederation, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bug (LDV, seen flaky in CI): when the outbox's scan published a fresh entry before
    ``send`` handed it over (or after a restart), the entry read back from the store had no
    trace id, and its ``message.publish`` record began a trace of its own: an officer following
    the exchange by its trace id missed the publish."""
    pol = await inproc.start("politie", connect=False)
    outbox = pol.node.service.outbox
    monkeypatch.setattr(outbox, "hand_over", lambda _entry: None)  # only the scan publishes
    message_id = await pol.send(request_from_example("case.referral"))
    inproc.connect("politie")
    outbox.wake()
    await inproc.wait_status("politie", message_id, "sent")
    (sent,) = pol.node.audit(operation="message.send", message_id=message_id)
    (published,) = pol.node.audit(operation="message.publish", message_id=message_id)
    assert published["view"]["trace_id"] == sent["view"]["trace_id"]


async def test_a_hand_over_that_comes_while_the_scan_publishes_the_entry_does_not_publish_it_again(
    inproc: InProcFederation, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bug (a flaky double publish in CI, after the one above was fixed): the first scan
    found the fresh row and was still publishing it when ``send`` handed the entry over. The
    hand-over queued it behind the publish in flight (the window was full, or the publisher was
    busy with the store); once that publish was confirmed, the publisher took the queued copy and
    published it a second time. A window of one keeps the copy queued here."""
    pol = await inproc.start("politie", connect=False, broker__publish_window=1)
    outbox = pol.node.service.outbox
    handed: list[OutboxEntry] = []
    real_hand_over = outbox.hand_over
    monkeypatch.setattr(outbox, "hand_over", handed.append)  # the hand-over comes late
    message_id = await pol.send(request_from_example("case.referral"))
    port = outbox.ctx.broker
    real_publish = port.publish
    gate, publishing = asyncio.Event(), asyncio.Event()

    async def held_publish(*args: Any, **kwargs: Any) -> None:
        publishing.set()
        await gate.wait()
        await real_publish(*args, **kwargs)

    monkeypatch.setattr(port, "publish", held_publish)
    inproc.connect("politie")
    outbox.wake()  # the scan finds the committed row and starts publishing it
    await publishing.wait()
    (entry,) = handed
    real_hand_over(entry)  # ... the hand-over comes while that publish is in flight
    gate.set()
    await inproc.wait_status("politie", message_id, "sent")

    async def settled() -> bool:
        return len(inproc.broker.published) > 1 or not (outbox._ready or outbox._in_flight)

    await inproc.broker.until(settled, "the hand-over was dealt with")
    assert [p.message_id for p in inproc.broker.published] == [message_id]


async def test_the_same_idempotency_key_with_another_body_is_a_409(
    inproc: InProcFederation,
) -> None:
    pol = await inproc.start("politie", connect=False)
    request = request_from_example("case.referral")
    key = {"Idempotency-Key": "incident-2026-0227-17"}
    message_id = await pol.send(request, headers=key)
    request["body"]["urgency"] = "regular"
    answer = await pol.call("POST", "/v1/messages", body=request, headers=key)
    assert "different request" in answer.problem("idempotency-conflict")["detail"]
    assert pol.node.store.read("SELECT message_id FROM outbox") == [(message_id,)]


async def test_another_idempotency_key_sends_another_message(inproc: InProcFederation) -> None:
    pol = await inproc.start("politie", connect=False)
    request = request_from_example("case.referral")
    first = await pol.send(request, headers={"Idempotency-Key": "a"})
    second = await pol.send(request, headers={"Idempotency-Key": "b"})
    assert first != second


async def test_concurrent_requests_with_one_idempotency_key_send_one_message(
    inproc: InProcFederation,
) -> None:
    pol = await inproc.start("politie", connect=False)
    body = json.dumps(request_from_example("case.referral")).encode()
    key = {"Idempotency-Key": "incident-2026-0227-17"}
    answers = await asyncio.gather(
        *(pol.call("POST", "/v1/messages", raw=body, headers=key) for _ in range(8))
    )
    stored = pol.node.store.read("SELECT message_id FROM outbox")
    assert len(stored) == 1, stored
    # Each answer is the one message, or "a concurrent request used this key" (retry it).
    for answer in answers:
        if answer.status == 202:
            assert answer.json()["message_id"] == stored[0][0]
        else:
            assert "concurrent" in answer.problem("idempotency-conflict")["detail"]
    assert any(a.status == 202 for a in answers)
    retried = await pol.call("POST", "/v1/messages", raw=body, headers=key)
    assert (retried.status, retried.json()["message_id"]) == (202, stored[0][0])
