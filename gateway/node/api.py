"""The node's local HTTP API for adapters and auditors (``/v1``), on aiohttp.

Routes (OpenAPI at ``/v1/openapi.json``): ``POST /v1/messages``, ``GET /v1/messages`` (what
this node sent, paged: :mod:`gateway.node.lists`), ``GET /v1/messages/{id}``, ``GET /v1/inbox``
(long-poll, paged), ``GET /v1/inbox/stream`` (server-sent events), ``POST /v1/inbox/{id}/ack``,
``POST /v1/inbox/{id}/reject``, ``GET /v1/directory``, ``POST /v1/processing-activities`` (the
LDV read API: :mod:`gateway.node.ldv_api`); ``/healthz``, ``/readyz``, ``/metrics``
for ops, and ``/problems/{type}``, the page each problem ``type`` resolves to.

Every ``/v1`` route needs ``Authorization: Bearer <token>``; tokens are stored hashed in the
config with a role (``adapter``: send and receive; ``auditor``: read status, the directory and the
OpenAPI document; ``contactpunt`` and ``privacy-officer``: only the LDV read API and the
inzageverzoek routes of :mod:`gateway.node.rights_api`). Every error
is ``application/problem+json`` (RFC 9457) with a stable ``type``. Nothing about a message body
is ever logged here.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from gateway.node.api_common import SERVICE, TOKENS, actor_of, client_of
from gateway.node.ldv_api import processing_activities
from gateway.node.lists import inbox_handler, sent_handler
from gateway.node.openapi import openapi_document
from gateway.node.problems import ApiError, problem_page
from gateway.node.rights_api import add_rights_routes
from gateway.node.service import NodeService
from gateway.node.store import StoreFailedClosedError, StoreUnavailableError
from schemas import strictjson
from schemas.api import RejectRequest, SendAccepted, field_errors

__all__ = ["PROBLEM_JSON", "READINESS", "SERVICE", "build_app", "problem_response"]

log = logging.getLogger("gateway.api")

PROBLEM_JSON = "application/problem+json"
#: Seconds between ``: keepalive`` comments on the event stream (proxies close idle streams).
SSE_KEEPALIVE_S = 15.0
#: Key in the app holding the readiness check (set by the runner).
READINESS: web.AppKey[Callable[[], Awaitable[dict[str, Any]]]] = web.AppKey("readiness")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def problem_response(error: ApiError, instance: str | None) -> web.Response:
    """``error`` as an ``application/problem+json`` response (``Retry-After`` when it says)."""
    body = error.problem(instance).model_dump_json(exclude_none=True)
    headers = {"Retry-After": str(error.retry_after)} if error.retry_after else None
    if error.status == 401:
        headers = {**(headers or {}), "WWW-Authenticate": 'Bearer realm="zv-gateway"'}
    response = web.Response(
        status=error.status, text=body, content_type=PROBLEM_JSON, headers=headers
    )
    if error.status == 408:  # the rest of the request may still be on its way: do not reuse
        response.force_close()
    return response


def _client_gone(request: web.Request) -> bool:
    """Whether the client closed the connection (its transport is gone or closing)."""
    transport = request.transport
    return transport is None or transport.is_closing()


@web.middleware
async def _problems(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return problem_response(exc, request.path)
    except web.RequestPayloadError:
        return _unreadable_body(request)
    except web.HTTPRequestEntityTooLarge:
        return problem_response(
            ApiError("too-large", "the request body is over the node's limit"), request.path
        )
    except web.HTTPMethodNotAllowed as exc:
        allowed = ", ".join(sorted(exc.allowed_methods))
        error = ApiError(
            "method-not-allowed", f"{request.method} is not allowed on this route; use {allowed}"
        )
        response = problem_response(error, request.path)
        response.headers["Allow"] = allowed
        return response
    except web.HTTPException as exc:
        if exc.status == 404:
            return problem_response(ApiError("no-route", "the API has no such route"), request.path)
        raise
    except (StoreUnavailableError, StoreFailedClosedError) as exc:
        # Expected while the database restarts or until the process is restarted (/healthz
        # fails then): one line, no traceback; the adapter retries after Retry-After.
        log.warning("store unavailable on %s %s (%s)", request.method, request.path, exc)
        return _unavailable(request, "the node's store is unavailable")
    except Exception:
        if _client_gone(request):  # an adapter restarting, a closed event stream: not an error
            log.info("the client closed the connection during %s %s", request.method, request.path)
            # Nobody reads this answer; the access log records it as nginx does (499).
            return web.Response(status=499, reason="Client Closed Request")
        log.exception("unexpected error on %s %s", request.method, request.path)
        return _unavailable(request, "the node failed internally")


def _unavailable(request: web.Request, what: str) -> web.Response:
    """The 503 problem for a failure on the node's side: the adapter tries again later."""
    error = ApiError("unavailable", f"{what}; try again later", reason="internal", retry_after=5)
    return problem_response(error, request.path)


