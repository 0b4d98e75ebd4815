"""TLS between nodes and the broker, with client-certificate login (docs/ops/broker.md §4).

The shared broker on 5672 must not be restarted or reconfigured, so these tests run against a
private RabbitMQ node (tests/integration/_private_node.py) configured with exactly the example
``deploy/rabbitmq/rabbitmq-tls.conf`` — only the certificate directory and the listener address
rewritten. Certificates come from a throwaway test CA.

Threats: a node talking to the broker in clear; a client with a certificate from another CA, with
no certificate, or naming no broker user getting in.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.broker.transport import BrokerEndpoint, Consumer, Publisher, connect, tls_context
from gateway.core.broker_topology import inbox_queue, routing_key
from gateway.errors import GatewayError
from tests.integration._envelopes import fake_envelope, sender_of, soon
from tests.integration._private_node import TlsNode, cert_endpoint, render_example_config
from tests.integration._recorder import Recorder
from tests.integration._tls import Issued, make_ca
from tests.integration._wait import until
from tests.integration.conftest import Federation, provision_federation, remove_federation

pytestmark = [pytest.mark.broker, pytest.mark.slow]


@pytest.fixture
async def tls_fed(tls_node: TlsNode, tmp_path: Path) -> AsyncIterator[Federation]:
    """A throwaway federation (zvh, pol) on the private TLS node."""
    fed = provision_federation(tmp_path, names=("zvh", "pol"), ctl=tls_node.ctl)
    fed.host, fed.port = "localhost", tls_node.port
    try:
        yield fed
    finally:
        for connection in fed.connections:
            await connection.close()
        remove_federation(fed)


def _endpoint(
    fed: Federation, node: TlsNode, name: str, *, ca: Issued | None = None, cn: str | None = None
) -> BrokerEndpoint:
    return cert_endpoint(node, fed.vhost, fed[name].user, ca=ca, cn=cn)


def test_example_config_renders_for_a_private_node(tmp_path: Path) -> None:
    text = render_example_config(tmp_path, 15671)
    assert f"ssl_options.cacertfile = {tmp_path}/ca.pem" in text
    assert "listeners.ssl.default = 127.0.0.1:15671" in text
    assert "listeners.tcp = none" in text


async def test_nodes_exchange_messages_over_tls_with_certificate_login(
    tls_node: TlsNode, tls_fed: Federation
) -> None:
    pol = await connect(_endpoint(tls_fed, tls_node, "pol"))
    zvh = await connect(_endpoint(tls_fed, tls_node, "zvh"))
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
        # Ask the broker how the two nodes are connected.
        rows = tls_fed.ctl.json(
            "list_connections", "user", "vhost", "ssl", "ssl_protocol", "auth_mechanism"
        )
    # The certificate's CN became the login, so the user_id check passes end to end.
    assert handler.deliveries[0].user_id == tls_fed["pol"].user
    ours = [r for r in rows if r["vhost"] == tls_fed.vhost]
    assert {r["user"] for r in ours} == {tls_fed["pol"].user, tls_fed["zvh"].user}
    assert {(r["ssl"], r["ssl_protocol"], r["auth_mechanism"]) for r in ours} == {
        (True, "tlsv1.3", "EXTERNAL")
    }


async def test_tls_broker_admits_only_certificates_of_its_ca_naming_a_broker_user(
    tls_node: TlsNode, tls_fed: Federation
) -> None:
    rogue = make_ca("rogue CA")
    pol = tls_fed["pol"]
    no_cert = tls_context(tls_node.ca_file)
    refused = {
        "certificate from another CA": _endpoint(tls_fed, tls_node, "pol", ca=rogue),
        "certificate naming no broker user": _endpoint(tls_fed, tls_node, "pol", cn="nobody"),
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
    connection = await connect(_endpoint(tls_fed, tls_node, "pol"))
    await connection.close()
