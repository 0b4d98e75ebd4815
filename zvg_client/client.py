"""Async client for the node's local HTTP API (``/v1``), typed with the ``schemas.api`` models.

What it guarantees:

- **Sending is idempotent.** :meth:`NodeClient.send` always sends an ``Idempotency-Key`` (the
  caller's, or a fresh random one kept for all retries of that call), so a retried POST returns
  the same message id instead of sending twice. Adapters that read from a partner system derive
  the key from the source record (file hash, FHIR id + version, zaak URL), so even a restart
  between the POST and its answer cannot send a message twice.
- **Retries only what may succeed later**: connection errors, timeouts, ``429``, ``502``,
  ``503`` and ``504``, with exponential backoff and full jitter, honouring ``Retry-After`` (capped).
  Everything else is raised at once as a typed :class:`~adapters.errors.NodeError`.
- **Errors are typed** from the node's ``application/problem+json`` body: ``InvalidMessage``
  (with the field errors), ``PolicyDenied`` (with the decision), ``Unauthorized``, ``NotFound``,
  ``TooLarge``, ``Unavailable`` (retryable).
- **Bounded reads**: a response body larger than :data:`MAX_RESPONSE_BYTES` or a server-sent
  event larger than :data:`MAX_SSE_EVENT_BYTES` is refused, not buffered.

Example (runnable against a local node; see ``docs/adapters/client.md``)::

    async with NodeClient("http://127.0.0.1:8470", token) as node:
        accepted = await node.send(request, idempotency_key="ggz-comm-42-v1")
        async for item in node.inbox_items(wait=30):
            handle(item)  # write into the partner system first ...
            await node.ack(item.message_id)  # ... then ack: the sender gets `accepted`
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
from pydantic import BaseModel, ValidationError

from schemas import strictjson
from schemas.api import (
    AdapterRejectReason,
    FieldError,
    InboxItem,
    InboxPage,
    MessageStatus,
    Problem,
    RejectRequest,
    SendAccepted,
    SendRequest,
)
from schemas.claims import ClaimsBase, parse_claims
from zvg_client.errors import (
    PROBLEM_BASE,
    IdempotencyConflict,
    InvalidMessage,
    NodeError,
    NotFound,
    PolicyDenied,
    TooLarge,
    Unauthorized,
    Unavailable,
)

__all__ = [
    "MAX_RESPONSE_BYTES",
    "MAX_SSE_EVENT_BYTES",
    "Actor",
    "NodeClient",
    "RetryPolicy",
    "item_claims",
    "request_from_dict",
]

#: Bytes of one JSON response read into memory. An inbox page holds at most ``limit`` messages
#: of at most a few hundred KiB each (the node's own message-size limit); 16 MiB leaves room for a
#: full page while stopping a broken or hostile endpoint from exhausting memory.
MAX_RESPONSE_BYTES = 16 * 1024 * 1024

#: Bytes of one server-sent event (all its lines). One event is one inbox item.
MAX_SSE_EVENT_BYTES = 4 * 1024 * 1024

#: Longest long-poll wait the client asks for, in seconds. Proxies commonly cut idle requests
#: after 60 s; the node answers earlier as soon as an item arrives.
MAX_WAIT_SECONDS = 55

#: Items per inbox page the client asks for: the node's default ``inbox_page_max`` (a node
#: configured lower answers 400 to more).
MAX_PAGE_LIMIT = 100

_RETRY_STATUSES = frozenset({429, 502, 503, 504})

T = TypeVar("T", bound=BaseModel)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter (AWS architecture blog, "Exponential Backoff And
    Jitter"): attempt ``n`` waits a random time in ``[0, min(cap, base * 2**n)]``, or the node's
    ``Retry-After`` when it is longer, itself capped at ``max_retry_after``."""

    attempts: int = 6
    """Tries in all (the first one included); 6 covers about a minute of node restart."""
    base_seconds: float = 0.5
    cap_seconds: float = 20.0
    max_retry_after: float = 60.0

    def delay(self, attempt: int, retry_after: float | None, rand: Callable[[], float]) -> float:
        """Seconds to wait before try ``attempt + 1`` (``attempt`` counts from 0)."""
        backoff = rand() * min(self.cap_seconds, self.base_seconds * float(2**attempt))
        if retry_after is not None:
            return max(backoff, min(retry_after, self.max_retry_after))
        return backoff


