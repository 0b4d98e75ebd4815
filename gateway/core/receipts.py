"""Receipts (docs/architecture.md §5.4, docs/decisions/0042-receipt-proofs.md): the signed
statement a recipient node sends back about one message — or, coalesced, about several messages
of one sender (docs/decisions/0006-coalesced-receipts.md) — built and checked as values.

:func:`receipt_claims` builds the claims of a receipt we send, from what we kept of the message
(:class:`ReceiptInfo`) and the inclusion proof of our audit record, and returns them with the
policy's decision (:class:`~gateway.core.outbound.Outbound`). :func:`verify_receipt` checks a
receipt we received — as sigstore-python's verifier does, it returns the verified object or
raises — so holding a :class:`VerifiedReceipt` means every check below ran.
:func:`receipt_batch_claims` builds a coalesced receipt (one envelope, several entries) for
receipts that :func:`coalesce` grouped, and :func:`verify_receipts` checks either shape, one
outcome per entry.

Rules enforced by :func:`verify_receipt` (and, per entry, :func:`verify_receipts`), in order:

1. The receipt's signer is a party the policy lets send a receipt to us (the built-in
   ``receipt`` rule of ``gateway.core.policy``; ``policy_denied``).
2. It is about a message we sent, to the receipt's signer, under the receipt's purpose
   (``invalid_claims``).
3. It names the content we sent (``inner_jws_sha256`` is the digest of what we signed).
   Otherwise it is a signed statement about other content: not an error but a contradiction,
   returned as :class:`ContentContradiction` so the node keeps it as evidence
   (docs/decisions/0043-contradicting-receipts-are-evidence.md).
4. Its C2SP tlog-proof (required by the contract: docs/decisions/0005) carries a record
   (``invalid_claims``) and verifies under the
   signer's audit-log keys valid now, for its log's origin (``bad_signature``), and the proved
   record is the signer's record of this message and this content (``invalid_claims``).

A coalesced receipt is one signed envelope, so rule 1 holds or fails for all its entries, and its
entries' proofs must be against one checkpoint (``invalid_claims``): :func:`verify_receipts`
raises for these. Rules 2-4 are per entry: an entry that fails them is returned as
:class:`UnverifiedEntry` (ignored and counted, as a single receipt is) and does not spoil the
others; an entry about other content is a :class:`ContentContradiction`, kept as evidence.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import InitVar, dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

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
from schemas import limits, strictjson
from schemas.api import field_errors
from schemas.bodies import ReceiptBatchBody, ReceiptBody, ReceiptEntry
from schemas.claims import SPEC_VERSION, ClaimsBase, Flags, Sender
from schemas.common import OrgRef
from schemas.directory import DirectoryPayload
from schemas.reasons import RejectReason

__all__ = [
    "RECEIPT_ACTIVITY",
    "RECEIPT_BATCH_BYTES",
    "Acknowledgement",
    "ContentContradiction",
    "EntryOutcome",
    "ReceiptInfo",
    "SentMessage",
    "UnverifiedEntry",
    "VerifiedReceipt",
    "coalesce",
    "receipt_batch_claims",
    "receipt_claims",
    "verify_receipt",
    "verify_receipts",
]

#: Processing activity of a receipt when the node's configuration names none for the purpose.
RECEIPT_ACTIVITY = "urn:zvg:receipt"

#: Proof text that one coalesced receipt carries at most: with the rest of the claims it stays
#: well inside the envelope's claims limit (``gateway.core.envelope.MAX_CLAIMS_BYTES``, 160 KiB).
RECEIPT_BATCH_BYTES = 112 * 1024

_WITNESS = object()
_T = TypeVar("_T")


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

    @property
    def envelope_key(self) -> tuple[str, tuple[str, ...], str, str]:
        """What receipts that share one envelope must share: the purpose and legal basis of the
        messages they answer (one envelope carries one of each) and both parties' roles."""
        return (self.purpose, self.legal_basis, self.sender_role, self.our_role)

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
    return _outbound(
        sender,
        info=info,
        to=to,
        in_reply_to=message_id,
        body=body,
        now=now,
        receipt_id=receipt_id,
        span_id=span_id,
        directory=directory,
    )


def _outbound(
    sender: SenderContext,
    *,
    info: ReceiptInfo,
    to: str,
    in_reply_to: str,
    body: ReceiptBody | ReceiptBatchBody,
    now: datetime,
    receipt_id: str,
    span_id: str,
    directory: DirectoryPayload,
) -> Outbound:
    """The claims of a receipt with ``body``, repeating ``info`` of the (first) message it
    answers, and the policy's decision about sending them."""
    created = wire_time(now)
    defaults = sender.purpose_defaults.get(info.purpose)
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
            "in_reply_to": in_reply_to,
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
class Acknowledgement:
    """One entry of a coalesced receipt we send: our ``status`` (and ``reason``) for message
    ``message_id``, what we kept of it (``info``) and the tlog-proof of our audit record."""

    message_id: str
    status: str
    reason: str | None
    info: ReceiptInfo
    proof: str


