"""Sealing receipts for messages we received (docs/architecture.md §5.4, §9.6).

Receipts are queued in the store in the same transaction as the state they describe
(``delivered`` on arrival, ``accepted``/``rejected`` when the adapter settles). This loop seals
what is pending at once, without waiting for more: one checkpoint of our audit log covers the
batch, each receipt carries the inclusion proof of our audit record about it, and the sealed
receipts go into the outbox (and to the publisher) in one commit. Under load several receipts
are pending together: those for one sender under one purpose and legal basis
(:func:`gateway.core.receipts.coalesce`) share one signed envelope, one entry and proof per
message (docs/decisions/0006-coalesced-receipts.md); a receipt alone leaves as a plain receipt.
Every message keeps its own ``receipt.send`` record; each envelope is one outbox entry.

A receipt the node may not send — the policy denies it, or the sender has no encryption key in
the directory we trust now (a newer version dropped it) — is dropped from the queue in one
commit with the audit records that say so: a ``message.refuse`` about the message it answers
(with the ``policy.decision`` when the policy denied it), as the send path records a denial.
The policy decides about an envelope, so it denies all receipts in one alike, each recorded.
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
from gateway.core.receipts import (
    RECEIPT_BATCH_BYTES,
    Acknowledgement,
    coalesce,
    receipt_batch_claims,
    receipt_claims,
)
from gateway.errors import LocalError, TransientError
from gateway.node.context import NodeContext
from gateway.node.outbox import Outbox
from gateway.node.store import DropPendingReceipt, OutboxEntry, PendingReceipt, ReceiptSealed
from schemas import ids

__all__ = ["RECEIPT_BATCH", "ReceiptSealer", "proof_budget"]

log = logging.getLogger("gateway.node")

#: Receipts sealed per batch (one checkpoint covers the whole batch).
RECEIPT_BATCH = 128

#: Receipts that share one envelope, each with the tlog-proof of our audit record of it.
Group = Sequence[tuple[PendingReceipt, str]]


def proof_budget(max_envelope_bytes: int) -> int:
    """Proof text one coalesced receipt may carry so that it seals within ``max_envelope_bytes``
    (``limits.max_envelope_bytes``): signing and encrypting base64-encode the claims twice
    (by 16/9), and a checkpoint of up to 16 KiB rides along. 112 KiB at the default 256 KiB."""
    return min(RECEIPT_BATCH_BYTES, max(0, max_envelope_bytes // 2 - 16 * 1024))


class ReceiptSealer:
    """The receipt loop (module docstring)."""

    def __init__(self, ctx: NodeContext, outbox: Outbox) -> None:
        self.ctx = ctx
        self._outbox = outbox

    async def run(self) -> None:
        """Seal pending receipts in batches (one checkpoint per batch) until stopped."""
        while not self.ctx.stopping.is_set():
            if not await self.ctx.lead():  # one process seals (decision 0109)
                return
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
        """Seal a batch of receipts: one checkpoint, one read of the proved records, one
        envelope per group :func:`~gateway.core.receipts.coalesce` makes, one commit."""
        checkpoint = await self.ctx.audit.checkpoint(
            min_size=max(p.record_idx for p in pending) + 1
        )
        if checkpoint is None:
            raise TransientError("no checkpoint yet")
        views = self.ctx.audit.views([p.record_idx for p in pending])
        now = self.ctx.now()
        proved = [
            (p, self.ctx.audit.tlog_proof(p.record_idx, views[p.record_idx], checkpoint).decode())
            for p in pending
        ]
        groups = coalesce(
            proved,
            key=lambda pp: (pp[0].sender, pp[0].info.envelope_key),
            statement=lambda pp: (pp[0].message_id, pp[0].status),
            size=lambda pp: len(pp[1]),
            max_entries=self.ctx.config.limits.receipt_entries,
            max_bytes=proof_budget(self.ctx.envelope_limits.max_envelope_bytes),
        )
        sealed: list[tuple[Sequence[PendingReceipt], OutboxEntry]] = []
        records: list[Record] = []
        for group in groups:
            out = self._claims(group, now)
            done = await self._sealed(group, out, now, records)
            if done is not None:
                sealed.append(done)
        if sealed:
            await self.ctx.store.commit(
                *(ReceiptSealed(tuple(ps), entry, now) for ps, entry in sealed),
                self.ctx.audit.append(records, now),
            )
            for _ps, entry in sealed:
                self._outbox.hand_over(entry)

    async def _sealed(
        self, group: Group, out: OutboundDecision, now: datetime, records: list[Record]
    ) -> tuple[Sequence[PendingReceipt], OutboxEntry] | None:
        """Seal one envelope for ``group`` (its ``receipt.send`` records go to ``records``), or
        drop its receipts when we may not send it."""
        claims = out.claims
        ps = [p for p, _proof in group]
        sender = ps[0].sender
        if isinstance(out.decision, Denied):
            log.warning(
                "the policy denies a receipt to %s (%s): %d receipt(s) dropped",
                sender,
                out.decision.reason,
                len(ps),
            )
            await self._drop(
                ps,
                *(
                    r
                    for p in ps
                    for r in (
                        policy_record(out.decision, self._refused_fields(p, out), at=now),
                        self._refusal(p, out, now, "denied", "policy_denied"),
                    )
                ),
            )
            return None
        try:
            key = self.ctx.directory.encryption_key(sender, now)
        except LocalError:
            log.warning("no encryption key for %s: %d receipt(s) dropped", sender, len(ps))
            await self._drop(
                ps, *(self._refusal(p, out, now, "error", "recipient_unavailable") for p in ps)
            )
            return None
        envelope = seal(
            claims,
            signing_key=self.ctx.keys.signing,
            recipients=[key],
            rand=self.ctx.rand,
            limits=self.ctx.envelope_limits,
        )
        span_id = claims.trace.split("-")[2]
        records.extend(
            self.ctx.record(
                "receipt.send",
                message_id=p.message_id,
                peer=p.sender,
                purpose=claims.purpose,
                legal_basis=claims.legal_basis,
                case_ref=p.info.case_ref,
                reason=p.reason,
                detail={"status": p.status, "receipt_id": claims.message_id},
                trace_id=p.info.trace_id,
                span_id=span_id,
            )
            for p in ps
        )
        return ps, OutboxEntry(
            message_id=claims.message_id,
            message_type="receipt",
            purpose=claims.purpose,
            case_ref=claims.case_ref,
            in_reply_to=ps[0].message_id,
            created_at=claims.created_at,
            expires_at=claims.expires_at,
            digest=envelope.digest,
            envelope=envelope.raw,
            recipients=((sender, (claims.recipients[0].role,)),),
            purge_after=self.ctx.retention.outbox_purge_after(claims.expires_at),
        )

    @staticmethod
    def _refused_fields(p: PendingReceipt, out: OutboundDecision) -> MessageFields:
        """The audit fields of a receipt we do not send, about the message it answers (as the
        ``receipt.send`` record of one we send is)."""
        return dataclasses.replace(
            MessageFields.of(out.claims), message_id=p.message_id, case_ref=p.info.case_ref
        )

    def _refusal(
        self,
        p: PendingReceipt,
        out: OutboundDecision,
        now: datetime,
        status: Literal["denied", "error"],
        reason: str,
    ) -> Record:
        return message_record(
            "message.refuse",
            self._refused_fields(p, out),
            at=now,
            status=status,
            reason=reason,
            detail={"status": p.status, "receipt_id": out.claims.message_id},
        )

    async def _drop(self, ps: Sequence[PendingReceipt], *records: Record) -> None:
        """Take ``ps`` off the queue, in one commit with the records that say why."""
        now = self.ctx.now()
        await self.ctx.store.commit(
            *(DropPendingReceipt(p.id) for p in ps), self.ctx.audit.append(list(records), now)
        )

    def _claims(self, group: Group, now: datetime) -> OutboundDecision:
        """The claims of the receipt envelope for ``group``: a plain receipt for one, a
        coalesced one for several."""
        ctx = self.ctx
        latest = ctx.audit.latest
        checkpoint = latest.note.decode("utf-8") if latest is not None else None
        receipt_id = ids.uuid7(int(now.timestamp() * 1000), ctx.rand(10))
        span_id = ctx.rand(8).hex()
        (p, proof), *more = group
        if not more:
            return receipt_claims(
                ctx.sender,
                info=p.info,
                to=p.sender,
                message_id=p.message_id,
                status=p.status,
                reason=p.reason,
                now=now,
                receipt_id=receipt_id,
                span_id=span_id,
                proof=proof,
                checkpoint=checkpoint,
                directory=ctx.directory.payload,
            )
        return receipt_batch_claims(
            ctx.sender,
            to=p.sender,
            entries=[
                Acknowledgement(q.message_id, q.status, q.reason, q.info, pr) for q, pr in group
            ],
            now=now,
            receipt_id=receipt_id,
            span_id=span_id,
            checkpoint=checkpoint,
            directory=ctx.directory.payload,
        )
