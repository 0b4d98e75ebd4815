"""The chaos soak (issue 19 point 4, decision 0115): lose nothing while parts die.

Two organisations (police and municipality), each with **two node processes** (``zvg node
run``) on one store per organisation in a **private PostgreSQL server** this script starts
itself (``initdb`` + ``pg_ctl`` on a free port, data directory in a temporary directory, run as
the ``postgres`` user, so it can be restarted without touching the shared one), over a
**private three-member RabbitMQ cluster** (``tests/integration/_cluster.py``, quorum queues on
all three). A load at a fixed rate (``--rate``, default half of a quick capacity probe) goes
both ways (referrals police → municipality, status updates back), each POST to a random
process of the sending organisation (again, with the same ``Idempotency-Key``, to the other
process while it gets no 202). Two adapters per organisation — one on each process's API —
take and ack the inbox.

Meanwhile a driver (``--seed``; every action printed and kept with its time) at random
moments ``kill -9``s a random node process (and starts it again a few seconds later), stops a
random broker member (``rabbitmqctl stop_app``) and starts it again, or restarts PostgreSQL
(``pg_ctl stop -m immediate``: a crash, then a start with crash recovery). A supervisor starts
again a node process that exits by itself (what a service manager does) and logs it.

Afterwards, with every part up again: **lost** (a 202'd message never acked by the
recipient's adapter), **duplicates** (a message handed out by an inbox request *made after*
its ack was answered 204), **unexpected** (acked ids nobody sent), every receipt arrived
(the sender's status ``accepted``), every audit log verifies and is cosigned (``zvg audit
verify`` reads PostgreSQL: exit 0), and the RSS of every process incarnation sampled every
2 s (first / last / max). Printed, and written to ``benchmarks/results/soak.json``.

    .venv/bin/python -m benchmarks.soak --duration 600 --seed 1

Like the other benchmarks it reuses the test harness (``tests/e2e/harness.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psycopg

from benchmarks._pair import rss_kib
from benchmarks._report import print_table, write_results
from gateway.node.pg_store import migrate
from tests.e2e.harness import ROOT, Client, Fed, free_port, make_fed, request_from_example
from tests.integration._cluster import RabbitCluster, run_cluster

ORGS = ("politie", "gemeente")
#: (sending organisation, message type) by turn: referrals one way, status updates back.
FLOWS = (("politie", "gemeente", "case.referral"), ("gemeente", "politie", "case.status"))
ACTIONS = ("kill_node", "broker_member", "postgres")
#: How each kind of fault is logged.
ACTION_KINDS = frozenset(
    {"kill -9", "broker stop_app", "postgres crash (pg_ctl stop -m immediate)"}
)
#: Bound on the catch-up after the load (not a timed assert: it only ends a hang).
SETTLE_S = 300.0


# --- the private PostgreSQL server ---------------------------------------------------------


_INITDB = ("-A", "trust", "-U", "postgres", "--no-sync")


def _pg_bin(name: str) -> str:
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    if not found:
        raise SystemExit(f"no {name} under /usr/lib/postgresql/*/bin (install postgresql)")
    return str(found[-1])


@dataclass
class PrivatePostgres:
    """A PostgreSQL server of this run's own: its port, data directory and log."""

    root: Path
    port: int

    @property
    def data(self) -> Path:
        return self.root / "data"

    def _ctl(self, *args: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", _pg_bin("pg_ctl"), "-D", str(self.data), *args],
            check=True,
            capture_output=True,
            stdin=subprocess.DEVNULL,
            timeout=120,
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        self._ctl("-l", str(self.root / "log"), "-o", options, "-w", "start")

    def crash(self) -> None:
        """Stop as a crash would (no checkpoint; the next start replays the WAL)."""
        self._ctl("-m", "immediate", "-w", "stop")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"


@contextlib.contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    root = Path(tempfile.mkdtemp(prefix="zvgpg-"))
    shutil.chown(root, "postgres", "postgres")
    pg = PrivatePostgres(root, free_port())
    subprocess.run(
        ["runuser", "-u", "postgres", "--", _pg_bin("initdb"), "-D", str(pg.data), *_INITDB],
        check=True,
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )
    pg.start()
    try:
        yield pg
    finally:
        with contextlib.suppress(subprocess.SubprocessError):
            pg._ctl("-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)


def store_url(pg: PrivatePostgres, org: str) -> str:
    """One database per organisation on the private server, migrated (``zvg node migrate``)."""
    with psycopg.connect(pg.url(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "soak_{org}"')
    url = pg.url(f"soak_{org}")
    migrate(url)
    return url


# --- the run's bookkeeping -----------------------------------------------------------------


@dataclass
class Ledger:
    """What was sent (202), acked (204, with when) and handed out again after an ack."""

    started: float = field(default_factory=time.monotonic)
    sent: dict[str, str] = field(default_factory=dict)  # message id -> recipient org
    sent_by: dict[str, str] = field(default_factory=dict)  # message id -> sender org
    acked: dict[str, float] = field(default_factory=dict)  # message id -> when its ack was 204
    acked_by: dict[str, str] = field(default_factory=dict)  # message id -> org that acked it
    duplicates: list[dict[str, Any]] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)
    rss: dict[str, list[int]] = field(default_factory=dict)  # "<process>#<incarnation>" -> KiB

    def now(self) -> float:
        return round(time.monotonic() - self.started, 2)

    def log(self, action: str, **details: Any) -> None:
        entry = {"t": self.now(), "action": action, **details}
        self.actions.append(entry)
        print(f"[{entry['t']:8.2f}s] {action} {json.dumps(details)}", flush=True)


@dataclass
class Soak:
    fed: Fed
    cluster: RabbitCluster
    pg: PrivatePostgres
    ledger: Ledger
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    incarnation: dict[str, int] = field(default_factory=dict)

    def processes(self, org: str) -> tuple[str, str]:
        return (org, f"{org}-twin")

    def spawn(self, key: str) -> None:
        self.fed.spawn(key)
        self.incarnation[key] = self.incarnation.get(key, 0) + 1


async def _send(soak: Soak, rng: random.Random, i: int, run: str) -> None:
    sender, recipient, name = FLOWS[i % 2]
    request = request_from_example(name, case_ref=f"Veenstad-2026-{i % 10000:04d}")
    keys = soak.processes(sender)
    first = rng.randrange(2)
    headers = {"Idempotency-Key": f"soak-{run}-{i}"}
    attempt = 0
    while True:
        client = soak.fed.client(keys[(first + attempt) % 2])
        attempt += 1
        try:
            code, doc = await client.send(request, headers=headers)
        except (aiohttp.ClientError, OSError):
            await asyncio.sleep(0.2)
            continue
        if code == 202:
            soak.ledger.sent[doc["message_id"]] = recipient
            soak.ledger.sent_by[doc["message_id"]] = sender
            return
        if code in (429, 503, 500, 502):
            await asyncio.sleep(0.2)
            continue
        soak.ledger.refused.append(f"{code} {str(doc)[:200]}")
        return


async def load(soak: Soak, rate: float, seconds: float, seed: int) -> int:
    """POSTs at ``rate`` per second for ``seconds`` (each in its own task); how many."""
    rng = random.Random(seed + 1)
    run = secrets.token_hex(4)
    loop = asyncio.get_running_loop()
    begin, tasks, i = loop.time(), set(), 0
    while loop.time() - begin < seconds:
        task = asyncio.create_task(_send(soak, rng, i, run))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        i += 1
        await asyncio.sleep(max(0.0, begin + i / rate - loop.time()))
    while tasks:
        await asyncio.gather(*tasks)
    return i


async def adapter(soak: Soak, org: str, key: str) -> None:
    """Take and ack ``key``'s inbox until told to stop."""
    ledger = soak.ledger
    client = soak.fed.client(key)
    while not soak.stop.is_set():
        asked = time.monotonic()
        try:
            items = await client.inbox(wait=2, limit=50)
        except (aiohttp.ClientError, OSError, AssertionError):
            await asyncio.sleep(0.2)
            continue
        for item in items:
            mid = item["message_id"]
            if mid in ledger.acked:
                if ledger.acked[mid] < asked:  # handed out by a request made after the ack
                    ledger.duplicates.append({"message_id": mid, "via": key, "t": ledger.now()})
                continue
            try:
                code = await client.ack(mid)
            except (aiohttp.ClientError, OSError):
                continue  # unknown: it will be handed out again (an ack is idempotent)
            if code == 204:
                ledger.acked.setdefault(mid, time.monotonic())
                ledger.acked_by.setdefault(mid, org)


async def _alive(client: Client) -> bool:
    """A liveness probe: False only when ``/healthz`` answers and is not 200."""
    try:
        code, _body = await client.request("GET", "/healthz")
    except (aiohttp.ClientError, OSError):
        return True  # not listening (yet): starting, or just killed
    return code == 200


async def supervise(soak: Soak) -> None:
    """What a service manager with a liveness probe does, every 2 s: start again a node process
    that exited by itself; kill -9 and start again one whose ``/healthz`` failed twice running
    (Kubernetes' probe in deploy/: three times 10 s). Samples each process's RSS as well."""
    failures: dict[str, int] = {}
    while not soak.stop.is_set():
        for key, process in list(soak.fed.processes.items()):
            code = process.poll()
            if code is not None:
                soak.fed.processes.pop(key, None)
                soak.ledger.log("exited by itself", process=key, code=code)
                soak.spawn(key)
                continue
            failures[key] = 0 if await _alive(soak.fed.client(key)) else failures.get(key, 0) + 1
            if failures[key] >= 2 and key in soak.fed.processes:
                soak.ledger.log("liveness failed: kill -9 and start", process=key)
                soak.fed.kill(key, signal.SIGKILL)
                soak.spawn(key)
                failures[key] = 0
                continue
            with contextlib.suppress(OSError, RuntimeError):
                soak.ledger.rss.setdefault(f"{key}#{soak.incarnation[key]}", []).append(
                    rss_kib(process.pid)
                )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(soak.stop.wait(), 2.0)


async def driver(soak: Soak, seed: int, seconds: float, every: tuple[float, float]) -> None:
    """Seeded random faults, one at a time, each kind once per shuffled round of three."""
    rng = random.Random(seed)
    ledger, loop = soak.ledger, asyncio.get_running_loop()
    end = loop.time() + seconds
    kinds: list[str] = []
    while True:
        await asyncio.sleep(rng.uniform(*every))
        if loop.time() >= end:
            return
        if not kinds:
            kinds = list(ACTIONS)
            rng.shuffle(kinds)
        kind = kinds.pop()
        down = rng.uniform(1.0, 5.0)
        if kind == "kill_node":
            key = rng.choice([k for org in ORGS for k in soak.processes(org)])
            ledger.log("kill -9", process=key)
            if key in soak.fed.processes:
                soak.fed.kill(key, signal.SIGKILL)
            await asyncio.sleep(down)
            soak.spawn(key)
            ledger.log("started", process=key)
        elif kind == "broker_member":
            member = rng.randrange(len(soak.cluster.members))
            ledger.log("broker stop_app", member=member + 1)
            await asyncio.to_thread(soak.cluster.members[member].stop_app)
            await asyncio.sleep(down)
            await asyncio.to_thread(soak.cluster.members[member].start_app)
            ledger.log("broker start_app", member=member + 1)
        else:
            ledger.log("postgres crash (pg_ctl stop -m immediate)")
            await asyncio.to_thread(soak.pg.crash)
            await asyncio.sleep(down)
            await asyncio.to_thread(soak.pg.start)
            ledger.log("postgres started")


async def probe(fed: Fed, n: int = 60) -> float:
    """Messages/s from police to the municipality, sent and acked as fast as they go."""
    pol, gem = fed.client("politie"), fed.client("gemeente")
    requests = [request_from_example("case.referral") for _ in range(n)]
    begin = time.monotonic()
    sent, (acked, _dup) = await asyncio.gather(
        pol.send_many(requests), gem.drain(n, seconds=SETTLE_S)
    )
    assert set(sent) <= acked, "the capacity probe lost messages"
    return n / (time.monotonic() - begin)


async def _until(check: Any, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(1.0)
    return False


async def receipts_missing(soak: Soak) -> list[str]:
    """Sent messages whose sender does not (yet) see the recipient's receipt (``accepted``)."""
    missing = []
    for mid, sender in soak.ledger.sent_by.items():
        try:
            code, doc = await soak.fed.client(sender).request("GET", f"/v1/messages/{mid}")
        except (aiohttp.ClientError, OSError):
            missing.append(mid)
            continue
        if code != 200 or any(r["status"] != "accepted" for r in doc["recipients"]):
            missing.append(mid)
    return missing


def audit_verify(fed: Fed, org: str) -> tuple[int, str]:
    config = fed.nodes[org].config
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "audit", "verify", "--config", str(config)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        check=False,
    )
    return result.returncode, (result.stdout + result.stderr).strip().splitlines()[-1:][0]


@asynccontextmanager
async def soak_setup(tmp: Path) -> AsyncIterator[tuple[Fed, RabbitCluster, PrivatePostgres]]:
    clusters = run_cluster()
    cluster = next(clusters)
    try:
        with private_postgres() as pg:
            fed = make_fed(tmp, ORGS, cluster=cluster)
            for org in ORGS:
                config = fed.nodes[org].config
                text = config.read_text("utf-8") + f'\n[store]\nurl = "{store_url(pg, org)}"\n'
                config.write_text(text, "utf-8")
                fed.twin(org)
            try:
                yield fed, cluster, pg
            finally:
                for key in list(fed.processes):
                    fed.kill(key, signal.SIGKILL)
    finally:
        with contextlib.suppress(StopIteration):
            next(clusters)


async def run(
    *, duration: float, seed: int, rate: float | None, every: tuple[float, float], tmp: Path
) -> dict[str, Any]:
    async with soak_setup(tmp) as (fed, cluster, pg):
        soak = Soak(fed, cluster, pg, Ledger())
        for org in ORGS:
            for key in soak.processes(org):
                soak.spawn(key)
        for org in ORGS:
            for key in soak.processes(org):
                assert await _until(lambda k=key: _ready(fed.client(k)), 120), f"{key} not ready"
        capacity = await probe(fed)
        rate = rate or capacity / 2
        soak.ledger.log("load", rate=round(rate, 2), capacity=round(capacity, 2), seed=seed)
        workers = [
            asyncio.create_task(adapter(soak, org, key))
            for org in ORGS
            for key in soak.processes(org)
        ]
        watch = asyncio.create_task(supervise(soak))
        posted, _ = await asyncio.gather(
            load(soak, rate, duration, seed), driver(soak, seed, duration, every)
        )
        soak.ledger.log("load done", posted=posted, accepted=len(soak.ledger.sent))
        ledger = soak.ledger

        async def all_acked() -> bool:
            return set(ledger.sent) <= set(ledger.acked)

        await _until(all_acked, SETTLE_S)
        missing: list[str] = []

        async def receipts() -> bool:
            nonlocal missing
            missing = await receipts_missing(soak)
            return not missing

        await _until(receipts, SETTLE_S)
        verify: dict[str, tuple[int, str]] = {}

        async def cosigned() -> bool:
            for org in ORGS:
                verify[org] = await asyncio.to_thread(audit_verify, fed, org)
            return all(code == 0 for code, _ in verify.values())

        await _until(cosigned, SETTLE_S)
        soak.stop.set()
        await asyncio.gather(*workers, watch)
        queues = await asyncio.to_thread(
            cluster.ctl.json, "list_queues", "-p", fed.vhost, "name", "messages"
        )
        dead = {q["name"]: q["messages"] for q in queues if q["name"].startswith("zvg.dead.")}
        lost = sorted(set(ledger.sent) - set(ledger.acked))
        return {
            "seed": seed,
            "duration_s": duration,
            "capacity_msgs_per_s": round(capacity, 2),
            "rate_msgs_per_s": round(rate, 2),
            "posted": posted,
            "sent": len(ledger.sent),
            "acked": len(set(ledger.sent) & set(ledger.acked)),
            "lost": len(lost),
            "lost_ids": lost[:50],
            "duplicates_after_ack": len(ledger.duplicates),
            "duplicates": ledger.duplicates[:50],
            "unexpected": len(set(ledger.acked) - set(ledger.sent)),
            "refused": ledger.refused[:20],
            "receipts_missing": len(missing),
            "receipts_missing_ids": missing[:50],
            "dead_lettered": dead,
            "audit_verify": {
                org: {"exit": c, "last_line": line} for org, (c, line) in verify.items()
            },
            "actions": ledger.actions,
            "rss_kib": {
                key: {"first": v[0], "last": v[-1], "max": max(v), "samples": len(v)}
                for key, v in ledger.rss.items()
                if v
            },
        }


async def _ready(client: Client) -> bool:
    try:
        code, _body = await client.request("GET", "/readyz")
    except (aiohttp.ClientError, OSError):
        return False
    return code == 200


def report(data: dict[str, Any]) -> None:
    print_table(
        ["count", "value"],
        [
            ["sent (202)", data["sent"]],
            ["acked by the recipient's adapter", data["acked"]],
            ["lost", data["lost"]],
            ["handed to an adapter again after its ack", data["duplicates_after_ack"]],
            ["acked but never sent", data["unexpected"]],
            ["refused (not 202/429/503)", len(data["refused"])],
            ["receipts missing", data["receipts_missing"]],
            ["in dead-letter queues", sum(data["dead_lettered"].values())],
            ["faults injected", sum(1 for a in data["actions"] if a["action"] in ACTION_KINDS)],
        ],
    )
    for org, v in data["audit_verify"].items():
        print(f"zvg audit verify {org}: exit {v['exit']} ({v['last_line']})")
    print_table(
        ["process#incarnation", "RSS first KiB", "last KiB", "max KiB", "samples"],
        [[k, v["first"], v["last"], v["max"], v["samples"]] for k, v in data["rss_kib"].items()],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of load")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--rate",
        type=float,
        default=None,
        help="messages/s (default: half of a quick capacity probe)",
    )
    parser.add_argument(
        "--every",
        type=float,
        nargs=2,
        default=(5.0, 20.0),
        metavar=("MIN", "MAX"),
        help="seconds between faults (uniform)",
    )
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="zvgsoak-"))
    try:
        data = asyncio.run(
            run(
                duration=args.duration,
                seed=args.seed,
                rate=args.rate,
                every=tuple(args.every),
                tmp=tmp,
            )
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report(data)
    print(f"results: {write_results('soak', data)}")
    bad = (
        data["lost"]
        or data["duplicates_after_ack"]
        or data["receipts_missing"]
        or any(v["exit"] != 0 for v in data["audit_verify"].values())
    )
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
