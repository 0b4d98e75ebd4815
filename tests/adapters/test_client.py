"""The node API client: idempotent sends, bounded retries, typed errors, inbox iteration.

Threats and failure modes covered: a retried send must not send twice; a node restart must not
lose a send; errors must say what to do (typed), and a refusal must not be retried; a hostile or
broken endpoint must not make the client buffer without bound or inject a path.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest
from aiohttp import web

from schemas.api import SendRequest
from schemas.claims import InfoRequest
from tests.adapters.conftest import ORG
from tests.adapters.nodefake import FakeNode, fresh_copy, load_example
from zvg_client import client as client_mod
from zvg_client.client import Actor, NodeClient, RetryPolicy, item_claims, request_from_dict
from zvg_client.errors import (
    IdempotencyConflict,
    InvalidMessage,
    NodeError,
    NotFound,
    PolicyDenied,
    Unauthorized,
    Unavailable,
)

GEM = ORG["gemeente"].oin


def bekendheid_answer(**body_changes: object) -> SendRequest:
    """The GGZ's 'known' answer to the bekendheidsvraag (demo case step 3)."""
    example = load_example("info.response")
    body = dict(example["body"])
    body.update(body_changes)
    return request_from_dict(
        {
            "message_type": "info.response",
            "purpose": "ZVH.BEKENDHEID",
            "recipients": [{"org": GEM, "role": "ZVH"}],
            "case_ref": example["case_ref"],
            "data_categories": example["data_categories"],
            "subjects": example["subjects"],
            "in_reply_to": example["in_reply_to"],
            "body": body,
        }
    )


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def make_client(node: FakeNode, sleeps: Sleeps | None = None, **kw: object) -> NodeClient:
    return NodeClient(
        node.url,
        node.token,
        sleep=sleeps or Sleeps(),
        rand=lambda: 1.0,
        **kw,  # type: ignore[arg-type]
    )


# ---------------------------------------------------------------- send


async def test_send_returns_the_message_id_and_status_url(ggz_node: FakeNode) -> None:
    async with make_client(ggz_node) as node:
        accepted = await node.send(bekendheid_answer(), idempotency_key="ggz-task-1")
    assert accepted.status_url.endswith(accepted.message_id)
    [sent] = ggz_node.sent
    assert sent.claims.message_id == accepted.message_id
    assert sent.idempotency_key == "ggz-task-1"


@pytest.mark.parametrize("status", [503, 429])  # node unavailable; its outbox full
async def test_retried_send_uses_one_key_and_sends_once(ggz_node: FakeNode, status: int) -> None:
    ggz_node.fail_next(2, status, retry_after="3")
    sleeps = Sleeps()
    async with make_client(ggz_node, sleeps) as node:
        accepted = await node.send(bekendheid_answer())
    posts = [h for m, p, h in ggz_node.requests if m == "POST" and p == "/v1/messages"]
    keys = {h["Idempotency-Key"] for h in posts}
    assert len(posts) == 3
    assert len(keys) == 1, "every retry of one send carries the same Idempotency-Key"
    assert len(ggz_node.sent) == 1
    assert ggz_node.sent[0].claims.message_id == accepted.message_id
    assert sleeps.calls == [3.0, 3.0], "Retry-After is honoured"


async def test_same_key_after_restart_returns_the_same_message(ggz_node: FakeNode) -> None:
    async with make_client(ggz_node) as node:
        first = await node.send(bekendheid_answer(), idempotency_key="file-sha256-abc")
    async with make_client(ggz_node) as node:  # a new process, same source record
        second = await node.send(bekendheid_answer(), idempotency_key="file-sha256-abc")
    assert first.message_id == second.message_id
    assert len(ggz_node.sent) == 1


