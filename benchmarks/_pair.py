"""Two node processes of a throwaway federation and the means to drive and watch them: what
``benchmarks.e2e`` and ``benchmarks.overload`` share.

:func:`running_pair` provisions a demo federation on its own vhost (needs RabbitMQ on
127.0.0.1:5672 and rabbitmqctl, as the tests do), starts the police (sender) and municipality
(receiver) nodes as their own processes (``zvg node run``, like a deployment) and yields a
:class:`Bench`; afterwards the processes are stopped and the vhost and users deleted. Messages
are seen arriving by reading the receiver's store read-only (:class:`StoreWatch` for SQLite,
:class:`PgWatch` for PostgreSQL): a row is visible only once its transaction committed, i.e.
after the fsync. ``store="postgres"`` puts both nodes' stores in a throwaway database on the
PostgreSQL of the tests (``ZVG_TEST_PG``, as ``tests/pg.py``), one schema per node, dropped
afterwards. On PostgreSQL ``processes=2`` runs each organisation as two node processes on its
one schema (decision 0109; the second is ``<key>-twin``: same configuration, its own port and
data directory), and the benchmark's ``POST`` s are spread over both sender processes' APIs.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from tests.e2e.harness import Fed, make_fed, request_from_example, teardown_fed
from tests.integration._cluster import RabbitCluster

#: Where the throwaway PostgreSQL database is made (the tests' server and role).
PG_ADMIN_URL = os.environ.get("ZVG_TEST_PG", "postgresql://zvg_test@127.0.0.1/zvg_test")

SENDER, RECEIVER = "politie", "gemeente"
#: POSTs in flight during the throughput rounds (an adapter with a worker pool).
HTTP_CONCURRENCY = 32


def _status_kib(pid: int, name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text("ascii").splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {name} for {pid}")


def peak_rss_kib(pid: int) -> int:
    """``VmHWM`` (peak resident set) of a process, in KiB."""
    return _status_kib(pid, "VmHWM")


def rss_kib(pid: int) -> int:
    """``VmRSS`` (resident set now) of a process, in KiB."""
    return _status_kib(pid, "VmRSS")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def summary(values: list[float]) -> dict[str, float]:
    """Count, p50, p99 and max of ``values`` (only the count when there are none)."""
    if not values:
        return {"count": 0.0}
    return {
        "count": float(len(values)),
        "p50": percentile(values, 50),
        "p99": percentile(values, 99),
        "max": max(values),
    }


class StoreWatch:
    """Read-only view of a node's SQLite store (WAL lets us read while the node writes)."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
        self.last_seq = self.scalar("SELECT coalesce(max(seq), 0) FROM inbox")

    def scalar(self, sql: str) -> int:
        return int(self.db.execute(sql).fetchone()[0])

    def new_rows(self) -> list[tuple[str, float]]:
        """(message id, received_at) of inbox rows committed since the last call."""
        rows = self.db.execute(
            "SELECT seq, message_id, received_at FROM inbox WHERE seq > ? ORDER BY seq",
            (self.last_seq,),
        ).fetchall()
        if rows:
            self.last_seq = int(rows[-1][0])
        return [(str(m), float(r)) for _, m, r in rows]

    def close(self) -> None:
        self.db.close()


class PgWatch(StoreWatch):
    """:class:`StoreWatch` of a node's PostgreSQL store (``?`` placeholders become ``%s``); its
    ``backends`` are the server processes serving that database, for their CPU."""

    def __init__(self, url: str) -> None:
        import psycopg

        self.pg = psycopg.connect(url, autocommit=True)
        self.db = self  # type: ignore[assignment]  # execute() below, as sqlite3's
        self.last_seq = self.scalar("SELECT coalesce(max(seq), 0) FROM inbox")

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        return self.pg.execute(sql.replace("?", "%s"), params)

    def backends(self) -> list[int]:
        """Process ids of the server processes on this database, this watch's own excepted."""
        rows = self.pg.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid != pg_backend_pid()"
        ).fetchall()
        return [int(pid) for (pid,) in rows]

    def close(self) -> None:
        self.pg.close()


