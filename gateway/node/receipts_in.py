"""Receipts that arrive for messages we sent (docs/architecture.md §5.4, §9.6).

:func:`gateway.core.receipts.verify_receipts` decides (the policy, the message it is about, the
content it names, its inclusion proof), for a single receipt or each entry of a coalesced one
(docs/decisions/0006-coalesced-receipts.md). A verified receipt moves that recipient's delivery
status (as the transition table allows) and is kept as evidence (a coalesced receipt's bytes once,
for all its entries). Receipts that do not verify are ignored and counted, per entry. A signed
receipt that
contradicts the recipient's earlier signed statement (``rejected`` after ``accepted``, or other
content than we sent) is kept verbatim as evidence in a ``receipt.contradiction`` record
(docs/decisions/0043-contradicting-receipts-are-evidence.md).
"""

from __future__ import annotations

import asyncio
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
from gateway.core.receipts import (
    ContentContradiction,
    EntryOutcome,
    SentMessage,
    UnverifiedEntry,
    VerifiedReceipt,
    verify_receipts,
)
from gateway.errors import RemoteError
from gateway.node.context import NodeContext
from gateway.node.store import EVIDENCE_REF, KeepReceipt, MessageRow, SentQuery, SetStatus
from schemas.bodies import ReceiptBatchBody, ReceiptBody, ReceiptEntry

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
        assert isinstance(body, ReceiptBody | ReceiptBatchBody)  # noqa: S101 - on_delivery dispatches on the type
        entries: tuple[ReceiptEntry, ...] = (
            (body,) if isinstance(body, ReceiptBody) else body.entries
        )
        rows: dict[str, MessageRow] = {}
        for message_id in dict.fromkeys(e.message_id for e in entries):
            found = await self.ctx.store.messages(SentQuery(message_id=message_id))
            if found:
                rows[message_id] = found[0]
        sent = {
            r.message_id: SentMessage(
                r.message_id, r.digest, frozenset(x.org for x in r.recipients), r.purpose
            )
            for r in rows.values()
        }
        try:
            outcomes = verify_receipts(
                verified,
                sent=sent,
                directory=self.ctx.directory,
                now=now,
                checkpoints=self._checkpoints,
            )
        except RemoteError as exc:
            for entry in entries:
                self._ignored(verified, entry, exc)
            return Deliver()
        shared = (
            None
            if isinstance(body, ReceiptBody)
            else EVIDENCE_REF + b64u_encode(verified.digest).encode()
        )
        # Entries about different messages commit side by side (one group commit); those about
        # one message (delivered, then accepted) in their order.
        per_message: dict[str, list[EntryOutcome]] = {}
        for outcome in outcomes:
            per_message.setdefault(outcome.body.message_id, []).append(outcome)
        await asyncio.gather(
            *(self._settle(verified, chain, rows, shared, now) for chain in per_message.values())
        )
        return Deliver()

    async def _settle(
        self,
        verified: VerifiedMessage,
        chain: list[EntryOutcome],
        rows: dict[str, MessageRow],
        shared: bytes | None,
        now: datetime,
    ) -> None:
        for outcome in chain:
            if isinstance(outcome, UnverifiedEntry):
                self._ignored(verified, outcome.body, outcome.error)
            elif isinstance(outcome, ContentContradiction):
                # Signed by the recipient, about our message, naming other content: evidence.
                await self._other_content(outcome, rows[outcome.body.message_id], now)
            else:
                await self._apply(outcome, rows[outcome.body.message_id], shared, now)

    def _ignored(self, verified: VerifiedMessage, entry: ReceiptEntry, exc: RemoteError) -> None:
        self.ctx.count("receipts_ignored")
        self.ctx.telemetry.receipts_ignored.add(1, {"reason": exc.reason})
        log.warning(
            "ignored a receipt from %s for %s: %s",
            verified.claims.sender.org,
            entry.message_id,
            exc.detail,
        )

    async def _other_content(
        self, checked: ContentContradiction, row: MessageRow, now: datetime
    ) -> None:
        body = checked.body
        sent_record = self.ctx.audit.record_index(body.message_id, "message.send")
        earlier: dict[str, int | str] = {"earlier_sha256": b64u_encode(checked.sent_digest)}
        if sent_record is not None:
            earlier["earlier_record"] = sent_record
        await self._keep_contradiction(checked.message, body, row, "content", earlier, now)

    async def _apply(
        self, checked: VerifiedReceipt, row: MessageRow, shared: bytes | None, now: datetime
    ) -> None:
        """Move the recipient's status as ``checked`` says, with its record and evidence."""
        verified, body = checked.message, checked.body
        claims = verified.claims
        record = self._receipt_record(
            "receipt.receive",
            "ok",
            verified,
            body,
            row,
            detail={"status": body.status, "receipt_id": claims.message_id},
        )
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
            KeepReceipt(body.message_id, org, body.status, verified.inner_jws, now, shared),
        )
        if not committed.applied:
            await self._check_consistent(verified, body, row, now)
        self.ctx.telemetry.messages.add(
            1,
            {
                "direction": "in",
                "type": "receipt",
                "purpose": claims.purpose,
                "outcome": body.status,
            },
        )

    def _receipt_record(
        self,
        name: str,
        status: str,
        verified: VerifiedMessage,
        body: ReceiptEntry,
        row: MessageRow,
        detail: dict[str, Any],
    ) -> Record:
        """An audit record about a verified receipt: the message it is about (and that
        message's case, as we sent it), its signer, purpose, reason, the content digest it
        names and the signing key."""
        claims = verified.claims
        return self.ctx.record(
            name,
            status,
            # The receipt's trace: the message's for a single receipt (a coalesced one answers
            # several messages in the trace of its first); the recipient's operation that sent
            # it is the foreign one (Logboek Dataverwerkingen).
            trace_id=claims.trace.split("-")[1],
            foreign_operation={
                "trace_id": claims.trace.split("-")[1],
                "span_id": claims.trace.split("-")[2],
                "org": claims.sender.org,
            },
            message_id=body.message_id,
            peer=claims.sender.org,
            purpose=claims.purpose,
            case_ref=row.case_ref,
            reason=body.reason,
            digest=body.inner_jws_sha256,
            key_id=verified.sender_kid,
            detail=detail,
        )

    async def _check_consistent(
        self, verified: VerifiedMessage, body: ReceiptEntry, row: MessageRow, now: datetime
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
        await self._keep_contradiction(verified, body, row, "status", ref, now)

    async def _keep_contradiction(
        self,
        verified: VerifiedMessage,
        body: ReceiptEntry,
        row: MessageRow,
        kind: str,
        earlier: dict[str, int | str],
        now: datetime,
    ) -> None:
        """Keep a signed receipt that contradicts an earlier signed statement verbatim, in a
        ``receipt.contradiction`` record naming both (once per receipt and message); count and
        log it."""
        claims = verified.claims
        later = verified.inner_jws
        record = self._receipt_record(
            "receipt.contradiction",
            "error",
            verified,
            body,
            row,
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
