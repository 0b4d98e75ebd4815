"""Every audit record of an exchange carries a trace id and a span id (Logboek
Dataverwerkingen; docs/decisions/0098), and names the processing activity in the writing
organisation's own register.

Issue 17: ``message.publish``, ``message.deliver``, ``receipt.receive`` and ``access`` records
had empty ``trace_id``/``span_id`` (258 of 488 records of a demo run). The test walks every
operation both nodes write in an in-process exchange and fails on an empty one.
"""

from __future__ import annotations

import re
from typing import Any

from gateway.node.activities import processing_activity
from tests.unit.node._inproc import GEM, ApiNode, InProcFederation, request_from_example

ACTOR = {"ZVG-Actor": "emp-4711", "ZVG-Actor-Role": "wijkagent"}

#: The operations an exchange with an ack, a reject and a refusal makes the two nodes write.
EXCHANGE_OPERATIONS = {
    "message.send",
    "message.publish",
    "message.receive",
    "message.deliver",
    "message.refuse",
    "policy.decision",
    "receipt.send",
    "receipt.receive",
    "adapter.ack",
    "adapter.reject",
    "access",
}


async def run_exchange(inproc: InProcFederation) -> tuple[ApiNode, ApiNode, list[str]]:
    """Politie sends two referrals to the gemeente (one acked, one rejected) and tries one no
    rule allows; the gemeente's adapter fetches as an employee. Returns the nodes and ids."""
    pol = await inproc.start("politie")
    gem = await inproc.start("gemeente")
    acked = await pol.send(request_from_example("case.referral"), headers=ACTOR)
    rejected = await pol.send(request_from_example("case.referral"), headers=ACTOR)
    denied = request_from_example("case.referral", recipients=[{"org": GEM, "role": "GEM"}])
    (await pol.call("POST", "/v1/messages", body=denied, headers=ACTOR)).problem("policy-denied")
    fetched: set[str] = set()
    while len(fetched) < 2:
        fetched |= {i["message_id"] for i in await gem.inbox(wait=30, headers=ACTOR)}
    assert await gem.settle(acked) == 204
    assert await gem.settle(rejected, "reject", {"reason": "not_responsible"}) == 204
    await inproc.wait_status("politie", acked, "accepted")
    await inproc.wait_status("politie", rejected, "rejected")
    return pol, gem, [acked, rejected]


def all_records(node: ApiNode) -> list[dict[str, Any]]:
    return node.node.audit(limit=1_000_000)


async def test_every_record_of_an_exchange_has_a_trace_id_and_a_span_id(
    inproc: InProcFederation,
) -> None:
    pol, gem, message_ids = await run_exchange(inproc)
    records = all_records(pol) + all_records(gem)
    names = {r["view"]["name"] for r in records}
    assert names >= EXCHANGE_OPERATIONS, EXCHANGE_OPERATIONS - names
    empty = [
        (r["view"]["name"], r["index"])
        for r in records
        if not r["view"].get("trace_id") or not r["view"].get("span_id")
    ]
    assert empty == []
    for r in records:
        assert re.fullmatch("[0-9a-f]{32}", r["view"]["trace_id"]), r["view"]
        assert re.fullmatch("[0-9a-f]{16}", r["view"]["span_id"]), r["view"]
    # The records of a message join its trace on both sides (deliver, receipts, access, ack),
    # or, where the receiving node began its own trace (receive and its policy decision), name
    # the sender's as their foreign operation: an officer follows one exchange across the two
    # logs by one trace id. (A coalesced receipt answers several messages in the trace of one:
    # its receive record names the recipient's receipt as foreign operation.)
    for message_id in message_ids:
        (sent,) = pol.node.audit(operation="message.send", message_id=message_id)
        trace = sent["view"]["trace_id"]
        for node in (pol, gem):
            for r in node.node.audit(message_id=message_id):
                view = r["view"]
                if view["name"] == "receipt.receive":
                    assert view["foreign_operation"]["org"] == GEM, view
                    continue
                foreign = (view.get("foreign_operation") or {}).get("trace_id")
                assert trace in (view["trace_id"], foreign), view


async def test_records_name_the_processing_activity_of_their_own_organisation(
    inproc: InProcFederation,
) -> None:
    """The receiving node logs the message under its own register's activity for the purpose
    (node.toml), not the sender's, which the message names."""
    pol, gem, _ids = await run_exchange(inproc)
    (sent, _) = pol.node.audit(operation="message.send")
    purpose, theirs = sent["view"]["purpose"], sent["view"]["processing_activity_id"]
    ours = processing_activity(gem.node.config, purpose)
    assert ours.startswith("https://register.gemeente.")
    assert theirs.startswith("https://register.politie.")
    for name in ("message.receive", "policy.decision", "adapter.ack", "adapter.reject"):
        for r in gem.node.audit(operation=name):
            assert r["view"]["processing_activity_id"] == ours, r["view"]
