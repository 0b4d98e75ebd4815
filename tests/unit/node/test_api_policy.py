"""The federation policy at both ends, through the node's API (in process).

The sender's node refuses what no rule allows with a ``policy-denied`` problem that explains
itself, stores and sends nothing, and writes the decision to its audit log. The recipient's node
applies the policy again with its own directory: what it refuses never reaches its adapter, and
the sender sees ``rejected`` with reason ``policy_denied``.

Replaces, e2e on RabbitMQ → here:

- test_node_flow.py::test_sender_side_policy_denial_explains_purpose_recipient_and_category
  → test_a_denial_explains_purpose_recipient_and_category
- test_node_flow.py::test_receiver_re_checks_the_policy_with_its_own_directory
  → test_the_recipient_re_checks_the_policy_with_its_own_directory
- test_api_guide.py, the policy denial block (GEM instead of ZVH)
  → test_a_recipient_role_no_rule_allows_is_denied_with_the_decision
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from gateway.core.directory import SignedDirectory
from gateway.federation import add_rule
from schemas.catalogue import Catalogue
from tests.unit.node._inproc import GEM, GGZ, POL, InProcFederation, request_from_example


def _bekendheid_with_health_data() -> dict[str, object]:
    """GGZ's hit/no-hit answer that also declares health data, which rule bekendheid-antwoord
    does not allow."""
    request = request_from_example(
        "info.response", in_reply_to="019cbd58-c2a0-7000-8000-000000000001"
    )
    request["data_categories"] = ["ID_PSEUDO", "BETROKKENHEID", "CONTACT_PROF", "GEZONDHEID"]
    request["flags"] = {"art9": True, "professional_secrecy": True}
    return request


async def test_a_denial_explains_purpose_recipient_and_category(inproc: InProcFederation) -> None:
    ggz = await inproc.start("ggz", connect=False)
    answer = await ggz.call("POST", "/v1/messages", body=_bekendheid_with_health_data())
    problem = answer.problem("policy-denied")
    for named in ("ZVH.BEKENDHEID", "GEZONDHEID", "Gemeente Veenstad"):
        assert named in problem["detail"], problem["detail"]
    decision = problem["decision"]
    assert decision["reason"] == "category_not_allowed"
    assert decision["category"] == "GEZONDHEID"
    assert decision["recipient"] == {"org": GEM, "role": "ZVH"}
    assert decision["rule"] == "bekendheid-antwoord"
    assert "GEZONDHEID" not in decision["rule_allows"]
    assert decision["directory_version"] == ggz.node.service.directory.version


async def test_a_recipient_role_no_rule_allows_is_denied_with_the_decision(
    inproc: InProcFederation,
) -> None:
    pol = await inproc.start("politie", connect=False)
    request = request_from_example("case.referral", recipients=[{"org": GEM, "role": "GEM"}])
    problem = (await pol.call("POST", "/v1/messages", body=request)).problem("policy-denied")
    assert problem["detail"].startswith("policy (directory v")
    assert "no rule allows this purpose, type and pair of parties" in problem["detail"]
    decision = problem["decision"]
    assert (decision["reason"], decision["rule"], decision["recipient"]) == (
        "no_rule",
        None,
        {"org": GEM, "role": "GEM"},
    )


async def test_a_denied_message_is_not_stored_or_sent_and_the_denial_is_audited(
    inproc: InProcFederation,
) -> None:
    ggz = await inproc.start("ggz")
    answer = await ggz.call("POST", "/v1/messages", body=_bekendheid_with_health_data())
    answer.problem("policy-denied")
    assert ggz.node.store.read("SELECT count(*) FROM outbox") == [(0,)]
    decision, refusal = ggz.node.audit()
    assert (decision["view"]["name"], decision["view"]["status"]) == ("policy.decision", "denied")
    assert decision["view"]["policy_decision"] == "deny"
    assert decision["view"]["policy_rule"] == "bekendheid-antwoord"
    assert decision["view"]["detail"] == {"category": "GEZONDHEID", "recipient": GEM}
    assert (refusal["view"]["name"], refusal["view"]["reason"]) == (
        "message.refuse",
        "policy_denied",
    )
    assert refusal["view"]["message_id"] == decision["view"]["message_id"]
    assert inproc.broker.published == []
    assert ggz.node.metric("zvg.messages") == [
        (
            {
                "direction": "out",
                "type": "info.response",
                "purpose": "ZVH.BEKENDHEID",
                "outcome": "policy_denied",
            },
            1,
        )
    ]


async def test_an_allowed_message_records_the_rules_that_allowed_it(
    inproc: InProcFederation,
) -> None:
    pol = await inproc.start("politie", connect=False)
    message_id = await pol.send(request_from_example("case.referral"))
    (decision,) = pol.node.audit(operation="policy.decision", message_id=message_id)
    view = decision["view"]
    assert (view["status"], view["policy_decision"], view["policy_rule"]) == (
        "ok",
        "allow",
        "aanmelding-pol",
    )


def _health_in_risk_signals(
    current: SignedDirectory, now: datetime, catalogue: Catalogue
) -> SignedDirectory:
    """Rule risico-pol also lets the police send health data."""
    rule = next(r for r in current.payload.policy.rules if r.id == "risico-pol")
    looser = rule.model_copy(update={"data_categories": (*rule.data_categories, "GEZONDHEID")})
    return add_rule(current, looser, now=now, catalogue=catalogue)


async def test_the_recipient_re_checks_the_policy_with_its_own_directory(
    inproc: InProcFederation, tmp_path: Path
) -> None:
    # The police trust a newer version; GGZ keeps trusting the one without the looser rule.
    police_directory = inproc.newer_directory(tmp_path / "police.json", _health_in_risk_signals)
    pol = await inproc.start("politie", directory=police_directory)
    ggz = await inproc.start("ggz")
    request = request_from_example("risk.signal", recipients=[{"org": GGZ, "role": "GGZ"}])
    request["data_categories"] = [*request["data_categories"], "GEZONDHEID"]
    request["flags"]["art9"] = True
    request["body"]["health"] = {"summary": "Known psychotic episodes; stopped medication."}
    message_id = await pol.send(request)
    await inproc.wait_status("politie", message_id, "rejected")
    assert await pol.status(message_id) == [(GGZ, "GGZ", "rejected", "policy_denied")]
    # Never delivered: the adapter sees nothing, the content is not kept, the refusal is logged.
    assert await ggz.inbox() == []
    assert ggz.node.store.read(
        "SELECT status, reason, claims IS NULL FROM inbox WHERE message_id=?", (message_id,)
    ) == [("refused", "policy_denied", 1)]
    assert ggz.node.audit_names(message_id)[:2] == ["policy.decision", "message.refuse"]
    assert await ggz.settle(message_id) == 404
    assert ggz.node.metric("zvg.rejections") == [
        ({"stage": "receive", "reason": "policy_denied", "sender": POL}, 1)
    ]