@dataclass(frozen=True)
class Actor:
    """The employee on whose behalf the adapter acts (NEN 7513 access records).

    ``actor`` is a pseudonymous employee id (never a name), ``role`` their function,
    ``responsible`` the employee responsible when someone acts on another's behalf.
    """

    actor: str
    role: str | None = None
    responsible: str | None = None

    def headers(self) -> dict[str, str]:
        out = {"ZVG-Actor": self.actor}
        if self.role:
            out["ZVG-Actor-Role"] = self.role
        if self.responsible:
            out["ZVG-Responsible"] = self.responsible
        return out


def request_from_dict(data: Mapping[str, Any]) -> SendRequest:
    """A :class:`SendRequest` from JSON-shaped data (lists, strings for dates), as a mapping
    builds it. Validates in JSON mode, so the strict models accept lists for tuples.

    Raises :class:`~zvg_client.errors.InvalidMessage` when the data breaks the contract, as the
    node would answer it (``invalid-message``), but without sending anything: ``status`` is 0
    (no request made), ``errors`` names each field and rule, never a value."""
    try:
        return SendRequest.model_validate_json(json.dumps(data, ensure_ascii=False))
    except ValidationError as exc:
        errors = tuple(
            FieldError(field=".".join(str(p) for p in e["loc"]) or "(document)", message=e["msg"])
            for e in exc.errors(include_input=False, include_url=False)
        )
    except (TypeError, ValueError) as exc:  # not JSON-shaped: a set, bytes, a datetime object
        errors = (FieldError(field="(document)", message=f"not JSON-shaped data ({exc})"),)
    detail = "; ".join(f"{e.field}: {e.message}" for e in errors)
    problem = Problem(
        type=f"{PROBLEM_BASE}invalid-message",
        title="Invalid message",
        status=422,
        detail=f"the request breaks the contract (checked before sending): {detail}",
        errors=errors,
    )
    raise InvalidMessage(0, problem)


def item_claims(item: InboxItem) -> ClaimsBase:
    """The inbox item's claims as the typed contract model (``CaseHandover``, ``InfoRequest``, …).

    The node verified them already; parsing again gives the adapter typed access and refuses a
    node that hands out something outside the contract. Raises ``pydantic.ValidationError``.
    """
    return parse_claims(json.dumps(item.claims, ensure_ascii=False).encode("utf-8"))


