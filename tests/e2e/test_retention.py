"""Retention (issue 6 §7) on real nodes with their clocks moved forward: payloads go when their
time is up, what status, dedupe and audit need stays, and unanswered messages become ``expired``.

Threats: case data kept longer than the configured retention; the evidence (audit records,
signed receipts, status) deleted with it; a message that never arrived shown as in transit for
ever; a replayed envelope delivered again once the receiver forgot it had seen it.

Each node's ``NodeService.clock`` is replaced by a moved clock and ``purge_once()`` runs one
retention pass (the periodic pass is set to once a day so it cannot interfere).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gateway.core.broker_topology import routing_key
from gateway.node.runner import Node
from tests.e2e.harness import Fed, request_from_example

pytestmark = pytest.mark.broker

GEM, POL, GGZ = "00000001999000001000", "00000001999000002000", "00000001999000004000"
RETENTION = """
[retention]
inbox_after_ack_days = 2
outbox_after_final_days = 1
purge_interval_seconds = 86400
"""


def _configure(fed: Fed, *keys: str) -> None:
    for key in keys:
        config = fed.nodes[key].config
        config.write_text(config.read_text("utf-8") + RETENTION, "utf-8")


def _move(node: Node, to: datetime) -> None:
    node.service.clock = lambda: to


def _query(node: Node, sql: str, *args: object) -> list[tuple[Any, ...]]:
    def job(db: sqlite3.Connection) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in db.execute(sql, args)]

    return node.store.run_sync(job)


def _audit_names(node: Node, message_id: str) -> set[str]:
    return {
        r[0] for r in _query(node, "SELECT name FROM audit_records WHERE message_id=?", message_id)
    }


def _purge_records(node: Node) -> list[dict[str, Any]]:
    rows = _query(node, "SELECT view FROM audit_records WHERE name='retention.purge' ORDER BY idx")
    return [json.loads(r[0])["detail"] for r in rows]


async def _delivered_and_acked(fed: Fed) -> tuple[str, datetime]:
    pol, gem = fed.client("politie"), fed.client("gemeente")
    code, doc = await pol.send(request_from_example("case.referral"))
    assert code == 202, doc
    message_id = doc["message_id"]
    assert [i["message_id"] for i in await gem.inbox(wait=15)] == [message_id]
    acked_at = datetime.now(UTC)
    assert await gem.ack(message_id) == 204
    await pol.wait_status(message_id, "accepted")
    return message_id, acked_at


async def test_inbox_payload_goes_after_retention_and_the_evidence_stays(fed: Fed) -> None:
    _configure(fed, "politie", "gemeente")
    await fed.start("politie")
    gem = await fed.start("gemeente")
    message_id, acked_at = await _delivered_and_acked(fed)
    payload = "SELECT claims IS NOT NULL, inner_jws IS NOT NULL FROM inbox WHERE message_id=?"
    assert _query(gem, payload, message_id) == [(1, 1)]
    before = _audit_names(gem, message_id)
    assert {"message.receive", "message.deliver", "adapter.ack"} <= before

    _move(gem, acked_at + timedelta(days=2) - timedelta(minutes=1))
    assert await gem.service.retention.purge_once() == (0, 0, 0, 0)
    assert _query(gem, payload, message_id) == [(1, 1)], "not before its time"

    _move(gem, acked_at + timedelta(days=2, minutes=1))
    assert await gem.service.retention.purge_once() == (0, 1, 0, 0)
    assert _query(gem, payload, message_id) == [(0, 0)], "claims and the signed inner JWS"
    assert _query(
        gem, "SELECT status, length(digest) FROM inbox WHERE message_id=?", message_id
    ) == [("accepted", 32)], "what dedupe needs stays until the replay window closed"
    assert _audit_names(gem, message_id) == before, "no audit record is touched"
    assert _purge_records(gem) == [
        {"inbox_payloads": 1, "outbox_envelopes": 0, "inbox_rows": 0, "audit_personal_parts": 0}
    ]
    # The adapter sees nothing new, and a late second ack is still harmless.
    assert await fed.client("gemeente").inbox(wait=0) == []
    assert await fed.client("gemeente").ack(message_id) == 204

    # After the replay window (limits.max_age_seconds + skew) the (sender, id) row goes too; the
    # receipts we sent (expired at +3 days) lose their envelopes a day later.
    _move(gem, acked_at + timedelta(days=7, minutes=10))
    assert await gem.service.retention.purge_once() == (0, 0, 2, 1)
    assert _query(gem, "SELECT count(*) FROM inbox") == [(0,)]
    assert _query(gem, "SELECT count(*) FROM outbox WHERE envelope IS NOT NULL") == [(0,)]
    assert _audit_names(gem, message_id) == before
    assert len(_purge_records(gem)) == 2


async def test_outbox_envelope_goes_after_final_status_or_expiry(fed: Fed) -> None:
    _configure(fed, "politie", "gemeente")
    pol = await fed.start("politie")
    await fed.start("gemeente")
    client = fed.client("politie")
    answered, accepted_at = await _delivered_and_acked(fed)
    # GGZ never answers (its node is not running): the message waits in its queue.
    code, doc = await client.send(
        request_from_example(
            "risk.signal", recipients=[{"org": GGZ, "role": "GGZ"}], expires_in_seconds=60
        )
    )
    assert code == 202, doc
    unanswered = doc["message_id"]
    await client.wait_status(unanswered, "sent")
    envelope = "SELECT message_id FROM outbox WHERE envelope IS NOT NULL ORDER BY message_id"

    _move(pol, accepted_at + timedelta(minutes=5))
    assert await pol.service.retention.purge_once() == (1, 0, 0, 0)
    status = await client.status(unanswered)
    assert [(r["org"], r["status"]) for r in status["recipients"]] == [(GGZ, "expired")]
    assert "message.expire" in _audit_names(pol, unanswered)
    assert _query(pol, envelope) == sorted([(answered,), (unanswered,)]), "kept a day longer"

    _move(pol, accepted_at + timedelta(days=1, minutes=6))
    assert await pol.service.retention.purge_once() == (0, 0, 2, 0)
    assert _query(pol, envelope) == []
    assert _purge_records(pol) == [
        {"inbox_payloads": 0, "outbox_envelopes": 2, "inbox_rows": 0, "audit_personal_parts": 0}
    ]
    # Status and evidence stay: the API still answers, the signed receipts are kept.
    assert [r["status"] for r in (await client.status(answered))["recipients"]] == ["accepted"]
    assert [r["status"] for r in (await client.status(unanswered))["recipients"]] == ["expired"]
    assert _query(
        pol, "SELECT status FROM receipts_in WHERE message_id=? ORDER BY status", answered
    ) == [("accepted",), ("delivered",)]
    assert {"message.send", "message.publish", "receipt.receive"} <= _audit_names(pol, answered)


async def test_an_unpublished_message_expires_too(fed: Fed) -> None:
    # The broker is unreachable for this node's whole life (its port detached): the message
    # stays queued, then expires; it is never published after its expiry.
    _configure(fed, "politie")
    pol = await fed.start("politie")
    pol.broker.detach()
    client = fed.client("politie")
    code, doc = await client.send(request_from_example("case.referral", expires_in_seconds=60))
    assert code == 202, doc
    assert [r["status"] for r in (await client.status(doc["message_id"]))["recipients"]] == [
        "queued"
    ]
    _move(pol, datetime.now(UTC) + timedelta(minutes=2))
    assert await pol.service.retention.purge_once() == (1, 0, 0, 0)
    assert [r["status"] for r in (await client.status(doc["message_id"]))["recipients"]] == [
        "expired"
    ]
    assert await pol.store.pending_publishes(10) == []


async def test_a_replay_after_the_receiver_forgot_the_message_is_not_delivered_again(
    fed: Fed,
) -> None:
    # The sender's clock runs 4 minutes ahead (inside the allowed 5 minutes of skew), so the
    # envelope's iat is 4 minutes after its arrival. The receiver must remember (sender, id) for
    # as long as that iat is inside the replay window, or a replay is delivered a second time.
    _configure(fed, "politie", "gemeente")
    pol = await fed.start("politie")
    gem = await fed.start("gemeente")
    ahead: Callable[[], datetime] = lambda: datetime.now(UTC) + timedelta(minutes=4)  # noqa: E731
    pol.service.clock = ahead
    code, doc = await fed.client("politie").send(
        request_from_example("case.referral", expires_in_seconds=7 * 86400)
    )
    assert code == 202, doc
    message_id = doc["message_id"]
    items = await fed.client("gemeente").inbox(wait=15)
    assert [i["message_id"] for i in items] == [message_id]
    received = datetime.now(UTC)
    assert await fed.client("gemeente").ack(message_id) == 204
    await fed.client("politie").wait_status(message_id, "accepted")

    _move(gem, received + timedelta(days=7, minutes=1))
    await gem.service.retention.purge_once()
    (envelope,) = _query(pol, "SELECT envelope FROM outbox WHERE message_id=?", message_id)[0]
    await pol.broker.publish(
        routing_key(GEM, POL),
        bytes(envelope),
        message_id=message_id,
        expiration=datetime.now(UTC) + timedelta(hours=1),
    )
    for _ in range(100):
        if gem.service.counters.get("duplicates") or _query(gem, "SELECT 1 FROM inbox"):
            break
        await asyncio.sleep(0.1)
    assert await fed.client("gemeente").inbox(wait=0) == [], "delivered a second time"
    assert gem.service.counters.get("duplicates") == 1


async def test_audit_personal_parts_are_shredded_and_the_log_still_verifies(fed: Fed) -> None:
    from click.testing import CliRunner

    from gateway.cli import cli

    _configure(fed, "gemeente", "politie")
    await fed.start("politie")
    gem = await fed.start("gemeente")
    message_id, _acked_at = await _delivered_and_acked(fed)
    assert _query(gem, "SELECT count(*) FROM audit_records WHERE personal IS NOT NULL")[0][0] > 0
    days = gem.config.retention.audit_personal_days
    _move(gem, datetime.now(UTC) + timedelta(days=days, hours=1))
    await gem.service.retention.purge_once()
    left = _query(
        gem,
        "SELECT count(*) FROM audit_records WHERE personal IS NOT NULL AND idx < ?",
        gem.service.audit.size - 1,
    )
    assert left == [(0,)], "every personal part written before the move is gone"
    assert _query(
        gem,
        "SELECT count(*) FROM audit_records WHERE case_ref IS NOT NULL AND message_id = ?",
        message_id,
    ) == [(0,)]
    assert _purge_records(gem)[-1]["audit_personal_parts"] > 0
    await gem.service.audit.checkpoint()
    result = CliRunner().invoke(
        cli, ["audit", "verify", "--config", str(fed.nodes["gemeente"].config)]
    )
    # Consistent, and the shredding is the node's own (its retention.purge record names the
    # cut-off), not an erasure (exit 1). Exit 3: with GGZ not running, no checkpoint can reach
    # the witness threshold (both partners), so the records are not witnessed.
    assert result.exit_code == 3, result.output
    assert "past retention" in result.output
    assert "not witnessed: records 0 to" in result.output
