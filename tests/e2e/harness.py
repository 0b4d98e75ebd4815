"""A throwaway demo federation on the real RabbitMQ, with nodes in-process or as processes.

Each test gets a unique federation id and broker-user prefix (so vhosts and users never clash
with other tests on the shared broker), the demo policy, fresh keys, broker definitions built by
the same code as ``zvg broker provision`` (provisioned in batches: ``tests/rabbit.py``), and
``node.toml`` files written by the same code as the demo (``gateway.testing.nodes``). Everything
is removed afterwards.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from gateway.broker.provision import Rabbitmqctl, password_file
from gateway.node.config import load_config
from gateway.node.runner import Node
from gateway.telemetry import Telemetry
from gateway.testing.federation import FederationFiles, create_demo_federation
from gateway.testing.nodes import NodeFiles, write_node_config
from gateway.testing.veenstad import org_by_key
from schemas.catalogue import default_catalogue
from tests.integration._cluster import RabbitCluster
from tests.integration._private_node import TlsNode
from tests.integration._tls import issue
from tests.rabbit import Kind, OnBroker, Provisioned, provision, remove, shared_pool
from zvg_client.client import NodeClient, RetryPolicy
from zvg_client.errors import Unavailable

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Fed(OnBroker):
    """A provisioned demo federation and the node files of its members."""

    root: Path
    provisioned: Provisioned
    files: FederationFiles
    nodes: dict[str, NodeFiles]
    users: list[str]
    ctl: Rabbitmqctl
    private: bool
    """On a private broker node (provisioned and removed on its own, not from the pool)."""
    running: dict[str, Node] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    async def start(self, key: str, *, telemetry: Telemetry | None = None) -> Node:
        node = await Node.start(load_config(self.nodes[key].config), telemetry=telemetry)
        self.running[key] = node
        await asyncio.wait_for(node.connected.wait(), timeout=20)
        return node

    async def stop(self, key: str) -> None:
        node = self.running.pop(key)
        await node.stop()

    def spawn(self, key: str) -> subprocess.Popen[bytes]:
        """Run a node as its own process (``zvg node run``), for kill -9 tests."""
        log = (self.root / f"{key}.log").open("ab")
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gateway.cli",
                "node",
                "run",
                "--config",
                str(self.nodes[key].config),
            ],
            stdout=log,
            stderr=log,
            cwd=ROOT,
        )
        self.processes[key] = process
        return process

    def kill(self, key: str, sig: int = signal.SIGKILL) -> None:
        process = self.processes.pop(key)
        process.send_signal(sig)
        process.wait(timeout=30)

    def client(self, key: str) -> Client:
        return Client(self.nodes[key])

    def twin(self, key: str, *, same_data_dir: bool = False) -> str:
        """Files for a second node process of ``key``'s organisation — same config, keys, broker
        user and token, its own port and (unless ``same_data_dir``) its own data directory: what
        a naive "two nodes" looks like. Returns the twin's key (``<key>-twin``)."""
        node = self.nodes[key]
        twin = f"{key}-twin"
        data_dir = node.data_dir if same_data_dir else self.root / "nodes" / twin / "data"
        listen = f"127.0.0.1:{free_port()}"
        text = node.config.read_text("utf-8")
        for old, new in (
            (
                f"data_dir = {json.dumps(str(node.data_dir))}",
                f"data_dir = {json.dumps(str(data_dir))}",
            ),
            (f"listen = {json.dumps(node.listen)}", f"listen = {json.dumps(listen)}"),
        ):
            assert old in text, old
            text = text.replace(old, new)
        config = self.root / "nodes" / twin / "node.toml"
        config.parent.mkdir(parents=True)
        config.write_text(text, "utf-8")
        self.nodes[twin] = dataclasses.replace(
            node, config=config, data_dir=data_dir, listen=listen
        )
        return twin


