"""The node's behaviour: sending, receiving, receipts, the inbox for adapters, retention.

Everything here is the asyncio shell around the pure core: the core decides (contract, policy,
envelope, Merkle log), this module moves bytes and remembers outcomes in the store, always
writing the audit records in the same transaction as the state they describe
(docs/architecture.md §7, §9).

Outbound: ``send`` validates the adapter's request against the contract, asks the policy,
seals, and stores the envelope in the outbox (with its audit records) before answering; the
outbox loop publishes with confirms and retries until the broker confirmed or the message
expired. Inbound: ``on_delivery`` runs the cheap checks, deduplicates by (sender, message id),
opens and verifies, re-checks the policy with *our* directory, and stores the message in the
inbox with its audit records and a pending receipt before the broker ack. The receipt loop seals
receipts (``delivered`` on arrival, ``accepted``/``rejected`` when the adapter settles) with an
inclusion proof of our audit record. Receipts that do not verify are ignored and counted; a
signed receipt that contradicts the recipient's earlier signed statement (``rejected`` after
``accepted``, or other content than we sent) is kept verbatim as evidence in a
``receipt.contradiction`` record (docs/decisions/0043-contradicting-receipts-are-evidence.md).

Unauthenticated input is never answered: a receipt is only sent for a message whose signature
verified and which is not itself a receipt (docs/decisions/0040-receipts-only-for-verified.md).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import os
import sqlite3
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from opentelemetry import trace
from opentelemetry.trace import Link, Span, SpanContext, TraceFlags
from pydantic import ValidationError

from gateway.audit import witnessing
from gateway.audit.log import AuditLog
from gateway.broker.transport import Delivery, MessageExpiredError, Publisher
from gateway.core import jose, note
from gateway.core.audit import Actor, Record, new_record, record_time
from gateway.core.broker_topology import WITNESS_CONTENT_TYPE, routing_key, split_routing_key
from gateway.core.decisions import Decision, Deliver, Reject, Retry
from gateway.core.directory import TrustedDirectory
from gateway.core.envelope import (
    EnvelopeHeader,
    EnvelopeLimits,
    VerifiedMessage,
    open_envelope,
    peek_header,
    seal,
)
from gateway.core.keys import KeyRing, SigningKey
from gateway.core.merkle import leaf_hash, verify_inclusion
from gateway.core.policy import Allowed, Denied, MessageFacts, evaluate
from gateway.core.witness import AddCheckpointRequest, Cosigned
from gateway.errors import LocalError, RemoteError, TransientError
from gateway.node.config import NodeConfig
from gateway.node.problems import ApiError, field_errors
from gateway.node.refusals import Refusals
from gateway.node.store import (
    InboxEntry,
    Job,
    MessageRow,
    OutboxEntry,
    PendingPublish,
    PendingReceipt,
    SqliteStore,
    contradicts,
    idempotency_job,
    pending_receipt_job,
    receipt_in_job,
)
from gateway.node.trust import change_record, make_durable
from gateway.telemetry import Telemetry
from schemas import ids, strictjson
from schemas.api import FieldError, InboxItem, MessageStatus, RecipientStatus, SendRequest
from schemas.bodies import ReceiptBody
from schemas.catalogue import Catalogue
from schemas.claims import SPEC_VERSION, ClaimsBase, claims_to_json, parse_claims

__all__ = ["NodeKeys", "NodeService"]

log = logging.getLogger("gateway.node")

#: Receipts sealed per batch (one checkpoint covers the whole batch).
RECEIPT_BATCH = 128
#: Outbox entries fetched per publishing round.
PUBLISH_BATCH = 512
#: ``Retry-After`` (seconds) of a send refused because the outbox is full: a connected node
#: publishes dozens to hundreds a second, so a second frees room; adapters back off further.
BACKLOG_RETRY_AFTER_S = 1
#: How long an inbound message waits when our directory has expired (it stays queued).
EXPIRED_DIRECTORY_RETRY_S = 60.0
#: Partners' checkpoints remembered as verified (receipts of one batch share a checkpoint).
VERIFIED_CHECKPOINT_CACHE = 64
#: Seconds between refreshes of the metrics gauges.
GAUGE_INTERVAL_S = 5.0
#: Fallback processing activity for receipts when the config names none for the purpose.
RECEIPT_ACTIVITY = "urn:zvg:receipt"


@dataclass(frozen=True)
class NodeKeys:
    """The node's private keys: message signing, the decryption ring, the audit-log key."""

    signing: SigningKey
    ring: KeyRing
    audit: Ed25519PrivateKey


def utc_now() -> datetime:
    return datetime.now(UTC)


def _b64(digest: bytes) -> str:
    return jose.b64u_encode(digest)


def _jobs(*jobs: Job[Any] | None) -> Job[None]:
    def job(db: sqlite3.Connection) -> None:
        for j in jobs:
            if j is not None:
                j(db)

    return job


