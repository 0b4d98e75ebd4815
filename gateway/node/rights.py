"""The inzageverzoek on a node (docs/subject-rights.md): the thin loop around
:mod:`gateway.core.rights`.

A partner's node, on a ``rights.request`` stored in its inbox (:meth:`RightsDesk.on_message`):

1. turns the BSN of the request into its *own* pseudonym (its subject pseudonym key,
   ``rights.pseudonym_key_file``) and adds the pseudonyms the ZVH names; the BSN goes no
   further than this function: it is not logged or put in a record, and the inbox drops the
   request's payload when it is settled (step 4);
2. reads its audit log for those pseudonyms and lets the core build the exchanges;
3. answers with a signed ``rights.response`` through the ordinary send path (policy, seal,
   outbox, ``message.send`` record) — or, with ``[rights] defer = true``, answers ``deferred``
   and keeps a deferral (the pseudonyms, never the BSN) that an officer releases later
   (:meth:`RightsDesk.release`), which sends the answer with the exchanges;
4. settles the request in its inbox as accepted (the ZVH's receipt says the node took it) and
   writes a ``rights.answer`` record.

Steps 3 and 4 are one commit: the answer in the outbox, the deferral, the records and the
settlement are kept together or not at all (docs/decisions/0116).

The message is stored in the inbox before it is handled (its own commit). One the node has not
settled — it stopped in between, or the handling failed — is handled again from the claims kept
in the inbox: when the node starts (:meth:`RightsDesk.resume`) and on every pass of
:meth:`RightsDesk.run`. The settlement is the compare-and-set: an answer is committed only with
it, so a settled message is never answered again. Adapters never see these messages.

The ZVH's node starts a request (:class:`~gateway.node.contactpunt.Contactpunt`: one
``rights.request`` to every partner, its own part answered from its own log, a
``rights.request`` record holding the identity check as its personal note) and collects the
answers (``rights.response`` in its inbox) into the request's rows in the store, from which the
report is computed (:mod:`gateway.node.rights_report`).
"""

from __future__ import annotations

import json
import logging
import sqlite3
from datetime import date
from typing import Any, Protocol

from gateway.audit.search import RecordQuery, search
from gateway.console.data.subject import subject_pseudonym
from gateway.core import rights
from gateway.core.audit import Actor
from gateway.core.rights import DeferPolicy
from gateway.errors import LocalError, TransientError
from gateway.node.activities import processing_activity
from gateway.node.context import NodeContext
from gateway.node.inbox import Inbox
from gateway.node.outbound import Outbound, Prepared
from gateway.node.problems import ApiError
from gateway.node.store import AppendAudit, Command, KeepDeferral, ReleaseDeferral
from schemas.claims import ClaimsBase, RightsRequest, RightsResponse, parse_claims
from schemas.limits import MAX_MESSAGE_LIFETIME
from schemas.rights import RightsRequestBody, RightsResponseBody

__all__ = ["LEGAL_BASIS", "PURPOSE", "Collector", "RightsBase", "RightsDesk"]

log = logging.getLogger("gateway.node")

PURPOSE = "ZVH.VERANTWOORDING"
#: Art. 15 AVG with art. 12: answering is a legal obligation of the controller.
LEGAL_BASIS = ("AVG_6_1_C",)
_CLIENT = "node:rights"
_PAGE = 1000
#: Inbox messages :meth:`RightsDesk.resume` reads at a time (a pass reads on to the last).
_RESUME_BATCH = 100


def _views(db: sqlite3.Connection, subjects: tuple[str, ...]) -> list[dict[str, Any]]:
    """Every record's leaf view about any of ``subjects``."""
    out: list[dict[str, Any]] = []
    for subject in subjects:
        before = None
        while True:
            hits, more = search(db, RecordQuery(subject=subject, before=before, limit=_PAGE))
            out += [h.view for h in hits]
            if not more or not hits:
                break
            before = (hits[-1].time, hits[-1].idx)
    return out


class Collector(Protocol):
    """Where a ZVH node files the answers it receives (gateway.node.contactpunt)."""

    def collect(self, claims: RightsResponse) -> tuple[Command, ...]: ...


