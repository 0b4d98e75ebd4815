"""Webhook adapter: push received messages to the partner over HTTPS; take outbound messages on
a small HTTP endpoint of its own.

**Push.** Every inbox item is POSTed as JSON (the ``InboxItem``: sender, roles, claims with the
body) to ``[webhook] push_url``, which must be HTTPS (verified against ``ca_file`` or the system
trust store). Each request carries::

    ZVG-Event: message            (or "status", see below)
    ZVG-Delivery: <message id>
    ZVG-Signature: t=<unix seconds>,v1=<hex HMAC-SHA-256(secret, "<t>." + body)>

as Stripe and GitHub sign webhooks: the partner recomputes the HMAC over the exact bytes it
received with the shared secret, compares in constant time and refuses timestamps older than a
few minutes (:func:`verify_signature` does all three). The item is acked — the sender gets
``accepted`` — only after a ``2xx`` answer; a ``2xx`` whose JSON body is
``{"reject": {"reason": "unknown_subject", "note": "…"}}`` rejects it instead. Other answers,
timeouts and TLS failures are retried with backoff (``max_attempts`` per round); the item stays
in the node's inbox until the partner takes it, so nothing is lost while the partner is down.
The partner must deduplicate by ``ZVG-Delivery``: a push whose answer was lost comes again.

**Status.** For messages sent through this adapter it follows the delivery status and pushes
``ZVG-Event: status`` with the ``MessageStatus`` each time it changes (same signature).

**Outbound.** ``POST /v1/messages`` on ``[webhook] listen_host:listen_port``, with
``Authorization: Bearer <shared token>``: the body is a ``SendRequest`` (the node API's JSON),
or the partner's own JSON when a ``mapping`` file is configured (:mod:`adapters.mapping`). The
partner's ``Idempotency-Key`` header is passed on (prefixed), else one is derived from the body
hash. The node's answer is returned as is: ``202`` with the message id, or its problem+json.
``GET /v1/messages/{id}`` returns the status.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import math
import os
import ssl
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from pydantic import Field, ValidationError, field_validator

from adapters._runtime import (
    MIN_SECRET_BYTES,
    AdapterConfig,
    EventLog,
    Health,
    Pseudonymiser,
    Settings,
    StateFile,
    bound_port,
    fetch_inbox,
    load_config,
    node_client,
    read_secret,
    serving,
    sleep_or_stop,
)
from adapters._status import StatusFollower
from adapters.errors import ConfigError, MappingError
from adapters.mapping import MessageMapping, load_mapping
from schemas import strictjson
from schemas.api import FieldError, InboxItem, MessageStatus, Problem, RejectRequest, SendRequest
from zvg_client.client import NodeClient, RetryPolicy
from zvg_client.errors import PROBLEM_BASE, NodeError, Unavailable

__all__ = [
    "SIGNATURE_TOLERANCE_SECONDS",
    "WebhookAdapter",
    "WebhookConfig",
    "WebhookSettings",
    "load",
    "run",
    "sign",
    "verify_signature",
]

#: Bytes of one request to the outbound endpoint (one message; the node's own limit is lower).
MAX_INBOUND_BYTES = 1024 * 1024

#: Bytes of the partner's answer to a push that the adapter reads (a small JSON object at most).
MAX_PUSH_ANSWER_BYTES = 64 * 1024

#: How old a signature timestamp may be when the partner checks it (Stripe's default: 5 min).
SIGNATURE_TOLERANCE_SECONDS = 300


class WebhookSettings(Settings):
    push_url: str
    ca_file: Path | None = None
    """PEM trust anchors for the partner's certificate (a private CA); system CAs when absent."""
    client_cert_file: Path | None = None
    """PEM certificate + key for mutual TLS to the partner (optional)."""
    signing_secret_file: Path
    push_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    max_attempts: int = Field(default=5, ge=1, le=50)
    pause_seconds: float = Field(default=30.0, gt=0, le=3600)
    """Wait after a round in which the partner did not take an item."""
    listen_host: str = "127.0.0.1"
    listen_port: int = Field(default=0, ge=0, le=65535)
    inbound_token_file: Path
    mapping: Path | None = None
    pseudonym_key_file: Path | None = None
    status_push: bool = True
    status_poll_seconds: float = Field(default=15.0, gt=0, le=3600)
    state_dir: Path
    unsafe_allow_http: bool = False
    """Allow a plain-http push URL (a local experiment only: messages travel unencrypted)."""

    @field_validator("push_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("push_url must be an https:// URL")
        return value


class WebhookConfig(AdapterConfig):
    webhook: WebhookSettings


def load(path: Path) -> WebhookConfig:
    config = load_config(path, WebhookConfig)
    w = config.webhook
    if w.push_url.startswith("http://") and not w.unsafe_allow_http:
        raise ConfigError(
            f"{path}: webhook.push_url: must be https:// (messages are personal data)"
        )
    return config


def sign(secret: bytes, body: bytes, timestamp: int) -> str:
    """The ``ZVG-Signature`` header value for ``body`` at ``timestamp`` (Unix seconds)."""
    mac = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify_signature(
    secret: bytes,
    header: str,
    body: bytes,
    now: float,
    tolerance: float = SIGNATURE_TOLERANCE_SECONDS,
) -> bool:
    """What a partner does with a push: True when one ``v1`` signature over the exact ``body``
    matches (constant-time) and its timestamp is within ``tolerance`` seconds of ``now``."""
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1":
            candidates.append(value)
    if timestamp is None or abs(now - timestamp) > tolerance:
        return False
    expected = sign(secret, body, timestamp).split("v1=", 1)[1]
    return any(hmac.compare_digest(expected, c) for c in candidates)


class WebhookAdapter:
    """Push loop, status loop and outbound endpoint; tests drive :meth:`push_once`,
    :meth:`poll_statuses` and the endpoint (:meth:`app`) directly."""

    def __init__(
        self,
        config: WebhookConfig,
        node: NodeClient,
        log: EventLog,
        *,
        sleep: Any = asyncio.sleep,
        clock: Any = time.time,
    ) -> None:
        self.config = config
        self.node = node
        self.log = log
        w = config.webhook
        self.secret = read_secret(w.signing_secret_file, min_bytes=MIN_SECRET_BYTES)
        self.inbound_token = read_secret(w.inbound_token_file, min_bytes=16)
        self.mapping: MessageMapping | None = None
        if w.mapping is not None:
            key = w.pseudonym_key_file
            self.mapping = load_mapping(w.mapping, Pseudonymiser(read_secret(key)) if key else None)
        self.state = StateFile.open(w.state_dir / "webhook-state.json")
        self.statuses = StatusFollower(self.state)
        self.health = Health("webhook", ("node", "partner"))
        self._sleep = sleep
        self._clock = clock
        self._retry = RetryPolicy(attempts=w.max_attempts, base_seconds=1.0, cap_seconds=30.0)
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _ssl(self) -> ssl.SSLContext | bool:
        w = self.config.webhook
        if w.push_url.startswith("http://"):
            return False
        ctx = ssl.create_default_context(cafile=str(w.ca_file) if w.ca_file else None)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if w.client_cert_file is not None:
            ctx.load_cert_chain(str(w.client_cert_file))
        return ctx

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self._ssl()))
        return self._session

    # ------------------------------------------------------------------ push

    async def deliver(self, event: str, delivery: str, body: bytes) -> dict[str, Any] | None:
        """POST one signed event, retrying; the partner's JSON answer (``{}`` when none), or
        None when every attempt failed."""
        w = self.config.webhook
        for attempt in range(w.max_attempts):
            ts = int(self._clock())
            headers = {
                "Content-Type": "application/json",
                "ZVG-Event": event,
                "ZVG-Delivery": delivery,
                "ZVG-Signature": sign(self.secret, body, ts),
            }
            outcome: str
            try:
                async with self._client().post(
                    w.push_url,
                    data=body,
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(total=w.push_timeout_seconds),
                    allow_redirects=False,
                ) as resp:
                    raw = await resp.content.read(MAX_PUSH_ANSWER_BYTES + 1)
                    if 200 <= resp.status < 300:
                        self.health.ok("partner")
                        return _answer(raw)
                    outcome = f"http_{resp.status}"
            except (aiohttp.ClientError, TimeoutError, ssl.SSLError) as exc:
                outcome = type(exc).__name__
            self.health.failed("partner", outcome)
            self.log.warning(
                "push_failed", delivery=delivery, event=event, attempt=attempt + 1, why=outcome
            )
            if attempt + 1 < w.max_attempts:
                await self._sleep(self._retry.delay(attempt, None, _half))
        return None

    async def push_item(self, item: InboxItem) -> bool:
        """Push one inbox item; ack or reject it per the partner's answer. True when settled."""
        answer = await self.deliver("message", item.message_id, item.model_dump_json().encode())
        if answer is None:
            return False
        reject = answer.get("reject")
        if isinstance(reject, dict):
            try:
                request = RejectRequest.model_validate_json(json.dumps(reject))
            except ValidationError:
                self.log.warning("bad_reject_answer", delivery=item.message_id)
                return False
            await self.node.reject(item.message_id, request.reason, request.note)
            self.log.info("rejected", message_id=item.message_id, reason=request.reason)
        else:
            await self.node.ack(item.message_id)
            self.log.info("pushed", message_id=item.message_id, sender=item.sender)
        return True

    async def push_once(self, wait: float = 0) -> tuple[int, int]:
        """One round over the waiting items: ``(settled, left)``."""
        page = await fetch_inbox(self.node, self.health, wait=wait, limit=20)
        if page is None:
            return 0, 0
        settled = left = 0
        for item in page.items:
            if await self.push_item(item):
                settled += 1
            else:
                left += 1
        return settled, left

    # ------------------------------------------------------------------ status

    def track(self, message_id: str) -> None:
        self.statuses.track(message_id)

    async def poll_statuses(self) -> int:
        """Push a ``status`` event for each followed message whose status changed; a round
        stops when the partner does not take one (it is pushed again next round)."""

        async def push(mid: str, status: MessageStatus) -> bool:
            return await self.deliver("status", mid, status.model_dump_json().encode()) is not None

        return await self.statuses.poll(self.node, push)

    # ------------------------------------------------------------------ outbound endpoint

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_INBOUND_BYTES)
        app.router.add_post("/v1/messages", self._post_message)
        app.router.add_get("/v1/messages/{id}", self._get_status)
        return app

    def _authorised(self, request: web.Request) -> bool:
        given = request.headers.get("Authorization", "")
        expected = b"Bearer " + self.inbound_token
        return hmac.compare_digest(given.encode(), expected)

    async def _post_message(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return _problem(401, "unauthorized", "Unauthorized", "bad or missing token")
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _problem(413, "too-large", "Too large", f"over {MAX_INBOUND_BYTES} bytes")
        try:
            doc = strictjson.loads(raw)
            send = (
                self.mapping.build(doc)
                if self.mapping is not None
                else SendRequest.model_validate_json(raw)
            )
        except MappingError as exc:
            one = (FieldError(field=exc.field, message=exc.rule),)
            return _problem(422, "invalid-message", "Invalid message", "mapping", errors=one)
        except ValidationError as exc:
            errors = tuple(
                FieldError(field=".".join(str(p) for p in e["loc"]), message=e["msg"])
                for e in exc.errors()
            )
            return _problem(
                422, "invalid-message", "Invalid message", "not a message", errors=errors
            )
        except ValueError as exc:
            return _problem(400, "invalid-message", "Invalid message", str(exc))
        partner_key = request.headers.get("Idempotency-Key")
        if partner_key is not None and not (0 < len(partner_key) <= 150 and partner_key.isascii()):
            return _problem(400, "invalid-message", "Invalid message", "bad Idempotency-Key")
        key = (
            f"webhook-{partner_key}"
            if partner_key
            else "webhook-" + hashlib.sha256(raw).hexdigest()
        )
        try:
            accepted = await self.node.send(send, idempotency_key=key)
        except NodeError as exc:
            return _passthrough(exc)
        if self.config.webhook.status_push:
            self.track(accepted.message_id)
        self.log.info("sent", message_id=accepted.message_id, type=send.message_type)
        return web.Response(
            status=202, body=accepted.model_dump_json(), content_type="application/json"
        )

    async def _get_status(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return _problem(401, "unauthorized", "Unauthorized", "bad or missing token")
        try:
            status: MessageStatus = await self.node.status(request.match_info["id"])
        except ValueError:
            return _problem(404, "not-found", "Not found", "no such message")
        except NodeError as exc:
            return _passthrough(exc)
        return web.Response(body=status.model_dump_json(), content_type="application/json")

    # ------------------------------------------------------------------ loop

    async def run(self, stop: asyncio.Event) -> None:
        w = self.config.webhook
        runner = web.AppRunner(self.app(), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, w.listen_host, w.listen_port).start()
        self.log.info("listening", port=bound_port(runner, w.listen_port))
        last_status = 0.0
        try:
            while not stop.is_set():
                _settled, left = await self.push_once(wait=min(w.status_poll_seconds, 25))
                now = asyncio.get_running_loop().time()
                if w.status_push and now - last_status >= w.status_poll_seconds:
                    await self.poll_statuses()
                    last_status = now
                if left and await sleep_or_stop(stop, w.pause_seconds):
                    break
        finally:
            await runner.cleanup()
            await self.close()


def _half() -> float:
    return 0.5


def _answer(raw: bytes) -> dict[str, Any]:
    if not raw.strip() or len(raw) > MAX_PUSH_ANSWER_BYTES:
        return {}
    try:
        doc = strictjson.loads(raw)
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def _problem(status: int, kind: str, title: str, detail: str, **extra: Any) -> web.Response:
    body = Problem(type=PROBLEM_BASE + kind, title=title, status=status, detail=detail, **extra)
    return web.Response(
        status=status,
        body=body.model_dump_json(exclude_none=True),
        content_type="application/problem+json",
    )


def _passthrough(exc: NodeError) -> web.Response:
    """The node's refusal for the partner system, with the node's ``Retry-After`` (a ``429``
    when the node's outbox is full, a ``503``): the partner waits as the node asked."""
    if exc.problem is not None:
        response = web.Response(
            status=exc.problem.status,
            body=exc.problem.model_dump_json(exclude_none=True),
            content_type="application/problem+json",
        )
    else:
        status = 503 if isinstance(exc, Unavailable) else 502
        response = _problem(status, "unavailable", "Node unavailable", "try again later")
    if isinstance(exc, Unavailable) and exc.retry_after is not None:
        response.headers["Retry-After"] = str(math.ceil(exc.retry_after))
    return response


async def run(config_path: Path, stop: asyncio.Event) -> None:
    """Entry point of ``zvg adapter webhook --config FILE``."""
    config = load(config_path)
    log = EventLog("webhook", level=config.log.level)
    async with node_client(config.node) as node:
        adapter = WebhookAdapter(config, node, log)
        async with serving(adapter.health, config.health, log):
            log.info("started", pid=os.getpid())
            await adapter.run(stop)
