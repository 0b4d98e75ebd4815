"""Threat: a receipt the node refuses to send leaves no trace in its audit log.

The receipt loop drops a receipt it may not send — the policy (of the directory trusted now)
denies it, or the sender has no encryption key any more. Every refusal must be in the audit log
as the send path records one: a ``message.refuse`` about the message the receipt answers (and,
for a denial, the ``policy.decision``), in the same commit that takes the receipt off the queue.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from gateway.core.decisions import Deliver
from gateway.core.directory import TrustedDirectory
from gateway.errors import LocalError
from tests.node_pair import InProcessNode


class _Directory:
    """The directory ``gem`` trusts, with one thing changed (a newer version would)."""

    def __init__(self, real: TrustedDirectory, *, rules: bool = True, keys: bool = True) -> None:
        self._real = real
        self._keys = keys
        policy = real.payload.policy
        self.payload = real.payload.model_copy(
            update={"policy": policy if rules else policy.model_copy(update={"rules": ()})}
        )

    def encryption_key(self, org: str, now: datetime) -> Any:
        if not self._keys:
            raise LocalError(f"{org} has no valid encryption key")
        return self._real.encryption_key(org, now)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


async def _refused(
    pol: InProcessNode, gem: InProcessNode, monkeypatch: pytest.MonkeyPatch, directory: Any
) -> tuple[str, list[dict[str, Any]]]:
    """Politie's referral reaches gem; gem then trusts ``directory`` and its receipt loop runs
    once. Returns the message id and gem's message.refuse records."""
    message_id = await pol.send_example("case.referral")
    assert await pol.carry_to(gem) == [Deliver()]
    monkeypatch.setattr(gem.service.ctx, "directory", directory)
    await gem.seal_receipts()
    assert await gem.pending_receipts() == []
    assert gem.audit(operation="receipt.send") == []
    assert await gem.carry_to(pol) == []  # no receipt left the node
    return message_id, gem.audit(operation="message.refuse")


@pytest.mark.parametrize(
    ("change", "status", "reason"),
    [
        ({"rules": False}, "denied", "policy_denied"),
        ({"keys": False}, "error", "recipient_unavailable"),
    ],
    ids=["policy-denies", "no-encryption-key"],
)
async def test_a_receipt_the_node_may_not_send_is_refused_in_the_audit_log(
    pair: tuple[InProcessNode, InProcessNode],
    monkeypatch: pytest.MonkeyPatch,
    change: dict[str, bool],
    status: str,
    reason: str,
) -> None:
    pol, gem = pair
    directory = _Directory(gem.service.directory, **change)
    message_id, (refused,) = await _refused(pol, gem, monkeypatch, directory)
    view = refused["view"]
    assert (view["message_id"], view["status"], view["reason"]) == (message_id, status, reason)
    assert (view["message_type"], view["detail"]["status"]) == ("receipt", "delivered")
    decisions = [
        r
        for r in gem.audit(operation="policy.decision", message_id=message_id)
        if r["view"]["message_type"] == "receipt"
    ]
    if status == "denied":  # the decision and the refusal, in one commit
        (decision,) = decisions
        assert (decision["view"]["policy_decision"], decision["view"]["reason"]) == (
            "deny",
            "no_rule",
        )
        assert refused["index"] == decision["index"] + 1
    else:
        assert decisions == []