@dataclass
class Progress:
    """How far a stream got: ``sent`` requests answered 202 by the sender's node, ``acked``
    messages acked by the receiving adapter. A sender paced by it (``send_many(pace=...)``)
    stays at most a window ahead of the receiver, so a crash triggered by a number of acks
    always lands while most of the stream is still to be sent, whatever the machine's speed."""

    sent: int = 0
    acked: int = 0
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def add_acked(self) -> None:
        async with self.changed:
            self.acked += 1
            self.changed.notify_all()

    async def wait_turn(self, index: int, window: int) -> None:
        """Wait until request ``index`` is within ``window`` of the acked count."""
        async with self.changed:
            await self.changed.wait_for(lambda: index < self.acked + window)


class Client:
    """A minimal adapter: HTTP calls to one node's local API."""

    def __init__(self, node: NodeFiles) -> None:
        self.node = node
        self.headers = {"Authorization": f"Bearer {node.token}"}

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> tuple[int, Any]:
        async with aiohttp.ClientSession() as session:
            data = (
                raw
                if raw is not None
                else (json.dumps(body).encode() if body is not None else None)
            )
            hdrs = {
                **self.headers,
                **({"Content-Type": "application/json"} if data is not None else {}),
                **(headers or {}),
            }
            async with session.request(
                method, self.node.url + path, data=data, headers=hdrs
            ) as response:
                text = await response.text()
                try:
                    payload = json.loads(text) if text else None
                except ValueError:
                    payload = text
                return response.status, payload

    async def send(self, request: dict[str, Any], **kw: Any) -> tuple[int, Any]:
        return await self.request("POST", "/v1/messages", body=request, **kw)

    async def status(self, message_id: str) -> dict[str, Any]:
        code, doc = await self.request("GET", f"/v1/messages/{message_id}")
        assert code == 200, doc
        return dict(doc)

    async def wait_status(self, message_id: str, want: str, seconds: float = 30) -> dict[str, Any]:
        deadline = asyncio.get_running_loop().time() + seconds
        while True:
            doc = await self.status(message_id)
            if all(r["status"] == want for r in doc["recipients"]):
                return doc
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"status of {message_id} is not {want}: {doc}")
            await asyncio.sleep(0.1)

    async def send_many(
        self,
        requests: list[dict[str, Any]],
        concurrency: int = 16,
        pace: tuple[Progress, int] | None = None,
    ) -> list[str]:
        """POST every request (retrying while the node is unreachable, unavailable or its outbox
        is full); the message ids.
        ``pace`` ``(progress, window)``: request ``i`` goes out only once ``i < acked + window``,
        and each 202 counts in ``progress.sent``."""
        ids: list[str] = [""] * len(requests)
        todo = asyncio.Queue[int]()
        for i in range(len(requests)):
            todo.put_nowait(i)

        async def worker() -> None:
            while not todo.empty():
                i = todo.get_nowait()
                if pace is not None:
                    await pace[0].wait_turn(i, pace[1])
                key = f"bulk-{i}-{id(requests)}"
                while True:
                    try:
                        code, doc = await self.send(requests[i], headers={"Idempotency-Key": key})
                    except aiohttp.ClientError:
                        await asyncio.sleep(0.2)
                        continue
                    if code == 202:
                        ids[i] = doc["message_id"]
                        if pace is not None:
                            pace[0].sent += 1
                        break
                    if code not in (429, 503):  # outbox full, node unavailable: retry
                        raise AssertionError(doc)
                    await asyncio.sleep(0.2)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return ids

    async def drain(
        self,
        want: int,
        seconds: float,
        milestone: tuple[int, asyncio.Event] | None = None,
        progress: Progress | None = None,
        hold: asyncio.Event | None = None,
    ) -> tuple[set[str], int]:
        """Act as an adapter until ``want`` messages are acked: returns (acked ids, how often a
        message already acked with 204 was handed out again — must stay 0). ``milestone``
        ``(n, event)``: the event is set once ``n`` messages are acked, and then, with ``hold``,
        the drain waits for ``hold`` before it acks more (so a crash triggered by the milestone
        lands at exactly ``n`` acks). Each ack also counts in ``progress``."""
        acked: set[str] = set()
        duplicates = 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        # Acks go through the adapters' own client, which sends an ack again when the connection
        # drops before its answer (a crash between the node settling it and answering): an ack
        # whose answer was lost is settled at the node and never handed out again, so giving up
        # on it would lose the message from this adapter's view. Acks are idempotent.
        async with NodeClient(self.node.url, self.node.token, retry=_PATIENT) as node:
            while len(acked) < want and loop.time() < deadline:
                try:
                    items = await self.inbox(wait=2, limit=100)
                except (aiohttp.ClientError, AssertionError):
                    await asyncio.sleep(0.2)
                    continue
                for item in items:
                    mid = item["message_id"]
                    if mid in acked:
                        duplicates += 1
                        continue
                    while True:
                        try:
                            await node.ack(mid)
                            break
                        except Unavailable:
                            if loop.time() >= deadline:
                                raise
                    acked.add(mid)
                    if progress is not None:
                        await progress.add_acked()
                    if milestone is not None and len(acked) >= milestone[0]:
                        milestone[1].set()
                        if hold is not None and len(acked) == milestone[0]:
                            await hold.wait()
        return acked, duplicates

    async def inbox(self, wait: int = 5, limit: int = 100) -> list[dict[str, Any]]:
        code, doc = await self.request("GET", f"/v1/inbox?wait={wait}&limit={limit}")
        assert code == 200, doc
        return list(doc["items"])

    async def ack(self, message_id: str) -> int:
        code, _ = await self.request("POST", f"/v1/inbox/{message_id}/ack")
        return code


