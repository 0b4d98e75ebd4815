"""Retention on in-process nodes with their injected clock moved forward: payloads go when
their time is up, what status, dedupe and audit need stays, unanswered messages become
``expired``, and a replay after the node forgot a message is still not delivered again.

Threats: case data kept longer than the configured retention; the evidence (audit records,
signed receipts, status) deleted with it; a message that never arrived shown as in transit for
ever; a replayed envelope delivered again once the receiver forgot it had seen it.

``service.retention.purge_once()`` runs one retention pass (the periodic loop does not run here).

Replaces, e2e on RabbitMQ → here (same names):

- test_retention.py::test_inbox_payload_goes_after_retention_and_the_evidence_stays
- test_retention.py::test_outbox_envelope_goes_after_final_status_or_expiry
- test_retention.py::test_an_unpublished_message_expires_too
- test_retention.py::test_a_replay_after_the_receiver_forgot_the_message_is_not_delivered_again
- test_retention.py::test_audit_personal_parts_are_shredded_and_the_log_still_verifies
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from click.testing import CliRunner

from gateway.cli import cli
from gateway.core.decisions import Deliver, Reject
from tests.unit.node._inproc import GEM, GGZ, ApiNode, InProcFederation, request_from_example
from tests.unit.node.conftest import BOTH_STORES

pytestmark = BOTH_STORES  # each test runs on SQLite and on PostgreSQL

RETENTION: dict[str, Any] = {
    "retention__inbox_after_ack_days": 2,
    "retention__outbox_after_final_days": 1,
}
PAYLOAD = "SELECT claims IS NOT NULL, inner_jws IS NOT NULL FROM inbox WHERE message_id=?"


def _purges(node: ApiNode) -> list[dict[str, Any]]:
    return [r["view"]["detail"] for r in node.node.audit(operation="retention.purge")]


async def _delivered_and_acked(inproc: InProcFederation) -> tuple[ApiNode, ApiNode, str]:
    pol = await inproc.start("politie", **RETENTION)
    gem = await inproc.start("gemeente", **RETENTION)
    message_id = await pol.send(request_from_example("case.referral"))
    assert [i["message_id"] for i in await gem.inbox(wait=30)] == [message_id]
    assert await gem.settle(message_id) == 204
    await inproc.wait_status("politie", message_id, "accepted")
    return pol, gem, message_id


async def test_inbox_payload_goes_after_retention_and_the_evidence_stays(
    inproc: InProcFederation,
) -> None:
    _pol, gem, message_id = await _delivered_and_acked(inproc)
    acked_at = inproc.clock()
    purge = gem.node.service.retention.purge_once
    assert gem.node.store.read(PAYLOAD, (message_id,)) == [(1, 1)]
    before = gem.node.audit_names(message_id)
    assert {"message.receive", "message.deliver", "adapter.ack"} <= set(before)

    inproc.clock.now = acked_at + timedelta(days=2) - timedelta(minutes=1)
    assert await purge() == (0, 0, 0, 0)
    assert gem.node.store.read(PAYLOAD, (message_id,)) == [(1, 1)], "not before its time"

    inproc.clock.now = acked_at + timedelta(days=2, minutes=1)
    assert await purge() == (0, 1, 0, 0)
    assert gem.node.store.read(PAYLOAD, (message_id,)) == [(0, 0)], "claims and inner JWS"
    assert gem.node.store.read(
        "SELECT status, length(digest) FROM inbox WHERE message_id=?", (message_id,)
    ) == [("accepted", 32)], "what dedupe needs stays until the replay window closed"
    assert gem.node.audit_names(message_id) == before, "no audit record is touched"
    assert _purges(gem) == [
        {"inbox_payloads": 1, "outbox_envelopes": 0, "inbox_rows": 0, "audit_personal_parts": 0}
    ]
    # The adapter sees nothing new, and a late second ack is still harmless.
    assert await gem.inbox() == []
    assert await gem.settle(message_id) == 204

    # After the replay window (limits.max_age_seconds + skew) the (sender, id) row goes too; the
    # receipts it sent (expired at +3 days) lose their envelopes a day later.
    inproc.clock.now = acked_at + timedelta(days=7, minutes=10)
    assert await purge() == (0, 0, 2, 1)
    assert gem.node.store.read("SELECT count(*) FROM inbox") == [(0,)]
    assert gem.node.store.read("SELECT count(*) FROM outbox WHERE envelope IS NOT NULL") == [(0,)]
    assert gem.node.audit_names(message_id) == before
    assert len(_purges(gem)) == 2
    # Forgotten: an ack now is the harmless not-found of docs/api.md.
    assert await gem.settle(message_id) == 404


async def test_outbox_envelope_goes_after_final_status_or_expiry(
    inproc: InProcFederation,
) -> None:
    pol, _gem, answered = await _delivered_and_acked(inproc)
    accepted_at = inproc.clock()
    # GGZ never answers (its node is not running): the message waits in its queue.
    unanswered = await pol.send(
        request_from_example(
            "risk.signal", recipients=[{"org": GGZ, "role": "GGZ"}], expires_in_seconds=60
        )
    )
    await inproc.wait_status("politie", unanswered, "sent")
    envelopes = "SELECT message_id FROM outbox WHERE envelope IS NOT NULL ORDER BY message_id"

    inproc.clock.now = accepted_at + timedelta(minutes=5)
    assert await pol.node.service.retention.purge_once() == (1, 0, 0, 0)
    assert await pol.status(unanswered) == [(GGZ, "GGZ", "expired", None)]
    assert "message.expire" in pol.node.audit_names(unanswered)
    assert pol.node.store.read(envelopes) == sorted([(answered,), (unanswered,)]), "a day more"

    inproc.clock.now = accepted_at + timedelta(days=1, minutes=6)
    assert await pol.node.service.retention.purge_once() == (0, 0, 2, 0)
    assert pol.node.store.read(envelopes) == []
    assert _purges(pol) == [
        {"inbox_payloads": 0, "outbox_envelopes": 2, "inbox_rows": 0, "audit_personal_parts": 0}
    ]
    # Status and evidence stay: the API still answers, the signed receipts are kept.
    assert await pol.status(answered) == [(GEM, "ZVH", "accepted", None)]
    assert await pol.status(unanswered) == [(GGZ, "GGZ", "expired", None)]
    assert pol.node.store.read(
        "SELECT status FROM receipts_in WHERE message_id=? ORDER BY status", (answered,)
    ) == [("accepted",), ("delivered",)]
    assert {"message.send", "message.publish", "receipt.receive"} <= set(
        pol.node.audit_names(answered)
    )


async def test_an_unpublished_message_expires_too(inproc: InProcFederation) -> None:
    # The broker is unreachable for this node's whole life: the message stays queued, then
    # expires; it is never published after its expiry.
    pol = await inproc.start("politie", connect=False, **RETENTION)
    message_id = await pol.send(request_from_example("case.referral", expires_in_seconds=60))
    assert await pol.status(message_id) == [(GEM, "ZVH", "queued", None)]
    inproc.clock.move(minutes=2)
    assert await pol.node.service.retention.purge_once() == (1, 0, 0, 0)
    assert await pol.status(message_id) == [(GEM, "ZVH", "expired", None)]
    assert await pol.node.store.pending_publishes(10) == []


async def test_a_replay_after_the_receiver_forgot_the_message_is_not_delivered_again(
    inproc: InProcFederation,
) -> None:
    # The sender's clock runs 4 minutes ahead (inside the allowed 5 minutes of skew), so the
    # envelope's iat is 4 minutes after its arrival. The receiver must remember (sender, id) for
    # as long as that iat is inside the replay window, or a replay is delivered a second time.
    def ahead() -> datetime:
        return inproc.clock() + timedelta(minutes=4)

    pol = await inproc.start("politie", clock=ahead, **RETENTION)
    gem = await inproc.start("gemeente", **RETENTION)
    message_id = await pol.send(request_from_example("case.referral", expires_in_seconds=7 * 86400))
    assert [i["message_id"] for i in await gem.inbox(wait=30)] == [message_id]
    received = inproc.clock()
    assert await gem.settle(message_id) == 204
    await inproc.wait_status("politie", message_id, "accepted")
    envelope = next(
        s.delivery for s in inproc.broker.settled if s.delivery.message_id == message_id
    )

    async def replay() -> Any:
        inproc.broker.route(GEM, envelope, inproc.clock() + timedelta(hours=1))
        count = len(inproc.broker.settled)

        async def handled() -> bool:
            return len(inproc.broker.settled) > count

        await inproc.broker.until(handled, "the replay was handled")
        return inproc.broker.settled[-1].decision

    # Still inside the window: remembered (payload purged or not), a duplicate.
    inproc.clock.now = received + timedelta(days=7, minutes=1)
    await gem.node.service.retention.purge_once()
    assert await replay() == Deliver()
    assert gem.node.service.counters.get("duplicates") == 1
    assert await gem.inbox() == [], "delivered a second time"

    # Past the window: forgotten, and the envelope is too old to be accepted at all.
    inproc.clock.now = received + timedelta(days=7, minutes=10)
    assert (await gem.node.service.retention.purge_once())[3] == 1
    refused = await replay()
    assert isinstance(refused, Reject), refused
    assert await gem.inbox() == [], "delivered a second time"
    assert gem.node.service.counters.get("duplicates") == 1


async def test_audit_personal_parts_are_shredded_and_the_log_still_verifies(
    inproc: InProcFederation,
) -> None:
    await inproc.start("politie", retention__audit_personal_days=1)
    gem = await inproc.start("gemeente", retention__audit_personal_days=1)
    message_id = await inproc.nodes["politie"].send(request_from_example("case.referral"))
    assert [i["message_id"] for i in await gem.inbox(wait=30)] == [message_id]
    assert await gem.settle(message_id) == 204
    await inproc.wait_status("politie", message_id, "accepted")
    personal = "SELECT count(*) FROM audit_records WHERE personal IS NOT NULL AND idx < ?"
    size = gem.node.service.audit.size
    assert gem.node.store.read(personal, (size,))[0][0] > 0
    inproc.clock.move(days=1, hours=1)
    await gem.node.service.retention.purge_once()
    assert gem.node.store.read(personal, (size,)) == [(0,)], "every personal part before the move"
    assert gem.node.store.read(
        "SELECT count(*) FROM audit_records WHERE case_ref IS NOT NULL AND message_id = ?",
        (message_id,),
    ) == [(0,)]
    assert _purges(gem)[-1]["audit_personal_parts"] > 0
    await gem.node.service.audit.checkpoint()
    if inproc.store_url is not None:
        return  # zvg audit verify reads a SQLite store only (docs/decisions/0094: not yet)
    result = CliRunner().invoke(cli, ["audit", "verify", "--config", str(gem.node.config.source)])
    # Consistent, and the shredding is the node's own (its retention.purge record names the
    # cut-off), not an erasure (exit 1). Exit 3: no partner cosigned a checkpoint here.
    assert result.exit_code == 3, result.output
    assert "past retention" in result.output
    assert "not witnessed: records 0 to" in result.output
