"""A finished exchange for the page tests: politie sends a referral to gemeente, gemeente's
adapter accepts it, politie holds both signed receipts, and politie's log has a checkpoint."""

from __future__ import annotations

from dataclasses import dataclass

from tests.console.conftest import ConsoleUnderTest
from tests.unit.node._inproc import request_from_example

CASE_REF = "Veenstad-2026-031"


@dataclass(frozen=True)
class Exchange:
    message_id: str
    trace_id: str
    subjects: tuple[str, ...]


async def referral_accepted(cut: ConsoleUnderTest) -> Exchange:
    federation = cut.federation
    message_id = await cut.politie.send(request_from_example("case.referral"))
    await federation.wait_status("politie", message_id, "delivered")
    assert await cut.gemeente.settle(message_id) == 204
    await federation.wait_status("politie", message_id, "accepted")

    async def published() -> bool:
        # The broker's confirm (the message.publish record) may be committed after the receipts
        # on a busy machine; the checkpoint must cover it, or the export answers 409.
        return bool(cut.politie.node.audit(message_id=message_id, operation="message.publish"))

    await federation.broker.until(published, f"{message_id}'s publish recorded at politie")
    await cut.politie.node.service.audit.checkpoint()
    (send,) = cut.politie.node.audit(message_id=message_id, operation="message.send")
    return Exchange(
        message_id,
        str(send["view"]["trace_id"]),
        tuple(send["personal"]["data_subjects"]),
    )
