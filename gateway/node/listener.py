"""The local API's listening socket: aiohttp's HTTP/1.1 server with the node's own bounds.

:class:`ApiSite` replaces aiohttp's ``TCPSite`` for the node (docs/decisions/0048): it listens
on ``api.listen`` and serves every connection with :class:`_Connection`, aiohttp's request
handler with these guarantees on top:

- **Idle and slow heads.** A connection must complete its next request head within
  ``api.idle_timeout_seconds`` of opening or of its previous answer, or it is closed: aiohttp's
  keep-alive timer, which (from aiohttp 3.14.5, the version required) also runs before the
  first request and while a head is still arriving. A request in progress (a long-poll, an
  event stream) is not idle.
- **Slow bodies.** The API reads every body within ``api.body_timeout_seconds`` before any
  route runs (``gateway.node.api``), else ``408`` and the connection closes.
- **A connection cap.** At most ``api.max_connections`` connections are served at once; one
  more gets a fixed ``503`` problem (``Retry-After: 1``) and is closed before anything is read.
  The first refusal is logged as a WARNING, and when connections are accepted again an INFO
  line says how many were refused, so a flood writes two lines, not one per connection.
- **Refusals are problems.** A request aiohttp's parser refuses before any route runs (not HTTP
  at all, a control byte in a header, raw non-ASCII bytes in the path) gets a ``400``
  ``application/problem+json`` like every other refusal of the API, says ``Server:
  zv-gateway``, and closes the connection. The detail names the parser's error class only:
  aiohttp's own answer was ``text/plain``, quoted the request line back and named the Python
  and aiohttp versions. It is logged at INFO (a client sent something wrong), with the client's
  address and the error class, never the bytes.
- **The access log is fields** (:class:`gateway.logs.AccessLog`): method, route template, status,
  duration, bytes — not aiohttp's Apache line with the raw path and query.
- An exception that escapes the API's own error handling (it should not happen) is a ``503``
  problem, as in the API, and is logged at ERROR.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

from aiohttp import web
from aiohttp.web_request import BaseRequest

from gateway.logs import AccessLog
from gateway.node.api import PROBLEM_JSON, problem_response
from gateway.node.config import ApiSettings
from gateway.node.problems import ApiError

__all__ = ["ApiSite"]

log = logging.getLogger("gateway.api")

SERVER_NAME = "zv-gateway"
#: Seconds the node keeps reading (and discarding) a request it has already answered, such as a
#: body cut by its ``408``, before it closes: closing with unread data would reset the
#: connection and the client might lose the answer. aiohttp's default, named here so the
#: documentation of ``api.body_timeout_seconds`` and the code agree.
LINGER_S = 10.0


def _refusal() -> bytes:
    """The whole answer to a connection over the cap: a ``503`` problem, then close."""
    error = ApiError(
        "unavailable",
        "the node is serving as many connections as it may (api.max_connections); try again",
        reason="internal",
        retry_after=1,
    )
    body = error.problem().model_dump_json(exclude_none=True).encode()
    head = (
        f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: {PROBLEM_JSON}\r\n"
        f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nServer: {SERVER_NAME}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


_REFUSAL = _refusal()


class _Connection(web.RequestHandler):
    """One client connection (aiohttp's handler; the cap and the refusals are the node's)."""

    __slots__ = ("_admitted", "_site")

    def __init__(self, manager: web.Server, *, site: ApiSite, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._site = site
        self._admitted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self._site.admit():
            stream = cast(asyncio.Transport, transport)  # a TCP stream (aiohttp does the same)
            stream.write(_REFUSAL)
            stream.close()  # after the refusal is written; aiohttp never sees it
            return
        self._admitted = True
        super().connection_made(transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        if not self._admitted:
            return
        self._admitted = False
        self._site.release()
        super().connection_lost(exc)

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,  # noqa: ARG002 - aiohttp's text; it may quote the request
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:  # an answer was started: nothing else can be sent
            raise ConnectionError("the answer was already started; closing the connection")
        what = type(exc).__name__ if exc is not None else f"status {status}"
        if 400 <= status < 500:
            log.info("refused a request that is not valid HTTP from %s: %s", request.remote, what)
            error = ApiError("invalid-request", f"the request is not valid HTTP/1.1 ({what})")
        else:
            log.error("unexpected error handling a request from %s", request.remote, exc_info=exc)
            error = ApiError(
                "unavailable",
                "the node failed internally; try again later",
                reason="internal",
                retry_after=5,
            )
        response = problem_response(error, None)
        response.headers["Server"] = SERVER_NAME
        response.force_close()
        return response


class ApiSite(web.BaseSite):
    """Listen on ``host:port`` and serve each connection with :class:`_Connection`, bounded by
    ``settings`` (``[api]``: ``idle_timeout_seconds``, ``max_connections``)."""

    def __init__(self, runner: web.AppRunner, host: str, port: int, settings: ApiSettings) -> None:
        super().__init__(runner)
        self._host = host
        self._port = port
        self._settings = settings
        self._open = 0
        self._refused = 0

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    def admit(self) -> bool:
        """Count a new connection in, or refuse it (False) when the cap is reached."""
        cap = self._settings.max_connections
        if self._open >= cap:
            if not self._refused:
                log.warning("refusing connections: api.max_connections (%d) are open", cap)
            self._refused += 1
            return False
        if self._refused:
            log.info("accepting connections again after refusing %d", self._refused)
            self._refused = 0
        self._open += 1
        return True

    def release(self) -> None:
        """Count a closed connection out."""
        self._open -= 1

    def _connection(self) -> _Connection:
        server = self._runner.server
        if server is None:  # BaseSite refuses a runner without one; a stopped runner has none
            raise RuntimeError("the API runner has no server")
        return _Connection(
            server,
            site=self,
            loop=asyncio.get_running_loop(),
            keepalive_timeout=self._settings.idle_timeout_seconds,
            lingering_time=LINGER_S,
            access_log_class=AccessLog,  # the route template, never a raw path or query (0088)
        )

    async def start(self) -> None:
        await super().start()
        self._server = await asyncio.get_running_loop().create_server(
            self._connection, self._host, self._port, backlog=self._backlog
        )
