"""A private three-member RabbitMQ cluster for the broker-cluster test (decision 0093).

Like the private TLS node (``_private_node.py``, decision 0037) it never touches the shared broker
on 5672: three nodes ``zvgc<tag>-<i>@localhost``, each with its own data, log, config, plugins
(none: management is off) and env files in one temporary directory, free AMQP and distribution
ports on loopback, and the machine's Erlang cookie (``/var/lib/rabbitmq/.erlang.cookie``: the
server and ``rabbitmqctl`` run as root both run as the ``rabbitmq`` user, whose cookie it is, so
every member and every ``rabbitmqctl -n`` share it). The three boot at the same time;
members 2 and 3 then join member 1 with ``rabbitmqctl join_cluster`` (also at the same time).
Every command names its node (``-n``); at the end each is stopped by name (or its own pid
SIGTERMed) and the directory removed.

Quorum queues declared on it get all three members (their initial group size defaults to the
cluster size).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.broker.provision import Rabbitmqctl
from tests.integration._private_node import _free_port, _why_no_private_node, rabbitmq_env

SIZE = 3
CLI_NOT_STARTED = "Distribution failed"
"""What rabbitmqctl says when its own Erlang node could not start (it never reached a member)."""
START_WAIT_S = 120.0
"""Three nodes booting at once on two loaded cores take 5-20 s; the bound only stops a hang."""


@dataclass(frozen=True)
class ClusterMember:
    """One running member: its Erlang node name, AMQP port and environment."""

    node: str
    port: int
    directory: Path
    env: dict[str, str]

    @property
    def ctl(self) -> Rabbitmqctl:
        return Rabbitmqctl(node=self.node)

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``rabbitmqctl -n <this member> args``; raises on failure when ``check``. Run again
        (up to twice more) when rabbitmqctl could not start its own Erlang node — its name or
        port taken by one of the many rabbitmqctl runs of a busy test machine — since it then
        never reached the member."""
        for _ in range(3):
            result = subprocess.run(
                ["rabbitmqctl", "-q", "-n", self.node, *args],
                env=self.env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                check=False,
                timeout=120,
            )
            if result.returncode == 0 or CLI_NOT_STARTED not in result.stderr:
                break
        if check:
            result.check_returncode()
        return result

    def stop_app(self) -> None:
        """Stop RabbitMQ on this member (the Erlang node stays up, so it can be started again)."""
        self.run("stop_app")

    def start_app(self) -> None:
        self.run("start_app")


@dataclass(frozen=True)
class RabbitCluster:
    """A running private cluster; ``boot_seconds`` is what starting it took (reported)."""

    members: tuple[ClusterMember, ...]
    directory: Path
    boot_seconds: float

    @property
    def ctl(self) -> Rabbitmqctl:
        """``rabbitmqctl`` addressed at member 1 (provisioning applies cluster-wide)."""
        return self.members[0].ctl

    def member_on(self, port: int) -> ClusterMember:
        return next(m for m in self.members if m.port == port)


def _prepare(root: Path, tag: str, index: int) -> ClusterMember:
    directory = root / f"m{index}"
    directory.mkdir()
    port = _free_port()
    node = f"zvgc{tag}-{index}@localhost"
    (directory / "rabbitmq.conf").write_text(
        f"listeners.tcp.default = 127.0.0.1:{port}\nloopback_users = none\n", "utf-8"
    )
    (directory / "enabled_plugins").write_text("[].\n", "utf-8")
    (directory / "rabbitmq-env.conf").write_text("", "utf-8")
    for path in [directory, *directory.iterdir()]:
        shutil.chown(path, "rabbitmq", "rabbitmq")
    return ClusterMember(node, port, directory, rabbitmq_env(directory, node, _free_port()))


def _boot(member: ClusterMember) -> None:
    subprocess.run(
        ["rabbitmq-server", "-detached"],
        env=member.env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=True,
        timeout=60,
    )
    # Waiting for the AMQP listener (RabbitMQ opens it last in its boot) costs a socket per
    # half second; asking rabbitmq-diagnostics would start an Erlang VM (~1 s of CPU) each time.
    deadline = time.monotonic() + START_WAIT_S
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", member.port), 1):
            return
        if time.monotonic() > deadline:
            logs = "\n".join(p.read_text() for p in (member.directory / "log").glob("*.log"))
            pytest.fail(f"cluster member {member.node} did not start:\n{logs[-3000:]}")
        time.sleep(0.5)


def _join(member: ClusterMember, seed: ClusterMember) -> None:
    member.run("stop_app")
    member.run("join_cluster", seed.node)
    member.run("start_app")


def _stop(member: ClusterMember) -> None:
    """Stop *this* member by name; SIGTERM its own pid if that fails or does not end in time
    (a member holding hundreds of quorum queues, benchmarks/provision.py, stops slowly)."""
    try:
        stopped = member.run("stop", check=False).returncode == 0
    except subprocess.TimeoutExpired:
        stopped = False
    pid_file = member.directory / "pid"
    if not stopped and pid_file.exists():
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid_file.read_text(encoding="ascii").strip()), signal.SIGTERM)


def _each(function: Callable[[ClusterMember], None], members: Sequence[ClusterMember]) -> None:
    """Run ``function`` on every member at once (booting and joining are mostly waiting)."""
    if not members:  # a one-member "cluster" (benchmarks/provision.py) joins nobody
        return
    with ThreadPoolExecutor(len(members)) as pool:
        for future in [pool.submit(function, m) for m in members]:
            future.result()


def run_cluster() -> Iterator[RabbitCluster]:
    """Start the cluster for the duration of the generator (see the module docstring)."""
    reason = _why_no_private_node()
    if reason is not None:
        pytest.skip(reason)
    root = Path(tempfile.mkdtemp(prefix="zvgc-"))
    shutil.chown(root, "rabbitmq", "rabbitmq")
    tag = secrets.token_hex(3)
    members = tuple(_prepare(root, tag, i + 1) for i in range(SIZE))
    started = time.monotonic()
    try:
        _each(_boot, members)
        seed = members[0]
        _each(lambda m: _join(m, seed), members[1:])
        status = json.loads(seed.run("cluster_status", "--formatter", "json").stdout)
        missing = [m.node for m in members if m.node not in status["running_nodes"]]
        assert not missing, f"members that did not join: {missing}"
        yield RabbitCluster(members, root, time.monotonic() - started)
    finally:
        _each(_stop, members)
        shutil.rmtree(root, ignore_errors=True)
