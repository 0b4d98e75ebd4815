"""Stand-ins for the partners' own systems, each talking to its node the way the real one would.

- **Politie and OM** ("files only"): the demo writes what their systems export into the folder
  adapter's ``inbox/`` (atomically: a temporary name, then a rename) and reads what the adapter
  writes to ``outbox/``. The OM's case system confirms each imported message itself
  (``ack = "manual"`` in its documented configuration) by dropping ``<id>.ack.json``.
- **Veilig Thuis** (webhooks): an HTTPS endpoint with a certificate made on the fly, standing in
  for the registration system. It checks every push's HMAC signature exactly as
  ``adapters.webhook.verify_signature`` documents, answers ``200``, and posts its own messages to
  the webhook adapter's endpoint with the shared token.
- **GGZ and the municipality** talk to their nodes through the client SDK
  (``zvg_client.client.NodeClient``), the library the FHIR and ZGW adapters are built on; a
  background task takes every inbox item and acks it once "stored" (docs/decisions/0078).

Every stand-in remembers the claims of what it received, so the demo can show that the
recipient's system — not just its node — has each message, and answer with the ids the
recipient actually saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from adapters.webhook import verify_signature
from demo.story import Context, Send
from demo.workspace import AdapterFiles
from gateway.errors import GatewayError
from gateway.testing.nodes import NodeFiles
from gateway.testing.veenstad import DemoOrg
from schemas.api import Problem
from zvg_client.client import NodeClient, RetryPolicy, request_from_dict
from zvg_client.errors import NodeError, PolicyDenied

__all__ = [
    "DemoFailed",
    "FolderSystem",
    "PartnerSystem",
    "SdkSystem",
    "Submitted",
    "WebhookSystem",
]

#: Seconds a partner system waits for its adapter to take a file or answer a request.
ADAPTER_WAIT_S = 30.0

#: Seconds between looks at a folder (the folder adapter itself polls every 0.2 s).
FOLDER_LOOK_S = 0.05


class DemoFailed(GatewayError):  # noqa: N818 - named for what happened, like VerificationFailed
    """A step of the demo did not happen as it should (a refusal, a timeout, a lost message).
    The message says which step, which organisation, and where to look."""


@dataclass(frozen=True)
class Submitted:
    """What the sender's adapter answered: message ids, or the node's refusal."""

    message_ids: tuple[str, ...] = ()
    problem: Problem | None = None


@dataclass
class PartnerSystem:
    """A partner's own system as far as the demo needs it."""

    org: DemoOrg
    received: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Claims of every message this system received, by message id."""

    async def start(self) -> None:
        """Start taking what the adapter delivers."""

    async def stop(self) -> None:
        """Stop (idempotent)."""

    async def submit(self, send: Send, ctx: Context) -> Submitted:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


# ------------------------------------------------------------------ client SDK


@dataclass
class SdkSystem(PartnerSystem):
    """GGZ's EHR or the municipality's case system, through the client SDK."""

    node: NodeFiles | None = None
    production_adapter: str = ""
    client: NodeClient | None = None
    _task: asyncio.Task[None] | None = None

    def _client(self) -> NodeClient:
        if self.client is None:
            assert self.node is not None  # noqa: S101 - set by the constructor's caller
            self.client = NodeClient(
                self.node.url, self.node.token, retry=RetryPolicy(attempts=3, base_seconds=0.2)
            )
        return self.client

    async def start(self) -> None:
        self._task = asyncio.create_task(self._take(), name=f"{self.org.key} system")

    async def _take(self) -> None:
        client = self._client()
        while True:
            try:
                page = await client.inbox(wait=1, limit=50)
                for item in page.items:
                    self.received[item.message_id] = dict(item.claims)  # "stored" in the system
                    await client.ack(item.message_id)
            except NodeError:
                await asyncio.sleep(0.2)  # unacked items come again on the next page

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        if self.client is not None:
            await self.client.close()
            self.client = None

    async def submit(self, send: Send, ctx: Context) -> Submitted:
        assert send.build is not None  # noqa: S101 - the story gives SDK senders a request
        request = request_from_dict(send.build(ctx))
        try:
            accepted = await self._client().send(request, idempotency_key=f"demo-{send.label}")
        except PolicyDenied as exc:
            return Submitted(problem=exc.problem)
        return Submitted((accepted.message_id,))

    def describe(self) -> str:
        return f"client SDK (in production: the {self.production_adapter} adapter)"


# ------------------------------------------------------------------ folder adapter


def _write_atomic(path: Path, data: bytes) -> None:
    """What a careful export does: write under a name the adapter ignores, then rename."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


