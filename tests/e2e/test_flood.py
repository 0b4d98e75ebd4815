"""Threat: a member floods a partner's inbox with junk under a legal routing key (issue 14).

Seen in an attack on the running federation: 12,000 junk messages in 4.7 s, each dead-lettered
with its own WARNING line and no audit record at all. A flood must be visible — counted per
sender and reason at once, one audit record and one log line per sender per interval — and
must not cost a log line or an audit record per envelope. The ZVH node runs in-process on the
real broker; the flooding member publishes with a plain AMQP client under its own broker user.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import aio_pika
import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from gateway.audit.inspect import open_readonly, query
from gateway.broker.provision import read_password_file
from gateway.core.broker_topology import CONTENT_TYPE, ENVELOPE_EXCHANGE, routing_key
from gateway.core.directory import TrustedDirectory
from gateway.core.envelope import seal
from gateway.keyfiles import load_signing_key
from gateway.node.config import load_config
from gateway.node.runner import Node
from gateway.telemetry import setup_telemetry
from schemas.catalogue import default_catalogue
from schemas.claims import parse_claims
from tests.e2e.harness import ROOT, Fed, running_fed

pytestmark = [pytest.mark.broker, pytest.mark.slow]

JUNK, EXPIRED, NO_USER_ID = 2_500, 400, 100
"""The flood: bytes that are no envelope; a well-formed envelope from the member that expired
long ago (refused only after the node opened it); junk without an AMQP user_id."""


@pytest.fixture
async def demo(tmp_path: Path) -> AsyncIterator[Fed]:
    async with running_fed(tmp_path, ("gemeente", "politie")) as fed:
        yield fed


def _expired_envelope(fed: Fed) -> bytes:
    """The example referral (created in the past, long expired), sealed by politie for the ZVH."""
    catalogue = default_catalogue()
    directory = TrustedDirectory.first(
        fed.files.directory.read_bytes(), now=datetime.now(UTC), catalogue=catalogue
    )
    pol, zvh = fed.nodes["politie"].org.oin, fed.nodes["gemeente"].org.oin
    claims = parse_claims(
        (ROOT / "tests" / "examples" / "case.referral.json").read_bytes(), catalogue=catalogue
    )
    assert (claims.sender.org, claims.recipient_orgs()) == (pol, (zvh,))
    signing = load_signing_key(fed.files.keys_dir("politie") / f"{pol}.signing.key.pem")
    return seal(
        claims,
        signing_key=signing,
        recipients=[directory.encryption_key(zvh, datetime.now(UTC))],
        rand=os.urandom,
    ).raw


async def _flood(fed: Fed) -> None:
    """Publish the flood from politie's broker user, confirmed, as fast as the broker takes it."""
    config = load_config(fed.nodes["politie"].config)
    assert config.broker.password_file is not None
    user = fed.users[1]
    connection = await aio_pika.connect(
        host="127.0.0.1",
        login=user,
        password=read_password_file(config.broker.password_file),
        virtualhost=fed.vhost,
    )
    try:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(ENVELOPE_EXCHANGE, ensure=False)
        key = routing_key(fed.nodes["gemeente"].org.oin, fed.nodes["politie"].org.oin)
        expired = _expired_envelope(fed)
        window = asyncio.Semaphore(256)

        async def one(n: int, body: bytes, user_id: str | None) -> None:
            async with window:
                message = aio_pika.Message(
                    body, user_id=user_id, message_id=f"flood-{n}", content_type=CONTENT_TYPE
                )
                await exchange.publish(message, key)

        bodies: list[tuple[bytes, str | None]] = [(f"junk-{n}".encode(), user) for n in range(JUNK)]
        bodies += [(expired, user)] * EXPIRED
        bodies += [(f"anonymous-{n}".encode(), None) for n in range(NO_USER_ID)]
        await asyncio.gather(*(one(n, b, u) for n, (b, u) in enumerate(bodies)))
    finally:
        await connection.close()


def _records(fed: Fed, operation: str) -> list[dict[str, object]]:
    with open_readonly(fed.nodes["gemeente"].data_dir / "node.db") as db:
        return query(db, operation=operation)


def _warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("gateway")
    ]


async def test_a_junk_flood_gives_one_record_and_one_log_line_per_sender_per_interval(
    demo: Fed, caplog: pytest.LogCaptureFixture
) -> None:
    fed = demo
    caplog.set_level(logging.WARNING)
    pol = fed.nodes["politie"].org.oin
    config = load_config(fed.nodes["gemeente"].config)
    # An interval longer than the test: the summary is written when the test asks for it.
    config = config.model_copy(
        update={
            "audit": config.audit.model_copy(update={"refusal_interval_seconds": 3600.0}),
        }
    )
    reader = InMemoryMetricReader()
    org = fed.nodes["gemeente"].org
    telemetry = setup_telemetry(org=org.oin, node_id=org.node_id, env={}, metric_readers=[reader])
    node = await Node.start(config, telemetry=telemetry)
    fed.running["gemeente"] = node
    await asyncio.wait_for(node.connected.wait(), timeout=20)
    total = JUNK + EXPIRED + NO_USER_ID

    await _flood(fed)
    consumer = node.consumer
    assert consumer is not None
    async with asyncio.timeout(120):  # a bound against a hang, not a timing claim
        while consumer.stats.rejected < total:  # noqa: ASYNC110 - counters, no event
            await asyncio.sleep(0.1)
    assert consumer.stats.rejected == total
    assert consumer.stats.delivered == 0

    per_envelope = _warnings(caplog)
    assert per_envelope == [], (
        f"{len(per_envelope)} WARNING lines and {len(_records(fed, 'message.refuse'))} "
        f"message.refuse records for {total} refused envelopes"
    )
    assert _records(fed, "message.refuse") == []

    await node.service.refusals.flush()

    (record,) = _records(fed, "refusal.summary")
    view = record["view"]
    assert isinstance(view, dict)
    assert (view["status"], view["peer"]) == ("rejected", pol)
    assert view["detail"] == {
        "total": total,
        "malformed": JUNK,
        "expired": EXPIRED,
        "unknown_sender": NO_USER_ID,
    }
    (line,) = _warnings(caplog)
    text = line.getMessage()
    assert pol in text
    assert f"{total} envelope(s)" in text
    assert "malformed 2500" in text
    counted: dict[str, float] = {}
    data = reader.get_metrics_data()
    assert data is not None
    for metric in data.resource_metrics[0].scope_metrics[0].metrics:
        if metric.name == "zvg.rejections":
            for p in metric.data.data_points:
                attrs = dict(p.attributes or {})
                if attrs.get("sender") == pol and p.value:  # type: ignore[union-attr]  # sum points; the node seeds the others at 0
                    counted[str(attrs["reason"])] = float(p.value)  # type: ignore[union-attr]  # counters are sum points; histograms lack .value
    assert counted == {"malformed": JUNK, "expired": EXPIRED, "unknown_sender": NO_USER_ID}

    # Nothing to report: the next interval writes nothing.
    await node.service.refusals.flush()
    assert len(_records(fed, "refusal.summary")) == 1
    assert len(_warnings(caplog)) == 1
