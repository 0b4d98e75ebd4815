"""Slow and vanishing clients of the local API are bounded, and a client that leaves is no error.

Threats: a client (or anything that reached the API's port) holds connections open for ever —
idle, sending a request head one line at a time, or a body one byte at a time — until the node
runs out of connections or memory; many such clients at once exhaust it sooner. Before, all three
stayed open for at least 150 s and nothing capped the number. And a client that disappears
mid-request (an adapter restarting, a closed event stream) was logged as an ERROR "unexpected
error" with a traceback and recorded as a 503, so alerts fired on a healthy node.

Each test runs an in-process node on a loopback port with small timeouts and waits for the
node to close the socket (reading until EOF); the bound on that wait only stops a hang on
today's code, it is never a timed assert.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import pytest

from gateway.logs import JsonFormatter
from gateway.node import api, listener
from gateway.node.runner import Node
from tests.unit.node._http import exchange, request_bytes
from tests.unit.node.conftest import TOKEN, StartNode

#: Bound on waiting for the node to close a connection (generous: a busy, shared machine).
HANG_S = 30.0
#: Pace of a slow client: well under the node's timeouts below, so each byte alone keeps the
#: connection "active" in the eyes of a per-read timeout.
PACE_S = 0.1
SMALL = {"idle_timeout_seconds": 0.5, "body_timeout_seconds": 0.5}
AUTH = f"Authorization: Bearer {TOKEN}\r\n".encode()


def _port(node: Node) -> int:
    return int(node.config.api.listen.rpartition(":")[2])


async def _until_eof(reader: asyncio.StreamReader) -> bytes:
    """Everything the node sends until it closes the connection."""
    async with asyncio.timeout(HANG_S):
        return await reader.read()


async def _trickle(
    writer: asyncio.StreamWriter, chunks: list[bytes], closed: asyncio.Task[bytes]
) -> int:
    """Send ``chunks`` one per :data:`PACE_S` until the node closes; how many were sent."""
    sent = 0
    for chunk in chunks:
        if closed.done():
            break
        try:
            writer.write(chunk)
            await writer.drain()
        except ConnectionError:
            break
        sent += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(closed), PACE_S)
    return sent


def _status(received: bytes) -> int | None:
    if not received.startswith(b"HTTP/1."):
        return None
    return int(received.split(b" ", 2)[1])


async def _wait_for(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(HANG_S):
        while not condition():  # noqa: ASYNC110 - polling log records; no event to wait on
            await asyncio.sleep(0.02)


# ------------------------------------------------------------------ timeouts


async def test_an_idle_connection_is_closed_by_the_node(start_node: StartNode) -> None:
    node = await start_node(api=SMALL)
    reader, writer = await asyncio.open_connection("127.0.0.1", _port(node))
    try:
        assert await _until_eof(reader) == b"", "closed without a word: nothing was asked"
    finally:
        writer.close()


async def test_an_idle_keep_alive_connection_is_closed_after_its_answer(
    start_node: StartNode,
) -> None:
    node = await start_node(api=SMALL)
    reader, writer = await asyncio.open_connection("127.0.0.1", _port(node))
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        received = await _until_eof(reader)
        assert _status(received) == 200, received
    finally:
        writer.close()


async def test_a_request_head_sent_one_byte_at_a_time_is_cut(start_node: StartNode) -> None:
    node = await start_node(api=SMALL)
    reader, writer = await asyncio.open_connection("127.0.0.1", _port(node))
    closed = asyncio.ensure_future(_until_eof(reader))
    # One header line, a byte at a time: below every size limit, so only time can cut it.
    lines = [b"GET /healthz HTTP/1.1\r\nX-Slow: "] + [b"a"] * 4000
    try:
        sent = await _trickle(writer, lines, closed)
        received = await closed
    finally:
        writer.close()
    assert sent < len(lines), "the node waited for the whole head"
    assert _status(received) in (None, 408), received  # closed, never answered the request


async def test_a_body_sent_one_byte_at_a_time_is_cut_with_a_408_problem(
    start_node: StartNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    # After its 408 the node reads on (and discards) for LINGER_S before it closes; a client
    # still trickling keeps it there for all of it: shortened, as the other timeouts are.
    monkeypatch.setattr(listener, "LINGER_S", 0.5)
    node = await start_node(api=SMALL)
    reader, writer = await asyncio.open_connection("127.0.0.1", _port(node))
    closed = asyncio.ensure_future(_until_eof(reader))
    head = (
        b"POST /v1/messages HTTP/1.1\r\nHost: x\r\n" + AUTH + b"Content-Type: application/json"
        b"\r\nContent-Length: 1000\r\n\r\n"
    )
    try:
        sent = await _trickle(writer, [head] + [b" "] * 999, closed)
        received = await closed
    finally:
        writer.close()
    assert sent < 1000, "the node waited for the whole body"
    assert _status(received) == 408, received
    head_part, _, body = received.partition(b"\r\n\r\n")
    assert b"application/problem+json" in head_part
    assert b"/problems/request-timeout" in body
    assert b"connection: close" in head_part.lower()


async def test_a_long_poll_longer_than_the_idle_timeout_is_answered(
    start_node: StartNode,
) -> None:
    """The idle timeout applies between requests, not while the node works on one."""
    node = await start_node(api=SMALL, limits={"inbox_wait_max_seconds": 1})
    data = request_bytes("GET", "/v1/inbox?wait=1", [("Authorization", f"Bearer {TOKEN}")])
    reply = await asyncio.to_thread(exchange, _port(node), data)
    assert (reply.status, reply.body) == (200, b'{"items":[],"next_cursor":null}')


async def test_an_event_stream_outlives_the_idle_timeout(
    start_node: StartNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api, "SSE_KEEPALIVE_S", 0.2)
    node = await start_node(api=SMALL)
    reader, writer = await asyncio.open_connection("127.0.0.1", _port(node))
    try:
        writer.write(b"GET /v1/inbox/stream HTTP/1.1\r\nHost: x\r\n" + AUTH + b"\r\n")
        async with asyncio.timeout(HANG_S):
            head = await reader.readuntil(b"\r\n\r\n")
            assert _status(head) == 200, head
            seen = b""
            while seen.count(b": keepalive") < 6:  # 6 x 0.2 s: more than twice the 0.5 s
                chunk = await reader.read(4096)
                assert chunk, f"the node closed the stream: {seen!r}"
                seen += chunk
    finally:
        writer.close()


# ------------------------------------------------------------------ connection cap


async def test_connections_over_the_cap_are_refused_with_a_503_problem(
    start_node: StartNode,
) -> None:
    node = await start_node(api={"max_connections": 2, "idle_timeout_seconds": 60})
    port = _port(node)
    held = []
    for _ in range(2):  # two keep-alive connections, each answered once, then idle
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        async with asyncio.timeout(HANG_S):
            assert _status(await reader.readuntil(b"\r\n\r\n")) == 200
        held.append((reader, writer))
    # A client that waits for the answer reads the refusal: a 503 problem, then the close.
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    refusal = await _until_eof(reader)
    writer.close()
    head, _, body = refusal.partition(b"\r\n\r\n")
    assert _status(head) == 503, refusal
    assert b"content-type: application/problem+json" in head.lower()
    assert b"retry-after: 1" in head.lower()
    assert b"/problems/unavailable" in body
    # One that sends its request at once may find the connection closed first (a reset), but
    # is never served.
    try:
        reply = await asyncio.to_thread(exchange, port, request_bytes("GET", "/healthz"))
    except ConnectionError:
        pass
    else:
        assert reply.status == 503, reply
    held[0][1].close()  # a slot frees up once the node has seen the close

    async def admitted() -> bool:
        try:
            answer = await asyncio.to_thread(exchange, port, request_bytes("GET", "/healthz"))
        except ConnectionError:  # refused (a reset), as above: not yet
            return False
        return answer.status == 200

    async with asyncio.timeout(HANG_S):
        while not await admitted():  # noqa: ASYNC110 - the close reaches the node when it does
            await asyncio.sleep(0.05)
    held[1][1].close()


# ------------------------------------------------------------------ clients that leave


def _records(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name.startswith(("gateway.api", "aiohttp")) and r.levelno >= level
    ]


async def test_a_client_that_drops_mid_body_is_logged_at_info_and_not_as_a_503(
    start_node: StartNode, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    node = await start_node()
    server = node.runner.server if node.runner is not None else None
    assert server is not None
    taken = server.requests_count
    _, writer = await asyncio.open_connection("127.0.0.1", _port(node))
    writer.write(
        b"POST /v1/messages HTTP/1.1\r\nHost: x\r\n" + AUTH + b"Content-Type: application/json"
        b"\r\nContent-Length: 1000\r\n\r\n" + b'{"message_type": '
    )
    await writer.drain()
    await _wait_for(lambda: server.requests_count > taken)  # the node is reading the body
    writer.close()
    await writer.wait_closed()
    await _wait_for(lambda: any(r.name == "aiohttp.access" for r in caplog.records))
    # Access-log lines are fields (gateway.logs.AccessLog), not an Apache string.
    access = [vars(r) for r in caplog.records if r.name == "aiohttp.access"]
    seen = [(a["method"], a["path"], a["status"]) for a in access]
    assert ("POST", "/v1/messages", 499) in seen, seen
    assert [s for s in seen if s[2] == 503] == [], seen
    assert [(r.name, r.getMessage()) for r in _records(caplog, logging.WARNING)] == []
    gone = [r.getMessage() for r in _records(caplog, logging.INFO) if r.name == "gateway.api"]
    assert gone == ["the client closed the connection during POST /v1/messages"], gone


async def test_a_client_that_closes_an_event_stream_is_logged_at_info(
    start_node: StartNode, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.INFO)
    monkeypatch.setattr(api, "SSE_KEEPALIVE_S", 0.2)  # the stream notices at its next write
    node = await start_node()
    reader, writer = await asyncio.open_connection("127.0.0.1", _port(node))
    writer.write(b"GET /v1/inbox/stream HTTP/1.1\r\nHost: x\r\n" + AUTH + b"\r\n")
    async with asyncio.timeout(HANG_S):
        assert _status(await reader.readuntil(b"\r\n\r\n")) == 200
    writer.close()
    await _wait_for(lambda: any(r.name == "aiohttp.access" for r in caplog.records))
    assert [(r.name, r.getMessage()) for r in _records(caplog, logging.WARNING)] == []
    gone = [r.getMessage() for r in _records(caplog, logging.INFO) if r.name == "gateway.api"]
    assert gone == ["the client closed the connection during GET /v1/inbox/stream"], gone


async def test_the_access_log_never_shows_a_query_string(
    start_node: StartNode, caplog: pytest.LogCaptureFixture
) -> None:
    """The sent list's filters include a case reference: the access log names the route, never
    the query (issue 18: GET /v1/messages?case_ref=…)."""
    node = await start_node()
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    logged = asyncio.Event()  # the line is written after the answer went out

    class Seen(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.name == "aiohttp.access":
                logged.set()

    seen = Seen()
    logging.getLogger("aiohttp.access").addHandler(seen)
    try:
        path = "/v1/messages?case_ref=Secret-Case-4711&status=queued"
        data = request_bytes("GET", path, [("Authorization", f"Bearer {TOKEN}")])
        reply = await asyncio.to_thread(exchange, _port(node), data)
        assert reply.status == 200
        await asyncio.wait_for(logged.wait(), HANG_S)
    finally:
        logging.getLogger("aiohttp.access").removeHandler(seen)
    access = [r for r in caplog.records if r.name == "aiohttp.access"]
    lines = [JsonFormatter().format(r) for r in access]
    assert any(r.getMessage() == "GET /v1/messages 200" for r in access), lines
    assert "Secret-Case-4711" not in caplog.text
    assert not any("Secret-Case-4711" in line for line in lines), lines
