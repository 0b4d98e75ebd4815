"""Receipts that arrive for messages we sent (docs/architecture.md §5.4, §9.6).

:func:`gateway.core.receipts.verify_receipt` decides (the policy, the message it is about, the
content it names, its inclusion proof). A verified receipt moves that recipient's delivery status
(as the transition table allows) and is kept as evidence. Receipts that do not verify are ignored
and counted. A signed receipt that
contradicts the recipient's earlier signed statement (``rejected`` after ``accepted``, or other
content than we sent) is kept verbatim as evidence in a ``receipt.contradiction`` record
(docs/decisions/0043-contradicting-receipts-are-evidence.md).
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime
from typing import Any

from gateway.core import note
from gateway.core.audit import Record
from gateway.core.decisions import Decision, Deliver
from gateway.core.delivery import contradicts, receipt_event
from gateway.core.envelope import VerifiedMessage
from gateway.core.jose import b64u_encode
from gateway.core.receipts import ContentContradiction, SentMessage, verify_receipt
from gateway.errors import RemoteError
from gateway.node.context import NodeContext
from gateway.node.store import KeepReceipt, SentQuery, SetStatus
from schemas.bodies import ReceiptBody

__all__ = ["IncomingReceipts"]

log = logging.getLogger("gateway.node")


class IncomingReceipts:
    """Receiving receipts (module docstring)."""

    def __init__(self, ctx: NodeContext) -> None:
        self.ctx = ctx
        #: Checkpoints of partners' logs already verified (receipts in a batch share one).
        self._checkpoints = note.CheckpointCache()

    async def on_receipt(self, verified: VerifiedMessage, now: datetime) -> Decision:
        claims = verified.claims
        body = claims.body
        assert isinstance(body, ReceiptBody)  # noqa: S101 - on_delivery dispatches on the type
        rows = await self.ctx.store.messages(SentQuery(message_id=body.message_id))
        row = rows[0] if rows else None
        sent = (
            None
            if row is None
            else SentMessage(row.message_id, row.digest, frozenset(r.org for r in row.recipients))
        )
        try:
            checked = verify_receipt(
                verified,
                sent=sent,
                directory=self.ctx.directory,
                now=now,
                checkpoints=self._checkpoints,
            )
        except RemoteError as exc:
            self.ctx.count("receipts_ignored")
            self.ctx.telemetry.receipts_ignored.add(1, {"reason": exc.reason})
            log.warning(
                "ignored a receipt from %s for %s: %s",
                claims.sender.org,
                body.message_id,
                exc.detail,
            )
            return Deliver()
        if isinstance(checked, ContentContradiction):
            # Signed by the recipient, about our message, naming other content: evidence.
            sent_record = self.ctx.audit.record_index(body.message_id, "message.send")
            earlier: dict[str, int | str] = {"earlier_sha256": b64u_encode(checked.sent_digest)}
            if sent_record is not None:
                earlier["earlier_record"] = sent_record
            await self._keep_contradiction(verified, body, "content", earlier, now)
            return Deliver()
        record = self._receipt_record(
            "receipt.receive",
            "ok",
            verified,
            body,
            detail={"status": body.status, "receipt_id": claims.message_id},
        )
        assert row is not None  # noqa: S101 - verify_receipt refuses a receipt about no message
        org = claims.sender.org
        committed = await self.ctx.store.commit(
            SetStatus(
                body.message_id,
                org,
                receipt_event(body.status),
                body.reason,
                now,
                final_purge_after=self.ctx.retention.outbox_purge_after(row.expires_at, now),
            ),
            self.ctx.audit.append([record], now),
            KeepReceipt(body.message_id, org, body.status, verified.inner_jws, now),
        )
        if not committed.applied:
            await self._check_consistent(verified, body, now)
        self.ctx.telemetry.messages.add(
            1,
            {
                "direction": "in",
                "type": "receipt",
                "purpose": claims.purpose,
                "outcome": body.status,
            },
        )
        return Deliver()

    def _receipt_record(
        self,
        name: str,
        status: str,
        verified: VerifiedMessage,
        body: ReceiptBody,
        detail: dict[str, Any],
    ) -> Record:
        """An audit record about a verified receipt: the message it is about, its signer,
        purpose, case, reason, the content digest it names and the signing key."""
        claims = verified.claims
        return self.ctx.record(
            name,
            status,
            message_id=body.message_id,
            peer=claims.sender.org,
            purpose=claims.purpose,
            case_ref=claims.case_ref,
            reason=body.reason,
            digest=body.inner_jws_sha256,
            key_id=verified.sender_kid,
            detail=detail,
        )

    async def _check_consistent(
        self, verified: VerifiedMessage, body: ReceiptBody, now: datetime
    ) -> None:
        """A receipt that did not move the status: a repeat or a latecomer, or a contradiction
        of the recipient's earlier signed final status, which is kept as evidence."""
        org = verified.claims.sender.org
        earlier = await self.ctx.store.final_receipt(body.message_id, org)
        if earlier is None or not contradicts(earlier.status, body.status):
            return
        ref: dict[str, int | str] = {"earlier_status": earlier.status}
        if earlier.inner_jws is not None:
            ref["earlier_sha256"] = b64u_encode(hashlib.sha256(earlier.inner_jws).digest())
        index = self.ctx.audit.record_index(
            body.message_id, "receipt.receive", peer=org, status=earlier.status
        )
        if index is not None:
            ref["earlier_record"] = index
        await self._keep_contradiction(verified, body, "status", ref, now)

    async def _keep_contradiction(
        self,
        verified: VerifiedMessage,
        body: ReceiptBody,
        kind: str,
        earlier: dict[str, int | str],
        now: datetime,
    ) -> None:
        """Keep a signed receipt that contradicts an earlier signed statement verbatim, in a
        ``receipt.contradiction`` record naming both (once per receipt); count and log it."""
        claims = verified.claims
        later = verified.inner_jws
        record = self._receipt_record(
            "receipt.contradiction",
            "error",
            verified,
            body,
            detail={
                "kind": kind,
                "status": body.status,
                "receipt_id": claims.message_id,
                "evidence_sha256": b64u_encode(hashlib.sha256(later).digest()),
                **earlier,
            },
        )
        committed = await self.ctx.store.commit(self.ctx.audit.append_evidence(record, later, now))
        if not committed.applied:
            return  # these exact bytes are kept already (a republished receipt)
        (index,) = committed.indexes
        self.ctx.telemetry.receipt_contradictions.add(1, {"kind": kind, "peer": claims.sender.org})
        what = (
            f"{body.status} about other content"
            if kind == "content"
            else f"{body.status} after {earlier['earlier_status']}"
        )
        log.error(
            "receipt %s from %s contradicts its earlier signed statement about message %s "
            "(%s): kept as evidence in audit record %d",
            claims.message_id,
            claims.sender.org,
            body.message_id,
            what,
            index,
        )
