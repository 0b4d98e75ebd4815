"""Requests to a partner system's JSON API (``adapters._upstream.request_json``): the answer is
bounded, a redirect is not followed, every failure is the client's own typed error, and a body
goes out as UTF-8 JSON of the API's media type."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from adapters._runtime import bound_port
from adapters._upstream import request_json
from adapters.errors import UpstreamError
from tests.adapters.conftest import free_port

LIMIT = 1024


class PartnerError(UpstreamError):
    system = "Partner API"


async def _echo(request: web.Request) -> web.Response:
    doc = {"content_type": request.headers.get("Content-Type"), "body": await request.json()}
    return web.json_response(doc, status=201)


async def _redirect(_request: web.Request) -> web.Response:
    raise web.HTTPFound("http://attacker.example/steal")


async def _declared_too_large(_request: web.Request) -> web.Response:
    return web.Response(body=b"x" * (LIMIT + 1))


async def _declared_before_sent(request: web.Request) -> web.StreamResponse:
    """Declares a large answer, then sends a little of it and stalls: refused before reading."""
    resp = web.StreamResponse()
    resp.content_length = 100 * LIMIT
    await resp.prepare(request)
    await resp.write(b"z" * (LIMIT // 2))
    await asyncio.sleep(0.6)
    return resp


async def _streamed_too_large(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse()
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    for _ in range(4):
        await resp.write(b"y" * (LIMIT // 2))
    return resp


async def _slow(_request: web.Request) -> web.Response:
    await asyncio.sleep(0.6)
    return web.Response(text="{}")


@pytest.fixture
async def api() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/echo", _echo)
    app.router.add_get("/redirect", _redirect)
    app.router.add_get("/declared", _declared_too_large)
    app.router.add_get("/streamed", _streamed_too_large)
    app.router.add_get("/stalled", _declared_before_sent)
    app.router.add_get("/slow", _slow)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{bound_port(runner, 0)}"
    await runner.cleanup()


async def call(
    url: str,
    method: str = "GET",
    body: dict[str, str] | None = None,
    timeout_seconds: float = 5.0,
) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as session:
        return await request_json(
            session,
            method,
            url,
            what="read thing",
            error=PartnerError,
            headers={"Accept": "application/x+json"},
            media_type="application/x+json",
            body=body,
            timeout_seconds=timeout_seconds,
            max_bytes=LIMIT,
        )


async def test_a_body_goes_out_as_utf8_json_of_the_media_type(api: str) -> None:
    status, raw = await call(f"{api}/echo", "POST", body={"naam": "Zoë"})
    assert status == 201
    assert json.loads(raw) == {"content_type": "application/x+json", "body": {"naam": "Zoë"}}


async def test_a_redirect_is_answered_not_followed(api: str) -> None:
    status, _raw = await call(f"{api}/redirect")
    assert status == 302


@pytest.mark.parametrize("path", ["declared", "stalled", "streamed"])
async def test_an_answer_over_the_bound_is_refused(api: str, path: str) -> None:
    with pytest.raises(PartnerError) as caught:
        await call(f"{api}/{path}")
    assert caught.value.status == 200
    assert str(caught.value) == "Partner API read thing: answer too large: HTTP 200"


async def test_no_answer_is_status_0_and_transient() -> None:
    with pytest.raises(PartnerError) as caught:
        await call(f"http://127.0.0.1:{free_port()}/x")
    assert caught.value.status == 0
    assert caught.value.transient
    assert str(caught.value).startswith("Partner API read thing: Client")


async def test_a_slow_answer_times_out_as_status_0(api: str) -> None:
    with pytest.raises(PartnerError) as caught:
        await call(f"{api}/slow", timeout_seconds=0.1)
    assert str(caught.value) == "Partner API read thing: TimeoutError: HTTP 0"
