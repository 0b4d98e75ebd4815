"""A private RabbitMQ node booted with the compose federation's broker configuration.

Like ``tests/integration/_private_node.py`` (decision 0037: never touch the shared broker), but
configured the way ``deploy/compose/compose.yaml`` configures the official image: the conf.d
files it mounts (``deploy/rabbitmq/rabbitmq-tls.conf``, ``deploy/rabbitmq/load-definitions.conf``)
concatenated in their conf.d order, ``deploy/rabbitmq/enabled_plugins``, and the prepared TLS
files and definitions. Only the absolute paths under ``/etc/rabbitmq/`` and the listener address
are rewritten (compose mounts those folders; here they are a temporary directory).
"""

from __future__ import annotations

import os
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
from tests.integration._private_node import rabbitmq_env

ROOT = Path(__file__).resolve().parents[2]
RABBITMQ_DIR = ROOT / "deploy" / "rabbitmq"
CONF_D = (
    RABBITMQ_DIR / "rabbitmq-tls.conf",  # conf.d/20-zvg-tls.conf
    RABBITMQ_DIR / "load-definitions.conf",  # conf.d/30-zvg-definitions.conf
)
START_WAIT_S = 60.0
"""A node boots in 2-7 s here; the bound only stops a hang."""


@dataclass(frozen=True)
class BootedBroker:
    node: str
    port: int
    directory: Path

    @property
    def ctl(self) -> Rabbitmqctl:
        return Rabbitmqctl(node=self.node)


def why_no_private_node() -> str | None:
    if os.geteuid() != 0:
        return "starting a private RabbitMQ node needs root (it runs as the rabbitmq user)"
    if shutil.which("rabbitmq-server") is None or shutil.which("rabbitmqctl") is None:
        return "rabbitmq-server is not installed"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def render_compose_config(directory: Path, port: int) -> str:
    """The broker's conf.d files as one rabbitmq.conf, with /etc/rabbitmq/ → ``directory``."""
    text = "\n".join(path.read_text(encoding="utf-8") for path in CONF_D)
    assert "listeners.ssl.default = 5671\n" in text
    return text.replace("/etc/rabbitmq/", f"{directory}/").replace(
        "listeners.ssl.default = 5671\n", f"listeners.ssl.default = 127.0.0.1:{port}\n"
    )


def boot(tls_dir: Path, definitions_dir: Path) -> Iterator[BootedBroker]:
    """Boot a private node with the compose broker configuration; stop and delete it after."""
    reason = why_no_private_node()
    if reason is not None:
        pytest.skip(reason)
    directory = Path(tempfile.mkdtemp(prefix="zvgcmp-"))
    tag = directory.name.removeprefix("zvgcmp-").lower().replace("_", "")
    node = f"zvgcmp{tag}@localhost"
    port, dist_port = _free_port(), _free_port()
    shutil.copytree(tls_dir, directory / "tls")
    shutil.copytree(definitions_dir, directory / "definitions")
    # The prometheus plugin (enabled as in the official image) would listen on 15692 on every
    # interface: keep it on loopback, on a free port.
    prometheus = f"prometheus.tcp.ip = 127.0.0.1\nprometheus.tcp.port = {_free_port()}\n"
    config = render_compose_config(directory, port) + prometheus
    (directory / "rabbitmq.conf").write_text(config, "utf-8")
    shutil.copyfile(RABBITMQ_DIR / "enabled_plugins", directory / "enabled_plugins")
    (directory / "rabbitmq-env.conf").write_text("", "utf-8")
    for path in [directory, *directory.rglob("*")]:
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
            # The compose file's healthcheck, addressed to our node by name.
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
                pytest.fail(f"private broker did not start:\n{logs[-3000:]}")
            time.sleep(0.5)
        yield BootedBroker(node, port, directory)
    finally:
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
            os.kill(int(pid_file.read_text(encoding="ascii").strip()), signal.SIGTERM)
        shutil.rmtree(directory, ignore_errors=True)
