"""Receipts that arrive for messages we sent (docs/architecture.md §5.4, §9.6).

A verified receipt about a message we sent to its signer moves that recipient's delivery status
(forward only) and is kept as evidence. Receipts that do not verify — no such message, the wrong
signer, an inclusion proof that fails — are ignored and counted. A signed receipt that
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
from gateway.core.envelope import VerifiedMessage
from gateway.core.merkle import leaf_hash, verify_inclusion
from gateway.errors import RemoteError
from gateway.node.context import NodeContext
from gateway.node.records import b64
from gateway.node.store import KeepReceipt, MessageRow, SetStatus, contradicts
from schemas import strictjson
from schemas.bodies import ReceiptBody
from schemas.claims import ClaimsBase

__all__ = ["VERIFIED_CHECKPOINT_CACHE", "IncomingReceipts"]

log = logging.getLogger("gateway.node")

#: Partners' checkpoints remembered as verified (receipts of one batch share a checkpoint).
VERIFIED_CHECKPOINT_CACHE = 64


class IncomingReceipts:
    """Receiving receipts (module docstring)."""

    def __init__(self, ctx: NodeContext) -> None:
        self.ctx = ctx
        #: Checkpoints of partners' logs already verified (receipts in a batch share one).
        self._verified_checkpoints: dict[bytes, note.VerifiedCheckpoint] = {}

    async def on_receipt(self, verified: VerifiedMessage, now: datetime) -> Decision:
        claims = verified.claims
        body = claims.body
        assert isinstance(body, ReceiptBody)  # noqa: S101 - on_delivery dispatches on the type
        try:
            row = await self._receipt_target(claims, body)
            if body.inner_jws_sha256 != b64(row.digest):
                # Signed by the recipient, about our message, naming other content: evidence.
                sent = self.ctx.audit.record_index(body.message_id, "message.send")
                earlier: dict[str, int | str] = {"earlier_sha256": b64(row.digest)}
                if sent is not None:
                    earlier["earlier_record"] = sent
                await self._keep_contradiction(verified, body, "content", earlier, now)
                return Deliver()
            self._check_receipt_proof(verified, body, now)
        except RemoteError as exc:
            self.ctx.count("receipts_ignored")
            self.ctx.telemetry.receipts_ignored.add(1, {"why": exc.detail})
            log.warning(
                "ignored a receipt from %s for %s: %s",
                claims.sender.org,
                body.message_id,
                exc.detail,
            )
            return Deliver()
        record = self._receipt_record(
            "receipt.receive",
            "ok",
            verified,
            body,
            detail={"status": body.status, "receipt_id": claims.message_id},
        )
        org = claims.sender.org
        committed = await self.ctx.store.commit(
            SetStatus(body.message_id, org, body.status, body.reason, now),
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

    async def _receipt_target(self, claims: ClaimsBase, body: ReceiptBody) -> MessageRow:
        """The message a receipt is about: one we sent to the receipt's signer. Raises
        :class:`RemoteError` (the receipt is ignored) otherwise."""
        row = await self.ctx.store.message(body.message_id)
        if row is None:
            raise RemoteError("invalid_claims", "no such message sent by us")
        if claims.sender.org not in {r.org for r in row.recipients}:
            raise RemoteError("invalid_claims", "the receipt's sender was not a recipient")
        return row

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
            ref["earlier_sha256"] = b64(hashlib.sha256(earlier.inner_jws).digest())
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
                "evidence_sha256": b64(hashlib.sha256(later).digest()),
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

    def _check_receipt_proof(
        self, verified: VerifiedMessage, body: ReceiptBody, now: datetime
    ) -> None:
        """Check the receipt's inclusion proof of the recipient's audit record (its signature
        verified already). Raises :class:`RemoteError` (the receipt is ignored) when it fails."""
        claims = verified.claims
        if body.proof is None:
            raise RemoteError("invalid_claims", "the receipt carries no inclusion proof")
        origin = self.ctx.directory.audit_origin(claims.sender.org)
        try:
            proof = note.parse_tlog_proof(body.proof.encode("utf-8"))
        except (RemoteError, ValueError) as exc:
            raise _unproved(exc) from None
        if proof.extra is None:
            raise RemoteError("invalid_claims", "the proof carries no record")
        try:
            signed = self._verified_checkpoints.get(proof.checkpoint)
            if signed is None or signed.checkpoint.origin != origin:
                # Most receipts of a batch share one checkpoint: build verifiers only on a miss.
                log_keys = [
                    note.ed25519_verifier(origin, k)
                    for k in self.ctx.directory.audit_keys(claims.sender.org, now)
                ]
                signed = note.open_checkpoint(proof.checkpoint, log_keys=log_keys, now=now)
                if len(self._verified_checkpoints) >= VERIFIED_CHECKPOINT_CACHE:
                    self._verified_checkpoints.pop(next(iter(self._verified_checkpoints)))
                self._verified_checkpoints[proof.checkpoint] = signed
            included = verify_inclusion(
                proof.index,
                signed.checkpoint.size,
                leaf_hash(proof.extra),
                list(proof.inclusion_proof),
                signed.checkpoint.root,
            )
            view = strictjson.loads(proof.extra) if included else None
        except (RemoteError, ValueError) as exc:
            raise _unproved(exc) from None
        if not included:
            raise RemoteError("bad_signature", "the inclusion proof does not verify")
        if (
            not isinstance(view, dict)
            or view.get("message_id") != body.message_id
            or view.get("digest") != body.inner_jws_sha256
        ):
            raise RemoteError("invalid_claims", "the proved record is about another message")


def _unproved(exc: Exception) -> RemoteError:
    """A receipt's proof that could not be checked: the class of the failure, not its text."""
    return RemoteError(
        "bad_signature", f"the inclusion proof does not verify ({exc.__class__.__name__})"
    )
