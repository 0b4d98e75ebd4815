"""A test double of one node's local API (``/v1``), for the adapters' own tests.

It implements the contract the adapters program against (see ``schemas.api`` and the node issue):
sends are parsed with ``SendRequest``, assembled into claims and validated with the real
``parse_claims`` and the real demo policy (``gateway.core.policy``), so an adapter that maps
something the contract or the policy refuses fails here as it would against a real node.
Messages are not sealed or published: :attr:`FakeNode.sent` collects the validated claims, and
tests put messages into the inbox with :meth:`FakeNode.deliver`. Faults can be injected with
:meth:`FakeNode.fail_next`.

The end-to-end tests (``tests/e2e``) run the same adapters against two real nodes and RabbitMQ.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from gateway.core.policy import Denied, MessageFacts, evaluate
from gateway.testing.veenstad import DemoOrg, demo_payload
from schemas import ids, strictjson
from schemas.api import (
    FieldError,
    InboxItem,
    InboxPage,
    MessageStatus,
    Problem,
    RecipientStatus,
    RejectRequest,
    SendAccepted,
    SendRequest,
)
from schemas.claims import CLAIMS_TYPES, ClaimsBase, parse_claims
from schemas.directory import Authority, AuthorityKey, DirectoryPayload, PublicJwk

PROBLEMS = "https://zv-gateway.example/problems/"


def demo_directory() -> DirectoryPayload:
    jwk = PublicJwk(kty="OKP", crv="Ed25519", x="11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
    return demo_payload(
        version=1,
        issued_at=datetime(2026, 1, 1, tzinfo=UTC),
        expires=datetime(2030, 1, 1, tzinfo=UTC),
        authority=Authority(threshold=1, keys=(AuthorityKey(kid="a" * 43, name="a", jwk=jwk),)),
        keys={},
    )


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def new_message_id() -> str:
    return ids.uuid7(int(datetime.now(UTC).timestamp() * 1000), os.urandom(10))


@dataclass
class Sent:
    claims: ClaimsBase
    idempotency_key: str | None
    actor: dict[str, str]
    statuses: dict[tuple[str, str], RecipientStatus] = field(default_factory=dict)


class FakeNode:
    """One organisation's node API on 127.0.0.1 (``url`` after :meth:`start`)."""

    def __init__(self, org: DemoOrg, token: str = "adapter-token", keepalive: float = 15) -> None:
        self.org = org
        self.token = token
        self.keepalive = keepalive
        self.directory = demo_directory()
        self.sent: list[Sent] = []
        self.by_key: dict[str, str] = {}
        self.inbox: dict[str, InboxItem] = {}
        self.acked: list[str] = []
        self.rejected: list[tuple[str, RejectRequest]] = []
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self._faults: list[tuple[int, str | None]] = []
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.url = ""

    # ------------------------------------------------------------------ test controls

    def fail_next(self, count: int, status: int = 503, retry_after: str | None = "0") -> None:
        """The next ``count`` API requests fail with ``status`` (problem ``unavailable``, or
        ``outbox-full`` for a 429)."""
        self._faults.extend([(status, retry_after)] * count)

    async def deliver(
        self, claims: dict[str, Any], *, recipient_roles: tuple[str, ...] | None = None
    ) -> InboxItem:
        """Put a message (claims as JSON-able dict) into this node's inbox."""
        parsed = parse_claims(json.dumps(claims).encode())
        roles = recipient_roles or tuple(r.role for r in parsed.recipients if r.org == self.org.oin)
        item = InboxItem(
            message_id=parsed.message_id,
            sender=parsed.sender.org,
            recipient_roles=roles,
            received_at=_now(),
            redelivered=False,
            claims=json.loads(json.dumps(claims)),
        )
        async with self._changed:
            self.inbox[item.message_id] = item
            self._changed.notify_all()
        return item

    def set_status(self, message_id: str, status: str, reason: str | None = None) -> None:
        """Move every recipient of a sent message to ``status`` (as receipts would)."""
        for s in self.sent:
            if s.claims.message_id == message_id:
                for key, old in s.statuses.items():
                    s.statuses[key] = old.model_copy(
                        update={"status": status, "reason": reason, "updated_at": _now()}
                    )

    def sent_of_type(self, message_type: str) -> list[ClaimsBase]:
        return [s.claims for s in self.sent if s.claims.message_type == message_type]

    # ------------------------------------------------------------------ server

    async def start(self) -> str:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_post("/v1/messages", self._send)
        app.router.add_get("/v1/messages/{id}", self._status)
        app.router.add_get("/v1/inbox", self._inbox)
        app.router.add_get("/v1/inbox/stream", self._stream)
        app.router.add_post("/v1/inbox/{id}/ack", self._ack)
        app.router.add_post("/v1/inbox/{id}/reject", self._reject)
        app.router.add_get("/v1/directory", self._directory)
        app.router.add_get("/healthz", self._healthz)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @staticmethod
    def problem(status: int, kind: str, title: str, detail: str, **extra: Any) -> web.Response:
        body = Problem(
            type=PROBLEMS + kind, title=title, status=status, detail=detail, **extra
        ).model_dump_json(exclude_none=True)
        return web.Response(status=status, body=body, content_type="application/problem+json")

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append((request.method, request.path, dict(request.headers)))
        if request.path == "/healthz":
            return await handler(request)  # type: ignore[no-any-return]
        if self._faults:
            status, retry_after = self._faults.pop(0)
            kind = "outbox-full" if status == 429 else "unavailable"  # as the node names them
            resp = self.problem(status, kind, "Unavailable", "try again later")
            if retry_after is not None:
                resp.headers["Retry-After"] = retry_after
            return resp
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return self.problem(401, "unauthorized", "Unauthorized", "bad or missing token")
        return await handler(request)  # type: ignore[no-any-return]

    async def _healthz(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _directory(self, _request: web.Request) -> web.Response:
        return web.Response(body=self.directory.model_dump_json(), content_type="application/json")

    async def _send(self, request: web.Request) -> web.Response:
        raw = await request.read()
        key = request.headers.get("Idempotency-Key")
        if key is not None and key in self.by_key:
            mid = self.by_key[key]
            return self._accepted(mid)
        try:
            send = SendRequest.model_validate_json(raw)
        except ValidationError as exc:
            return self._invalid(exc)
        org_roles = self.org.roles
        role = send.sender_role or org_roles[0]
        if role not in org_roles:
            return self.problem(
                422,
                "invalid-message",
                "Invalid message",
                "sender_role",
                errors=(FieldError(field="sender_role", message="not a role of this org"),),
            )
        created = _now()
        expires = created + timedelta(seconds=send.expires_in_seconds or 3 * 24 * 3600)
        claims: dict[str, Any] = {
            "spec": "zvg/1",
            "message_id": new_message_id(),
            "message_type": send.message_type,
            "created_at": created.isoformat().replace("+00:00", "Z"),
            "expires_at": expires.isoformat().replace("+00:00", "Z"),
            "sender": {"org": self.org.oin, "node": self.org.node_id, "role": role},
            "recipients": [r.model_dump() for r in send.recipients],
            "case_ref": send.case_ref,
            "purpose": send.purpose,
            "legal_basis": list(send.legal_basis or ("WGS",)),
            "processing_activity": send.processing_activity
            or f"https://register.example/{self.org.key}/{send.purpose.lower()}",
            "data_categories": list(send.data_categories),
            "flags": send.flags.model_dump(),
            "subjects": [s.model_dump() for s in send.subjects],
            "trace": send.traceparent or f"00-{os.urandom(16).hex()}-{os.urandom(8).hex()}-01",
            "body": send.body,
        }
        for name in ("programme", "in_reply_to", "correlation_id"):
            value = getattr(send, name)
            if value is not None:
                claims[name] = value
        try:
            parsed = parse_claims(json.dumps(claims).encode())
        except ValidationError as exc:
            return self._invalid(exc)
        decision = evaluate(self.directory, MessageFacts.of(parsed))
        if isinstance(decision, Denied):
            return self.problem(
                403,
                "policy-denied",
                "Denied by policy",
                decision.explain(),
                decision={
                    "reason": decision.reason,
                    "purpose": parsed.purpose,
                    "recipient": list(decision.recipient) if decision.recipient else None,
                    "category": decision.category,
                    "flag": decision.flag,
                },
            )
        actor = {k: v for k, v in request.headers.items() if k.lower().startswith("zvg-")}
        record = Sent(parsed, key, actor)
        for r in parsed.recipients:
            record.statuses[(r.org, r.role)] = RecipientStatus(
                org=r.org, role=r.role, status="queued", updated_at=_now()
            )
        self.sent.append(record)
        if key is not None:
            self.by_key[key] = parsed.message_id
        return self._accepted(parsed.message_id)

    def _accepted(self, mid: str) -> web.Response:
        body = SendAccepted(message_id=mid, status_url=f"/v1/messages/{mid}")
        return web.Response(
            status=202, body=body.model_dump_json(), content_type="application/json"
        )

    def _invalid(self, exc: ValidationError) -> web.Response:
        def where(loc: tuple[str | int, ...]) -> str:
            if loc and loc[0] in CLAIMS_TYPES:  # the union's discriminator tag
                loc = loc[1:]
            return ".".join(str(p) for p in loc) or "body"

        errors = tuple(FieldError(field=where(e["loc"]), message=e["msg"]) for e in exc.errors())
        return self.problem(
            422,
            "invalid-message",
            "Invalid message",
            "the message breaks the contract",
            errors=errors,
        )

    async def _status(self, request: web.Request) -> web.Response:
        mid = request.match_info["id"]
        for s in self.sent:
            if s.claims.message_id == mid:
                st = MessageStatus(
                    message_id=mid,
                    message_type=s.claims.message_type,
                    purpose=s.claims.purpose,
                    case_ref=s.claims.case_ref,
                    created_at=s.claims.created_at,
                    expires_at=s.claims.expires_at,
                    recipients=tuple(s.statuses.values()),
                )
                return web.Response(body=st.model_dump_json(), content_type="application/json")
        return self.problem(404, "not-found", "Not found", "no such message")

    async def _inbox(self, request: web.Request) -> web.Response:
        raw_wait, raw_limit = request.query.get("wait", "0"), request.query.get("limit", "100")
        if not raw_wait.isdigit() or not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 100:
            return self.problem(400, "invalid-request", "Invalid request", "wait, limit: integers")
        wait, limit = min(int(raw_wait), 60), int(raw_limit)
        async with self._changed:
            if not self.inbox and wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait_for(lambda: bool(self.inbox)), wait)
            items = list(self.inbox.values())[:limit]
        page = InboxPage(items=tuple(items))
        return web.Response(body=page.model_dump_json(), content_type="application/json")

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        pushed: set[str] = set()
        while True:
            async with self._changed:
                fresh = [i for i in self.inbox.values() if i.message_id not in pushed]
                if not fresh:
                    try:
                        await asyncio.wait_for(self._changed.wait(), self.keepalive)
                    except TimeoutError:
                        await resp.write(b": keepalive\n\n")
                    continue
            for item in fresh:
                pushed.add(item.message_id)
                data = item.model_dump_json()
                await resp.write(
                    f"id: {item.message_id}\nevent: message\ndata: {data}\n\n".encode()
                )

    async def _settle(self, request: web.Request) -> str | web.Response:
        mid = request.match_info["id"]
        async with self._changed:
            if mid in self.inbox:
                del self.inbox[mid]
                self._changed.notify_all()
                return mid
        if mid in self.acked or any(m == mid for m, _ in self.rejected):
            return mid
        return self.problem(404, "not-found", "Not found", "no such inbox item")

    async def _ack(self, request: web.Request) -> web.Response:
        mid = await self._settle(request)
        if isinstance(mid, web.Response):
            return mid
        if mid not in self.acked:
            self.acked.append(mid)
        return web.Response(status=204)

    async def _reject(self, request: web.Request) -> web.Response:
        try:
            body = RejectRequest.model_validate_json(await request.read())
        except ValidationError as exc:
            return self._invalid(exc)
        mid = await self._settle(request)
        if isinstance(mid, web.Response):
            return mid
        if all(m != mid for m, _ in self.rejected):
            self.rejected.append((mid, body))
        return web.Response(status=204)


def load_example(name: str) -> dict[str, Any]:
    """A message from ``tests/examples`` as a dict."""
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / f"{name}.json"
    data: dict[str, Any] = strictjson.loads(path.read_bytes())
    return data


def fresh_copy(claims: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A copy of example claims with a new message id and times around now (so they are valid
    today), plus ``changes``."""
    out: dict[str, Any] = json.loads(json.dumps(claims))
    created = _now()
    out["message_id"] = new_message_id()
    out["created_at"] = created.isoformat().replace("+00:00", "Z")
    out["expires_at"] = (created + timedelta(days=3)).isoformat().replace("+00:00", "Z")
    out.update(changes)
    return out
