"""Sealing receipts for messages we received (docs/architecture.md §5.4, §9.6).

Receipts are queued in the store in the same transaction as the state they describe
(``delivered`` on arrival, ``accepted``/``rejected`` when the adapter settles). This loop seals
them in batches: one checkpoint of our audit log covers the batch, each receipt carries the
inclusion proof of our audit record about it, and the sealed receipts go into the outbox (and
to the publisher) in one commit.

A receipt the node may not send — the policy denies it, or the sender has no encryption key in
the directory we trust now (a newer version dropped it) — is dropped from the queue in one
commit with the audit records that say so: a ``message.refuse`` about the message it answers
(with the ``policy.decision`` when the policy denied it), as the send path records a denial.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Literal

from gateway.core.audit import MessageFields, Record, message_record, policy_record
from gateway.core.envelope import seal
from gateway.core.outbound import Outbound as OutboundDecision
from gateway.core.policy import Denied
from gateway.core.receipts import receipt_claims
from gateway.errors import LocalError, TransientError
from gateway.node.context import NodeContext
from gateway.node.outbox import Outbox
from gateway.node.store import DropPendingReceipt, OutboxEntry, PendingReceipt, ReceiptSealed
from schemas import ids

__all__ = ["RECEIPT_BATCH", "ReceiptSealer"]

log = logging.getLogger("gateway.node")

#: Receipts sealed per batch (one checkpoint covers the whole batch).
RECEIPT_BATCH = 128


class ReceiptSealer:
    """The receipt loop (module docstring)."""

    def __init__(self, ctx: NodeContext, outbox: Outbox) -> None:
        self.ctx = ctx
        self._outbox = outbox

    async def run(self) -> None:
        """Seal pending receipts in batches (one checkpoint per batch) until stopped."""
        while not self.ctx.stopping.is_set():
            self.ctx.receipt_wake.clear()
            try:
                pending = await self.ctx.store.take_pending_receipts(RECEIPT_BATCH)
            except TransientError:
                pending = []
            if pending:
                try:
                    await self.seal(pending)
                except (TransientError, LocalError) as exc:
                    log.warning("sealing receipts failed (%s); retrying", exc)
                    await asyncio.sleep(1.0)
                    continue
                except Exception:
                    log.exception("sealing receipts failed unexpectedly; retrying")
                    await asyncio.sleep(5.0)
                    continue
                self.ctx.outbox_wake.set()
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.ctx.receipt_wake.wait(), timeout=5.0)

    async def seal(self, pending: Sequence[PendingReceipt]) -> None:
        """Seal a batch of receipts: one checkpoint, one read of the proved records, one commit."""
        checkpoint = await self.ctx.audit.checkpoint(
            min_size=max(p.record_idx for p in pending) + 1
        )
        if checkpoint is None:
            raise TransientError("no checkpoint yet")
        views = self.ctx.audit.views([p.record_idx for p in pending])
        now = self.ctx.now()
        sealed: list[tuple[PendingReceipt, OutboxEntry]] = []
        records: list[Record] = []
        for p in pending:
            proof = self.ctx.audit.tlog_proof(p.record_idx, views[p.record_idx], checkpoint)
            out = self._receipt_claims(p, now, proof.decode("utf-8"))
            claims = out.claims
            if isinstance(out.decision, Denied):
                log.warning(
                    "the policy denies a receipt to %s (%s): receipt for %s dropped",
                    p.sender,
                    out.decision.reason,
                    p.message_id,
                )
                fields = self._refused_fields(p, out)
                await self._drop(
                    p,
                    policy_record(out.decision, fields, at=now),
                    self._refusal(p, fields, now, "denied", "policy_denied", claims.message_id),
                )
                continue
            try:
                key = self.ctx.directory.encryption_key(p.sender, now)
            except LocalError:
                log.warning(
                    "no encryption key for %s: receipt for %s dropped", p.sender, p.message_id
                )
                fields = self._refused_fields(p, out)
                await self._drop(
                    p,
                    self._refusal(
                        p, fields, now, "error", "recipient_unavailable", claims.message_id
                    ),
                )
                continue
            envelope = seal(
                claims,
                signing_key=self.ctx.keys.signing,
                recipients=[key],
                rand=self.ctx.rand,
                limits=self.ctx.envelope_limits,
            )
            sealed.append(
                (
                    p,
                    OutboxEntry(
                        message_id=claims.message_id,
                        message_type="receipt",
                        purpose=claims.purpose,
                        case_ref=claims.case_ref,
                        in_reply_to=p.message_id,
                        created_at=claims.created_at,
                        expires_at=claims.expires_at,
                        digest=envelope.digest,
                        envelope=envelope.raw,
                        recipients=((p.sender, (claims.recipients[0].role,)),),
                        purge_after=self.ctx.retention.outbox_purge_after(claims.expires_at),
                    ),
                )
            )
            records.append(
                self.ctx.record(
                    "receipt.send",
                    message_id=p.message_id,
                    peer=p.sender,
                    purpose=claims.purpose,
                    legal_basis=claims.legal_basis,
                    case_ref=claims.case_ref,
                    reason=p.reason,
                    detail={"status": p.status, "receipt_id": claims.message_id},
                    trace_id=claims.trace.split("-")[1],
                    span_id=claims.trace.split("-")[2],
                )
            )
        if sealed:
            await self.ctx.store.commit(
                *(ReceiptSealed(p, entry, now) for p, entry in sealed),
                self.ctx.audit.append(records, now),
            )
            for _p, entry in sealed:
                self._outbox.hand_over(entry)

    @staticmethod
    def _refused_fields(p: PendingReceipt, out: OutboundDecision) -> MessageFields:
        """The audit fields of a receipt we do not send, about the message it answers (as the
        ``receipt.send`` record of one we send is)."""
        return dataclasses.replace(MessageFields.of(out.claims), message_id=p.message_id)

    @staticmethod
    def _refusal(
        p: PendingReceipt,
        fields: MessageFields,
        now: datetime,
        status: Literal["denied", "error"],
        reason: str,
        receipt_id: str,
    ) -> Record:
        return message_record(
            "message.refuse",
            fields,
            at=now,
            status=status,
            reason=reason,
            detail={"status": p.status, "receipt_id": receipt_id},
        )

    async def _drop(self, p: PendingReceipt, *records: Record) -> None:
        """Take ``p`` off the queue, in one commit with the records that say why."""
        now = self.ctx.now()
        await self.ctx.store.commit(
            DropPendingReceipt(p.id), self.ctx.audit.append(list(records), now)
        )

    def _receipt_claims(self, p: PendingReceipt, now: datetime, proof: str) -> OutboundDecision:
        ctx = self.ctx
        checkpoint = ctx.audit.latest
        return receipt_claims(
            ctx.sender,
            info=p.info,
            to=p.sender,
            message_id=p.message_id,
            status=p.status,
            reason=p.reason,
            now=now,
            receipt_id=ids.uuid7(int(now.timestamp() * 1000), ctx.rand(10)),
            span_id=ctx.rand(8).hex(),
            proof=proof,
            checkpoint=checkpoint.note.decode("utf-8") if checkpoint is not None else None,
            directory=ctx.directory.payload,
        )