_PATIENT = RetryPolicy(attempts=30, base_seconds=0.2, cap_seconds=2.0)
"""Retries of one ack: about half a minute, enough for a killed node to be started again."""

_NODE_FILLS = ("spec", "message_id", "created_at", "expires_at", "sender", "trace", "log_anchor")


def request_from_example(name: str, **changes: Any) -> dict[str, Any]:
    """A ``POST /v1/messages`` body made from ``tests/examples/<name>.json`` (the fields the node
    fills dropped; ``sender_role`` kept so multi-role organisations can send it)."""
    claims = json.loads((ROOT / "tests" / "examples" / f"{name}.json").read_text("utf-8"))
    request = {k: v for k, v in claims.items() if k not in _NODE_FILLS}
    request["sender_role"] = claims["sender"]["role"]
    request.update(changes)
    return request


def make_fed(
    tmp: Path,
    orgs: tuple[str, ...] = ("gemeente", "politie", "ggz"),
    *,
    tls_node: TlsNode | None = None,
    cluster: RabbitCluster | None = None,
    rights: bool = False,
) -> Fed:
    """Create and provision a throwaway demo federation with nodes for ``orgs``; on the shared
    broker, on a private TLS broker node (certificate login) when ``tls_node`` is given, or on
    the private three-member ``cluster`` (every node gets every member in ``broker.urls``).
    ``rights``: every node gets ``[rights] pseudonym_key_file`` (:func:`pseudonym_key`) and the
    police node defers inzageverzoeken (``WPG``), as in the demo."""
    kind = Kind("e2e", "zvge2e", tuple((k, org_by_key(k).oin) for k in orgs))
    private = tls_node.ctl if tls_node else cluster.ctl if cluster else None
    made = provision(private, kind, tmp) if private else shared_pool().take(kind)
    tag, prefix = made.tag, f"zvge2e-{made.tag}-"
    catalogue = default_catalogue()
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    files = create_demo_federation(
        tmp / "federation",
        now=now,
        lifetime=timedelta(days=30),
        catalogue=catalogue,
        rand=os.urandom,
        federation=made.federation,
        user_prefix=prefix,
        orgs=orgs,
    )
    secrets_dir = made.secrets_dir
    nodes = {}
    for key in orgs:
        org = org_by_key(key)
        broker_url = f"amqp://127.0.0.1:5672/{made.vhost}"
        tls = None
        if tls_node is not None:
            broker_url = f"amqps://localhost:{tls_node.port}/{made.vhost}"
            cert, cert_key = issue(tls_node.ca, f"{prefix}{key}", server=False).write(
                tmp, f"client-{key}"
            )
            cert_key.chmod(0o600)  # a node refuses a key file others can read (preflight)
            tls = (Path(tls_node.ca_file), cert, cert_key)
        nodes[key] = write_node_config(
            tmp / "nodes" / key / "node.toml",
            org=org,
            keys_dir=files.keys_dir(key),
            directory=files.directory,
            data_dir=tmp / "nodes" / key / "data",
            broker_url=broker_url,
            password_file=None if tls else password_file(secrets_dir, org.oin),
            broker_tls=tls,
            broker_urls=tuple(
                f"amqp://127.0.0.1:{m.port}/{made.vhost}"
                for m in (cluster.members if cluster else ())
            ),
            listen=f"127.0.0.1:{free_port()}",
            token=f"token-{key}-{tag}-0123456789abcdef",
            catalogue=catalogue,
            checkpoint_interval_s=1.0,
            pseudonym_key_file=_write_pseudonym_key(tmp, key) if rights else None,
            defer_ground="WPG" if rights and key == "politie" else None,
        )
    users = [made.users[k] for k in orgs]
    return Fed(tmp, made, files, nodes, users, private or shared_pool().ctl, private=bool(private))