async def test_backoff_grows_and_is_capped() -> None:
    policy = RetryPolicy(attempts=10, base_seconds=0.5, cap_seconds=4.0, max_retry_after=10)
    delays = [policy.delay(n, None, lambda: 1.0) for n in range(6)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert policy.delay(0, 3600, lambda: 0.0) == 10, "a huge Retry-After is capped"


async def test_gives_up_after_the_attempts_and_says_retryable(ggz_node: FakeNode) -> None:
    ggz_node.fail_next(10, 429)
    sleeps = Sleeps()
    async with make_client(ggz_node, sleeps, retry=RetryPolicy(attempts=3)) as node:
        with pytest.raises(Unavailable) as info:
            await node.send(bekendheid_answer())
    assert info.value.retryable
    assert info.value.status == 429
    assert len(sleeps.calls) == 2
    assert ggz_node.sent == []


async def test_unreachable_node_is_unavailable() -> None:
    sleeps = Sleeps()
    async with NodeClient(
        "http://127.0.0.1:9", "t", sleep=sleeps, retry=RetryPolicy(attempts=2)
    ) as node:
        with pytest.raises(Unavailable) as info:
            await node.status("019cb92f-22c0-7751-a20c-afb356864716")
    assert info.value.status == 0
    assert len(sleeps.calls) == 1


async def test_invalid_message_names_fields_and_is_not_retried(ggz_node: FakeNode) -> None:
    # A 'known' answer must name a contact: the contract refuses it, at the field.
    request = bekendheid_answer(contact=None)
    async with make_client(ggz_node) as node:
        with pytest.raises(InvalidMessage) as info:
            await node.send(request)
    fields = [e.field for e in info.value.errors]
    assert "body.contact" in fields
    assert not info.value.retryable
    assert len([r for r in ggz_node.requests if r[1] == "/v1/messages"]) == 1


async def test_policy_denial_carries_the_decision(ggz_node: FakeNode) -> None:
    # Demo case step 3: GGZ declares health data on a bekendheid answer; policy says no.
    request = bekendheid_answer()
    request = request.model_copy(
        update={
            "data_categories": (*request.data_categories, "GEZONDHEID"),
            "flags": request.flags.model_copy(update={"art9": True, "professional_secrecy": True}),
            "legal_basis": ("WGS",),
        }
    )
    async with make_client(ggz_node) as node:
        with pytest.raises(PolicyDenied) as info:
            await node.send(request)
    assert info.value.decision["reason"] == "category_not_allowed"
    assert info.value.decision["category"] == "GEZONDHEID"
    assert "A. Kuipers" not in str(info.value), "no payload content in the error"


async def test_wrong_token_is_unauthorized_and_not_retried(ggz_node: FakeNode) -> None:
    sleeps = Sleeps()
    async with NodeClient(ggz_node.url, "wrong", sleep=sleeps) as node:
        with pytest.raises(Unauthorized):
            await node.send(bekendheid_answer())
    assert sleeps.calls == []


async def test_idempotency_key_must_be_printable_ascii(ggz_node: FakeNode) -> None:
    async with make_client(ggz_node) as node:
        with pytest.raises(ValueError, match="idempotency_key"):
            await node.send(bekendheid_answer(), idempotency_key="a\nInjected: header")


async def test_actor_headers_are_sent(ggz_node: FakeNode) -> None:
    actor = Actor("emp-4711", role="psychiater", responsible="emp-0815")
    async with make_client(ggz_node, actor=actor) as node:
        await node.send(bekendheid_answer())
    assert ggz_node.sent[0].actor == {
        "ZVG-Actor": "emp-4711",
        "ZVG-Actor-Role": "psychiater",
        "ZVG-Responsible": "emp-0815",
    }


# ---------------------------------------------------------------- status


async def test_status_per_recipient(ggz_node: FakeNode) -> None:
    async with make_client(ggz_node) as node:
        accepted = await node.send(bekendheid_answer())
        ggz_node.set_status(accepted.message_id, "accepted")
        status = await node.status(accepted.message_id)
    assert [(r.org, r.status) for r in status.recipients] == [(GEM, "accepted")]


async def test_unknown_message_is_not_found(ggz_node: FakeNode) -> None:
    async with make_client(ggz_node) as node:
        with pytest.raises(NotFound):
            await node.status("019cb92f-22c0-7751-a20c-afb356864716")


@pytest.mark.parametrize("bad", ["../../v1/directory", "019CB92F-22C0-7751-A20C-AFB356864716", ""])
async def test_message_ids_cannot_inject_paths(ggz_node: FakeNode, bad: str) -> None:
    async with make_client(ggz_node) as node:
        with pytest.raises(ValueError, match="UUID"):
            await node.status(bad)
        with pytest.raises(ValueError, match="UUID"):
            await node.ack(bad)
    assert ggz_node.requests == []


# ---------------------------------------------------------------- inbox


async def test_long_poll_returns_when_an_item_arrives(ggz_node: FakeNode) -> None:
    request = fresh_copy(load_example("info.request"))
    async with make_client(ggz_node) as node:
        poll = asyncio.create_task(node.inbox(wait=30))
        await asyncio.sleep(0.05)
        assert not poll.done()
        await ggz_node.deliver(request)
        page = await poll
    assert [i.message_id for i in page.items] == [request["message_id"]]


async def test_item_claims_are_typed(ggz_node: FakeNode) -> None:
    item = await ggz_node.deliver(fresh_copy(load_example("info.request")))
    claims = item_claims(item)
    assert isinstance(claims, InfoRequest)
    assert claims.body.mode == "bekendheid"


async def test_inbox_items_ack_and_reject(ggz_node: FakeNode) -> None:
    first = await ggz_node.deliver(fresh_copy(load_example("info.request")))
    second = await ggz_node.deliver(fresh_copy(load_example("info.request")))
    seen = []
    async with make_client(ggz_node) as node:
        async for item in node.inbox_items(wait=0.2):
            seen.append(item.message_id)
            if item.message_id == first.message_id:
                await node.ack(item.message_id)
                await node.ack(item.message_id)  # idempotent
            else:
                await node.reject(item.message_id, "unknown_subject", note="no such client")
            if len(seen) == 2:
                break
    assert seen == [first.message_id, second.message_id]
    assert ggz_node.acked == [first.message_id]
    assert ggz_node.rejected[0][0] == second.message_id
    assert ggz_node.rejected[0][1].reason == "unknown_subject"


async def test_unsettled_items_are_not_yielded_twice_in_a_row(ggz_node: FakeNode) -> None:
    pending = await ggz_node.deliver(fresh_copy(load_example("info.request")))
    seen: list[str] = []

    async def later() -> str:
        await asyncio.sleep(0.35)  # the client polls a few times with only the pending item
        return (await ggz_node.deliver(fresh_copy(load_example("info.request")))).message_id

    arrival = asyncio.create_task(later())
    async with NodeClient(ggz_node.url, ggz_node.token) as node:
        async for item in node.inbox_items(wait=0.1):
            seen.append(item.message_id)
            if len(seen) == 2:
                break
    assert seen == [pending.message_id, await arrival]
    polls = [r for r in ggz_node.requests if r[1] == "/v1/inbox"]
    assert len(polls) >= 3


async def test_stream_yields_items_and_skips_keepalives() -> None:
    node = FakeNode(ORG["ggz"], keepalive=0.02)
    await node.start()
    try:
        first = await node.deliver(fresh_copy(load_example("info.request")))
        async with make_client(node) as api:
            stream = api.stream()
            got = [await anext(stream)]
            await asyncio.sleep(0.1)  # keepalive comments flow meanwhile
            second = await node.deliver(fresh_copy(load_example("info.request")))
            got.append(await anext(stream))
            await stream.aclose()
        assert [i.message_id for i in got] == [first.message_id, second.message_id]
    finally:
        await node.stop()


# ---------------------------------------------------------------- hostile or broken endpoints


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def _serve(handler: Handler) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_oversized_answer_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_mod, "MAX_RESPONSE_BYTES", 1024)

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        for _ in range(100):
            await resp.write(b"x" * 100)
        return resp

    async for url in _serve(handler):
        async with NodeClient(url, "t") as node:
            with pytest.raises(NodeError, match="over 1024 bytes"):
                await node.inbox()


