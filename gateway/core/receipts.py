"""Receipts (docs/architecture.md §5.4, docs/decisions/0042-receipt-proofs.md): the signed
statement a recipient node sends back about one message, built and checked as values.

:func:`receipt_claims` builds the claims of a receipt we send, from what we kept of the message
(:class:`ReceiptInfo`) and the inclusion proof of our audit record, and returns them with the
policy's decision (:class:`~gateway.core.outbound.Outbound`). :func:`verify_receipt` checks a
receipt we received — as sigstore-python's verifier does, it returns the verified object or
raises — so holding a :class:`VerifiedReceipt` means every check below ran.

Rules enforced by :func:`verify_receipt`, in order:

1. The receipt's signer is a party the policy lets send a receipt to us (the built-in
   ``receipt`` rule of ``gateway.core.policy``; ``policy_denied``).
2. It is about a message we sent, to the receipt's signer (``invalid_claims``).
3. It names the content we sent (``inner_jws_sha256`` is the digest of what we signed).
   Otherwise it is a signed statement about other content: not an error but a contradiction,
   returned as :class:`ContentContradiction` so the node keeps it as evidence
   (docs/decisions/0043-contradicting-receipts-are-evidence.md).
4. Its C2SP tlog-proof (required by the contract: docs/decisions/0005) carries a record
   (``invalid_claims``) and verifies under the
   signer's audit-log keys valid now, for its log's origin (``bad_signature``), and the proved
   record is the signer's record of this message and this content (``invalid_claims``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import InitVar, dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from gateway.core import jose, note
from gateway.core.directory import TrustedDirectory
from gateway.core.envelope import VerifiedMessage
from gateway.core.merkle import leaf_hash
from gateway.core.outbound import (
    ContractError,
    Outbound,
    SenderContext,
    validate_claims,
    wire_time,
)
from gateway.core.policy import Denied, MessageFacts, evaluate
from gateway.errors import LocalError, RemoteError
from schemas import strictjson
from schemas.api import field_errors
from schemas.bodies import ReceiptBody
from schemas.claims import SPEC_VERSION, ClaimsBase, Flags, Sender
from schemas.common import OrgRef
from schemas.directory import DirectoryPayload

__all__ = [
    "RECEIPT_ACTIVITY",
    "ContentContradiction",
    "ReceiptInfo",
    "SentMessage",
    "VerifiedReceipt",
    "receipt_claims",
    "verify_receipt",
]

#: Processing activity of a receipt when the node's configuration names none for the purpose.
RECEIPT_ACTIVITY = "urn:zvg:receipt"

_WITNESS = object()


@dataclass(frozen=True, slots=True)
class ReceiptInfo:
    """What a receipt repeats of the message it answers (no body, no subjects), kept with the
    pending receipt until it is sealed. ``digest`` is the base64url content digest."""

    purpose: str
    legal_basis: tuple[str, ...]
    case_ref: str
    sender_role: str
    our_role: str
    correlation_id: str
    trace_id: str
    digest: str

    @classmethod
    def of(cls, claims: ClaimsBase, roles: Sequence[str], digest: bytes) -> ReceiptInfo:
        """The info of a verified message addressed to us in ``roles`` (the first answers)."""
        return cls(
            purpose=claims.purpose,
            legal_basis=tuple(claims.legal_basis),
            case_ref=claims.case_ref,
            sender_role=claims.sender.role,
            our_role=roles[0],
            correlation_id=claims.correlation_id or claims.message_id,
            trace_id=claims.trace.split("-")[1],
            digest=jose.b64u_encode(digest),
        )

    def to_json(self) -> dict[str, Any]:
        """The stored form (``receipts_pending.info``), keys in the order they always had."""
        return {
            "purpose": self.purpose,
            "legal_basis": list(self.legal_basis),
            "case_ref": self.case_ref,
            "sender_role": self.sender_role,
            "our_role": self.our_role,
            "correlation_id": self.correlation_id,
            "trace_id": self.trace_id,
            "digest": self.digest,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> ReceiptInfo:
        """The info back from its stored form. Raises :class:`LocalError` when a key is
        missing (the store holds what :meth:`to_json` wrote)."""
        try:
            return cls(
                purpose=str(doc["purpose"]),
                legal_basis=tuple(str(b) for b in doc["legal_basis"]),
                case_ref=str(doc["case_ref"]),
                sender_role=str(doc["sender_role"]),
                our_role=str(doc["our_role"]),
                correlation_id=str(doc["correlation_id"]),
                trace_id=str(doc["trace_id"]),
                digest=str(doc["digest"]),
            )
        except KeyError as exc:
            raise LocalError(f"stored receipt info lacks {exc.args[0]}") from None


def receipt_claims(
    sender: SenderContext,
    *,
    info: ReceiptInfo,
    to: str,
    message_id: str,
    status: str,
    reason: str | None,
    now: datetime,
    receipt_id: str,
    span_id: str,
    proof: str,
    checkpoint: str | None,
    directory: DirectoryPayload,
) -> Outbound:
    """The claims of our receipt (``status``, ``reason``) for message ``message_id`` that ``to``
    sent us, with the policy's decision about sending it under ``directory``.

    ``receipt_id`` is a fresh UUIDv7, ``span_id`` 16 random hex digits (the receipt continues
    the message's trace), ``proof`` the tlog-proof of our audit record of the event,
    ``checkpoint`` our latest signed checkpoint note. Raises
    :class:`~gateway.core.outbound.ContractError` when the claims break the contract (a bug:
    everything in them was validated before)."""
    created = wire_time(now)
    defaults = sender.purpose_defaults.get(info.purpose)
    try:
        body = ReceiptBody(
            status=status,  # type: ignore[arg-type]  # validated by the model (strict)
            message_id=message_id,
            inner_jws_sha256=info.digest,
            at=created,
            reason=reason,  # type: ignore[arg-type]  # validated by the model (strict)
            proof=proof,
            checkpoint=checkpoint,
        )
    except ValidationError as exc:
        raise ContractError(
            "the receipt breaks the contract", field_errors(exc, ("body",))
        ) from None
    claims = validate_claims(
        {
            "spec": SPEC_VERSION,
            "message_id": receipt_id,
            "message_type": "receipt",
            "created_at": created,
            "expires_at": created + timedelta(seconds=sender.default_ttl_seconds),
            "sender": Sender(org=sender.org, node=sender.node_id, role=info.our_role),
            "recipients": (OrgRef(org=to, role=info.sender_role),),
            "case_ref": info.case_ref,
            "in_reply_to": message_id,
            "correlation_id": info.correlation_id,
            "purpose": info.purpose,
            "legal_basis": info.legal_basis,
            "processing_activity": defaults.processing_activity if defaults else RECEIPT_ACTIVITY,
            "data_categories": (),
            "flags": Flags(),
            "subjects": (),
            "trace": f"00-{info.trace_id}-{span_id}-01",
            "body": body,
        },
        catalogue=sender.catalogue,
    )
    return Outbound(claims, evaluate(directory, MessageFacts.of(claims)))


@dataclass(frozen=True, slots=True)
class SentMessage:
    """What our outbox knows of a message we sent: its id, content digest and recipients."""

    message_id: str
    digest: bytes
    recipients: frozenset[str]


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifiedReceipt:
    """A receipt whose signature, policy, target, content and inclusion proof verified.

    Only :func:`verify_receipt` builds one. ``message`` is the receipt envelope as opened (its
    ``inner_jws`` is the evidence to keep), ``body`` its statement, ``proof`` the verified proof
    of the signer's audit record."""

    message: VerifiedMessage
    body: ReceiptBody
    proof: note.VerifiedTlogProof
    witness: InitVar[object] = None

    def __post_init__(self, witness: object) -> None:
        if witness is not _WITNESS:
            raise LocalError("only verify_receipt() creates a VerifiedReceipt")

    @property
    def signer(self) -> str:
        """The recipient organisation that signed the receipt."""
        return self.message.claims.sender.org


@dataclass(frozen=True, slots=True, kw_only=True)
class ContentContradiction:
    """A receipt signed by a recipient of our message that names other content than we sent:
    evidence to keep, not an update. Only :func:`verify_receipt` builds one; its inclusion
    proof is not checked (the signature is what makes it evidence)."""

    message: VerifiedMessage
    body: ReceiptBody
    sent_digest: bytes
    witness: InitVar[object] = None

    def __post_init__(self, witness: object) -> None:
        if witness is not _WITNESS:
            raise LocalError("only verify_receipt() creates a ContentContradiction")

    @property
    def signer(self) -> str:
        return self.message.claims.sender.org


def _unproved(exc: Exception) -> RemoteError:
    """A proof that could not be checked: the class of the failure, not its text."""
    return RemoteError(
        "bad_signature", f"the inclusion proof does not verify ({exc.__class__.__name__})"
    )


def verify_receipt(
    verified: VerifiedMessage,
    *,
    sent: SentMessage | None,
    directory: TrustedDirectory,
    now: datetime,
    checkpoints: note.CheckpointCache,
) -> VerifiedReceipt | ContentContradiction:
    """Check a receipt we received (module docstring, rules 1-4).

    ``sent`` is our outbox's record of the message the receipt names (``None`` when we sent no
    such message); ``checkpoints`` remembers the signer's checkpoints already verified (the
    receipts of one batch share one). Returns :class:`VerifiedReceipt`, or
    :class:`ContentContradiction` for a receipt about other content; raises
    :class:`RemoteError` for every other failure (the receipt is ignored and counted)."""
    claims = verified.claims
    body = claims.body
    if not isinstance(body, ReceiptBody):
        raise RemoteError("invalid_claims", "not a receipt")
    signer = claims.sender.org
    decision = evaluate(directory.payload, MessageFacts.of(claims))
    if isinstance(decision, Denied):
        raise RemoteError("policy_denied", decision.explain(directory.names()))
    if sent is None or sent.message_id != body.message_id:
        raise RemoteError("invalid_claims", "no such message sent by us")
    if signer not in sent.recipients:
        raise RemoteError("invalid_claims", "the receipt's sender was not a recipient")
    if body.inner_jws_sha256 != jose.b64u_encode(sent.digest):
        return ContentContradiction(
            message=verified, body=body, sent_digest=sent.digest, witness=_WITNESS
        )
    try:
        parsed = note.parse_tlog_proof(body.proof.encode("utf-8"))
    except (RemoteError, ValueError) as exc:
        raise _unproved(exc) from None
    if parsed.extra is None:
        raise RemoteError("invalid_claims", "the proof carries no record")
    try:
        proved = note.verify_tlog_proof(
            parsed,
            leaf_hash=leaf_hash(parsed.extra),
            log_keys=directory.audit_log_keys(signer, now),
            now=now,
            checkpoints=checkpoints,
        )
        view = strictjson.loads(parsed.extra)
    except (RemoteError, ValueError) as exc:
        raise _unproved(exc) from None
    if (
        not isinstance(view, dict)
        or view.get("message_id") != body.message_id
        or view.get("digest") != body.inner_jws_sha256
    ):
        raise RemoteError("invalid_claims", "the proved record is about another message")
    return VerifiedReceipt(message=verified, body=body, proof=proved, witness=_WITNESS)