def pseudonym_key(tmp: Path, key: str) -> Path:
    """Where :func:`make_fed` keeps organisation ``key``'s subject pseudonym key."""
    return tmp / "nodes" / key / "pseudonym.key"


def _write_pseudonym_key(tmp: Path, key: str) -> Path:
    path = pseudonym_key(tmp, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(os.urandom(32).hex() + "\n")
    return path


async def wait_witnessed(fed: Fed) -> None:
    """Until every running node's whole log is in a checkpoint that each of its running
    partners cosigned, with nothing left to publish (so no record is still to come)."""
    for _ in range(300):
        done = True
        for key, node in fed.running.items():
            service = node.service
            await service.witnessing.request_cosignatures()
            latest = service.audit.latest
            sizes = await service.audit.peer_sizes()
            partners = [fed.nodes[k].org.oin for k in fed.running if k != key]
            done = done and (
                service.audit.size == 0
                or (
                    latest is not None
                    and latest.size == service.audit.size
                    and all(sizes.get(p, 0) >= latest.size for p in partners)
                    and not await service.store.pending_publishes(1)
                )
            )
        if done:
            return
        await asyncio.sleep(0.1)
    state = {
        key: (
            node.service.audit.size,
            node.service.audit.latest.size if node.service.audit.latest else None,
            await node.service.audit.peer_sizes(),
            len(await node.service.store.pending_publishes(10)),
        )
        for key, node in fed.running.items()
    }
    raise AssertionError(f"the partners did not cosign every log: {state}")


def teardown_fed(fed: Fed) -> None:
    for key in list(fed.processes):
        fed.kill(key)
    if fed.private:
        remove(fed.ctl, [fed.provisioned], wait=True)
    else:
        shared_pool().release(fed.provisioned)


@asynccontextmanager
async def running_fed(
    tmp: Path, orgs: tuple[str, ...] | None = None, *, rights: bool = False
) -> AsyncIterator[Fed]:
    """A federation for one test (:func:`make_fed`); afterwards every node it started is stopped
    and its broker objects are removed."""
    fed = make_fed(tmp, orgs, rights=rights) if orgs is not None else make_fed(tmp, rights=rights)
    try:
        yield fed
    finally:
        for key in list(fed.running):
            await fed.stop(key)
        teardown_fed(fed)


@asynccontextmanager
async def exchanged_fed(tmp: Path) -> AsyncIterator[tuple[Fed, str]]:
    """Police refer a case to the ZVH, the ZVH acks; both logs cosigned by the partners (all three
    nodes running). Yields the federation and the referral's message id; stops it afterwards."""
    async with running_fed(tmp) as fed:
        for key in ("politie", "gemeente", "ggz"):
            await fed.start(key)
        code, doc = await fed.client("politie").send(request_from_example("case.referral"))
        assert code == 202
        items = await fed.client("gemeente").inbox(wait=10)
        assert await fed.client("gemeente").ack(items[0]["message_id"]) == 204
        await fed.client("politie").wait_status(doc["message_id"], "accepted")
        await wait_witnessed(fed)
        yield fed, doc["message_id"]