async def test_oversized_event_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_mod, "MAX_SSE_EVENT_BYTES", 1024)

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for _ in range(100):
            await resp.write(b"data: " + b"x" * 100 + b"\n")
        return resp

    async for url in _serve(handler):
        async with NodeClient(url, "t") as node:
            with pytest.raises(NodeError, match="over 1024 bytes"):
                await anext(node.stream(reconnect=False))


async def test_event_stream_format_multiline_crlf_comments() -> None:
    item = {
        "message_id": "019cb92f-22c0-7751-a20c-afb356864716",
        "sender": GEM,
        "recipient_roles": ["GGZ"],
        "received_at": "2026-03-04T14:10:01Z",
        "redelivered": True,
        "claims": {"spec": "zvg/1"},
    }
    text = json.dumps(item, indent=1)  # JSON over several data: lines
    lines = "".join(f"data: {line}\r\n" for line in text.splitlines())
    payload = (
        f": keepalive\r\n\r\nevent: other\r\ndata: ignored\r\n\r\nid: x1\r\n{lines}\r\n"
    ).encode()

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(payload)
        return resp

    async for url in _serve(handler):
        async with NodeClient(url, "t") as node:
            got = [i async for i in node.stream(reconnect=False)]
    assert [i.message_id for i in got] == [item["message_id"]]
    assert got[0].redelivered


