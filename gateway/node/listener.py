"""The local API's listening socket: aiohttp's HTTP/1.1 server with the node's own refusals.

:class:`ApiSite` replaces aiohttp's ``TCPSite`` for the node: it listens on ``api.listen`` and
serves every connection with :class:`_Connection`, aiohttp's request handler with these
guarantees on top:

- A request aiohttp's parser refuses before any route runs (not HTTP at all, a control byte in a
  header, raw non-ASCII bytes in the path) gets a ``400`` ``application/problem+json`` like every
  other refusal of the API, says ``Server: zv-gateway``, and closes the connection. The detail
  names the parser's error class only: aiohttp's own answer was ``text/plain``, quoted the
  request line back and named the Python and aiohttp versions. It is logged at INFO (a client
  sent something wrong), with the client's address and the error class, never the bytes.
- An exception that escapes the API's own error handling (it should not happen) is a ``503``
  problem, as in the API, and is logged at ERROR.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from aiohttp.web_request import BaseRequest

from gateway.node.api import problem_response
from gateway.node.problems import ApiError

__all__ = ["ApiSite"]

log = logging.getLogger("gateway.api")

SERVER_NAME = "zv-gateway"


class _Connection(web.RequestHandler):
    """One client connection (aiohttp's handler; only the refusals are the node's)."""

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
    """Listen on ``host:port`` and serve each connection with :class:`_Connection`."""

    def __init__(self, runner: web.AppRunner, host: str, port: int) -> None:
        super().__init__(runner)
        self._host = host
        self._port = port

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    def _connection(self) -> _Connection:
        server = self._runner.server
        if server is None:  # BaseSite refuses a runner without one; a stopped runner has none
            raise RuntimeError("the API runner has no server")
        return _Connection(server, loop=asyncio.get_running_loop())

    async def start(self) -> None:
        await super().start()
        self._server = await asyncio.get_running_loop().create_server(
            self._connection, self._host, self._port, backlog=self._backlog
        )