class RightsBase:
    """What the partner's desk and the ZVH's contactpunt share: the pseudonym key, the log
    search, sending through the ordinary path, and the audit records."""

    def __init__(self, ctx: NodeContext, outbound: Outbound) -> None:
        self.ctx = ctx
        self._outbound = outbound

    def _key(self) -> bytes | None:
        settings = self.ctx.config
        path = settings.rights.pseudonym_key_file or settings.console.pseudonym_key_file
        if path is None:
            return None
        try:
            return path.read_bytes().rstrip(b"\r\n")
        except OSError as exc:
            raise LocalError(f"{path}: cannot read the pseudonym key ({exc.strerror})") from None

    def _subjects(self, body: RightsRequestBody) -> tuple[str, ...]:
        """This organisation's pseudonym of the person, and those the ZVH names."""
        key = self._key()
        own = () if key is None else (subject_pseudonym(key, body.identification.bsn or ""),)
        return tuple(dict.fromkeys((*own, *body.subject_refs)))

    async def _exchanges(
        self, subjects: tuple[str, ...], period: tuple[str | None, str | None]
    ) -> tuple[tuple[Any, ...], bool]:
        views = await self.ctx.audit.store.run(lambda db: _views(db, subjects))
        since, until = (None if p is None else date.fromisoformat(p) for p in period)
        return rights.exchanges_of(views, org=self.ctx.org, period_from=since, period_to=until)

    async def _prepare(self, request: dict[str, Any]) -> Prepared:
        """A message through the ordinary send path, up to the commit: the caller commits its
        commands with its own and then hands it over (:meth:`Outbound.queued`)."""
        # the longest lifetime the contract allows: a partner down for days still gets it
        request.setdefault("expires_in_seconds", int(MAX_MESSAGE_LIFETIME.total_seconds()))
        request.setdefault("legal_basis", list(LEGAL_BASIS))
        request.setdefault("processing_activity", processing_activity(self.ctx.config, PURPOSE))
        return await self._outbound.prepare(json.dumps(request).encode("utf-8"), client=_CLIENT)

    def _record(self, name: str, *, message_id: str | None, **fields: Any) -> Any:
        return self.ctx.record(
            name, message_id=message_id, purpose=PURPOSE, sender=self.ctx.org, **fields
        )

    def _append(self, *records: Any) -> AppendAudit:
        return self.ctx.audit.append(list(records), self.ctx.now())


