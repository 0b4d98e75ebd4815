"""A node learns at once when its partners hold evidence against its own audit log (issue 14 §2).

In-process: the node's service on a real store, fed the witnessing answers a partner sends over
the broker. Threats: a node whose log was rewritten or truncated while it was stopped keeps
running quietly — its partners refuse to cosign (fork evidence) or hold a cosigned checkpoint
its records no longer reproduce, and nobody at the node hears of it until the log has grown.
Every such answer must raise the alarm at once: the metric ``zvg.audit.alarm`` (by kind and
partner) and an ERROR line. And a partner cannot raise a false alarm with a checkpoint this
node never signed.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from gateway.broker.transport import Delivery
from gateway.core import note
from gateway.core.broker_topology import WITNESS_CONTENT_TYPE
from gateway.core.decisions import Deliver
from gateway.errors import RemoteError
from gateway.testing.federation import FederationFiles
from gateway.testing.veenstad import org_by_key
from tests import stores
from tests.audit_logs import (
    AuditNode,
    alarms,
    fork_and_resign,
    make_federation,
    truncate,
    witnessed_node,
)

POL, GGZ = org_by_key("politie").oin, org_by_key("ggz").oin
NONCE = b"0123456789abcdef0123456789abcdef"


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> FederationFiles:
    return make_federation(tmp_path_factory.mktemp("fed") / "federation")


@pytest.fixture
async def node(tmp_path: Path, fed: FederationFiles) -> AuditNode:
    """A fully witnessed log of 12 records; checkpoints 4, 8 and 12, each cosigned by both."""
    return await witnessed_node(tmp_path, fed)


def from_partner(node: AuditNode, partner: str, body: bytes) -> Delivery:
    return Delivery(
        body=body,
        message_id="0190a0b0-0000-7000-8000-000000000001",
        user_id=f"zvg-{partner}",
        routing_key=f"{node.org}.{org_by_key(partner).oin}",
        redelivered=False,
        delivery_count=0,
        content_type=WITNESS_CONTENT_TYPE,
    )


async def deliver(node: AuditNode, reader: InMemoryMetricReader, *messages: Delivery) -> None:
    service = await node.service(reader)
    try:
        for message in messages:
            assert isinstance(await service.inbound.on_delivery(message), Deliver)
    finally:
        await service.store.close()


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_partner_refusing_our_checkpoint_as_a_fork_raises_an_alarm_at_once(
    node: AuditNode, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    reader = InMemoryMetricReader()
    await deliver(
        node,
        reader,
        from_partner(node, "politie", b"zvg-witness/v1 refused inconsistent 12\n"),
        from_partner(node, "ggz", b"zvg-witness/v1 refused bad_proof 12\n"),
    )
    assert alarms(reader) == {("inconsistent", POL): 1, ("bad_proof", GGZ): 1}
    assert any("inconsistent" in line and POL in line for line in errors(caplog))


async def test_a_partner_holding_a_cosigned_checkpoint_beyond_our_truncated_log_raises_an_alarm(
    node: AuditNode, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    held = node.cosigned_head("politie")  # politie cosigned checkpoint 12
    truncate(node, 8)  # records 8..11 and checkpoint 12 gone; checkpoint 8 still reproduces
    reader = InMemoryMetricReader()
    await deliver(
        node, reader, from_partner(node, "politie", b"zvg-witness/v1 head " + NONCE + b"\n" + held)
    )
    assert alarms(reader) == {("truncated", POL): 1}
    assert any("truncated" in line and "12" in line for line in errors(caplog))


async def test_a_partner_holding_a_checkpoint_our_rewritten_records_contradict_raises_an_alarm(
    node: AuditNode, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    held = node.cosigned_head("ggz")
    fork_and_resign(node)  # the node starts: its re-signed checkpoints match the new records
    reader = InMemoryMetricReader()
    await deliver(
        node, reader, from_partner(node, "ggz", b"zvg-witness/v1 head " + NONCE + b"\n" + held)
    )
    assert alarms(reader) == {("forked", GGZ): 1}
    assert any("forked" in line and GGZ in line for line in errors(caplog))


async def test_a_partner_cannot_raise_a_false_alarm_with_a_checkpoint_we_never_signed(
    node: AuditNode, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    # politie makes up a checkpoint of size 40 for our origin, signed with its own key.
    fake = note.sign_checkpoint(
        note.Checkpoint(node.origin, 40, bytes(32)), key=node.partner_keys["politie"]
    )
    reader = InMemoryMetricReader()
    await deliver(
        node, reader, from_partner(node, "politie", b"zvg-witness/v1 head " + NONCE + b"\n" + fake)
    )
    assert alarms(reader) == {}
    assert errors(caplog) == []


async def test_a_partner_whose_head_agrees_with_our_log_raises_no_alarm(
    node: AuditNode, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    reader = InMemoryMetricReader()
    held = node.cosigned_head("politie")
    await deliver(
        node, reader, from_partner(node, "politie", b"zvg-witness/v1 head " + NONCE + b"\n" + held)
    )
    assert alarms(reader) == {}
    assert errors(caplog) == []
    with stores.connect(node.db_path) as db:
        rows = db.execute("SELECT peer, nonce, size FROM peer_heads").fetchall()
    assert rows == [(POL, NONCE.decode(), 12)], "kept for zvg audit verify --witnesses"


# ------------------------------------------------------------------ the witness's answer


def test_a_witness_answers_with_the_checkpoint_it_cosigned_and_its_own_cosignature(
    node: AuditNode,
) -> None:
    from gateway.audit import witnessing

    head = node.heads["politie"]
    answer = witnessing.head_answer(
        witnessing.HeadRequest(NONCE.decode()),
        head,
        key=node.partner_keys["politie"],
        witness_name=node.directory.witness_name(POL),
    )
    assert answer.encode() == b"zvg-witness/v1 head " + NONCE + b"\n" + node.cosigned_head(
        "politie"
    )
    parsed = witnessing.parse_message(answer.encode())
    assert parsed == answer
    verified = witnessing.open_head(
        parsed.checkpoint or b"",
        directory=node.directory,
        log_org=node.org,
        witness_org=POL,
        now=datetime.now(UTC),
    )
    assert verified.checkpoint.size == 12
    # It is politie's word only: the same answer does not pass as GGZ's.
    with pytest.raises(RemoteError):
        witnessing.open_head(
            answer.checkpoint or b"",
            directory=node.directory,
            log_org=node.org,
            witness_org=GGZ,
            now=datetime.now(UTC),
        )
    never = witnessing.head_answer(
        witnessing.HeadRequest(NONCE.decode()), None, key=node.partner_keys["ggz"], witness_name="x"
    )
    assert witnessing.parse_message(never.encode()) == witnessing.HeadAnswer(NONCE.decode(), None)


@pytest.mark.parametrize(
    "body",
    [
        b"zvg-witness/v1 get-head \n",
        b"zvg-witness/v1 get-head 0123456789ABCDEF0123456789ABCDEF\n",  # not lowercase hex
        b"zvg-witness/v1 get-head " + NONCE,  # no newline
        b"zvg-witness/v1 get-head " + NONCE + b"\nextra",
        b"zvg-witness/v1 head " + NONCE + b"0\n",
        b"zvg-witness/v1 head " + NONCE + b"\nnot a signed note",
    ],
)
def test_malformed_head_messages_are_refused(body: bytes) -> None:
    from gateway.audit import witnessing

    with pytest.raises(RemoteError) as exc:
        witnessing.parse_message(body)
    assert exc.value.reason == "malformed"
