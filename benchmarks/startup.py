"""Start-up cost of a node process and of a ``zvg`` command: the CPU their imports take.

    .venv/bin/python -m benchmarks.startup [--rounds N]

Every node process (a restart, a standby taking over, each of a deployment's processes) and
every ``zvg`` command (an operator's, a service manager's ``node check-config``, a health check)
first imports its code. This runs, each in a fresh interpreter and alternating, ``--rounds``
times (default 15):

- **libraries**: importing only the libraries a node stands on (aiohttp with its server,
  aio-pika, pydantic, cryptography's EC keys, the OpenTelemetry SDK, click) — the baseline;
- **node**: ``import gateway.node.runner`` (what ``zvg node run`` imports before it reads its
  configuration);
- **zvg**: ``import gateway.cli`` (what every ``zvg`` command imports first).

Each figure is the process's user + system CPU (``os.wait4``), the median over the rounds, and
the node's and ``zvg``'s import over the libraries' is the ratio to compare across machines.
Bytecode caches are written on the first round (as a deployment's image has them). Results go
to ``benchmarks/results/startup.json``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

from benchmarks._report import print_table, write_results

LIBRARIES = (
    "import aiohttp, aiohttp.web, aio_pika, pydantic, click, "
    "cryptography.hazmat.primitives.asymmetric.ec, opentelemetry.sdk.trace"
)
CASES = {
    "libraries": LIBRARIES,
    "node": "import gateway.node.runner",
    "zvg": "import gateway.cli",
}


def cpu_ms(code: str) -> float:
    """User + system CPU, in ms, of a fresh interpreter that runs ``code``."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    process = subprocess.Popen([sys.executable, "-c", code], env=env)
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"benchmarks.startup: {code!r} failed")
    return (usage.ru_utime + usage.ru_stime) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    for code in CASES.values():
        cpu_ms(code)  # bytecode caches, page cache
    samples: dict[str, list[float]] = {name: [] for name in CASES}
    for _ in range(args.rounds):
        for name, code in CASES.items():
            samples[name].append(cpu_ms(code))
    median = {name: statistics.median(values) for name, values in samples.items()}
    base = median["libraries"]
    print_table(
        ["imports", "CPU ms (median)", "min", "max", "x libraries"],
        [
            [name, median[name], min(values), max(values), median[name] / base]
            for name, values in samples.items()
        ],
    )
    write_results(
        "startup",
        {
            "rounds": args.rounds,
            "cpu_ms_median": median,
            "cpu_ms_samples": samples,
            "ratio_to_libraries": {name: median[name] / base for name in CASES},
        },
    )


if __name__ == "__main__":
    main()
