"""The ZVH's contactpunt on its node (docs/subject-rights.md): starts an inzageverzoek — one
``rights.request`` to every partner, its own part from its own log, the identity check recorded
— files the answers, and extends the term with a reason. The request lives in the node's store,
written in the commit of the messages and records it goes with (docs/decisions/0116); the
report is computed from it (:mod:`gateway.console.rights_pages`)."""

from __future__ import annotations

import json
from datetime import date, timedelta
from typing import Any

from gateway.console.data.subject import subject_pseudonym
from gateway.errors import LocalError
from gateway.node.outbound import Prepared
from gateway.node.problems import ApiError
from gateway.node.rights import PURPOSE, RightsBase
from gateway.node.store import Command, ExtendRightsRequest, FileRightsAnswer, KeepRightsRequest
from schemas.claims import RightsResponse
from schemas.rights import RightsResponseBody

__all__ = ["Contactpunt", "keep_request"]


class Contactpunt(RightsBase):
    """The ZVH side of the inzageverzoek (module docstring)."""

    async def start(
        self, *, bsn: str, identity_check: str, received_on: date | None = None
    ) -> dict[str, Any]:
        """Start an inzageverzoek for the person with ``bsn`` (the ZVH's contactpunt): one
        ``rights.request`` to every other member, this organisation's own part from its own
        log, and a ``rights.request`` record with ``identity_check`` as its personal note.
        The request, its messages and records are one commit: kept together or not at all.
        Returns the request's document. Raises :class:`LocalError` for a bad BSN or no key."""
        ctx = self.ctx
        if not identity_check.strip():
            raise LocalError("say how the identity was checked (--identity-check)")
        key = self._key()
        if key is None:
            raise LocalError("rights.pseudonym_key_file (or console.pseudonym_key_file) is not set")
        try:
            own = subject_pseudonym(key, bsn)
        except ValueError:
            raise LocalError("not a valid BSN (nine digits passing the elfproef)") from None
        now = ctx.now()
        received = received_on or now.date()
        request_id = _uuid4(ctx.rand(16))
        case_ref = f"inzage-{now:%Y%m%d}-{ctx.rand(2).hex()}"
        body = {
            "request_id": request_id,
            "right": "inzage",
            "received_on": received.isoformat(),
            "respond_before": (now + timedelta(days=14)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "identification": {"bsn": bsn.replace(" ", "").replace(".", "")},
            "subject_refs": [own],
        }
        role = "ZVH" if "ZVH" in ctx.roles else ctx.roles[0]
        exchanges, complete = await self._exchanges((own,), (None, None))
        doc: dict[str, Any] = {
            "request_id": request_id,
            "case_ref": case_ref,
            "received_on": received.isoformat(),
            "started_at": now.isoformat(),
            "identity_check": identity_check,
            "extension": None,
            "organisations": {
                ctx.org: {
                    "status": "answered",
                    "own": True,
                    "response": RightsResponseBody(
                        request_id=request_id,
                        status="answered",
                        exchanges=exchanges,
                        complete=complete,
                    ).model_dump(mode="json", exclude_none=True),
                }
            },
        }
        prepared: list[Prepared] = []
        for member in ctx.directory.payload.members:
            if member.oin == ctx.org:
                continue
            partner_role = next((r for r in member.roles if r != role), member.roles[0])
            entry: dict[str, Any] = {"status": "asked", "role": partner_role}
            try:
                sent = await self._prepare(
                    {
                        "message_type": "rights.request",
                        "purpose": PURPOSE,
                        "sender_role": role,
                        "recipients": [{"org": member.oin, "role": partner_role}],
                        "case_ref": case_ref,
                        "data_categories": ["ID_PSEUDO", "ID_DIRECT"],
                        "body": body,
                    }
                )
            except ApiError as exc:
                entry["status"] = "not_sent"
                entry["problem"] = exc.slug
            else:
                entry["request_message_id"] = sent.message_id
                prepared.append(sent)
            doc["organisations"][member.oin] = entry
        record = self._record(
            "rights.request",
            message_id=None,
            case_ref=case_ref,
            data_subjects=(own,),
            recipients=tuple(o for o in doc["organisations"] if o != ctx.org),
            note=identity_check,
            detail={"request_id": request_id, "received_on": received.isoformat()},
        )
        await ctx.store.commit(
            *(c for p in prepared for c in p.commands),
            keep_request(doc),
            self._append(record),
        )
        for p in prepared:
            self._outbound.queued(p)
        return doc

    def collect(self, claims: RightsResponse) -> tuple[Command, ...]:
        """The command that files a partner's answer with its request (committed with the
        answer's settlement in the inbox). Raises :class:`LocalError` for an answer to a request
        message this node did not send that partner."""
        body = claims.body
        doc = self.request(body.request_id)
        entry = None if doc is None else doc["organisations"].get(claims.sender.org)
        if (
            doc is None
            or entry is None
            or entry.get("request_message_id") is None
            or claims.in_reply_to != entry["request_message_id"]
        ):
            raise LocalError("a rights.response to a request this node did not send")
        return (
            FileRightsAnswer(
                request_id=body.request_id,
                org=claims.sender.org,
                request_message_id=entry["request_message_id"],
                status=body.status,
                response=json.dumps(body.model_dump(mode="json", exclude_none=True)),
                response_message_id=claims.message_id,
                answered_at=claims.created_at,
            ),
        )

    def requests(self) -> list[dict[str, Any]]:
        """Every request this node started, oldest first."""
        return self.ctx.store.rights.requests()

    def request(self, request_id: str) -> dict[str, Any] | None:
        return self.ctx.store.rights.request(request_id)

    async def extend(self, request_id: str, *, reason: str) -> dict[str, Any]:
        """Extend the term of a request by two months (art. 12(3) AVG) with ``reason``."""
        doc = self.request(request_id)
        if doc is None:
            raise LocalError(f"no inzageverzoek {request_id} on this node")
        if not reason.strip():
            raise LocalError("an extension needs a reason")
        if doc["extension"] is not None:
            raise LocalError("the term was extended already (at most by two months)")
        extension = {"reason": reason, "on": self.ctx.now().date().isoformat()}
        record = self._record(
            "rights.extend",
            message_id=None,
            case_ref=doc["case_ref"],
            note=reason,
            detail={"request_id": request_id},
        )
        extended = ExtendRightsRequest(request_id, json.dumps(extension))
        if not (await self.ctx.store.commit(extended, self._append(record))).applied:
            raise LocalError("the term was extended already (at most by two months)")
        doc["extension"] = extension
        return doc


def keep_request(doc: dict[str, Any]) -> KeepRightsRequest:
    """The command that keeps the request document ``doc`` (as :meth:`Contactpunt.start` makes
    it, and as the files of earlier versions hold it)."""
    return KeepRightsRequest(
        request_id=doc["request_id"],
        case_ref=doc["case_ref"],
        received_on=doc["received_on"],
        started_at=doc["started_at"],
        identity_check=doc["identity_check"],
        extension=None if doc.get("extension") is None else json.dumps(doc["extension"]),
        organisations=tuple((org, json.dumps(e)) for org, e in doc["organisations"].items()),
    )


def _uuid4(raw: bytes) -> str:
    b = bytearray(raw[:16])
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