async def test_answer_outside_the_contract_is_an_error() -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"message_id": "not-a-uuid7", "status_url": "/x"}, status=202)

    async for url in _serve(handler):
        async with NodeClient(url, "t") as node:
            with pytest.raises(NodeError, match="not a valid SendAccepted"):
                await node.send(bekendheid_answer())


async def test_non_problem_error_body_is_typed_by_status() -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=502, text="<html>bad gateway</html>")

    async for url in _serve(handler):
        sleeps = Sleeps()
        async with NodeClient(url, "t", sleep=sleeps, retry=RetryPolicy(attempts=2)) as node:
            with pytest.raises(Unavailable):
                await node.inbox()
    assert len(sleeps.calls) == 1


async def test_directory_and_health(ggz_node: FakeNode) -> None:
    async with make_client(ggz_node) as node:
        directory = await node.directory()
        assert await node.healthy()
    assert directory["federation"] == "veenstad"
    async with NodeClient("http://127.0.0.1:9", "t") as down:
        assert not await down.healthy()


async def test_caller_session_is_not_closed(ggz_node: FakeNode) -> None:
    async with aiohttp.ClientSession() as session:
        async with NodeClient(ggz_node.url, ggz_node.token, session=session) as node:
            await node.directory()
        assert not session.closed


@pytest.mark.parametrize(
    ("status", "kind", "expected"),
    [
        (400, "invalid-request", InvalidMessage),
        (403, "forbidden", Unauthorized),
        (409, "idempotency-conflict", IdempotencyConflict),
        (409, "recipient-unavailable", Unavailable),
        (415, "unsupported-media-type", NodeError),
    ],
)
@pytest.mark.parametrize("base", ["https://zv-gateway.example/problems/", "/problems/"])
async def test_every_documented_problem_type_is_typed(
    status: int, kind: str, expected: type[NodeError], base: str
) -> None:
    """``base``: the absolute type URIs of older nodes, and the relative ones nodes serve now."""

    async def handler(request: web.Request) -> web.Response:
        problem = {
            "type": f"{base}{kind}",
            "title": kind,
            "status": status,
            "detail": "d",
        }
        return web.json_response(problem, status=status, content_type="application/problem+json")

    async for url in _serve(handler):
        async with NodeClient(url, "t", sleep=Sleeps(), retry=RetryPolicy(attempts=1)) as node:
            with pytest.raises(expected) as info:
                await node.send(bekendheid_answer())
    assert type(info.value) is expected


CLIENT_EXAMPLE = Path(__file__).resolve().parents[2] / "docs/adapters/examples/client_example.py"


async def test_the_documented_example_runs(ggz_node: FakeNode) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("client_example", CLIENT_EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    question = await ggz_node.deliver(fresh_copy(load_example("info.request")))
    answer_id = await example.answer_one_question(ggz_node.url, ggz_node.token, wait=1)
    [sent] = ggz_node.sent
    assert sent.claims.message_id == answer_id
    assert sent.claims.in_reply_to == question.message_id
    assert ggz_node.acked == [question.message_id]


# ------------------------------------ issue 18: request_from_dict raised pydantic's error


def _answer_dict(**changes: object) -> dict[str, Any]:
    doc = json.loads(bekendheid_answer().model_dump_json(exclude_none=True))
    doc.update(changes)
    return cast(dict[str, Any], doc)


def test_request_from_dict_raised_a_bare_pydantic_error_and_now_raises_invalid_message() -> None:
    doc = _answer_dict(purpose="ZVH.ONBEKEND", case_ref="BSN 123456782")
    del doc["recipients"]
    with pytest.raises(InvalidMessage) as caught:
        request_from_dict(doc)
    error = caught.value
    assert type(error) is InvalidMessage
    assert error.__cause__ is None, "pydantic's error is not chained into tracebacks either"
    assert error.status == 0, "nothing was sent"
    assert error.type == "https://zv-gateway.example/problems/invalid-message"
    fields = {e.field for e in error.errors}
    assert {"recipients", "purpose"} <= fields, fields
    assert "123456782" not in str(error), "values never appear, only fields and rules"
    assert "123456782" not in repr(error.problem)
    assert str(error).startswith("Invalid message: ")


def test_request_from_dict_refuses_data_that_is_not_json_shaped_as_invalid_message() -> None:
    with pytest.raises(InvalidMessage) as caught:
        request_from_dict(_answer_dict(subjects={object()}))
    assert [e.field for e in caught.value.errors] == ["(document)"]


def test_request_from_dict_accepts_what_it_always_accepted() -> None:
    doc = _answer_dict()
    assert request_from_dict(doc).model_dump(mode="json", exclude_none=True) == doc