class NodeClient:
    """Client for one node's local API, authenticated with a bearer token (role ``adapter``).

    Use as ``async with NodeClient(url, token) as node: …`` (or call :meth:`close`). ``session``
    may be given (its lifetime is then the caller's); ``sleep`` and ``rand`` are injectable so
    tests can observe the backoff without waiting.
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        session: aiohttp.ClientSession | None = None,
        retry: RetryPolicy | None = None,
        request_timeout: float = 30.0,
        actor: Actor | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._token = token
        self._own_session = session is None
        self._session = session
        self._retry = retry or RetryPolicy()
        self._timeout = request_timeout
        self._actor = actor
        self._sleep = sleep
        self._rand = rand

    async def __aenter__(self) -> NodeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session if this client created it."""
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    # ------------------------------------------------------------------ public API

    async def send(
        self,
        request: SendRequest,
        *,
        idempotency_key: str | None = None,
        actor: Actor | None = None,
    ) -> SendAccepted:
        """``POST /v1/messages``: hand a message to the node; returns once it is in the outbox.

        ``idempotency_key`` (printable ASCII, at most 200 characters) makes retries safe across
        restarts; without one a random key is used for this call's retries only. Raises
        ``InvalidMessage``, ``PolicyDenied``, ``TooLarge``, ``Unauthorized``, or ``Unavailable``
        after the retries are used up.
        """
        key = idempotency_key or f"zvg-client-{uuid.uuid4()}"
        if not (0 < len(key) <= 200 and key.isascii() and key.isprintable()):
            raise ValueError("idempotency_key must be 1-200 printable ASCII characters")
        body = request.model_dump_json(exclude_none=True).encode("utf-8")
        headers = {"Idempotency-Key": key, "Content-Type": "application/json"}
        return await self._call(
            "POST", "/v1/messages", SendAccepted, body=body, headers=headers, actor=actor
        )

    async def status(self, message_id: str) -> MessageStatus:
        """``GET /v1/messages/{id}``: status per recipient. Raises ``NotFound`` for unknown ids."""
        _check_id(message_id)
        return await self._call("GET", f"/v1/messages/{message_id}", MessageStatus)

    async def inbox(self, *, wait: float = 0, limit: int = 10) -> InboxPage:
        """``GET /v1/inbox``: the oldest unacknowledged items; with ``wait`` a long-poll that
        returns as soon as one is there (or empty after ``wait`` seconds). The node takes whole
        seconds: a fraction is rounded up (so a short wait never becomes a busy loop)."""
        seconds = max(0, min(math.ceil(wait), MAX_WAIT_SECONDS))
        limit = max(1, min(int(limit), MAX_PAGE_LIMIT))
        params = {"wait": str(seconds), "limit": str(limit)}
        return await self._call(
            "GET", "/v1/inbox", InboxPage, params=params, seconds=self._timeout + seconds
        )

    async def inbox_items(
        self, *, wait: float = 30, limit: int = 10
    ) -> AsyncGenerator[InboxItem, None]:
        """Iterate over inbox items forever by long-polling (stop by breaking out).

        An item stays in the inbox until acked or rejected, so an item not yet acked when the
        next page is fetched comes again: handle items idempotently, and ack or reject each one
        before asking for more. Items already yielded in this iteration and still unacked are
        not yielded twice in a row; they come again on the next iteration (e.g. after a restart).
        """
        yielded: set[str] = set()
        while True:
            page = await self.inbox(wait=wait, limit=limit)
            fresh = [i for i in page.items if i.message_id not in yielded]
            if not fresh and page.items:
                # Only items the caller has not settled yet: wait before asking again.
                await self._sleep(min(wait, 1.0) or 0.2)
            yielded = {i.message_id for i in page.items}
            for item in fresh:
                yield item

    async def stream(self, *, reconnect: bool = True) -> AsyncGenerator[InboxItem, None]:
        """Iterate over inbox items pushed by ``GET /v1/inbox/stream`` (server-sent events).

        Reconnects with backoff when the stream drops (sending ``Last-Event-ID``), unless
        ``reconnect`` is false. Unacked items are pushed again after a reconnect. Raises
        ``Unauthorized`` at once; ``Unavailable`` when reconnect attempts are used up.
        """
        last_id: str | None = None
        attempt = 0
        while True:
            headers = {"Accept": "text/event-stream"}
            if last_id:
                headers["Last-Event-ID"] = last_id
            try:
                async for event_id, data in self._sse("/v1/inbox/stream", headers):
                    attempt = 0
                    item = _parse(InboxItem, data)
                    last_id = event_id or item.message_id
                    yield item
            except Unavailable as exc:
                if not reconnect or attempt + 1 >= self._retry.attempts:
                    raise
                await self._sleep(self._retry.delay(attempt, exc.retry_after, self._rand))
                attempt += 1
                continue
            if not reconnect:
                return
            # The server closed the stream cleanly: reconnect after a short pause.
            await self._sleep(self._retry.delay(0, None, self._rand))

    async def ack(self, message_id: str, *, actor: Actor | None = None) -> None:
        """``POST /v1/inbox/{id}/ack``: the partner system has the message (``accepted``).
        Idempotent. Call it only after the partner system durably holds the message."""
        _check_id(message_id)
        await self._request("POST", f"/v1/inbox/{message_id}/ack", actor=actor)

    async def reject(
        self,
        message_id: str,
        reason: AdapterRejectReason,
        note: str | None = None,
        *,
        actor: Actor | None = None,
    ) -> None:
        """``POST /v1/inbox/{id}/reject``: the partner system refuses the message. The sender
        learns only ``adapter_rejected``; ``reason`` and ``note`` stay in our audit record."""
        _check_id(message_id)
        body = RejectRequest(reason=reason, note=note).model_dump_json(exclude_none=True)
        await self._request(
            "POST",
            f"/v1/inbox/{message_id}/reject",
            body=body.encode("utf-8"),
            headers={"Content-Type": "application/json"},
            actor=actor,
        )

    async def directory(self) -> dict[str, Any]:
        """``GET /v1/directory``: members, roles and what this organisation may send to whom."""
        data = await self._call_json("GET", "/v1/directory")
        if not isinstance(data, dict):
            raise NodeError(200, None, "directory answer is not a JSON object")
        return data

    async def healthy(self) -> bool:
        """``GET /healthz`` answers 2xx (no retries; for health endpoints of adapters)."""
        try:
            session = self._get_session()
            async with session.get(
                self._base + "/healthz", timeout=aiohttp.ClientTimeout(total=5)
            ) as resp:
                return 200 <= resp.status < 300
        except (aiohttp.ClientError, TimeoutError):
            return False

    # ------------------------------------------------------------------ plumbing

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    def _headers(self, extra: Mapping[str, str] | None, actor: Actor | None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self._token}", "Accept": "application/json"}
        who = actor or self._actor
        if who is not None:
            headers.update(who.headers())
        if extra:
            headers.update(extra)
        return headers

    async def _call(self, method: str, path: str, model: type[T], **kwargs: Any) -> T:
        return _parse(model, await self._request(method, path, **kwargs))

    async def _call_json(self, method: str, path: str) -> Any:
        raw = await self._request(method, path)
        try:
            return strictjson.loads(raw)
        except ValueError as exc:
            raise NodeError(200, None, f"answer is not JSON: {exc}") from None

    async def _request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        actor: Actor | None = None,
        seconds: float | None = None,
    ) -> bytes:
        """One logical request with retries; returns the 2xx body (possibly empty)."""
        attempt = 0
        while True:
            try:
                return await self._once(
                    method, path, body, self._headers(headers, actor), params, seconds
                )
            except Unavailable as exc:
                if attempt + 1 >= self._retry.attempts:
                    raise
                await self._sleep(self._retry.delay(attempt, exc.retry_after, self._rand))
                attempt += 1

    async def _once(
        self,
        method: str,
        path: str,
        body: bytes | None,
        headers: dict[str, str],
        params: Mapping[str, str] | None,
        seconds: float | None,
    ) -> bytes:
        session = self._get_session()
        try:
            async with session.request(
                method,
                self._base + path,
                data=body,
                headers=headers,
                params=params,
                timeout=aiohttp.ClientTimeout(total=seconds or self._timeout),
            ) as resp:
                raw = await _read_bounded(resp)
                if 200 <= resp.status < 300:
                    return raw
                raise _error(resp.status, raw, resp.headers.get("Retry-After"))
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError) as exc:
            raise Unavailable(0, None, f"node unreachable: {type(exc).__name__}") from None

    async def _sse(
        self, path: str, headers: Mapping[str, str]
    ) -> AsyncIterator[tuple[str | None, bytes]]:
        """Yield ``(id, data)`` of each ``message`` event (WHATWG HTML §9.2 event stream)."""
        session = self._get_session()
        try:
            async with session.get(
                self._base + path,
                headers=self._headers(headers, None),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._timeout),
            ) as resp:
                if resp.status != 200:
                    raw = await _read_bounded(resp)
                    raise _error(resp.status, raw, resp.headers.get("Retry-After"))
                async for event in _parse_sse(resp.content):
                    yield event
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError) as exc:
            raise Unavailable(0, None, f"stream dropped: {type(exc).__name__}") from None


