"""The node's access log is fields, not an Apache line (gateway.logs.AccessLog): method, the
route template (no ids, no query string), status, duration in seconds, bytes sent."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from gateway.logs import JsonFormatter
from tests.unit.node._http import exchange, request_bytes
from tests.unit.node.conftest import TOKEN, StartNode

CASE_REF = "Veenstad-2026-031"


async def test_access_log_lines_are_fields_with_the_route_template(
    start_node: StartNode, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    node = await start_node()
    port = int(node.config.api.listen.rpartition(":")[2])
    target = f"/v1/messages/msg-does-not-exist?case_ref={CASE_REF}"
    auth = [("Authorization", f"Bearer {TOKEN}")]
    reply = await asyncio.to_thread(exchange, port, request_bytes("GET", target, auth))
    assert reply.status in (400, 404)

    async with asyncio.timeout(30):
        while not [r for r in caplog.records if r.name == "aiohttp.access"]:  # noqa: ASYNC110 - logged after the answer is sent
            await asyncio.sleep(0.01)
    (record,) = [r for r in caplog.records if r.name == "aiohttp.access"]
    line = json.loads(JsonFormatter().format(record))
    assert line["method"] == "GET"
    assert line["path"] == "/v1/messages/{message_id}"
    assert line["status"] == reply.status
    assert line["message"] == f"GET /v1/messages/{{message_id}} {reply.status}"
    assert isinstance(line["duration_seconds"], float)
    assert 0 <= line["duration_seconds"] < 60
    assert len(reply.body) < line["bytes"] < len(reply.body) + 1024  # the head included
    assert line["remote"] == "127.0.0.1"
    text = json.dumps(line)
    assert CASE_REF not in text
    assert "msg-does-not-exist" not in text


async def test_a_request_refused_before_routing_is_logged_without_a_route(
    start_node: StartNode, caplog: pytest.LogCaptureFixture
) -> None:
    """aiohttp's ``request.match_info`` asserts on a request its parser refused; the access log
    asked for it and raised instead of logging the 400."""
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    node = await start_node()
    port = int(node.config.api.listen.rpartition(":")[2])
    reply = await asyncio.to_thread(
        exchange, port, b"GET /v1/inbox HTTP/1.1\r\nHost: x\r\nX-Bad: a\x01b\r\n\r\n"
    )
    assert reply.status == 400
    async with asyncio.timeout(30):
        while not [r for r in caplog.records if r.name == "aiohttp.access"]:  # noqa: ASYNC110 - logged after the answer is sent
            await asyncio.sleep(0.01)
    (record,) = [r for r in caplog.records if r.name == "aiohttp.access"]
    line = json.loads(JsonFormatter().format(record))
    assert (line["path"], line["status"]) == ("(no route)", 400)
