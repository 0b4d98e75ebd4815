"""TLS between nodes and the broker, with client-certificate login (DESIGN §8, docs/ops/broker.md).

The shared broker on 5672 must not be restarted or reconfigured, so this module starts its own
private RabbitMQ node (own node name, data directory, ports; loopback only) with exactly the
example configuration ``deploy/rabbitmq/rabbitmq-tls.conf`` — only the certificate directory and
the listener address rewritten — and stops it afterwards. Certificates come from a throwaway
test CA made here.

Threats: a node talking to the broker in clear; a client with a certificate from another CA, with
no certificate, or naming no broker user getting in.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.broker.provision import Rabbitmqctl
from gateway.broker.transport import (
    BrokerEndpoint,
    Consumer,
    Publisher,
    connect,
    tls_context,
)
from gateway.core.broker_topology import inbox_queue, routing_key
from gateway.errors import GatewayError
from tests.integration._envelopes import fake_envelope, sender_of, soon
from tests.integration._recorder import Recorder
from tests.integration._tls import Issued, issue, make_ca
from tests.integration._wait import until
from tests.integration.conftest import Federation, provision_federation, remove_federation

pytestmark = [pytest.mark.broker, pytest.mark.slow]

EXAMPLE_CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "rabbitmq" / "rabbitmq-tls.conf"
START_WAIT_S = 60.0
"""A node boots in 2-7 s here; the bound only stops a hang."""


@dataclass(frozen=True)
class TlsNode:
    node: str
    port: int
    directory: Path
    ca: Issued

    @property
    def ca_file(self) -> str:
        return str(self.directory / "ca.pem")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


@pytest.fixture(scope="module")
def tls_node() -> Iterator[TlsNode]:
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
    env = os.environ | {
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


@pytest.fixture
async def tls_fed(tls_node: TlsNode, tmp_path: Path) -> AsyncIterator[Federation]:
    fed = provision_federation(tmp_path, names=("zvh", "pol"), ctl=Rabbitmqctl(node=tls_node.node))
    fed.host, fed.port = "localhost", tls_node.port
    try:
        yield fed
    finally:
        for connection in fed.connections:
            await connection.close()
        remove_federation(fed, wait=True)


def _cert_endpoint(
    fed: Federation, node: TlsNode, name: str, *, ca: Issued | None = None, cn: str | None = None
) -> BrokerEndpoint:
    """An endpoint logging in as member ``name`` with a certificate for ``cn`` (default: its
    broker user) issued by ``ca`` (default: the node's CA)."""
    cert, key = issue(ca or node.ca, cn or fed[name].user, server=False).write(
        node.directory, f"client-{name}-{cn or 'own'}"
    )
    context = tls_context(node.ca_file, str(cert), str(key))
    return BrokerEndpoint(fed.host, fed.port, fed.vhost, fed[name].user, None, context)


def test_example_config_renders_for_a_private_node(tmp_path: Path) -> None:
    text = render_example_config(tmp_path, 15671)
    assert f"ssl_options.cacertfile = {tmp_path}/ca.pem" in text
    assert "listeners.ssl.default = 127.0.0.1:15671" in text
    assert "listeners.tcp = none" in text


async def test_nodes_exchange_messages_over_tls_with_certificate_login(
    tls_node: TlsNode, tls_fed: Federation
) -> None:
    pol = await connect(_cert_endpoint(tls_fed, tls_node, "pol"))
    zvh = await connect(_cert_endpoint(tls_fed, tls_node, "zvh"))
    tls_fed.connections += [pol, zvh]
    handler = Recorder()
    consumer = Consumer(
        zvh,
        queue=inbox_queue(tls_fed["zvh"].org),
        handler=handler,
        sender_of=sender_of,
        broker_user_of=tls_fed.broker_user_of,
    )
    publisher = Publisher(pol, org=tls_fed["pol"].org, broker_user=tls_fed["pol"].user)
    async with consumer, publisher:
        await publisher.publish(
            routing_key(tls_fed["zvh"].org, tls_fed["pol"].org),
            fake_envelope(tls_fed["pol"].org),
            message_id="over-tls",
            expiration=soon(),
        )
        await until(lambda: consumer.stats.delivered == 1)
    # The certificate's CN became the login, so the user_id check passes end to end.
    assert handler.deliveries[0].user_id == tls_fed["pol"].user


async def test_tls_broker_admits_only_certificates_of_its_ca_naming_a_broker_user(
    tls_node: TlsNode, tls_fed: Federation
) -> None:
    rogue = make_ca("rogue CA")
    pol = tls_fed["pol"]
    no_cert = tls_context(tls_node.ca_file)
    refused = {
        "certificate from another CA": _cert_endpoint(tls_fed, tls_node, "pol", ca=rogue),
        "certificate naming no broker user": _cert_endpoint(tls_fed, tls_node, "pol", cn="nobody"),
        "password without certificate": BrokerEndpoint(
            "localhost", tls_node.port, tls_fed.vhost, pol.user, pol.password, no_cert
        ),
        "plain AMQP on the TLS port": BrokerEndpoint(
            "localhost", tls_node.port, tls_fed.vhost, pol.user, pol.password, None
        ),
    }
    outcomes = {}
    for case, endpoint in refused.items():
        try:
            connection = await connect(endpoint, timeout_s=10)
        except GatewayError as exc:
            outcomes[case] = f"{type(exc).__name__}: {exc}"
            continue
        await connection.close()
        pytest.fail(f"{case}: connected")
    print("\n".join(f"{case}: {outcome}" for case, outcome in outcomes.items()))
    # Control: the right certificate gets in.
    connection = await connect(_cert_endpoint(tls_fed, tls_node, "pol"))
    await connection.close()