async def _lines(content: aiohttp.StreamReader) -> AsyncIterator[bytes]:
    """Lines of a stream (without the end of line), each bounded by the event limit."""
    buf = b""
    async for chunk in content.iter_any():
        buf += chunk
        while True:
            cut = buf.find(b"\n")
            if cut < 0:
                break
            yield buf[:cut].rstrip(b"\r")
            buf = buf[cut + 1 :]
        if len(buf) > MAX_SSE_EVENT_BYTES:
            raise NodeError(200, None, f"server-sent event over {MAX_SSE_EVENT_BYTES} bytes")
    # A last line without its end of line is an incomplete event: dropped, per the spec.


async def _parse_sse(content: aiohttp.StreamReader) -> AsyncIterator[tuple[str | None, bytes]]:
    event_id: str | None = None
    event_type = "message"
    data: list[bytes] = []
    size = 0
    async for line in _lines(content):
        size += len(line) + 1
        if size > MAX_SSE_EVENT_BYTES:
            raise NodeError(200, None, f"server-sent event over {MAX_SSE_EVENT_BYTES} bytes")
        if not line:
            if data and event_type == "message":
                yield event_id, b"\n".join(data)
            event_type, data, size = "message", [], 0
            continue
        if line.startswith(b":"):
            continue  # a comment: the node's keepalive
        name, _, value = line.partition(b":")
        value = value.removeprefix(b" ")
        if name == b"data":
            data.append(value)
        elif name == b"id":
            event_id = value.decode("utf-8", "replace") or None
        elif name == b"event":
            event_type = value.decode("utf-8", "replace")


