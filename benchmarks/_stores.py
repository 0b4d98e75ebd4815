"""The store rounds of ``benchmarks.e2e`` (``--stores``): node throughput and CPU per message
with the nodes' state on SQLite and on PostgreSQL, side by side (issue 19 §5).

One :class:`Setup` per (store, processes per organisation): the same two-node pair as the main
measurement (:func:`benchmarks._pair.running_pair`; on PostgreSQL each node's store is a schema
of one throwaway database, migrated with ``zvg node migrate``). Every pair runs for the whole
measurement and the rounds **alternate** between them (round 1 of each, then round 2 of each,
...), so a load that comes and goes on the shared machine hits every setup alike; each round's
throughput is also reported as a ratio to the SQLite pair's in the same round.

A round: ``n`` ``POST /v1/messages`` (32 in flight) to the sender until all are committed in the
receiver's inbox (messages/s), then until the pipeline settled (receipts sealed, sent and
verified), and the CPU time every process of the setup used in between, per message: both
nodes, the broker, and on PostgreSQL the database server's processes serving the two stores
(``pg_stat_activity``; the server's background writers are not counted, nor is this client).

``processes`` is the number of node processes per organisation: 1, or 2 on PostgreSQL (decision
0109: both processes of an organisation on its one schema, the benchmark's ``POST`` s spread
over both sender processes' APIs). SQLite keeps one process per organisation (its data directory
lock; a second process stands by), so :func:`plan` leaves a SQLite 2-process setup out and says
so. Every node process of a setup is counted (``sender`` and ``receiver`` sum an
organisation's processes; ``node_cpu_us`` has them one by one), and a 2-process setup's rounds
are also reported as a ratio to the same store's 1-process rounds, when both run.
"""

from __future__ import annotations

import os
import time
from collections.abc import Generator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import Any, cast

from benchmarks._pair import (
    RECEIVER,
    SENDER,
    Bench,
    PgWatch,
    node_throughput,
    pg_database,
    running_pair,
    settle,
)
from tests.integration import _cluster

STORES = ("sqlite", "postgres")
#: Node processes per organisation that can be measured, by store (decision 0109).
SUPPORTED_PROCESSES = {"sqlite": (1,), "postgres": (1, 2)}
WARM_UP = 200


@dataclass(frozen=True)
class Setup:
    store: str
    processes: int = 1

    @property
    def name(self) -> str:
        return f"{self.store}, {self.processes} process{'es' if self.processes > 1 else ''}/org"


@dataclass
class Rounds:
    msgs_per_s: list[float] = field(default_factory=list)
    #: per round: CPU microseconds per message by process kind (sender, receiver, broker, db)
    cpu_us: list[dict[str, float]] = field(default_factory=list)
    #: per round: CPU microseconds per message of each node process (``politie-twin``, ...)
    node_cpu_us: list[dict[str, float]] = field(default_factory=list)


def check(setups: list[Setup]) -> None:
    """Refuse a setup this version cannot run (one line)."""
    for setup in setups:
        if setup.store not in STORES:
            raise SystemExit(f"--stores: unknown store {setup.store!r} (known: {STORES})")
        if setup.processes not in SUPPORTED_PROCESSES[setup.store]:
            raise SystemExit(
                f"--processes {setup.processes}: {setup.store} runs"
                f" {' or '.join(map(str, SUPPORTED_PROCESSES[setup.store]))} node process(es)"
                " per organisation (several share one PostgreSQL database, decision 0109)"
            )


def plan(stores: str, processes: str) -> tuple[list[Setup], list[str]]:
    """The setups of ``--stores a,b --processes 1,2`` (every store with every count) and a line
    for each combination left out: SQLite keeps one process per organisation. A list that
    leaves nothing to run, or a store or count nobody can run, is refused (one line)."""
    try:
        counts = [int(n) for n in processes.split(",")]
    except ValueError:
        raise SystemExit(f"--processes: not a list of numbers: {processes!r}") from None
    setups, skipped = [], []
    for store in stores.split(","):
        for n in counts:
            setup = Setup(store, n)
            if store == "sqlite" and n > 1:
                skipped.append(
                    f"{setup.name}: not run — SQLite keeps one node process per organisation"
                    " (the data directory lock; a second process only stands by)"
                )
                continue
            setups.append(setup)
    check(setups)
    if not setups:
        raise SystemExit("--stores/--processes: nothing to run (" + "; ".join(skipped) + ")")
    return setups, skipped


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text("ascii").rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pids(bench: Bench, broker: int) -> dict[str, list[int]]:
    pids = {
        "sender": [p for k, p in bench.pids.items() if k.startswith(SENDER)],
        "receiver": [p for k, p in bench.pids.items() if k.startswith(RECEIVER)],
        "broker": [broker],
    }
    if isinstance(bench.receiver, PgWatch):
        pids["database"] = bench.receiver.backends()
    return pids