def receipt_batch_claims(
    sender: SenderContext,
    *,
    to: str,
    entries: Sequence[Acknowledgement],
    now: datetime,
    receipt_id: str,
    span_id: str,
    checkpoint: str | None,
    directory: DirectoryPayload,
) -> Outbound:
    """The claims of one coalesced receipt to ``to`` acknowledging ``entries`` (at least two,
    in order, all with the same :attr:`ReceiptInfo.envelope_key`: :func:`coalesce` makes such
    groups), with the policy's decision about sending it.

    The envelope's ``case_ref``, ``in_reply_to``, ``correlation_id`` and trace are those of the
    first entry's message (docs/decisions/0006-coalesced-receipts.md); every proof must be
    against one checkpoint (the receipt loop proves a whole batch against one). Raises
    :class:`~gateway.core.outbound.ContractError` when the claims break the contract and
    :class:`LocalError` for entries that may not share an envelope (both bugs)."""
    if len(entries) < 2:
        raise LocalError("a coalesced receipt has at least two entries")
    first = entries[0].info
    if any(e.info.envelope_key != first.envelope_key for e in entries):
        raise LocalError("receipts of other purposes, legal bases or roles share no envelope")
    created = wire_time(now)
    try:
        body = ReceiptBatchBody(
            entries=tuple(
                ReceiptEntry(
                    status=e.status,  # type: ignore[arg-type]  # validated by the model (strict)
                    message_id=e.message_id,
                    inner_jws_sha256=e.info.digest,
                    at=created,
                    reason=e.reason,  # type: ignore[arg-type]  # validated by the model (strict)
                    proof=e.proof,
                )
                for e in entries
            ),
            checkpoint=checkpoint,
        )
    except ValidationError as exc:
        raise ContractError(
            "the receipt breaks the contract", field_errors(exc, ("body",))
        ) from None
    return _outbound(
        sender,
        info=first,
        to=to,
        in_reply_to=entries[0].message_id,
        body=body,
        now=now,
        receipt_id=receipt_id,
        span_id=span_id,
        directory=directory,
    )


def coalesce(
    items: Sequence[_T],
    *,
    key: Callable[[_T], Hashable],
    statement: Callable[[_T], tuple[str, str]],
    size: Callable[[_T], int],
    max_entries: int = limits.MAX_RECEIPT_ENTRIES,
    max_bytes: int = RECEIPT_BATCH_BYTES,
) -> list[list[_T]]:
    """Group pending receipts into envelopes, in order of first appearance: receipts share an
    envelope when ``key`` (the sender and :attr:`ReceiptInfo.envelope_key`) is equal, up to
    ``max_entries`` of them and ``max_bytes`` of ``size`` (the proof text), and never two with
    the same ``statement`` (message id, status). A group of one is sent as a plain receipt."""
    groups: list[list[_T]] = []
    open_: dict[Hashable, tuple[list[_T], set[tuple[str, str]], list[int]]] = {}
    for item in items:
        k, said, n = key(item), statement(item), size(item)
        current = open_.get(k)
        if (
            current is None
            or len(current[0]) >= max_entries
            or current[2][0] + n > max_bytes
            or said in current[1]
        ):
            current = ([], set(), [0])
            open_[k] = current
            groups.append(current[0])
        current[0].append(item)
        current[1].add(said)
        current[2][0] += n
    return groups


@dataclass(frozen=True, slots=True)
class SentMessage:
    """What our outbox knows of a message we sent: its id, content digest, recipients and
    purpose."""

    message_id: str
    digest: bytes
    recipients: frozenset[str]
    purpose: str


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifiedReceipt:
    """A receipt whose signature, policy, target, content and inclusion proof verified.

    Only :func:`verify_receipt` and :func:`verify_receipts` build one. ``message`` is the receipt
    envelope as opened (its ``inner_jws`` is the evidence to keep), ``body`` its statement about
    the message (the whole body of a single receipt, one entry of a coalesced one), ``proof`` the
    verified proof of the signer's audit record."""

    message: VerifiedMessage
    body: ReceiptEntry
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
    """A receipt (or entry) signed by a recipient of our message that names other content than
    we sent: evidence to keep, not an update. Only the verifiers build one; its inclusion proof
    is not checked (the signature is what makes it evidence)."""

    message: VerifiedMessage
    body: ReceiptEntry
    sent_digest: bytes
    witness: InitVar[object] = None

    def __post_init__(self, witness: object) -> None:
        if witness is not _WITNESS:
            raise LocalError("only verify_receipt() creates a ContentContradiction")

    @property
    def signer(self) -> str:
        return self.message.claims.sender.org


@dataclass(frozen=True, slots=True)
class UnverifiedEntry:
    """An entry of a receipt that failed rules 2-4: ``error`` says why (it is ignored and
    counted, as a single receipt that fails them is)."""

    body: ReceiptEntry
    error: RemoteError


#: What :func:`verify_receipts` says about one entry.
EntryOutcome = VerifiedReceipt | ContentContradiction | UnverifiedEntry


def _unproved(exc: Exception) -> RemoteError:
    """A proof that could not be checked: the class of the failure, not its text."""
    return RemoteError(
        "bad_signature", f"the inclusion proof does not verify ({exc.__class__.__name__})"
    )