def _unreadable_body(request: web.Request) -> web.Response:
    """The 400 for a body that does not decode (a broken gzip, deflate or chunked stream).

    Its framing is lost, so the connection cannot carry another request: close it after the
    answer. And end the body here: aiohttp otherwise reads on after the answer (its lingering
    close) into the same decoding error and logs it as an unhandled exception."""
    response = problem_response(
        ApiError(
            "invalid-request",
            "the request body cannot be read: it does not match its Content-Encoding or "
            "Transfer-Encoding",
        ),
        request.path,
    )
    response.force_close()
    request.content.feed_eof()
    return response


@web.middleware
async def _whole_body(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Read the request body before the handler runs, within ``api.body_timeout_seconds``
    (a body sent a byte at a time must not hold a connection for ever)."""
    if request.body_exists:
        limit = request.app[SERVICE].config.api.body_timeout_seconds
        try:
            async with asyncio.timeout(limit):
                await request.read()  # kept by the request: the handler's read() returns it
        except TimeoutError:
            raise ApiError(
                "request-timeout", f"the request body did not arrive within {limit:g} s"
            ) from None
    return await handler(request)


async def _send(request: web.Request) -> web.Response:
    client = client_of(request, "adapter")
    if request.content_type != "application/json":
        raise ApiError("unsupported-media-type", "send the message as application/json")
    body = await request.read()
    service = request.app[SERVICE]
    message_id, created = await service.outbound.send(
        body,
        client=client.name,
        idempotency_key=request.headers.get("Idempotency-Key"),
        actor=actor_of(request),
    )
    accepted = SendAccepted(message_id=message_id, status_url=f"/v1/messages/{message_id}")
    headers = {"Location": accepted.status_url}
    if not created:
        headers["Idempotent-Replayed"] = "true"
    return web.Response(
        status=202,
        text=accepted.model_dump_json(),
        content_type="application/json",
        headers=headers,
    )


async def _status(request: web.Request) -> web.Response:
    client_of(request, "adapter", "auditor")
    status = await request.app[SERVICE].outbound.status(request.match_info["message_id"])
    return web.json_response(text=status.model_dump_json())


async def _stream(request: web.Request) -> web.StreamResponse:
    client_of(request, "adapter")
    service = request.app[SERVICE]
    actor = actor_of(request)
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
    )
    await response.prepare(request)
    sent: set[str] = set()
    limit = service.config.limits.inbox_page_max
    while not service.stopping:
        changed = service.inbox.changes()  # before the read: an arrival after it wakes us
        items = await service.inbox.waiting(limit=limit, wait=0)
        fresh = [i for i in items if i.message_id not in sent]
        if actor is not None and fresh:
            await service.inbox.record_access(actor, [i.message_id for i in fresh])
        for item in fresh:
            sent.add(item.message_id)
            await response.write(
                f"id: {item.message_id}\nevent: message\n"
                f"data: {item.model_dump_json()}\n\n".encode()
            )
        if not fresh:
            await response.write(b": keepalive\n\n")
        # Forget ids that were settled, so the set does not grow for ever.
        sent &= {i.message_id for i in items}
        await service.inbox.wait(changed, SSE_KEEPALIVE_S)
    return response


async def _ack(request: web.Request) -> web.Response:
    client_of(request, "adapter")
    await request.app[SERVICE].inbox.settle(
        request.match_info["message_id"], accept=True, actor=actor_of(request), by_adapter=True
    )
    return web.Response(status=204)


async def _reject(request: web.Request) -> web.Response:
    client_of(request, "adapter")
    body = await request.read()
    try:
        strictjson.loads(body)
        reject = RejectRequest.model_validate_json(body)
    except ValidationError as exc:
        raise ApiError(
            "invalid-message",
            'send {"reason": <code>, "note": <optional>}',
            errors=field_errors(exc),
        ) from None
    except ValueError as exc:
        raise ApiError("invalid-request", f"the body is not acceptable JSON: {exc}") from None
    await request.app[SERVICE].inbox.settle(
        request.match_info["message_id"],
        accept=False,
        adapter_reason=reject.reason,
        note=reject.note,
        actor=actor_of(request),
        by_adapter=True,
    )
    return web.Response(status=204)


async def _directory(request: web.Request) -> web.Response:
    client_of(request, "adapter", "auditor")
    service = request.app[SERVICE]
    payload = service.directory.payload
    me = service.org
    names = service.directory.names()
    may_send = []
    for rule in payload.policy.rules:
        if not any(rule.sender.matches(me, role) for role in service.roles):
            continue
        to = [
            {"org": m.oin, "name": m.name, "role": role}
            for m in payload.members
            for role in m.roles
            if rule.recipient.matches(m.oin, role)
        ]
        may_send.append(
            {
                "rule": rule.id,
                "description": rule.description,
                "purpose": rule.purpose,
                "as_role": [r for r in service.roles if rule.sender.matches(me, r)],
                "to": to,
                "message_types": list(rule.message_types),
                "data_categories": list(rule.data_categories),
                "flags": list(rule.flags),
            }
        )
    doc = {
        "federation": payload.federation,
        "name": payload.name,
        "version": payload.version,
        "expires": payload.expires.isoformat(),
        "this_org": {"org": me, "name": names.get(me, me), "roles": list(service.roles)},
        "members": [
            {"org": m.oin, "name": m.name, "roles": list(m.roles)} for m in payload.members
        ],
        "may_send": may_send,
    }
    return web.json_response(doc, dumps=lambda d: json.dumps(d, ensure_ascii=False))


async def _openapi(request: web.Request) -> web.Response:
    # A token like every /v1 route: the document names the node's version, and an unauthenticated
    # caller has no use for it (docs/api.md, "Authentication").
    client_of(request, "adapter", "auditor")
    config = request.app[SERVICE].config
    lim = config.limits
    document = openapi_document(
        f"http://{config.api.listen}", lim.inbox_wait_max_seconds, lim.inbox_page_max
    )
    return web.json_response(document)


async def _healthz(request: web.Request) -> web.Response:
    """Alive unless the store failed closed: only a restart brings it back (decision 0115)."""
    if getattr(request.app[SERVICE].store, "failed_closed", False):
        status = {"status": "store failed closed: restart the process"}
        return web.json_response(status, status=503)
    return web.json_response({"status": "ok"})


async def _readyz(request: web.Request) -> web.Response:
    checks = await request.app[READINESS]()
    ready = all(c.get("ok") for c in checks.values())
    return web.json_response({"ready": ready, "checks": checks}, status=200 if ready else 503)


async def _metrics(request: web.Request) -> web.Response:
    body = request.app[SERVICE].telemetry.prometheus_text()
    return web.Response(body=body, content_type="text/plain", charset="utf-8")


async def _hide_server(_request: web.Request, response: web.StreamResponse) -> None:
    """Do not tell clients which Python and aiohttp versions run the node."""
    response.headers["Server"] = "zv-gateway"


def build_app(
    service: NodeService, readiness: Callable[[], Awaitable[dict[str, Any]]]
) -> web.Application:
    """The aiohttp application of one node."""
    app = web.Application(
        middlewares=[_problems, _whole_body],
        client_max_size=service.config.limits.max_request_bytes,
    )
    app[SERVICE] = service
    app[TOKENS] = service.config.api.tokens
    app[READINESS] = readiness
    app.on_response_prepare.append(_hide_server)
    app.router.add_post("/v1/messages", _send)
    app.router.add_get("/v1/messages", sent_handler)
    app.router.add_get("/v1/messages/{message_id}", _status)
    app.router.add_get("/v1/inbox", inbox_handler)
    app.router.add_get("/v1/inbox/stream", _stream)
    app.router.add_post("/v1/inbox/{message_id}/ack", _ack)
    app.router.add_post("/v1/inbox/{message_id}/reject", _reject)
    app.router.add_get("/v1/directory", _directory)
    app.router.add_post("/v1/processing-activities", processing_activities)
    app.router.add_get("/v1/openapi.json", _openapi)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/problems/{slug}", problem_page)
    add_rights_routes(app)
    return app