@asynccontextmanager
async def pg_database(prefix: str) -> AsyncIterator[str]:
    """A throwaway database on the tests' PostgreSQL, dropped afterwards; yields its URL."""
    import psycopg

    name = f"{prefix}{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def put_on_postgres(fed: Fed, key: str, database: str) -> str:
    """Give node ``key`` a store in its own schema of ``database`` (``store.url``), migrated
    with ``zvg node migrate`` as ops do; returns the store URL."""
    import psycopg

    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{key}"')
    url = f"{database}?options=-csearch_path%3D{key}"
    config = fed.nodes[key].config
    with config.open("a", encoding="utf-8") as toml:
        toml.write(f'\n[store]\nurl = "{url}"\n')
    subprocess.run(
        [sys.executable, "-m", "gateway.cli", "node", "migrate", "--config", str(config)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return url


@dataclass
class Bench:
    fed: Fed
    sender_url: str
    token: str
    receiver: StoreWatch
    sender_store: StoreWatch
    envelope: bytes = b""
    pids: dict[str, int] = field(default_factory=dict)
    #: the local APIs of every sender process (``sender_url`` first); the POSTs of
    #: :func:`node_throughput` are spread over them
    sender_urls: list[str] = field(default_factory=list)

    def api(self, i: int) -> str:
        """The sender API the ``i``-th worker uses: round robin over the sender processes."""
        urls = self.sender_urls or [self.sender_url]
        return urls[i % len(urls)]


async def wait_ready(url: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(url + "/readyz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError(f"{url} did not become ready")


async def settle(bench: Bench, seconds: float = 60) -> None:
    """Wait until the sender has nothing queued or unanswered and the receiver no receipt to
    seal: the next measurement starts from a quiet pipeline."""
    deadline = time.monotonic() + seconds
    unanswered = pending = 0
    while time.monotonic() < deadline:
        unanswered = bench.sender_store.scalar(
            "SELECT count(*) FROM outbox_recipients r JOIN outbox o USING (message_id)"
            " WHERE r.status IN ('queued','sent') AND o.message_type != 'receipt'"
        )
        pending = bench.receiver.scalar("SELECT count(*) FROM receipts_pending")
        if unanswered + pending == 0:
            await asyncio.sleep(0.5)
            return
        await asyncio.sleep(0.2)
    statuses = bench.sender_store.db.execute(
        "SELECT r.status, count(*) FROM outbox_recipients r JOIN outbox o USING (message_id)"
        " WHERE r.status IN ('queued','sent') AND o.message_type != 'receipt' GROUP BY r.status"
    ).fetchall()
    raise RuntimeError(
        f"the pipeline did not settle in {seconds:.0f} s: {unanswered} messages queued or"
        f" unanswered at the sender ({dict(statuses)}), {pending} receipts pending at the"
        " receiver"
    )


def body(i: int) -> bytes:
    """The ``i``-th ``case.referral`` an adapter sends (its own case reference)."""
    return json.dumps(
        request_from_example("case.referral", case_ref=f"Veenstad-2026-{i % 10_000:04d}")
    ).encode()


async def post_answer(
    session: aiohttp.ClientSession, bench: Bench, message: bytes, url: str | None = None
) -> tuple[int, dict[str, Any], str | None]:
    """``POST /v1/messages`` at the sender (at ``url``, one of its processes' APIs, when given):
    (status, JSON answer, ``Retry-After``)."""
    async with session.post(
        (url or bench.sender_url) + "/v1/messages",
        data=message,
        headers={"Authorization": f"Bearer {bench.token}", "Content-Type": "application/json"},
    ) as response:
        doc = await response.json(content_type=None)
        return response.status, doc, response.headers.get("Retry-After")


async def post(
    session: aiohttp.ClientSession, bench: Bench, message: bytes, url: str | None = None
) -> str:
    """``POST /v1/messages`` until accepted, as an adapter does: after a ``429`` (the node's
    outbox is full; nothing was stored) it waits ``Retry-After`` seconds and sends again.
    Returns the message id; any other refusal raises."""
    while True:
        status, doc, retry_after = await post_answer(session, bench, message, url)
        if status == 202:
            return str(doc["message_id"])
        if status != 429:
            raise RuntimeError(f"POST answered {status}: {doc}")
        await asyncio.sleep(float(retry_after or 1))


async def node_throughput(bench: Bench, n: int, concurrency: int = HTTP_CONCURRENCY) -> float:
    """Seconds from the first POST until all ``n`` messages are committed in the receiver's
    inbox (``concurrency`` POSTs in flight, the workers spread over the sender's processes)."""
    todo = iter([body(i) for i in range(n)])
    bench.receiver.new_rows()
    seen = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker(url: str) -> None:
            for message in todo:
                await post(session, bench, message, url)

        t0 = time.perf_counter()
        workers = asyncio.gather(*(worker(bench.api(i)) for i in range(concurrency)))
        while seen < n:
            await asyncio.sleep(0.01)
            seen += len(bench.receiver.new_rows())
            if workers.done() and workers.exception() is not None:
                raise RuntimeError("a POST failed") from workers.exception()
        elapsed = time.perf_counter() - t0
        await workers
    return elapsed


@asynccontextmanager
async def running_pair(
    prefix: str,
    extra_orgs: tuple[str, ...] = (),
    receipt_entries: int | None = None,
    database: str | None = None,
    cluster: RabbitCluster | None = None,
    processes: int = 1,
) -> AsyncIterator[Bench]:
    """A provisioned federation of the receiver, the sender and ``extra_orgs`` (not started),
    with the receiver and sender nodes running as processes and ready (with
    ``limits.receipt_entries`` set when given: ``1`` turns coalesced receipts off; with their
    stores in PostgreSQL ``database``, a schema each, when given; on a private broker
    ``cluster`` instead of the shared one, when given; with ``processes=2`` (PostgreSQL only)
    two node processes per organisation on its one schema)."""
    if processes not in (1, 2) or (processes > 1 and database is None):
        raise ValueError("two node processes per organisation need a PostgreSQL database")
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        fed = make_fed(Path(tmp), (RECEIVER, SENDER, *extra_orgs), cluster=cluster)
        bench: Bench | None = None
        try:
            urls = (
                {k: put_on_postgres(fed, k, database) for k in (RECEIVER, SENDER)}
                if database
                else {}
            )
            if receipt_entries is not None:
                for key in (RECEIVER, SENDER):
                    with fed.nodes[key].config.open("a", encoding="utf-8") as toml:
                        toml.write(f"\n[limits]\nreceipt_entries = {receipt_entries}\n")
            # the twins copy the configuration written above (store, limits)
            twins = [fed.twin(key) for key in (RECEIVER, SENDER)] if processes > 1 else []
            for key in (RECEIVER, SENDER, *twins):
                fed.spawn(key)
            for key in (RECEIVER, SENDER, *twins):
                await wait_ready(fed.nodes[key].url)
            watch = (
                (PgWatch(urls[RECEIVER]), PgWatch(urls[SENDER]))
                if urls
                else tuple(
                    StoreWatch(fed.nodes[k].data_dir / "node.db") for k in (RECEIVER, SENDER)
                )
            )
            bench = Bench(
                fed,
                fed.nodes[SENDER].url,
                fed.nodes[SENDER].token,
                watch[0],
                watch[1],
                pids={key: p.pid for key, p in fed.processes.items()},
                sender_urls=[fed.nodes[k].url for k in (SENDER, *twins) if k.startswith(SENDER)],
            )
            yield bench
        finally:
            if bench is not None:
                bench.receiver.close()
                bench.sender_store.close()
            for key in list(fed.processes):
                process = fed.processes.pop(key)
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=60)
            teardown_fed(fed)
