"""``GET /v1/messages/{id}``: where a sent message stands, per recipient (in process).

Replaces, e2e on RabbitMQ → here:

- test_api_guide.py, the refusals block (404 for an unknown id)
  → test_the_status_of_an_unknown_message_is_a_404
- test_retention.py::test_outbox_envelope_goes_after_final_status_or_expiry (its "sent" step)
  → test_a_message_is_queued_until_the_broker_confirms_it_then_sent
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from gateway.core.directory import SignedDirectory
from gateway.federation import add_member
from schemas.catalogue import Catalogue
from tests.unit.node._inproc import GEM, GGZ, InProcFederation, request_from_example
from tests.unit.node.conftest import BOTH_STORES

pytestmark = BOTH_STORES  # each test runs on SQLite and on PostgreSQL


async def test_a_message_is_queued_until_the_broker_confirms_it_then_sent(
    inproc: InProcFederation,
) -> None:
    pol = await inproc.start("politie", connect=False)
    request = request_from_example("risk.signal", recipients=[{"org": GGZ, "role": "GGZ"}])
    message_id = await pol.send(request)
    assert await pol.status(message_id) == [(GGZ, "GGZ", "queued", None)]
    inproc.connect("politie")
    # GGZ's node is not running: the broker confirmed and holds it, nobody answers.
    await inproc.wait_status("politie", message_id, "sent")
    assert [(p.recipient, p.message_id) for p in inproc.broker.published] == [(GGZ, message_id)]
    assert pol.node.audit_names(message_id) == [
        "policy.decision",
        "message.send",
        "message.publish",
    ]


async def test_the_status_shows_what_was_sent_but_never_its_content(
    inproc: InProcFederation,
) -> None:
    pol = await inproc.start("politie", connect=False)
    request = request_from_example("case.referral")
    message_id = await pol.send(request)
    answer = await pol.call("GET", f"/v1/messages/{message_id}")
    doc = answer.json()
    assert set(doc) == {
        "message_id",
        "message_type",
        "purpose",
        "case_ref",
        "created_at",
        "expires_at",
        "recipients",
    }
    assert (doc["message_id"], doc["message_type"], doc["purpose"], doc["case_ref"]) == (
        message_id,
        "case.referral",
        "ZVH.AANMELDING",
        request["case_ref"],
    )
    assert doc["recipients"][0]["status"] == "queued"
    assert request["body"]["reason"].encode() not in answer.body


async def test_the_status_of_an_unknown_message_is_a_404(inproc: InProcFederation) -> None:
    pol = await inproc.start("politie", connect=False)
    unknown = "01a2b3c4-0000-7000-8000-000000000000"
    problem = (await pol.call("GET", f"/v1/messages/{unknown}")).problem("not-found")
    assert problem["detail"] == f"no message {unknown} was sent by this node"


async def test_a_receipt_the_node_sent_has_no_status(inproc: InProcFederation) -> None:
    pol = await inproc.start("politie")
    gem = await inproc.start("gemeente")
    message_id = await pol.send(request_from_example("case.referral"))
    await inproc.wait_status("politie", message_id, "delivered")
    (receipt_id,) = gem.node.store.read(
        "SELECT message_id FROM outbox WHERE message_type='receipt'"
    )[0]
    (await gem.call("GET", f"/v1/messages/{receipt_id}")).problem("not-found")


async def test_one_organisation_in_two_roles_gets_one_envelope_and_one_status(
    inproc: InProcFederation,
) -> None:
    pol = await inproc.start("politie")
    gem = await inproc.start("gemeente")
    request = request_from_example(
        "risk.signal", recipients=[{"org": GEM, "role": "ZVH"}, {"org": GEM, "role": "GEM"}]
    )
    message_id = await pol.send(request)
    await inproc.wait_status("politie", message_id, "delivered")
    assert await pol.status(message_id) == [
        (GEM, "ZVH", "delivered", None),
        (GEM, "GEM", "delivered", None),
    ]
    assert [p.message_id for p in inproc.broker.published if p.recipient == GEM] == [message_id]
    (item,) = await gem.inbox()
    assert item["recipient_roles"] == ["ZVH", "GEM"]


def _ggz_encryption_key_ends_in_an_hour(
    current: SignedDirectory, now: datetime, catalogue: Catalogue
) -> SignedDirectory:
    ggz = current.payload.member(GGZ)
    assert ggz is not None
    keys = tuple(
        k.model_copy(update={"not_after": now + timedelta(hours=1)}) if k.use == "enc" else k
        for k in ggz.keys
    )
    updated = ggz.model_copy(update={"keys": keys})
    return add_member(current, updated, now=now, catalogue=catalogue)


async def test_a_recipient_without_a_valid_encryption_key_is_a_409_and_nothing_is_stored(
    inproc: InProcFederation, tmp_path: Path
) -> None:
    directory = inproc.newer_directory(tmp_path / "d.json", _ggz_encryption_key_ends_in_an_hour)
    pol = await inproc.start("politie", directory=directory)
    request = request_from_example("risk.signal", recipients=[{"org": GGZ, "role": "GGZ"}])
    assert (await pol.call("POST", "/v1/messages", body=request)).status == 202
    inproc.clock.move(hours=2)
    answer = await pol.call("POST", "/v1/messages", body=request)
    assert f"no valid encryption key for {GGZ}" in answer.problem("recipient-unavailable")["detail"]
    assert pol.node.store.read("SELECT count(*) FROM outbox") == [(1,)]


async def test_a_message_that_expired_before_the_broker_took_it_is_expired_and_never_sent(
    inproc: InProcFederation,
) -> None:
    pol = await inproc.start("politie", connect=False)
    message_id = await pol.send(request_from_example("case.referral", expires_in_seconds=60))
    inproc.clock.move(minutes=2)
    inproc.connect("politie")  # the outbox loop finds it at start and tries to publish it
    await inproc.wait_status("politie", message_id, "expired")
    assert inproc.broker.published == []
    assert pol.node.audit_names(message_id)[-1] == "message.expire"