def _envelope(
    verified: VerifiedMessage, directory: TrustedDirectory
) -> ReceiptBody | ReceiptBatchBody:
    """Rule 1, for the envelope as a whole: a receipt the policy lets its signer send us."""
    claims = verified.claims
    body = claims.body
    if not isinstance(body, ReceiptBody | ReceiptBatchBody):
        raise RemoteError("invalid_claims", "not a receipt")
    decision = evaluate(directory.payload, MessageFacts.of(claims))
    if isinstance(decision, Denied):
        raise RemoteError("policy_denied", decision.explain(directory.names()))
    return body


def verify_receipt(
    verified: VerifiedMessage,
    *,
    sent: SentMessage | None,
    directory: TrustedDirectory,
    now: datetime,
    checkpoints: note.CheckpointCache,
) -> VerifiedReceipt | ContentContradiction:
    """Check a single receipt we received (module docstring, rules 1-4).

    ``sent`` is our outbox's record of the message the receipt names (``None`` when we sent no
    such message); ``checkpoints`` remembers the signer's checkpoints already verified (the
    receipts of one batch share one). Returns :class:`VerifiedReceipt`, or
    :class:`ContentContradiction` for a receipt about other content; raises
    :class:`RemoteError` for every other failure (the receipt is ignored and counted), a
    coalesced receipt included (:func:`verify_receipts` checks those)."""
    body = _envelope(verified, directory)
    if not isinstance(body, ReceiptBody):
        raise RemoteError("invalid_claims", "a coalesced receipt (see verify_receipts)")
    outcome = _entry(verified, body, sent, _parse_proof(body), directory, now, checkpoints)
    if isinstance(outcome, UnverifiedEntry):
        raise outcome.error
    return outcome


def verify_receipts(
    verified: VerifiedMessage,
    *,
    sent: Mapping[str, SentMessage],
    directory: TrustedDirectory,
    now: datetime,
    checkpoints: note.CheckpointCache,
) -> tuple[EntryOutcome, ...]:
    """Check a receipt of either shape, one outcome per entry in order (a single receipt is one
    entry): :class:`VerifiedReceipt`, :class:`ContentContradiction`, or :class:`UnverifiedEntry`
    for an entry that fails rules 2-4 (module docstring).

    ``sent`` maps the message ids the entries name to our outbox's record of them (an id we did
    not send is absent). Raises :class:`RemoteError` when the envelope itself fails: not a
    receipt, rule 1, or (coalesced) entries proved against different checkpoints."""
    body = _envelope(verified, directory)
    entries: tuple[ReceiptEntry, ...] = (body,) if isinstance(body, ReceiptBody) else body.entries
    parsed = [_parse_proof(e) for e in entries]
    if len({p.checkpoint for p in parsed if isinstance(p, note.TlogProof)}) > 1:
        raise RemoteError("invalid_claims", "the entries are proved against different checkpoints")
    return tuple(
        _entry(
            verified,
            entry,
            sent.get(entry.message_id),
            proof,
            directory,
            now,
            checkpoints,
        )
        for entry, proof in zip(entries, parsed, strict=True)
    )


def _parse_proof(entry: ReceiptEntry) -> note.TlogProof | RemoteError:
    try:
        return note.parse_tlog_proof(entry.proof.encode("utf-8"))
    except (RemoteError, ValueError) as exc:
        return _unproved(exc)


def _entry(
    verified: VerifiedMessage,
    entry: ReceiptEntry,
    sent: SentMessage | None,
    parsed: note.TlogProof | RemoteError,
    directory: TrustedDirectory,
    now: datetime,
    checkpoints: note.CheckpointCache,
) -> EntryOutcome:
    """Rules 2-4 for one statement (``parsed``: its proof, parsed, or why it does not parse)."""
    claims = verified.claims
    signer = claims.sender.org

    def failed(reason: RejectReason, detail: str) -> UnverifiedEntry:
        return UnverifiedEntry(entry, RemoteError(reason, detail))

    if sent is None or sent.message_id != entry.message_id:
        return failed("invalid_claims", "no such message sent by us")
    if signer not in sent.recipients:
        return failed("invalid_claims", "the receipt's sender was not a recipient")
    if sent.purpose != claims.purpose:
        return failed("invalid_claims", "the message was sent under another purpose")
    if entry.inner_jws_sha256 != jose.b64u_encode(sent.digest):
        return ContentContradiction(
            message=verified, body=entry, sent_digest=sent.digest, witness=_WITNESS
        )
    if isinstance(parsed, RemoteError):
        return UnverifiedEntry(entry, parsed)
    if parsed.extra is None:
        return failed("invalid_claims", "the proof carries no record")
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
        return UnverifiedEntry(entry, _unproved(exc))
    if (
        not isinstance(view, dict)
        or view.get("message_id") != entry.message_id
        or view.get("digest") != entry.inner_jws_sha256
    ):
        return failed("invalid_claims", "the proved record is about another message")
    return VerifiedReceipt(message=verified, body=entry, proof=proved, witness=_WITNESS)