async def _round(
    bench: Bench, messages: int, broker: int
) -> tuple[float, dict[str, float], dict[str, float]]:
    """(messages/s, CPU µs per message by kind, CPU µs per message by node process)."""
    before_pids = _pids(bench, broker)
    before = {pid: _cpu_s(pid) for pids in before_pids.values() for pid in pids}
    elapsed = await node_throughput(bench, messages)
    await settle(bench)
    # Backends that started during the round count from 0.
    after_pids = _pids(bench, broker)
    cpu = {
        kind: sum(_cpu_s(pid) - before.get(pid, 0.0) for pid in pids) / messages * 1e6
        for kind, pids in after_pids.items()
    }
    nodes = {key: (_cpu_s(pid) - before[pid]) / messages * 1e6 for key, pid in bench.pids.items()}
    return messages / elapsed, cpu, nodes


def paired_ratios(rounds: list[float], base: list[float]) -> list[float]:
    """Each round's throughput over the base setup's in the same round (the load alike)."""
    return [a / b for a, b in zip(rounds, base, strict=True)]


async def measure(
    setups: list[Setup], messages: int, rounds: int, private_broker: bool = False
) -> dict[str, Any]:
    """Run every setup's pair at once and alternate their rounds; the results by setup name.
    ``private_broker``: on a RabbitMQ node booted for the run (``tests/integration/_cluster.py``,
    one member) rather than the shared one, whose ``rabbitmqctl`` other test runs may crowd."""
    check(setups)
    results = {s.name: Rounds() for s in setups}
    load_before = os.getloadavg()[0]
    async with AsyncExitStack() as stack:
        cluster = None
        if private_broker:
            _cluster.SIZE = 1
            booting = cast(Generator[_cluster.RabbitCluster, None, None], _cluster.run_cluster())
            cluster = next(booting)
            stack.callback(booting.close)
        benches: dict[str, Bench] = {}
        for setup in setups:
            database = None
            if setup.store == "postgres":
                database = await stack.enter_async_context(pg_database("zvg_bench_e2e_"))
            benches[setup.name] = await stack.enter_async_context(
                running_pair(
                    f"zvg-bench-{setup.store}-",
                    database=database,
                    cluster=cluster,
                    processes=setup.processes,
                )
            )
        broker = int(
            next(iter(benches.values())).fed.ctl.run("eval", "list_to_integer(os:getpid()).")
        )
        for bench in benches.values():
            await node_throughput(bench, WARM_UP)
            await settle(bench)
        for _ in range(rounds):
            for name, bench in benches.items():
                try:
                    rate, cpu, nodes = await _round(bench, messages, broker)
                except RuntimeError as e:
                    raise RuntimeError(f"{name}: {e}") from e
                results[name].msgs_per_s.append(rate)
                results[name].cpu_us.append(cpu)
                results[name].node_cpu_us.append(nodes)
    base = results[setups[0].name].msgs_per_s
    one_process = {s.store: results[s.name].msgs_per_s for s in setups if s.processes == 1}
    by_name = {s.name: s for s in setups}
    return {
        "messages_per_round": messages,
        "rounds": rounds,
        "cpus": os.cpu_count(),
        "broker": "private RabbitMQ node" if private_broker else "shared RabbitMQ",
        "load_average": {"before": load_before, "after": os.getloadavg()[0]},
        "measured_at_unix": time.time(),
        "setups": {
            name: {
                "msgs_per_s_rounds": r.msgs_per_s,
                "msgs_per_s": median(r.msgs_per_s),
                "processes_per_org": by_name[name].processes,
                "ratio_to_first_rounds": paired_ratios(r.msgs_per_s, base),
                "ratio_to_one_process_rounds": (
                    paired_ratios(r.msgs_per_s, one_process[by_name[name].store])
                    if by_name[name].store in one_process
                    else None
                ),
                "cpu_us_per_msg_rounds": r.cpu_us,
                "cpu_us_per_msg": {kind: median(c[kind] for c in r.cpu_us) for kind in r.cpu_us[0]},
                "node_cpu_us_per_msg_rounds": r.node_cpu_us,
                "node_cpu_us_per_msg": {
                    key: median(c[key] for c in r.node_cpu_us) for key in r.node_cpu_us[0]
                },
            }
            for name, r in results.items()
        },
    }


def sizing(cpu_us_per_msg: float) -> dict[str, float]:
    """Cores busy at 10, 50, 100 and 500 messages/s at this CPU cost per message (all
    processes of the setup), before head-room."""
    return {str(rate): rate * cpu_us_per_msg / 1e6 for rate in (10, 50, 100, 500)}