@dataclass
class FolderSystem(PartnerSystem):
    """The police's incident system or the OM's case system: files in, files out."""

    adapter: AdapterFiles | None = None
    manual_ack: bool = False
    _task: asyncio.Task[None] | None = None

    @property
    def root(self) -> Path:
        assert self.adapter is not None  # noqa: S101 - set by the constructor's caller
        return self.adapter.folder

    async def start(self) -> None:
        self._task = asyncio.create_task(self._take(), name=f"{self.org.key} system")

    async def _take(self) -> None:
        outbox = self.root / "outbox"
        while True:
            if outbox.is_dir():
                for path in sorted(outbox.glob("*.message.json")):
                    mid = path.name.removesuffix(".message.json")
                    if mid in self.received:
                        continue
                    try:
                        item = json.loads(path.read_text(encoding="utf-8"))
                    except (OSError, ValueError):
                        continue  # written atomically, so only a race with a rename
                    self.received[mid] = dict(item["claims"])  # imported into the system
                    if self.manual_ack:
                        body = json.dumps({"message_id": mid}).encode()
                        _write_atomic(self.root / "inbox" / f"{mid}.ack.json", body)
            await asyncio.sleep(FOLDER_LOOK_S)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    async def submit(self, send: Send, ctx: Context) -> Submitted:
        if send.build_file is not None:
            name, data = f"{send.label}.csv", send.build_file(ctx)
        else:
            assert send.build is not None  # noqa: S101 - the story gives one of the two
            name = f"{send.label}.json"
            data = json.dumps(send.build(ctx), ensure_ascii=False, indent=1).encode("utf-8")
        _write_atomic(self.root / "inbox" / name, data)
        done = self.root / "processed" / f"{name}.result.json"
        failed = self.root / "failed" / f"{name}.error.json"
        deadline = time.monotonic() + ADAPTER_WAIT_S
        while time.monotonic() < deadline:
            if done.is_file():
                result = json.loads(done.read_text(encoding="utf-8"))
                return Submitted(tuple(m["message_id"] for m in result["messages"]))
            if failed.is_file():
                error = json.loads(failed.read_text(encoding="utf-8"))
                rows = error.get("rows") or [error]
                if any(r.get("error") == "policy-denied" for r in rows):
                    denied = next(r for r in rows if r.get("error") == "policy-denied")
                    return Submitted(problem=_problem_of(denied))
                raise DemoFailed(
                    f"the {self.org.key} folder adapter refused {name}: "
                    f"{json.dumps(error, ensure_ascii=False)[:300]}"
                )
            await asyncio.sleep(FOLDER_LOOK_S)
        raise DemoFailed(
            f"the {self.org.key} folder adapter did not take {name} within {ADAPTER_WAIT_S:.0f} s"
        )

    def describe(self) -> str:
        how = "CSV/JSON files, confirms imports itself" if self.manual_ack else "CSV/JSON files"
        return f"folder adapter ({how})"


def _problem_of(error: dict[str, Any]) -> Problem:
    return Problem(
        type="https://zv-gateway.example/problems/policy-denied",
        title=str(error.get("title") or "Policy denied"),
        status=int(error.get("status") or 403),
        detail=str(error.get("detail") or ""),
        decision=error.get("decision"),
    )


# ------------------------------------------------------------------ webhook adapter


@dataclass
class WebhookSystem(PartnerSystem):
    """Veilig Thuis' registration system: receives signed HTTPS pushes, posts messages."""

    adapter: AdapterFiles | None = None
    listen: socket.socket | None = None
    tls: tuple[Path, Path] | None = None
    bad_signatures: int = 0
    pushes: int = 0
    _runner: web.AppRunner | None = None
    _session: aiohttp.ClientSession | None = None

    def _files(self) -> AdapterFiles:
        assert self.adapter is not None  # noqa: S101 - set by the constructor's caller
        return self.adapter

    async def start(self) -> None:
        assert self.listen is not None  # noqa: S101 - set by the constructor's caller
        assert self.tls is not None  # noqa: S101 - set by the constructor's caller
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(str(self.tls[0]), str(self.tls[1]))
        app = web.Application(client_max_size=1024 * 1024)
        app.router.add_post("/zvg/inbound", self._push)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.SockSite(self._runner, self.listen, ssl_context=context).start()

    async def _push(self, request: web.Request) -> web.Response:
        body = await request.read()
        secret = self._files().signing_secret or b""
        signature = request.headers.get("ZVG-Signature", "")
        if not verify_signature(secret, signature, body, now=time.time()):
            self.bad_signatures += 1
            return web.Response(status=401)
        self.pushes += 1
        if request.headers.get("ZVG-Event") == "message":
            item = json.loads(body)
            self.received[str(item["message_id"])] = dict(item["claims"])  # registered
        return web.Response(status=200)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def submit(self, send: Send, ctx: Context) -> Submitted:
        assert send.build is not None  # noqa: S101 - the story gives webhook senders a request
        files = self._files()
        if self._session is None:
            self._session = aiohttp.ClientSession()
        body = json.dumps(send.build(ctx), ensure_ascii=False).encode("utf-8")
        headers = {
            "Authorization": f"Bearer {files.inbound_token}",
            "Content-Type": "application/json",
            "Idempotency-Key": f"demo-{send.label}",
        }
        url = f"http://127.0.0.1:{files.listen_port}/v1/messages"
        deadline = time.monotonic() + ADAPTER_WAIT_S
        while True:
            try:
                async with self._session.post(url, data=body, headers=headers) as resp:
                    raw = await resp.read()
                    status = resp.status
                break
            except aiohttp.ClientConnectionError:
                if time.monotonic() > deadline:
                    raise DemoFailed(
                        f"the {self.org.key} webhook adapter does not answer on port "
                        f"{files.listen_port}"
                    ) from None
                await asyncio.sleep(0.2)
        if status == 202:
            return Submitted((str(json.loads(raw)["message_id"]),))
        problem = Problem.model_validate_json(raw) if raw else None
        if problem is not None and problem.type.endswith("/policy-denied"):
            return Submitted(problem=problem)
        detail = problem.detail if problem is not None else raw.decode(errors="replace")[:200]
        raise DemoFailed(f"the {self.org.key} webhook adapter answered {status}: {detail}")

    def describe(self) -> str:
        return "webhook adapter (signed HTTPS pushes)"