class NodeService:
    """One organisation's node. The runner builds it and starts its loops."""

    def __init__(
        self,
        *,
        config: NodeConfig,
        store: SqliteStore,
        audit: AuditLog,
        directory: TrustedDirectory,
        catalogue: Catalogue,
        keys: NodeKeys,
        telemetry: Telemetry,
        clock: Callable[[], datetime] = utc_now,
        rand: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.config = config
        self.org = config.node.org
        self.store = store
        self.audit = audit
        self.directory = directory
        self.catalogue = catalogue
        self.keys = keys
        self.telemetry = telemetry
        self.clock = clock
        self.rand = rand
        self.publisher: Publisher | None = None
        lim = config.limits
        self.envelope_limits = EnvelopeLimits(
            max_envelope_bytes=lim.max_envelope_bytes,
            max_iat_age=timedelta(seconds=lim.max_age_seconds),
            max_future_skew=timedelta(seconds=lim.max_clock_skew_seconds),
        )
        self._outbox_wake = asyncio.Event()
        #: Envelopes just made durable, handed straight to the publisher (no re-reading); the
        #: periodic outbox scan catches whatever this misses (restart, failed publish).
        #: Keyed by (message id, recipient org): a scan never queues one twice. Started in order,
        #: at most ``broker.publish_window`` at once (the rest wait here or in the store).
        self._ready: OrderedDict[tuple[str, str], PendingPublish] = OrderedDict()
        #: Publishes not yet confirmed (``zvg.outbox.pending``): counted from the store at start
        #: and at every outbox scan, moved in between by sends and publishes; ``send`` answers
        #: 429 above ``limits.max_outbox_backlog``
        #: (docs/decisions/0049-outbox-backlog-answers-429.md).
        self.backlog = 0
        self._peeked: tuple[bytes, EnvelopeHeader] | None = None
        #: Checkpoints of partners' logs already verified (receipts in a batch share one).
        self._verified_checkpoints: dict[bytes, note.VerifiedCheckpoint] = {}
        self._receipt_wake = asyncio.Event()
        self._inbox_changed = asyncio.Condition()
        self._in_flight: set[tuple[str, str]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()
        self.counters: dict[str, int] = {}
        #: Whether the partners were asked which checkpoint of our log they cosigned (once, as
        #: soon as the broker is there: a log rewritten while the node was down shows at once).
        self._heads_asked = False
        #: Dead-lettered envelopes, summarised per sender per interval (gateway.node.refusals).
        self.refusals = Refusals(
            directory=lambda: self.directory,
            telemetry=telemetry,
            write=lambda records, now: self.store.run(self.audit.append(records, now)),
            clock=clock,
        )
        member = directory.member(self.org)
        if member is None:
            raise LocalError(f"{self.org} is not a member of directory v{directory.version}")
        self.roles = member.roles

    # ------------------------------------------------------------------ small helpers

    def _count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

    def _now(self) -> datetime:
        return self.clock()

    def _record(self, name: str, status: str = "ok", **fields: Any) -> Record:
        now = self._now()
        fields.setdefault("start_time", now)
        fields.setdefault("end_time", now)
        return new_record(name=name, status=status, **fields)

    def _claims_fields(self, claims: ClaimsBase, span: Span | None = None) -> dict[str, Any]:
        """Audit fields of a message (never its body)."""
        ctx = span.get_span_context() if span is not None else None
        return {
            "trace_id": f"{ctx.trace_id:032x}" if ctx else claims.trace.split("-")[1],
            "span_id": f"{ctx.span_id:016x}" if ctx else claims.trace.split("-")[2],
            "processing_activity_id": claims.processing_activity,
            "message_id": claims.message_id,
            "message_type": claims.message_type,
            "purpose": claims.purpose,
            "legal_basis": claims.legal_basis,
            "sender": claims.sender.org,
            "recipients": claims.recipient_orgs(),
            "data_categories": claims.data_categories,
            "flags": tuple(k for k, v in claims.flags.model_dump().items() if v),
            "case_ref": claims.case_ref,
            "data_subjects": tuple(s.subject_ref for s in claims.subjects),
        }

    def _directory_ok(self, now: datetime) -> TrustedDirectory:
        state, _left = self.directory.status(
            now, timedelta(days=self.config.directory.expiry_warning_days)
        )
        if state == "expired":
            raise ApiError(
                "unavailable",
                f"the federation directory (v{self.directory.version}) has expired; "
                "the node sends nothing until ops load a new version",
                reason="internal",
                retry_after=300,
            )
        return self.directory

    def spawn(self, coro: Any, name: str) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ outbound

    async def send(
        self,
        body: bytes,
        *,
        client: str,
        idempotency_key: str | None = None,
        actor: Actor | None = None,
    ) -> tuple[str, bool]:
        """Accept an adapter's message: validate, police, seal, store. Returns (message id,
        created) — ``created`` is False when an ``Idempotency-Key`` repeats an earlier request.
        Raises :class:`ApiError` for every refusal."""
        started = self._now()
        request = self._parse_request(body)
        request_hash = hashlib.sha256(body).digest()
        if idempotency_key is not None:
            if not 1 <= len(idempotency_key) <= 200 or not idempotency_key.isprintable():
                raise ApiError(
                    "invalid-request", "Idempotency-Key must be 1-200 printable characters"
                )
            earlier = await self.store.find_idempotent(client, idempotency_key)
            if earlier is not None:
                if earlier[0] != request_hash:
                    raise ApiError(
                        "idempotency-conflict",
                        "this Idempotency-Key was used for a different request",
                    )
                return earlier[1], False
        if self.backlog >= self.config.limits.max_outbox_backlog:
            self.telemetry.messages.add(
                1,
                {
                    "direction": "out",
                    "type": request.message_type,
                    "purpose": request.purpose,
                    "outcome": "outbox_full",
                },
            )
            raise ApiError(
                "outbox-full",
                f"{self.backlog} publishes wait for the broker (limit "
                f"{self.config.limits.max_outbox_backlog}); nothing was stored",
                reason="internal",
                retry_after=BACKLOG_RETRY_AFTER_S,
            )
        directory = self._directory_ok(started)
        parent = _parent_context(request.traceparent)
        with self.telemetry.tracer.start_as_current_span(
            "zvg.send", context=parent, kind=trace.SpanKind.PRODUCER
        ) as span:
            claims = self._assemble(request, started, span)
            span.set_attributes(
                {
                    "zvg.message_id": claims.message_id,
                    "zvg.message_type": claims.message_type,
                    "zvg.purpose": claims.purpose,
                }
            )
            decision = evaluate(directory.payload, MessageFacts.of(claims))
            fields = self._claims_fields(claims, span)
            decision_record = self._policy_record(decision, fields)
            if isinstance(decision, Denied):
                records = [
                    decision_record,
                    self._record("message.refuse", "denied", reason="policy_denied", **fields),
                ]
                await self.store.run(self._audit_job(records, actor, fields))
                self.telemetry.messages.add(
                    1,
                    {
                        "direction": "out",
                        "type": claims.message_type,
                        "purpose": claims.purpose,
                        "outcome": "policy_denied",
                    },
                )
                span.set_status(trace.Status(trace.StatusCode.ERROR, "policy_denied"))
                raise ApiError(
                    "policy-denied",
                    decision.explain(directory.names()),
                    reason="policy_denied",
                    decision=_decision_doc(decision),
                )
            recipients = []
            for org in claims.recipient_orgs():
                try:
                    recipients.append(directory.encryption_key(org, started))
                except LocalError as exc:
                    raise ApiError("recipient-unavailable", str(exc), reason="internal") from None
            envelope = seal(
                claims,
                signing_key=self.keys.signing,
                recipients=recipients,
                rand=self.rand,
                limits=self.envelope_limits,
            )
            digest = peek_header(envelope, limits=self.envelope_limits).digest
            roles: dict[str, list[str]] = {}
            for r in claims.recipients:
                roles.setdefault(r.org, []).append(r.role)
            entry = OutboxEntry(
                message_id=claims.message_id,
                message_type=claims.message_type,
                purpose=claims.purpose,
                case_ref=claims.case_ref,
                in_reply_to=claims.in_reply_to,
                created_at=claims.created_at,
                expires_at=claims.expires_at,
                digest=digest,
                envelope=envelope,
                recipients=tuple((org, tuple(rs)) for org, rs in roles.items()),
            )
            fields["digest"] = _b64(digest)
            fields["key_id"] = self.keys.signing.kid
            records = [decision_record, self._record("message.send", start_time=started, **fields)]
            idem = (
                idempotency_job(client, idempotency_key, request_hash, claims.message_id, started)
                if idempotency_key is not None
                else None
            )
            try:
                await self.store.add_outbox(
                    entry, started, extra=_jobs(idem, self._audit_job(records, actor, fields))
                )
            except sqlite3.IntegrityError:
                raise ApiError(
                    "idempotency-conflict", "a concurrent request used this Idempotency-Key"
                ) from None
        self._hand_over(entry)
        self.telemetry.messages.add(
            1,
            {
                "direction": "out",
                "type": claims.message_type,
                "purpose": claims.purpose,
                "outcome": "queued",
            },
        )
        self.telemetry.latency.record(
            (self._now() - started).total_seconds() * 1000, {"stage": "send"}
        )
        self._outbox_wake.set()
        return claims.message_id, True

    def _parse_request(self, body: bytes) -> SendRequest:
        try:
            strictjson.loads(body)
        except ValueError as exc:
            raise ApiError("invalid-request", f"the body is not acceptable JSON: {exc}") from None
        try:
            return SendRequest.model_validate_json(body, context={"catalogue": self.catalogue})
        except ValidationError as exc:
            raise ApiError(
                "invalid-message", "the request breaks the API contract", errors=field_errors(exc)
            ) from None

    def _assemble(self, req: SendRequest, now: datetime, span: Span) -> ClaimsBase:
        created = now.replace(microsecond=0)
        if req.sender_role is not None:
            if req.sender_role not in self.roles:
                raise ApiError(
                    "invalid-message",
                    f"this organisation does not hold role {req.sender_role}",
                    errors=[_fe("sender_role", f"must be one of {', '.join(self.roles)}")],
                )
            role = req.sender_role
        elif len(self.roles) == 1:
            role = self.roles[0]
        else:
            raise ApiError(
                "invalid-message",
                "this organisation acts in several roles: say which in sender_role",
                errors=[_fe("sender_role", f"required: one of {', '.join(self.roles)}")],
            )
        defaults = self.config.purposes.get(req.purpose)
        legal_basis = req.legal_basis or (defaults.legal_basis if defaults else None)
        activity = req.processing_activity or (defaults.processing_activity if defaults else None)
        missing = [
            _fe(name, f"required: the node has no default for purpose {req.purpose}")
            for name, value in (("legal_basis", legal_basis), ("processing_activity", activity))
            if not value
        ]
        if missing:
            raise ApiError(
                "invalid-message", "legal basis and processing activity are needed", errors=missing
            )
        ctx = span.get_span_context()
        ttl = req.expires_in_seconds or self.config.limits.default_ttl_seconds
        doc: dict[str, Any] = {
            "spec": SPEC_VERSION,
            "message_id": ids.uuid7(int(now.timestamp() * 1000), self.rand(10)),
            "message_type": req.message_type,
            "created_at": _wire_time(created),
            "expires_at": _wire_time(created + timedelta(seconds=ttl)),
            "sender": {"org": self.org, "node": self.config.node.node_id, "role": role},
            "recipients": [r.model_dump() for r in req.recipients],
            "case_ref": req.case_ref,
            "purpose": req.purpose,
            "legal_basis": list(legal_basis or ()),
            "processing_activity": activity,
            "data_categories": list(req.data_categories),
            "flags": req.flags.model_dump(),
            "subjects": [s.model_dump() for s in req.subjects],
            "trace": f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-01",
            "body": req.body,
        }
        for name in ("programme", "in_reply_to", "correlation_id"):
            if getattr(req, name) is not None:
                doc[name] = getattr(req, name)
        latest = self.audit.latest
        if latest is not None:
            doc["log_anchor"] = {
                "size": latest.size,
                "root": base64.b64encode(latest.root).decode("ascii"),
            }
        try:
            return parse_claims(
                json.dumps(doc, ensure_ascii=False).encode("utf-8"), catalogue=self.catalogue
            )
        except ValidationError as exc:
            raise ApiError(
                "invalid-message", "the message breaks the contract", errors=field_errors(exc)
            ) from None

    def _policy_record(self, decision: Allowed | Denied, fields: dict[str, Any]) -> Record:
        if isinstance(decision, Allowed):
            return self._record(
                "policy.decision",
                policy_version=decision.directory_version,
                policy_rule=",".join(decision.rule_ids()),
                policy_decision="allow",
                **fields,
            )
        return self._record(
            "policy.decision",
            "denied",
            policy_version=decision.directory_version,
            policy_rule=decision.rule_id,
            policy_decision="deny",
            reason=decision.reason,
            detail={
                k: v
                for k, v in (
                    ("category", decision.category),
                    ("flag", decision.flag),
                    ("recipient", decision.recipient[0] if decision.recipient else None),
                )
                if v
            },
            **fields,
        )

    def _audit_job(
        self, records: Sequence[Record], actor: Actor | None, fields: dict[str, Any] | None = None
    ) -> Job[list[int]]:
        if actor is not None:
            f = fields or {}
            records = [
                *records,
                self._record(
                    "access",
                    actor=actor,
                    trace_id=f.get("trace_id"),
                    span_id=f.get("span_id"),
                    message_id=f.get("message_id"),
                    case_ref=f.get("case_ref"),
                ),
            ]
        return self.audit.append(records, self._now())

    def _hand_over(self, entry: OutboxEntry) -> None:
        """Give a durable outbox entry to the publisher at once (one publish per recipient)."""
        for org, _roles in entry.recipients:
            self._ready[entry.message_id, org] = PendingPublish(
                entry.message_id,
                org,
                entry.envelope,
                entry.expires_at,
                entry.message_type,
                entry.purpose,
                entry.case_ref,
            )
        self.backlog += len(entry.recipients)
        self._outbox_wake.set()

    async def count_backlog(self) -> None:
        """Set :attr:`backlog` from the store (at start, and at every outbox scan: whatever the
        counting in between missed — a receipt or the retention job moving a status — is
        corrected there)."""
        with contextlib.suppress(TransientError):
            self.backlog = await self.store.outbox_backlog()

    async def run_outbox(self) -> None:
        """Publish every queued envelope until confirmed (or expired); runs until stopped.

        Fresh entries come straight from :meth:`_hand_over`; every ``outbox_retry_seconds`` (and
        at start) a scan of the store picks up anything older that is still unconfirmed."""
        retry = self.config.limits.outbox_retry_seconds
        window = self.config.broker.publish_window
        loop = asyncio.get_running_loop()
        next_scan = next_count = 0.0
        while not self._stopping.is_set():
            self._outbox_wake.clear()
            publisher = self.publisher
            if loop.time() >= next_count:
                await self.count_backlog()
                next_count = loop.time() + retry
            if publisher is not None:
                if loop.time() >= next_scan:
                    older = None if next_scan == 0.0 else self._now() - timedelta(seconds=retry)
                    with contextlib.suppress(TransientError):
                        for p in await self.store.pending_publishes(PUBLISH_BATCH, older):
                            key = (p.message_id, p.org)
                            if key not in self._in_flight:
                                self._ready.setdefault(key, p)
                    next_scan = loop.time() + retry
                while self._ready and len(self._in_flight) < window:
                    key, p = self._ready.popitem(last=False)
                    if key not in self._in_flight:
                        self._in_flight.add(key)
                        self.spawn(self._publish(publisher, p, key), f"publish {p.message_id}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._outbox_wake.wait(), timeout=retry)

    async def _publish(self, publisher: Publisher, p: PendingPublish, key: tuple[str, str]) -> None:
        retry_after = 0.0
        try:
            await publisher.publish(
                routing_key(p.org, self.org),
                p.envelope,
                message_id=p.message_id,
                expiration=p.expires_at,
            )
        except MessageExpiredError:
            await self._mark_expired(p.message_id, p.org)
        except (TransientError, LocalError) as exc:
            retry_after = self.config.limits.outbox_retry_seconds
            log.warning(
                "publish of %s to %s failed (%s); retrying in %.0f s",
                p.message_id,
                p.org,
                exc.__class__.__name__,
                retry_after,
            )
        else:
            now = self._now()
            record = self._record(
                "message.publish",
                message_id=p.message_id,
                peer=p.org,
                purpose=p.purpose,
                message_type=p.message_type,
                case_ref=p.case_ref,
            )
            if await self.store.set_status(
                p.message_id, p.org, "sent", None, now, extra=self.audit.append([record], now)
            ):
                self.backlog -= 1
        finally:
            if retry_after:
                await asyncio.sleep(retry_after)
            self._in_flight.discard(key)
            if retry_after or self._ready:
                self._outbox_wake.set()

    async def _mark_expired(self, message_id: str, org: str) -> None:
        now = self._now()
        record = self._record("message.expire", "error", message_id=message_id, peer=org)
        if await self.store.set_status(
            message_id, org, "expired", None, now, extra=self.audit.append([record], now)
        ):
            self.backlog -= 1

    async def status(self, message_id: str) -> MessageStatus:
        row = await self.store.message(message_id)
        if row is None or row.message_type == "receipt":
            raise ApiError(
                "not-found",
                f"no message {message_id} was sent by this node",
                reason="invalid_claims",
            )
        return _status_doc(row)

    # ------------------------------------------------------------------ inbound

    def sender_of(self, body: bytes) -> str:
        """The sender org named in an envelope's header (for the consumer's user_id check)."""
        return self._peek(body).sender_org

    def _peek(self, body: bytes) -> EnvelopeHeader:
        """``peek_header`` memoised per envelope: the consumer's sender check and the inbound
        pipeline both need the header of the same bytes (refusals are never cached)."""
        cached = self._peeked
        if cached is not None and cached[0] is body:
            return cached[1]
        header = peek_header(body, limits=self.envelope_limits)
        self._peeked = (body, header)
        return header

    def broker_user_of(self, org: str) -> str | None:
        member = self.directory.member(org)
        return None if member is None else member.broker_user

    async def on_delivery(self, delivery: Delivery) -> Decision:
        """The inbound pipeline (module docstring). Returns the decision the consumer settles."""
        started = self._now()
        if delivery.content_type == WITNESS_CONTENT_TYPE:
            return await self._on_witness(delivery, started)
        try:
            header = self._peek(delivery.body)
        except RemoteError as exc:
            return await self._refuse(exc, delivery, None)
        if self.directory.status(started, timedelta(0))[0] == "expired":
            return Retry(EXPIRED_DIRECTORY_RETRY_S)
        seen = await self.store.seen(header.sender_org, header.message_id)
        if seen is not None:
            if seen.digest != header.digest:
                return await self._refuse(
                    RemoteError("replayed", "same (sender, message id), different content"),
                    delivery,
                    header.message_id,
                )
            self._count("duplicates")
            await self._republish_receipts(header.sender_org, header.message_id)
            return Deliver()
        directory = self.directory
        try:
            verified = open_envelope(
                delivery.body,
                keyring=self.keys.ring,
                sender_keys=directory.signing_key,
                now=started,
                is_replay=lambda _s, _m: False,  # checked above against the durable inbox
                limits=self.envelope_limits,
            )
        except RemoteError as exc:
            return await self._refuse(exc, delivery, header.message_id)
        claims = verified.claims
        if self.org not in claims.recipient_orgs():
            return await self._refuse(
                RemoteError("not_for_us", "claims do not name this organisation"),
                delivery,
                claims.message_id,
            )
        if isinstance(claims.body, ReceiptBody):
            return await self._on_receipt(verified, started)
        return await self._on_message(verified, started)

    async def _refuse(
        self, exc: RemoteError, delivery: Delivery, message_id: str | None
    ) -> Decision:
        """Dead-letter what we cannot accept before verifying it; never answer. Counted and
        summarised per sender by :meth:`on_settled` (one log line and one audit record per
        interval, not per envelope: anyone with a member's broker login can send thousands)."""
        log.debug(
            "refusing envelope %s from broker user %s: %s (%s)",
            message_id,
            delivery.user_id,
            exc.reason,
            exc.detail,
        )
        return Reject(exc.reason, exc.detail)

    def on_settled(self, delivery: Delivery, decision: Decision) -> None:
        """The consumer settled ``delivery`` on the broker: count what was dead-lettered."""
        if isinstance(decision, Reject):
            self.refusals.note(delivery, decision.reason)

    async def _on_message(self, verified: VerifiedMessage, started: datetime) -> Decision:
        claims = verified.claims
        span_link = _link(claims.trace)
        with self.telemetry.tracer.start_as_current_span(
            "zvg.receive", kind=trace.SpanKind.CONSUMER, links=[span_link] if span_link else []
        ) as span:
            span.set_attributes(
                {
                    "zvg.message_id": claims.message_id,
                    "zvg.message_type": claims.message_type,
                    "zvg.purpose": claims.purpose,
                    "zvg.sender": claims.sender.org,
                }
            )
            decision = evaluate(self.directory.payload, MessageFacts.of(claims))
            fields = self._claims_fields(claims, span)
            fields["foreign_operation"] = {
                "trace_id": claims.trace.split("-")[1],
                "span_id": claims.trace.split("-")[2],
                "org": claims.sender.org,
            }
            fields["digest"] = _b64(verified.digest)
            fields["key_id"] = verified.sender_kid
            roles = tuple(r.role for r in claims.recipients if r.org == self.org)
            allowed = isinstance(decision, Allowed)
            # Remember (sender, id) while the envelope could still pass the time checks: its iat
            # may lie up to the allowed skew after its arrival, and stays acceptable for max_age.
            lim = self.config.limits
            retention = lim.max_age_seconds + lim.max_clock_skew_seconds
            entry = InboxEntry(
                sender=claims.sender.org,
                message_id=claims.message_id,
                digest=verified.digest,
                message_type=claims.message_type,
                roles=roles,
                received_at=started,
                expires_at=claims.expires_at,
                forget_after=started + timedelta(seconds=retention),
                status="delivered" if allowed else "refused",
                reason=None if allowed else "policy_denied",
                claims=claims_to_json(claims) if allowed else None,
                inner_jws=verified.inner_jws if allowed else None,
            )
            records = [self._policy_record(decision, fields)]
            if allowed:
                records.append(self._record("message.receive", start_time=started, **fields))
            else:
                records.append(
                    self._record("message.refuse", "denied", reason="policy_denied", **fields)
                )
            info = _receipt_info(claims, roles, verified.digest)
            status, reason = ("delivered", None) if allowed else ("rejected", "policy_denied")
            append = self.audit.append(records, started)

            def job(db: sqlite3.Connection) -> None:
                idx = append(db)[-1]
                pending_receipt_job(
                    claims.sender.org, claims.message_id, status, reason, idx, info, started
                )(db)

            inserted = await self.store.add_inbox(entry, extra=job)
        if not inserted:  # a concurrent duplicate won the race
            self._count("duplicates")
            return Deliver()
        outcome = "delivered" if allowed else "policy_denied"
        self.telemetry.messages.add(
            1,
            {
                "direction": "in",
                "type": claims.message_type,
                "purpose": claims.purpose,
                "outcome": outcome,
            },
        )
        if not allowed:
            self.telemetry.rejections.add(
                1, {"stage": "receive", "reason": "policy_denied", "sender": claims.sender.org}
            )
        self.telemetry.latency.record(
            (self._now() - started).total_seconds() * 1000, {"stage": "receive"}
        )
        self.telemetry.latency.record(
            max(0.0, (self._now() - claims.created_at).total_seconds() * 1000), {"stage": "e2e"}
        )
        self._receipt_wake.set()
        if allowed:
            async with self._inbox_changed:
                self._inbox_changed.notify_all()
        return Deliver()

    async def _republish_receipts(self, sender: str, message_id: str) -> None:
        publisher = self.publisher
        if publisher is None:
            return
        for p in await self.store.receipt_envelopes(sender, message_id):
            with contextlib.suppress(TransientError, LocalError):
                await publisher.publish(
                    routing_key(sender, self.org),
                    p.envelope,
                    message_id=p.message_id,
                    expiration=p.expires_at,
                )

    # ------------------------------------------------------------------ receipts

    async def _on_receipt(self, verified: VerifiedMessage, now: datetime) -> Decision:
        claims = verified.claims
        body = claims.body
        assert isinstance(body, ReceiptBody)  # noqa: S101 - on_delivery dispatches on the type
        try:
            row = await self._receipt_target(claims, body)
            if body.inner_jws_sha256 != _b64(row.digest):
                # Signed by the recipient, about our message, naming other content: evidence.
                sent = self.audit.record_index(body.message_id, "message.send")
                earlier: dict[str, int | str] = {"earlier_sha256": _b64(row.digest)}
                if sent is not None:
                    earlier["earlier_record"] = sent
                await self._keep_contradiction(verified, body, "content", earlier, now)
                return Deliver()
            self._check_receipt_proof(verified, body, now)
        except RemoteError as exc:
            self._count("receipts_ignored")
            self.telemetry.receipts_ignored.add(1, {"why": exc.detail})
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
        inner = verified.inner_jws

        extra = _jobs(
            self.audit.append([record], now),
            receipt_in_job(body.message_id, claims.sender.org, body.status, inner, now),
        )

        changed = await self.store.set_status(
            body.message_id, claims.sender.org, body.status, body.reason, now, extra=extra
        )
        if not changed:
            await self._check_consistent(verified, body, now)
        self.telemetry.messages.add(
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
        return self._record(
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
        row = await self.store.message(body.message_id)
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
        earlier = await self.store.final_receipt(body.message_id, org)
        if earlier is None or not contradicts(earlier.status, body.status):
            return
        ref: dict[str, int | str] = {"earlier_status": earlier.status}
        if earlier.inner_jws is not None:
            ref["earlier_sha256"] = _b64(hashlib.sha256(earlier.inner_jws).digest())
        index = self.audit.record_index(
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
                "evidence_sha256": _b64(hashlib.sha256(later).digest()),
                **earlier,
            },
        )
        index = await self.store.run(self.audit.append_evidence(record, later, now))
        if index is None:
            return  # these exact bytes are kept already (a republished receipt)
        self.telemetry.receipt_contradictions.add(1, {"kind": kind, "peer": claims.sender.org})
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
        origin = self.directory.audit_origin(claims.sender.org)
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
                    for k in self.directory.audit_keys(claims.sender.org, now)
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

    async def run_receipts(self) -> None:
        """Seal pending receipts in batches (one checkpoint per batch) until stopped."""
        while not self._stopping.is_set():
            self._receipt_wake.clear()
            try:
                pending = await self.store.take_pending_receipts(RECEIPT_BATCH)
            except TransientError:
                pending = []
            if pending:
                try:
                    await self._seal_receipts(pending)
                except (TransientError, LocalError) as exc:
                    log.warning("sealing receipts failed (%s); retrying", exc)
                    await asyncio.sleep(1.0)
                    continue
                except Exception:
                    log.exception("sealing receipts failed unexpectedly; retrying")
                    await asyncio.sleep(5.0)
                    continue
                self._outbox_wake.set()
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._receipt_wake.wait(), timeout=5.0)

    async def _seal_receipts(self, pending: Sequence[PendingReceipt]) -> None:
        """Seal a batch of receipts: one checkpoint, one read of the proved records, one commit."""
        checkpoint = await self.audit.checkpoint(min_size=max(p.record_idx for p in pending) + 1)
        if checkpoint is None:
            raise TransientError("no checkpoint yet")
        views = self.audit.views([p.record_idx for p in pending])
        now = self._now()
        sealed: list[tuple[PendingReceipt, OutboxEntry]] = []
        records: list[Record] = []
        for p in pending:
            try:
                key = self.directory.encryption_key(p.sender, now)
            except LocalError:
                log.warning(
                    "no encryption key for %s: receipt for %s dropped", p.sender, p.message_id
                )
                await self.store.drop_pending_receipt(p.id)
                continue
            proof = self.audit.tlog_proof(p.record_idx, views[p.record_idx], checkpoint)
            claims = self._receipt_claims(p, now, proof.decode("utf-8"))
            envelope = seal(
                claims,
                signing_key=self.keys.signing,
                recipients=[key],
                rand=self.rand,
                limits=self.envelope_limits,
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
                        digest=peek_header(envelope, limits=self.envelope_limits).digest,
                        envelope=envelope,
                        recipients=((p.sender, (claims.recipients[0].role,)),),
                    ),
                )
            )
            records.append(
                self._record(
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
            await self.store.complete_receipts(sealed, now, extra=self.audit.append(records, now))
            for _p, entry in sealed:
                self._hand_over(entry)

    def _receipt_claims(self, p: PendingReceipt, now: datetime, proof: str) -> ClaimsBase:
        info = p.info
        created = now.replace(microsecond=0)
        defaults = self.config.purposes.get(info["purpose"])
        checkpoint = self.audit.latest
        doc: dict[str, Any] = {
            "spec": SPEC_VERSION,
            "message_id": ids.uuid7(int(now.timestamp() * 1000), self.rand(10)),
            "message_type": "receipt",
            "created_at": _wire_time(created),
            "expires_at": _wire_time(
                created + timedelta(seconds=self.config.limits.default_ttl_seconds)
            ),
            "sender": {"org": self.org, "node": self.config.node.node_id, "role": info["our_role"]},
            "recipients": [{"org": p.sender, "role": info["sender_role"]}],
            "case_ref": info["case_ref"],
            "in_reply_to": p.message_id,
            "correlation_id": info["correlation_id"],
            "purpose": info["purpose"],
            "legal_basis": info["legal_basis"],
            "processing_activity": defaults.processing_activity if defaults else RECEIPT_ACTIVITY,
            "data_categories": [],
            "flags": {},
            "subjects": [],
            "trace": f"00-{info['trace_id']}-{self.rand(8).hex()}-01",
            "body": {
                "status": p.status,
                "message_id": p.message_id,
                "inner_jws_sha256": info["digest"],
                "at": _wire_time(created),
                "proof": proof,
            },
        }
        if p.reason is not None:
            doc["body"]["reason"] = p.reason
        if checkpoint is not None:
            doc["body"]["checkpoint"] = checkpoint.note.decode("utf-8")
        return parse_claims(json.dumps(doc).encode("utf-8"), catalogue=self.catalogue)

    # ------------------------------------------------------------------ inbox for adapters

    async def inbox(
        self, *, limit: int, wait: float, actor: Actor | None = None
    ) -> list[InboxItem]:
        """The oldest unacknowledged messages; waits up to ``wait`` seconds for one to arrive."""
        deadline = asyncio.get_running_loop().time() + wait
        while True:
            rows = await self.store.inbox_waiting(limit)
            if rows or wait <= 0:
                break
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0 or self.stopping:
                break
            async with self._inbox_changed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._inbox_changed.wait(), timeout=remaining)
        if not rows:
            return []
        now = self._now()
        first = [r for r in rows if r.handed_out == 0]
        claims = {r.message_id: strictjson.loads(r.claims) for r in rows}
        records = [
            self._record(
                "message.deliver",
                message_id=r.message_id,
                peer=r.sender,
                purpose=claims[r.message_id]["purpose"],
                message_type=claims[r.message_id]["message_type"],
                case_ref=claims[r.message_id]["case_ref"],
            )
            for r in first
        ]
        if actor is not None:
            # One access record per message handed out to an actor the first time: adapters
            # that poll and ack later would otherwise log every poll (NEN 7513 asks who saw
            # what, not how often a system asked again).
            records += [
                self._record(
                    "access",
                    actor=actor,
                    message_id=r.message_id,
                    case_ref=claims[r.message_id]["case_ref"],
                )
                for r in first
            ]
        if records:
            await self.store.run(self.audit.append(records, now))
        return [
            InboxItem(
                message_id=r.message_id,
                sender=r.sender,
                recipient_roles=r.roles,
                received_at=r.received_at,
                redelivered=r.handed_out > 0,
                claims=claims[r.message_id],
            )
            for r in rows
        ]

    async def record_access(self, actor: Actor, message_ids: Sequence[str]) -> None:
        """Access records for messages shown to an actor (the event stream, once per message)."""
        now = self._now()
        records = [self._record("access", actor=actor, message_id=m) for m in message_ids]
        await self.store.run(self.audit.append(records, now))

    async def wait_inbox(self, seconds: float) -> None:
        """Return when the inbox changed or after ``seconds`` (server-sent events)."""
        async with self._inbox_changed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._inbox_changed.wait(), timeout=seconds)

    async def settle(
        self,
        message_id: str,
        *,
        accept: bool,
        adapter_reason: str | None = None,
        actor: Actor | None = None,
    ) -> None:
        """Ack (accept) or reject a delivered message; queues the matching receipt. Idempotent.
        Raises ``ApiError`` not-found when no such message is in the inbox."""
        now = self._now()
        status = "accepted" if accept else "rejected"
        reason = None if accept else "adapter_rejected"
        purge_after = now + timedelta(days=self.config.retention.inbox_after_ack_days)

        rows = self.store.read(
            "SELECT sender, claims, digest, roles, status FROM inbox WHERE message_id=?"
            " ORDER BY seq LIMIT 1",
            (message_id,),
        )
        if not rows or rows[0][4] == "refused":
            raise ApiError("not-found", f"no delivered message {message_id} in this node's inbox")
        _sender, claims_json, digest, roles_json, current = rows[0]
        if current != "delivered" or claims_json is None:
            return  # settled before: acking or rejecting again changes nothing
        claims = parse_claims(bytes(claims_json), catalogue=self.catalogue)
        fields = self._claims_fields(claims)
        fields["digest"] = _b64(bytes(digest))
        if adapter_reason:
            fields["detail"] = {"adapter_reason": adapter_reason}
        records: list[Record] = [
            self._record("adapter.ack" if accept else "adapter.reject", **fields)
        ]
        if actor is not None:
            records.append(
                self._record(
                    "access",
                    actor=actor,
                    message_id=message_id,
                    trace_id=fields["trace_id"],
                    case_ref=claims.case_ref,
                )
            )
        append = self.audit.append(records, now)
        info = _receipt_info(claims, tuple(json.loads(roles_json)), bytes(digest))

        def extra(db: sqlite3.Connection, sender: str) -> None:
            idx = append(db)[0]
            pending_receipt_job(sender, message_id, status, reason, idx, info, now)(db)

        sender = await self.store.settle_inbox(
            message_id, status, adapter_reason, now, purge_after, extra=extra
        )
        if sender is None:
            raise ApiError("not-found", f"no delivered message {message_id} in this node's inbox")
        self._receipt_wake.set()

    # ------------------------------------------------------------------ retention and checkpoints

    async def run_retention(self) -> None:
        """Expire overdue outbound messages and purge payloads past retention, periodically."""
        interval = self.config.retention.purge_interval_seconds
        while not self._stopping.is_set():
            with contextlib.suppress(TransientError):
                await self.purge_once()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=interval)

    async def purge_once(self) -> tuple[int, int, int, int]:
        """One retention pass. Returns (expired recipients, inbox payloads, outbox envelopes,
        inbox rows forgotten)."""
        now = self._now()
        expired = await self.store.expire_outbox(now)
        if expired:
            records = [
                self._record("message.expire", "error", message_id=m, peer=o) for m, o in expired
            ]
            await self.store.run(self.audit.append(records, now))
        inbox, outbox, forgotten = await self.store.purge(
            now, self.config.retention.outbox_after_final_days * 86400
        )
        shredded = await self.audit.shred(now)
        if inbox or outbox or forgotten or shredded:
            detail: dict[str, int | str] = {
                "inbox_payloads": inbox,
                "outbox_envelopes": outbox,
                "inbox_rows": forgotten,
                "audit_personal_parts": shredded,
            }
            if shredded:  # what zvg audit verify tells from an erasure: records up to this time
                detail["audit_personal_before"] = record_time(self.audit.personal_cutoff(now))
            record = self._record("retention.purge", detail=detail)
            await self.store.run(self.audit.append([record], now))
        return len(expired), inbox, outbox, forgotten

    async def run_checkpoints(self) -> None:
        """Sign a checkpoint when the log grew and ask every peer to cosign it, periodically."""
        interval = self.config.audit.checkpoint_interval_seconds
        while not self._stopping.is_set():
            try:
                await self.request_cosignatures()
            except (TransientError, LocalError) as exc:
                log.warning("checkpoint round failed: %s", exc)
            except Exception:
                log.exception("checkpoint round failed unexpectedly")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=interval)

    async def request_cosignatures(self) -> int:
        """One witnessing round: returns how many peers were asked."""
        checkpoint = await self.audit.checkpoint()
        publisher = self.publisher
        if publisher is not None and not self._heads_asked:
            self._heads_asked = True
            await self.ask_heads(publisher)
        if checkpoint is None or publisher is None:
            return 0
        sizes = await self.audit.peer_sizes()
        now = self._now()
        asked = 0
        for member in self.directory.payload.members:
            peer = member.oin
            old = sizes.get(peer, 0)
            if peer == self.org or old >= checkpoint.size:
                continue
            proof = self.audit.consistency_proof(old, checkpoint.size) if old else []
            body = witnessing.format_request(old, proof, checkpoint.note)
            with contextlib.suppress(TransientError, LocalError):
                await publisher.publish(
                    routing_key(peer, self.org),
                    body,
                    message_id=ids.uuid7(int(now.timestamp() * 1000), self.rand(10)),
                    expiration=now + timedelta(hours=1),
                    content_type=WITNESS_CONTENT_TYPE,
                )
                asked += 1
        return asked

    async def _on_witness(self, delivery: Delivery, now: datetime) -> Decision:
        """A peer's checkpoint to cosign, or a peer's answer to ours."""
        _, peer = split_routing_key(delivery.routing_key)
        try:
            message = witnessing.parse_message(delivery.body)
        except RemoteError as exc:
            return await self._refuse(exc, delivery, None)
        if isinstance(message, witnessing.HeadAnswer):
            await self._on_head(peer, message, now)
            return Deliver()
        if isinstance(message, AddCheckpointRequest | witnessing.HeadRequest):
            answer = await self._answer_witnessing(peer, message, now)
            publisher = self.publisher
            if publisher is not None:
                with contextlib.suppress(TransientError, LocalError):
                    await publisher.publish(
                        routing_key(peer, self.org),
                        answer.encode(),
                        message_id=ids.uuid7(int(now.timestamp() * 1000), self.rand(10)),
                        expiration=now + timedelta(hours=1),
                        content_type=WITNESS_CONTENT_TYPE,
                    )
            return Deliver()
        await self._on_answer(peer, message, now)
        return Deliver()

    async def _answer_witnessing(
        self, peer: str, request: AddCheckpointRequest | witnessing.HeadRequest, now: datetime
    ) -> witnessing.Answer | witnessing.HeadAnswer:
        if isinstance(request, AddCheckpointRequest):
            return await self._cosign(peer, request, now)
        origin = self.directory.audit_origin(peer)
        head = await self.store.run(lambda db: witnessing.load_head(db, origin))
        return witnessing.head_answer(
            request, head, key=self.keys.audit, witness_name=self.directory.witness_name(self.org)
        )

    async def ask_heads(self, publisher: Publisher) -> int:
        """Ask every partner which checkpoint of our log it last cosigned (answers arrive as
        ``head`` messages: :meth:`_on_head`). Returns how many were asked."""
        now = self._now()
        asked = await witnessing.publish_head_requests(
            publisher,
            directory=self.directory,
            org=self.org,
            nonce=witnessing.new_nonce(self.rand),
            now=now,
            expires=now + timedelta(hours=1),
            rand=self.rand,
        )
        return len(asked)

    async def _on_head(self, peer: str, answer: witnessing.HeadAnswer, now: datetime) -> None:
        """A partner says which checkpoint of our log it cosigned: keep it for ``zvg audit
        verify --witnesses`` and raise the alarm when our records no longer extend it."""
        verified = None
        if answer.checkpoint is not None:
            try:
                verified = witnessing.open_head(
                    answer.checkpoint,
                    directory=self.directory,
                    log_org=self.org,
                    witness_org=peer,
                    now=now,
                )
            except RemoteError as exc:
                self._count("cosignatures_ignored")
                log.warning("ignored a checkpoint from %s that does not verify: %s", peer, exc)
                return
        await self.audit.save_peer_head(peer, answer.nonce, verified, now)
        if verified is None:
            return
        agreement = self.audit.compare(verified.checkpoint)
        if agreement != "consistent":
            self._alarm(
                agreement,
                peer,
                f"{peer} cosigned checkpoint {verified.checkpoint.size} of our audit log; the log "
                f"now has {self.audit.size} records and is {agreement} (run zvg audit verify)",
            )

    def _alarm(self, kind: str, peer: str, detail: str) -> None:
        """A partner holds evidence that our own log was rewritten or truncated: count it and
        say so at ERROR level, at once."""
        self.telemetry.audit_alarm.add(1, {"kind": kind, "partner": peer})
        log.error("audit log alarm (%s from %s): %s", kind, peer, detail)

    async def _cosign(
        self, peer: str, request: AddCheckpointRequest, now: datetime
    ) -> witnessing.Answer:
        origin = self.directory.audit_origin(peer)
        head = await self.store.run(lambda db: witnessing.load_head(db, origin))
        result = witnessing.witness(
            request,
            peer=peer,
            directory=self.directory,
            head=head,
            key=self.keys.audit,
            our_org=self.org,
            now=now,
        )
        if isinstance(result, Cosigned):
            new_head = result.state.head(origin)
            assert new_head is not None  # noqa: S101 - Cosigned always carries the new head
            # Routine cosigning is not an audit record: the cosignature is kept with the
            # checkpoint, and a record would grow the log each round for ever (decision 0055).
            if not await self.store.run(witnessing.save_head_job(origin, head, new_head)):
                return witnessing.Answer(head.size if head else 0, code="conflict")
            self.telemetry.witness.add(1, {"outcome": "cosigned"})
            return witnessing.Answer(new_head.size, cosignature=result.cosignature_line)
        self.telemetry.witness.add(1, {"outcome": result.code})
        if result.code == "conflict":  # routine: the peer retries from our size
            log.info("asked %s to retry its checkpoint from size %s", peer, result.our_size)
            return witnessing.Answer(result.our_size, code=result.code)
        level = logging.ERROR if result.code in ("inconsistent", "bad_proof") else logging.WARNING
        log.log(
            level, "refused to cosign %s's checkpoint: %s (%s)", peer, result.code, result.detail
        )
        record = self._record("witness.refuse", "rejected", peer=peer, reason=result.code)
        evidence = witnessing.evidence_json(result)

        def refuse_job(db: sqlite3.Connection) -> None:
            self.audit.append([record], now)(db)
            if result.evidence is not None:
                db.execute(
                    "INSERT INTO witness_evidence (origin, code, evidence, created_at)"
                    " VALUES (?,?,?,?)",
                    (origin, result.code, evidence, now.timestamp()),
                )

        await self.store.run(refuse_job)
        return witnessing.Answer(result.our_size, code=result.code)

    async def _on_answer(self, peer: str, answer: witnessing.Answer, now: datetime) -> None:
        if answer.cosignature is not None and answer.size is not None:
            cosigners = witnessing.cosigner_verifiers(self.directory, [peer], now)
            own = [note.ed25519_verifier(self.audit.origin, self.keys.audit.public_key())]
            ok = False
            for cosigner in cosigners:
                ok = await self.audit.add_cosignature(
                    peer, answer.size, answer.cosignature, cosigner, own[0], now
                )
                if ok:
                    break
            if not ok:
                self._count("cosignatures_ignored")
                log.warning("ignored a cosignature from %s that does not verify", peer)
            return
        if answer.code == "conflict" and answer.size is not None:
            await self.audit.set_peer_size(peer, answer.size, now)
            return
        if answer.code in ("inconsistent", "bad_proof"):
            self._alarm(
                answer.code,
                peer,
                f"{peer} refused to cosign our checkpoint: {answer.code} (it keeps the evidence; "
                "run zvg audit verify --witnesses)",
            )
            return
        log.warning("%s refused to cosign our checkpoint: %s", peer, answer.code)

    # ------------------------------------------------------------------ lifecycle

    def wake_outbox(self) -> None:
        self._outbox_wake.set()

    async def load_directory(self, raw: bytes, catalogue: Catalogue) -> bool:
        """Trust a newer directory version (update rules of gateway.core.directory): made durable
        (file, store copy, ``directory.change`` record) before it is used. Returns False (and logs
        why) when the file does not qualify; raises when it could not be made durable (the node
        keeps the version it had)."""
        if raw == self.directory.raw:
            return False
        now = self._now()
        try:
            new = self.directory.update(raw, now=now, catalogue=catalogue)
        except (RemoteError, LocalError) as exc:
            log.warning("directory update refused: %s", exc)
            return False
        record = change_record(new, self.directory.version, now)
        try:  # durable before used: a restart must never fall back behind it
            await make_durable(self.config, self.store, self.audit, new, record, now)
        except (LocalError, TransientError) as exc:
            log.error("directory version %d not trusted yet: %s", new.version, exc)  # noqa: TRY400 - one line, the reason is ours
            raise
        self.directory = new
        log.info("trusting directory version %d", new.version)
        return True

    async def run_gauges(self, queue_depth: Callable[[], Any] | None = None) -> None:
        """Refresh the values the metrics gauges report (every few seconds)."""
        snapshot: dict[str, float] = {}
        t = self.telemetry
        t.gauges["zvg.outbox.pending"] = lambda: [(snapshot.get("outbox_pending", 0.0), {})]
        t.gauges["zvg.outbox.age"] = lambda: [(snapshot.get("outbox_age", 0.0), {})]
        t.gauges["zvg.inbox.waiting"] = lambda: [(snapshot.get("inbox_waiting", 0.0), {})]
        t.gauges["zvg.queue.depth"] = lambda: (
            [(snapshot["queue_depth"], {})] if "queue_depth" in snapshot else []
        )
        while not self._stopping.is_set():
            with contextlib.suppress(TransientError):
                snapshot.update(await self.store.gauges(self._now()))
            if queue_depth is not None:
                with contextlib.suppress(Exception):
                    snapshot["queue_depth"] = float(await queue_depth())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=GAUGE_INTERVAL_S)

    def start_loops(self) -> None:
        self.spawn(self.run_outbox(), "outbox")
        self.spawn(self.run_receipts(), "receipts")
        self.spawn(self.run_retention(), "retention")
        self.spawn(self.run_checkpoints(), "checkpoints")
        self.spawn(
            self.refusals.run(self.config.audit.refusal_interval_seconds, self._stopping),
            "refusals",
        )

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def begin_stop(self) -> None:
        """Stop taking new work: loops end, long-polls and event streams return at once."""
        self._stopping.set()
        async with self._inbox_changed:
            self._inbox_changed.notify_all()

    async def stop(self, grace: float = 10.0) -> None:
        """Stop the loops; in-flight publishes get ``grace`` seconds to be confirmed."""
        await self.begin_stop()
        self._outbox_wake.set()
        self._receipt_wake.set()
        tasks = list(self._tasks)
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)