class RightsDesk(RightsBase):
    """Answers inzageverzoeken, defers and releases them; hands the answers the ZVH receives to
    its :class:`~gateway.node.contactpunt.Contactpunt` (module docstring)."""

    def __init__(
        self, ctx: NodeContext, outbound: Outbound, inbox: Inbox, contactpunt: Collector
    ) -> None:
        super().__init__(ctx, outbound)
        self._inbox = inbox
        self._contactpunt = contactpunt
        #: Messages being handled now, and those whose handling failed (logged once).
        self._handling: set[str] = set()
        self._failed: set[str] = set()

    async def on_message(self, claims: ClaimsBase) -> None:
        """A ``rights.request`` or ``rights.response`` was stored in the inbox (allowed by
        policy). Never raises: a failure is logged and the message stays in the inbox, for
        :meth:`resume` to handle again."""
        message_id = claims.message_id
        if message_id in self._handling:  # the consumer's and a resume pass's at once
            return
        self._handling.add(message_id)
        try:
            if isinstance(claims, RightsRequest):
                await self._answer(claims)
            elif isinstance(claims, RightsResponse):
                filed = self._contactpunt.collect(claims)
                await self._inbox.settle(message_id, accept=True, also=filed)
        except (LocalError, ApiError, TransientError) as exc:
            # a warning the first time, then quieter: resume tries again every pass
            again = message_id in self._failed
            self._failed.add(message_id)
            log.log(
                logging.DEBUG if again else logging.WARNING,
                "%s %s not handled (tried again on start and every pass): %s",
                claims.message_type,
                message_id,
                exc.__class__,
            )
        else:
            self._failed.discard(message_id)
        finally:
            self._handling.discard(message_id)

    async def resume(self) -> int:
        """Handle the ``rights.*`` messages still delivered in the inbox: stored, but not
        settled by their handling (the node stopped in between, or it failed). Idempotent: a
        settled one is not read again, and an answer is committed only with the settlement.
        Never raises. Returns how many it tried."""
        tried, after = 0, 0
        while not self.ctx.stopping.is_set():
            try:
                waiting = await self.ctx.store.take_inbox(_RESUME_BATCH, after, for_node=True)
            except TransientError as exc:
                log.warning("rights messages not resumed: %s", exc)
                break
            for row in waiting:
                after, message_id, raw = row.seq, row.message_id, row.claims
                try:
                    claims = parse_claims(raw, catalogue=self.ctx.catalogue)
                except ValueError:  # verified when stored; the contract changed since
                    if message_id not in self._failed:
                        log.warning("rights message %s does not parse; left alone", message_id)
                    self._failed.add(message_id)
                    continue
                await self.on_message(claims)
            tried += len(waiting)
            if len(waiting) < _RESUME_BATCH:
                break
        return tried

    async def run(self) -> None:
        """The node's rights loop: :meth:`resume` when the node starts (in every process), then
        on every retention pass (``retention.purge_interval_seconds``) while this process
        leads, until the node stops: a failed handling is retried."""
        ctx = self.ctx
        await self.resume()
        while not ctx.stopping.is_set():
            await ctx.pause(ctx.config.retention.purge_interval_seconds)
            if ctx.leading.is_set() and not ctx.stopping.is_set():
                await self.resume()

    async def _answer(self, claims: RightsRequest) -> None:
        body = claims.body
        subjects = self._subjects(body)
        period = (
            None if body.period_from is None else body.period_from.isoformat(),
            None if body.period_to is None else body.period_to.isoformat(),
        )
        settings = self.ctx.config.rights
        defer = (
            DeferPolicy(settings.defer_ground, settings.defer_review_days)
            if settings.defer and settings.defer_ground is not None
            else None
        )
        today = self.ctx.now().date()
        exchanges, complete = ((), True) if defer else await self._exchanges(subjects, period)
        answer = rights.answer(
            body, exchanges=exchanges, complete=complete, defer=defer, today=today
        )
        role = next(r.role for r in claims.recipients if r.org == self.ctx.org)
        deferral: dict[str, Any] = {
            "request_message_id": claims.message_id,
            "request_id": body.request_id,
            "sender": claims.sender.org,
            "sender_role": claims.sender.role,
            "role": role,
            "case_ref": claims.case_ref,
            "subjects": list(subjects),
            "period": list(period),
            "deferred_on": today.isoformat(),
            "review_on": None if answer.deferral is None else answer.deferral.review_on.isoformat(),
            "ground": None if answer.deferral is None else answer.deferral.ground,
            "released_on": None,
            "response_message_ids": [],
        }
        trace_id = claims.trace.split("-")[1]
        prepared: Prepared | None = None
        try:
            prepared = await self._respond(deferral, answer)
        except ApiError as exc:  # kept, so that an officer answers it (release) once fixed
            log.warning("rights.request %s not answered: %s", claims.message_id, exc.slug)
            deferral["failed"] = exc.slug
        sent = None if prepared is None else prepared.message_id
        commands: list[Command] = [] if prepared is None else list(prepared.commands)
        if sent is not None:
            deferral["response_message_ids"].append(sent)
        if defer is not None or sent is None:
            commands.append(KeepDeferral(claims.message_id, json.dumps(deferral)))
        commands.append(
            self._append(
                self._record(
                    "rights.answer",
                    status="ok" if sent is not None else "error",
                    message_id=sent or claims.message_id,
                    trace_id=trace_id,
                    case_ref=claims.case_ref,
                    data_subjects=subjects,
                    recipients=(claims.sender.org,),
                    detail={
                        "status": answer.status if sent is not None else "not_sent",
                        "exchanges": len(answer.exchanges),
                    },
                )
            )
        )
        # the answer, the deferral and the records, with the settlement or not at all
        settled = await self._inbox.settle(
            claims.message_id, accept=True, also=commands, keep_payload=False
        )
        if settled and prepared is not None:
            self._outbound.queued(prepared)

    async def _respond(self, deferral: dict[str, Any], answer: RightsResponseBody) -> Prepared:
        return await self._prepare(
            {
                "message_type": "rights.response",
                "purpose": PURPOSE,
                "sender_role": deferral["role"],
                "recipients": [{"org": deferral["sender"], "role": deferral["sender_role"]}],
                "case_ref": deferral["case_ref"],
                "in_reply_to": deferral["request_message_id"],
                "data_categories": ["BETROKKENHEID"] if answer.exchanges else [],
                "body": answer.model_dump(mode="json", exclude_none=True),
            }
        )

    def deferrals(self) -> list[dict[str, Any]]:
        """Every deferral this node keeps, released or not."""
        return self.ctx.store.rights.deferrals()

    async def release(self, request_message_id: str, *, actor: Actor | None = None) -> str:
        """Release a deferral: send the answer with the exchanges now; returns its message id.
        Raises :class:`LocalError` for an unknown or already released deferral."""
        deferral = self.ctx.store.rights.deferral(request_message_id)
        if deferral is None:
            raise LocalError(f"no deferred inzageverzoek {request_message_id} on this node")
        if deferral["released_on"] is not None:
            raise LocalError(f"inzageverzoek {request_message_id} was released already")
        subjects = tuple(deferral["subjects"])
        since, until = deferral["period"]
        exchanges, complete = await self._exchanges(subjects, (since, until))
        answer = RightsResponseBody(
            request_id=deferral["request_id"],
            status="answered",
            exchanges=exchanges,
            complete=complete,
            released_from=(
                date.fromisoformat(deferral["deferred_on"]) if deferral["ground"] else None
            ),
        )
        prepared = await self._respond(deferral, answer)
        sent = prepared.message_id
        record = self._record(
            "rights.release",
            message_id=sent,
            case_ref=deferral["case_ref"],
            data_subjects=subjects,
            recipients=(deferral["sender"],),
            actor=actor,
            detail={"exchanges": len(exchanges)},
        )
        released = ReleaseDeferral(request_message_id, self.ctx.now().date().isoformat(), sent)
        committed = await self.ctx.store.commit(*prepared.commands, released, self._append(record))
        if not committed.applied:  # another officer (or process) released it meanwhile
            raise LocalError(f"inzageverzoek {request_message_id} was released already")
        self._outbound.queued(prepared)
        return sent
