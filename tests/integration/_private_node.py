"""A private RabbitMQ node for tests that must not touch the shared broker (decision 0037).

The shared broker on 127.0.0.1:5672 must never be restarted or reconfigured. Tests that need a
TLS listener, or need to restart a broker, get their own node instead: own node name
(``zvgtls…@localhost``), data, log, config, plugins and env files in a temporary directory, free
ports, Erlang distribution and epmd on loopback, configured with exactly
``deploy/rabbitmq/rabbitmq-tls.conf`` (certificate directory and listener address rewritten).
It is always addressed by name (``rabbitmqctl -n``), and stopped by name at the end.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.broker.provision import Rabbitmqctl
from gateway.broker.transport import BrokerEndpoint, tls_context
from tests.integration._tls import Issued, issue, make_ca

EXAMPLE_CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "rabbitmq" / "rabbitmq-tls.conf"
START_WAIT_S = 60.0
"""A node boots in 2-7 s here; the bound only stops a hang."""


@dataclass(frozen=True)
class TlsNode:
    """A running private RabbitMQ node with a TLS-only listener and certificate login."""

    node: str
    port: int
    directory: Path
    ca: Issued

    @property
    def ca_file(self) -> str:
        return str(self.directory / "ca.pem")

    @property
    def ctl(self) -> Rabbitmqctl:
        return Rabbitmqctl(node=self.node)


def _ephemeral_ports() -> tuple[int, int]:
    """The kernel's range of ports for outgoing connections (``ip_local_port_range``)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text("ascii").split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def _free_port() -> int:
    """A free loopback port below the kernel's ephemeral range, for a listener a test starts.

    Not one the kernel hands out itself (``bind(0)``): a broker member's port is free when it is
    picked and must still be free when the member opens its listener again after ``stop_app`` /
    ``start_app`` (a cluster join) — meanwhile any of the suite's hundreds of outgoing connections
    could take an ephemeral port as its own end (a red CI run: ``start_app`` failed on a taken
    listener port). Below the range only another test's explicit choice could collide, and a
    random pick over ~20,000 ports, checked by binding, makes that as unlikely as it gets."""
    low, _ = _ephemeral_ports()
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randrange(max(1024, low - 20_000), low)
        with socket.socket() as s, contextlib.suppress(OSError):
            s.bind(("127.0.0.1", port))
            return port
    raise RuntimeError("no free port below the ephemeral range")


def render_example_config(tls_dir: Path, port: int) -> str:
    """The example config with the certificate directory and a loopback listener filled in."""
    text = EXAMPLE_CONFIG.read_text(encoding="utf-8")
    assert "/etc/rabbitmq/tls/" in text
    assert "listeners.ssl.default = 5671\n" in text
    return text.replace("/etc/rabbitmq/tls/", f"{tls_dir}/").replace(
        "listeners.ssl.default = 5671\n", f"listeners.ssl.default = 127.0.0.1:{port}\n"
    )


def _why_no_private_node() -> str | None:
    if os.geteuid() != 0:
        return "starting a private RabbitMQ node needs root (it runs as the rabbitmq user)"
    if shutil.which("rabbitmq-server") is None or shutil.which("rabbitmqctl") is None:
        return "rabbitmq-server is not installed"
    return None


def _stop(node: str, env: dict[str, str], directory: Path) -> None:
    """Stop *our* node only: always by name (-n), never the shared one; kill its pid if needed."""
    result = subprocess.run(
        ["rabbitmqctl", "-q", "-n", node, "stop"],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=False,
        timeout=60,
    )
    pid_file = directory / "pid"
    if result.returncode != 0 and pid_file.exists():
        pid = int(pid_file.read_text(encoding="ascii").strip())
        os.kill(pid, signal.SIGTERM)


def run_private_node() -> Iterator[TlsNode]:
    """Start a private TLS node for the duration of the generator (see the module docstring)."""
    reason = _why_no_private_node()
    if reason is not None:
        pytest.skip(reason)
    directory = Path(tempfile.mkdtemp(prefix="zvgtls-"))
    tag = directory.name.removeprefix("zvgtls-").lower().replace("_", "")
    node = f"zvgtls{tag}@localhost"
    port, dist_port = _free_port(), _free_port()
    ca = make_ca("zvg test CA")
    ca.write(directory, "ca")
    issue(ca, "localhost", server=True).write(directory, "server")
    (directory / "rabbitmq.conf").write_text(render_example_config(directory, port), "utf-8")
    (directory / "enabled_plugins").write_text("[rabbitmq_auth_mechanism_ssl].\n", "utf-8")
    (directory / "rabbitmq-env.conf").write_text("", "utf-8")
    for path in [directory, *directory.iterdir()]:
        shutil.chown(path, "rabbitmq", "rabbitmq")
    env = rabbitmq_env(directory, node, dist_port)
    try:
        subprocess.run(
            ["rabbitmq-server", "-detached"],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=True,
            timeout=60,
        )
        deadline = time.monotonic() + START_WAIT_S
        while True:
            ping = subprocess.run(
                ["rabbitmq-diagnostics", "-q", "-n", node, "check_port_listener", str(port)],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                check=False,
            )
            if ping.returncode == 0:
                break
            if time.monotonic() > deadline:
                logs = "\n".join(p.read_text() for p in (directory / "log").glob("*.log"))
                pytest.fail(f"private TLS node did not start:\n{logs[-3000:]}")
            time.sleep(0.5)
        yield TlsNode(node, port, directory, ca)
    finally:
        _stop(node, env, directory)
        shutil.rmtree(directory, ignore_errors=True)


def cert_endpoint(
    node: TlsNode, vhost: str, user: str, *, ca: Issued | None = None, cn: str | None = None
) -> BrokerEndpoint:
    """An endpoint on ``node`` logging in as ``user`` with a fresh client certificate for ``cn``
    (default: ``user``) issued by ``ca`` (default: the node's CA)."""
    name = f"client-{user}-{cn or 'own'}-{time.monotonic_ns()}"
    cert, key = issue(ca or node.ca, cn or user, server=False).write(node.directory, name)
    context = tls_context(node.ca_file, str(cert), str(key))
    return BrokerEndpoint("localhost", node.port, vhost, user, None, context)


def rabbitmq_env(directory: Path, node: str, dist_port: int) -> dict[str, str]:
    """The environment of a private RabbitMQ node ``node`` whose files all live in ``directory``
    and whose Erlang distribution listens on loopback at ``dist_port`` (shared by the private
    TLS node, the test cluster's members and the deployment tests' broker)."""
    return os.environ | {
        "RABBITMQ_NODENAME": node,
        "RABBITMQ_CONF_ENV_FILE": str(directory / "rabbitmq-env.conf"),
        "RABBITMQ_CONFIG_FILE": str(directory / "rabbitmq.conf"),
        "RABBITMQ_ADVANCED_CONFIG_FILE": str(directory / "advanced.config"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(directory / "enabled_plugins"),
        "RABBITMQ_MNESIA_BASE": str(directory / "mnesia"),
        "RABBITMQ_LOG_BASE": str(directory / "log"),
        "RABBITMQ_PID_FILE": str(directory / "pid"),
        "RABBITMQ_PLUGINS_EXPAND_DIR": str(directory / "plugins-expand"),
        "RABBITMQ_DIST_PORT": str(dist_port),
        "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
        "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        "ERL_EPMD_ADDRESS": "127.0.0.1",
    }