def _unproved(exc: Exception) -> RemoteError:
    """A receipt's proof that could not be checked: the class of the failure, not its text."""
    return RemoteError(
        "bad_signature", f"the inclusion proof does not verify ({exc.__class__.__name__})"
    )


def _fe(field: str, message: str) -> FieldError:
    return FieldError(field=field, message=message)


def _wire_time(t: datetime) -> str:
    """A claims time: UTC, whole seconds, ``Z`` (``2026-03-02T09:15:00Z``)."""
    return t.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parent_context(traceparent: str | None) -> Any:
    if traceparent is None:
        return None
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return TraceContextTextMapPropagator().extract({"traceparent": traceparent})


def _link(traceparent: str) -> Link | None:
    parts = traceparent.split("-")
    try:
        ctx = SpanContext(
            int(parts[1], 16),
            int(parts[2], 16),
            is_remote=True,
            trace_flags=TraceFlags(int(parts[3], 16)),
        )
    except (IndexError, ValueError):
        return None
    return Link(ctx, {"zvg.link": "sender"})


def _decision_doc(d: Denied) -> dict[str, Any]:
    return {
        "reason": d.reason,
        "purpose": d.purpose,
        "message_type": d.message_type,
        "recipient": {"org": d.recipient[0], "role": d.recipient[1]} if d.recipient else None,
        "category": d.category,
        "flag": d.flag,
        "rule": d.rule_id,
        "rule_allows": list(d.rule_allows),
        "directory_version": d.directory_version,
    }


def _receipt_info(claims: ClaimsBase, roles: Sequence[str], digest: bytes) -> dict[str, Any]:
    """What a receipt repeats of the message it answers (no body, no subjects)."""
    return {
        "purpose": claims.purpose,
        "legal_basis": list(claims.legal_basis),
        "case_ref": claims.case_ref,
        "sender_role": claims.sender.role,
        "our_role": roles[0],
        "correlation_id": claims.correlation_id or claims.message_id,
        "trace_id": claims.trace.split("-")[1],
        "digest": _b64(digest),
    }


def _status_doc(row: MessageRow) -> MessageStatus:
    return MessageStatus(
        message_id=row.message_id,
        message_type=row.message_type,  # type: ignore[arg-type]
        purpose=row.purpose,
        case_ref=row.case_ref,
        created_at=row.created_at,
        expires_at=row.expires_at,
        recipients=tuple(
            RecipientStatus(
                org=r.org,
                role=role,
                status=r.status,  # type: ignore[arg-type]
                reason=r.reason,  # type: ignore[arg-type]
                updated_at=r.updated_at,
            )
            for r in row.recipients
            for role in r.roles
        ),
    )