async def _read_bounded(resp: aiohttp.ClientResponse) -> bytes:
    if resp.content_length is not None and resp.content_length > MAX_RESPONSE_BYTES:
        raise NodeError(resp.status, None, f"answer over {MAX_RESPONSE_BYTES} bytes")
    chunks: list[bytes] = []
    total = 0
    async for chunk in resp.content.iter_chunked(64 * 1024):
        total += len(chunk)
        if total > MAX_RESPONSE_BYTES:
            raise NodeError(resp.status, None, f"answer over {MAX_RESPONSE_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _parse(model: type[T], raw: bytes) -> T:
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        where = ", ".join(".".join(str(p) for p in e["loc"]) for e in exc.errors()[:3])
        raise NodeError(
            200, None, f"node answer is not a valid {model.__name__} ({where})"
        ) from None


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    with contextlib.suppress(ValueError):
        return max(0.0, float(value))
    return None  # an HTTP-date: fall back to our own backoff


def _error(status: int, raw: bytes, retry_after: str | None) -> NodeError:
    problem: Problem | None = None
    with contextlib.suppress(ValidationError):
        problem = Problem.model_validate_json(raw)
    # The last path segment: the node's relative /problems/<slug>, or an absolute type URI.
    kind = problem.type.rsplit("/", 1)[-1] if problem else ""
    if kind == "policy-denied":
        return PolicyDenied(status, problem)
    if kind in ("unavailable", "recipient-unavailable") or status in _RETRY_STATUSES:
        return Unavailable(status, problem, retry_after=_retry_after(retry_after))
    if kind == "idempotency-conflict":
        return IdempotencyConflict(status, problem)
    if kind in ("invalid-message", "invalid-request") or status in (400, 422):
        return InvalidMessage(status, problem)
    if kind in ("unauthorized", "forbidden") or status in (401, 403):
        return Unauthorized(status, problem)
    if kind == "not-found" or status == 404:
        return NotFound(status, problem)
    if kind == "too-large" or status == 413:
        return TooLarge(status, problem)
    return NodeError(status, problem)


def _check_id(message_id: str) -> None:
    # Message ids are UUIDs; refusing anything else keeps path injection out of the URL.
    try:
        uuid.UUID(message_id)
    except ValueError:
        raise ValueError("message_id must be a UUID") from None
    if message_id != message_id.lower() or len(message_id) != 36:
        raise ValueError("message_id must be a lower-case UUID")
