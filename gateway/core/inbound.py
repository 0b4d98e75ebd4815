"""Inbound decisions (docs/architecture.md §9.2): what a node does with a message whose envelope
opened and verified.

:func:`decide_inbound` re-checks the message with *our* directory's policy (the receiver never
trusts the sender's judgement) and returns the whole decision as a value: the inbox state the
message enters, and the receipt that reports it. Receipts are checked by
:func:`gateway.core.receipts.verify_receipt`, which applies the same policy.

Rules enforced here:

- The claims name our organisation as a recipient (``not_for_us``: the envelope was addressed
  to us, the signed claims were not).
- A message the policy allows enters the inbox ``delivered`` and is answered by a ``delivered``
  receipt; one it denies is stored ``refused`` (never handed to the adapter) and answered by a
  ``rejected`` receipt with reason ``policy_denied``.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.core.delivery import InboundState, inbound_initial, receipt_status
from gateway.core.envelope import VerifiedMessage
from gateway.core.policy import Allowed, MessageFacts, PolicyDecision, evaluate
from gateway.core.receipts import ReceiptInfo
from gateway.errors import RemoteError
from schemas.directory import DirectoryPayload
from schemas.reasons import RejectReason

__all__ = ["Inbound", "decide_inbound"]


@dataclass(frozen=True, slots=True)
class Inbound:
    """The decision about one verified inbound message (not a receipt)."""

    message: VerifiedMessage
    decision: PolicyDecision
    state: InboundState
    #: Our roles the message is addressed to (the first one answers).
    roles: tuple[str, ...]
    #: What the receipt repeats of the message.
    receipt_info: ReceiptInfo

    @property
    def allowed(self) -> bool:
        return isinstance(self.decision, Allowed)

    @property
    def receipt_status(self) -> str:
        """The status of the receipt that answers the message."""
        return receipt_status(self.state)

    @property
    def reason(self) -> RejectReason | None:
        """The coarse reason stored with the message and sent in its receipt."""
        return None if self.allowed else "policy_denied"


def decide_inbound(verified: VerifiedMessage, *, org: str, directory: DirectoryPayload) -> Inbound:
    """Decide about ``verified`` (module docstring) for organisation ``org``. Raises
    :class:`RemoteError` (``not_for_us``) when the claims do not name ``org``."""
    claims = verified.claims
    if org not in claims.recipient_orgs():
        raise RemoteError("not_for_us", "claims do not name this organisation")
    decision = evaluate(directory, MessageFacts.of(claims))
    roles = tuple(r.role for r in claims.recipients if r.org == org)
    return Inbound(
        message=verified,
        decision=decision,
        state=inbound_initial(isinstance(decision, Allowed)),
        roles=roles,
        receipt_info=ReceiptInfo.of(claims, roles, verified.digest),
    )
