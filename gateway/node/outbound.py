"""Outbound: the API's ``send`` and ``status`` (docs/architecture.md §9.1, §9.6).

``send`` validates the adapter's request against the contract, asks the core for the claims and
the policy's decision (``gateway.core.outbound.decide_outbound``), seals, and stores the envelope
in the outbox (with its audit records) before answering; then hands it to the outbox publisher
(:mod:`gateway.node.outbox`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from opentelemetry import trace
from pydantic import ValidationError

from gateway.core import jose
from gateway.core.audit import (
    Actor,
    MessageFields,
    Record,
    access_record,
    message_record,
    policy_record,
)
from gateway.core.directory import TrustedDirectory
from gateway.core.envelope import seal
from gateway.core.outbound import ContractError, decide_outbound, log_anchor
from gateway.core.policy import Denied
from gateway.errors import LocalError
from gateway.node.context import NodeContext
from gateway.node.erasure import naming_no_one, notice_erasure
from gateway.node.outbox import Outbox
from gateway.node.problems import ApiError
from gateway.node.store import (
    AppendAudit,
    Command,
    InsertOutbox,
    MessageRow,
    OutboxEntry,
    RememberIdempotency,
    SentQuery,
)
from schemas import ids, strictjson
from schemas.api import (
    MessageStatus,
    RecipientStatus,
    SendRequest,
    field_errors,
    parse_send_request,
    request_fingerprint,
)
from schemas.catalogue import Catalogue

__all__ = ["Outbound", "Prepared"]

log = logging.getLogger("gateway.node")

#: ``Retry-After`` (seconds) of a send refused because the outbox is full: a connected node
#: publishes dozens to hundreds a second, so a second frees room; adapters back off further.
BACKLOG_RETRY_AFTER_S = 1


@dataclass(frozen=True)
class Prepared:
    """A message sealed and the commands that keep it, not committed yet (:meth:`Outbound.prepare`).
    ``entry`` is ``None`` when an ``Idempotency-Key`` repeats an earlier request (``message_id``
    is that request's; nothing to commit)."""

    message_id: str
    entry: OutboxEntry | None
    commands: tuple[Command, ...]
    started: datetime


class Outbound:
    """Sending: accept an adapter's message, keep it in the outbox, publish it."""

    def __init__(self, ctx: NodeContext, outbox: Outbox) -> None:
        self.ctx = ctx
        self._outbox = outbox

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
        Raises :class:`ApiError` for every refusal. The ``zvg.send`` span covers the commit: a
        failed one is an error on it."""
        prepared = await self._prepare(
            body, client=client, idempotency_key=idempotency_key, actor=actor, commit=True
        )
        if prepared.entry is None:
            return prepared.message_id, False
        self.queued(prepared)
        return prepared.message_id, True

    def queued(self, prepared: Prepared) -> None:
        """Hand a message whose commands were committed to the outbox publisher."""
        assert prepared.entry is not None  # noqa: S101 - a repeat is never committed
        self._outbox.hand_over(prepared.entry)
        self._count(prepared.entry.message_type, prepared.entry.purpose, "queued")
        latency = (self.ctx.now() - prepared.started).total_seconds()
        self.ctx.telemetry.latency.record(latency, {"stage": "send"})

    async def prepare(
        self,
        body: bytes,
        *,
        client: str,
        idempotency_key: str | None = None,
        actor: Actor | None = None,
    ) -> Prepared:
        """What :meth:`send` does up to the commit: the sealed message and the commands that keep
        it (outbox entry, audit records), for the caller to commit, with more of its own, and
        then hand over (:meth:`queued`). Raises :class:`ApiError` for every refusal (a policy
        denial's records are committed here)."""
        return await self._prepare(
            body, client=client, idempotency_key=idempotency_key, actor=actor, commit=False
        )

    async def _prepare(
        self,
        body: bytes,
        *,
        client: str,
        idempotency_key: str | None,
        actor: Actor | None,
        commit: bool,
    ) -> Prepared:
        """:meth:`prepare`; with ``commit``, also the commit (:meth:`send`), inside the
        ``zvg.send`` span."""
        ctx = self.ctx
        started = ctx.now()
        request = _parse_request(body, ctx.catalogue)
        request_hash = b""  # what a key is bound to: the request however it is formatted
        if idempotency_key is not None:
            request_hash = request_fingerprint(request)
            if not 1 <= len(idempotency_key) <= 200 or not idempotency_key.isprintable():
                raise ApiError(
                    "invalid-request", "Idempotency-Key must be 1-200 printable characters"
                )
            earlier = await ctx.store.find_idempotent(client, idempotency_key)
            if earlier is not None:
                if earlier[0] != request_hash:
                    raise ApiError(
                        "idempotency-conflict",
                        "this Idempotency-Key was used for a different request",
                    )
                return Prepared(earlier[1], None, (), started)
        self._check_backlog(request)
        directory = self._directory_ok(started)
        parent = _parent_context(request.traceparent)
        with ctx.telemetry.tracer.start_as_current_span(
            "zvg.send", context=parent, kind=trace.SpanKind.PRODUCER
        ) as span:
            sc = span.get_span_context()
            try:
                out = decide_outbound(
                    request,
                    ctx.sender,
                    directory=directory.payload,
                    now=started,
                    message_id=ids.uuid7(int(started.timestamp() * 1000), ctx.rand(10)),
                    trace=f"00-{sc.trace_id:032x}-{sc.span_id:016x}-01",
                    log_anchor=log_anchor(ctx.audit.latest),
                )
            except ContractError as exc:
                raise ApiError("invalid-message", exc.detail, errors=exc.errors) from None
            claims = out.claims
            span.set_attributes(
                {
                    "zvg.message_id": claims.message_id,
                    "zvg.message_type": claims.message_type,
                    "zvg.purpose": claims.purpose,
                }
            )
            fields = naming_no_one(
                MessageFields.of(
                    claims, trace_id=f"{sc.trace_id:032x}", span_id=f"{sc.span_id:016x}"
                ),
                claims,
            )
            decision_record = policy_record(out.decision, fields, at=ctx.now())
            if isinstance(out.decision, Denied):
                refused = message_record(
                    "message.refuse", fields, at=ctx.now(), status="denied", reason="policy_denied"
                )
                await ctx.store.commit(self._audit([decision_record, refused], actor, fields))
                self._count(claims.message_type, claims.purpose, "policy_denied")
                span.set_status(trace.Status(trace.StatusCode.ERROR, "policy_denied"))
                raise ApiError(
                    "policy-denied",
                    out.decision.explain(directory.names()),
                    reason="policy_denied",
                    decision=_decision_doc(out.decision),
                )
            recipients = []
            for org in claims.recipient_orgs():
                try:
                    recipients.append(directory.encryption_key(org, started))
                except LocalError as exc:
                    raise ApiError("recipient-unavailable", str(exc), reason="internal") from None
            sealed = seal(
                claims,
                signing_key=ctx.keys.signing,
                recipients=recipients,
                rand=ctx.rand,
                limits=ctx.envelope_limits,
            )
            digest = sealed.digest
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
                envelope=sealed.raw,
                recipients=tuple((org, tuple(rs)) for org, rs in roles.items()),
                purge_after=ctx.retention.outbox_purge_after(claims.expires_at),
                trace_id=fields.trace_id,
            )
            fields = fields.with_digest(jose.b64u_encode(digest), ctx.keys.signing.kid)
            sent = message_record("message.send", fields, at=ctx.now(), start_time=started)
            # An erase notice: erase our own copy of the person's data, with the notice.
            shred, erased = await notice_erasure(ctx, claims, received=False)
            records = [decision_record, sent, *erased]
            commands: list[Command] = [
                InsertOutbox(entry, started),
                *shred,
                self._audit(records, actor, fields),
            ]
            if idempotency_key is not None:
                commands.append(
                    RememberIdempotency(
                        client, idempotency_key, request_hash, claims.message_id, started
                    )
                )
            # a failed commit (an exception) is recorded on the span as it leaves it
            if commit and not (await ctx.store.commit(*commands)).applied:
                span.set_status(trace.Status(trace.StatusCode.ERROR, "idempotency-conflict"))
                raise ApiError(
                    "idempotency-conflict", "a concurrent request used this Idempotency-Key"
                )
        return Prepared(claims.message_id, entry, tuple(commands), started)

    def _count(self, message_type: str, purpose: str, outcome: str) -> None:
        self.ctx.telemetry.messages.add(
            1, {"direction": "out", "type": message_type, "purpose": purpose, "outcome": outcome}
        )

    def _check_backlog(self, request: SendRequest) -> None:
        """Refuse (429, nothing stored) while ``limits.max_outbox_backlog`` publishes wait for
        the broker (docs/decisions/0049-outbox-backlog-answers-429.md)."""
        ctx, backlog = self.ctx, self._outbox.backlog
        limit = ctx.config.limits.max_outbox_backlog
        if backlog < limit:
            return
        ctx.telemetry.messages.add(
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
            f"{backlog} publishes wait for the broker (limit {limit}); nothing was stored",
            reason="internal",
            retry_after=BACKLOG_RETRY_AFTER_S,
        )

    def _directory_ok(self, now: datetime) -> TrustedDirectory:
        ctx = self.ctx
        state, _left = ctx.directory.status(
            now, timedelta(days=ctx.config.directory.expiry_warning_days)
        )
        if state == "expired":
            raise ApiError(
                "unavailable",
                f"the federation directory (v{ctx.directory.version}) has expired; "
                "the node sends nothing until ops load a new version",
                reason="internal",
                retry_after=300,
            )
        return ctx.directory

    def _audit(
        self, records: Sequence[Record], actor: Actor | None, fields: MessageFields
    ) -> AppendAudit:
        now = self.ctx.now()
        if actor is not None:
            records = [*records, access_record(actor, at=now, fields=fields)]
        return self.ctx.audit.append(records, now)

    async def status(self, message_id: str) -> MessageStatus:
        """The delivery status per recipient of a message this node sent."""
        rows = await self.ctx.store.messages(SentQuery(message_id=message_id))
        row = rows[0] if rows else None
        if row is None or row.message_type == "receipt":
            raise ApiError(
                "not-found",
                f"no message {message_id} was sent by this node",
                reason="invalid_claims",
            )
        return _status_doc(row)

    async def sent(self, query: SentQuery) -> list[MessageStatus]:
        """The messages this node sent that ``query`` selects (receipts left out), newest first."""
        rows = await self.ctx.store.messages(replace(query, not_type="receipt"))
        return [_status_doc(row) for row in rows]


def _parse_request(body: bytes, catalogue: Catalogue) -> SendRequest:
    """The adapter's request body, checked against the API contract (raises :class:`ApiError`)."""
    try:
        strictjson.loads(body)
    except ValueError as exc:
        raise ApiError("invalid-request", f"the body is not acceptable JSON: {exc}") from None
    try:
        return parse_send_request(body, catalogue=catalogue)
    except ValidationError as exc:
        raise ApiError(
            "invalid-message", "the request breaks the API contract", errors=field_errors(exc)
        ) from None


def _parent_context(traceparent: str | None) -> Any:
    if traceparent is None:
        return None
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return TraceContextTextMapPropagator().extract({"traceparent": traceparent})


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


def _status_doc(row: MessageRow) -> MessageStatus:
    return MessageStatus(
        message_id=row.message_id,
        message_type=row.message_type,  # type: ignore[arg-type]  # a stored str; the model checks it
        purpose=row.purpose,
        case_ref=row.case_ref,
        created_at=row.created_at,
        expires_at=row.expires_at,
        recipients=tuple(
            RecipientStatus(
                org=r.org,
                role=role,
                status=r.status,  # type: ignore[arg-type]  # a stored str; the model checks it
                reason=r.reason,  # type: ignore[arg-type]  # a stored str; the model checks it
                updated_at=r.updated_at,
            )
            for r in row.recipients
            for role in r.roles
        ),
    )
