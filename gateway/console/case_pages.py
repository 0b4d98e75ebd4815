"""The Case page (every message of one case reference in time order, one lane per partner, with
op-/afschalen, the overdracht and the afsluiting marked) and the Policy page (the signed
federation policy as a table, and "may this be shared?": the node's own policy evaluation on a
described message).

Both record their look first (``Console.look``: a ``console.access`` record, or no page). The
case reference is personal data: it goes into the access record's personal part, and only the
officers may open a case. The policy holds no personal data: officers and auditors read it and
ask the question; a contactpunt does neither (deny by default).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.console.access import Access
from gateway.console.app import CONSOLE, Console, allow, error_page, render
from gateway.console.data.policy import (
    MAX_RECIPIENTS,
    PolicyAnswer,
    PolicyQuestion,
    may_this_be_shared,
    policy_table,
)
from gateway.console.data.records import BadQuery, NotAllowed
from gateway.console.data.timeline import CaseTimeline, case_timeline
from gateway.console.pages import read_store, request_session
from gateway.console.roles import OFFICERS, Role
from schemas import ids
from schemas.catalogue import MESSAGE_TYPES, Catalogue

__all__ = ["FLAGS", "add_routes"]

_MAX_CASE_REF = 200
FLAGS = ("art9", "art10", "police_data", "professional_secrecy", "minors", "emergency")
"""The flags a described message can declare, in the form's order."""


# ---------------------------------------------------------------------------- case


@allow(*OFFICERS)
async def case_page(request: web.Request) -> web.StreamResponse:
    """``/case?ref=…``: the case's timeline (without ``ref``: the form only)."""
    console = request.app[CONSOLE]
    session = request_session(request)
    ref = request.query.get("ref", "").strip()
    if not ref:
        return render(request, "case.html", {"ref": "", "timeline": None, "problem": None})
    if len(ref) > _MAX_CASE_REF or ids.find_bsn(ref):
        problem = "search.bsn" if ids.find_bsn(ref) else "case.bad"
        shown = "" if ids.find_bsn(ref) else ref
        return render(
            request, "case.html", {"ref": shown, "timeline": None, "problem": problem}, status=400
        )
    names = console.directory.names()
    try:
        timeline: CaseTimeline = await read_store(
            console,
            case_timeline,
            session.identity.role,
            ref,
            own_org=console.org,
            names=names,
        )
    except NotAllowed:
        return error_page(request, "error.forbidden", 403)
    await console.look(Access(session.identity, "case", len(timeline.events), case_ref=ref))
    lanes = [[e for e in timeline.events if e.lane == i] for i in range(len(timeline.lanes))]
    return render(
        request,
        "case.html",
        {"ref": ref, "timeline": timeline, "lanes": lanes, "problem": None},
        status=200 if timeline.events else 404,
    )


# ---------------------------------------------------------------------------- policy


def _catalogue(console: Console) -> Catalogue:
    return console.service.ctx.catalogue


def _legal_bases(console: Console) -> dict[str, tuple[str, ...]]:
    return {code: p.legal_basis for code, p in console.service.config.purposes.items()}


def _form_context(console: Console) -> dict[str, Any]:
    """What the question's form offers: types, purposes, categories, flags, own roles and the
    partners (organisation and role) as recipients."""
    catalogue = _catalogue(console)
    payload = console.directory.payload
    recipients = [
        (f"{m.oin}:{role}", f"{m.name} ({m.oin}) — {role}")
        for m in payload.members
        if m.oin != console.org
        for role in m.roles
    ]
    return {
        "message_types": MESSAGE_TYPES,
        "purposes": [(p.code, p.name_nl) for p in catalogue.purposes],
        "categories": [(c.code, c.name_nl) for c in catalogue.data_categories],
        "flags": FLAGS,
        "own_roles": tuple(console.service.roles),
        "recipient_choices": recipients,
    }


def _page(console: Console) -> dict[str, Any]:
    table = policy_table(
        console.directory.payload, _catalogue(console), legal_bases=_legal_bases(console)
    )
    return {"table": table, **_form_context(console)}


@allow(*OFFICERS, Role.AUDITOR)
async def policy_page(request: web.Request) -> web.StreamResponse:
    """The policy as a table and the empty question form."""
    console = request.app[CONSOLE]
    session = request_session(request)
    context = _page(console)
    await console.look(Access(session.identity, "policy", len(context["table"].rows)))
    return render(request, "policy.html", {**context, "answer": None, "problem": None, "asked": {}})


def parse_question(
    form: dict[str, list[str]], *, own_org: str, own_roles: tuple[str, ...]
) -> PolicyQuestion:
    """The described message in the posted form. Raises :class:`BadQuery`."""

    def one(name: str) -> str:
        values = form.get(name) or [""]
        if len(values) != 1:
            raise BadQuery(f"{name}: give one value")
        return values[0].strip()

    sender_role = one("sender_role")
    if sender_role not in own_roles:
        raise BadQuery("unknown sender role")
    recipients: list[tuple[str, str]] = []
    for value in form.get("recipient", []):
        oin, _, role = value.partition(":")
        if not oin or not role or len(value) > 100:
            raise BadQuery("a recipient is organisation:role")
        recipients.append((oin, role))
    if len(recipients) > MAX_RECIPIENTS:
        raise BadQuery(f"name 1 to {MAX_RECIPIENTS} recipients")
    return PolicyQuestion(
        message_type=one("message_type"),
        purpose=one("purpose"),
        sender=(own_org, sender_role),
        recipients=tuple(recipients),
        data_categories=frozenset(form.get("category", [])),
        flags=frozenset(form.get("flag", [])),
    )


@allow(*OFFICERS, Role.AUDITOR)
async def policy_ask(request: web.Request) -> web.StreamResponse:
    """ "May this be shared?": the node's policy decision on the posted message description
    (the CSRF middleware has checked the token)."""
    console = request.app[CONSOLE]
    session = request_session(request)
    posted = await request.post()
    form: dict[str, list[str]] = {}
    for key, value in posted.items():
        if isinstance(value, str):
            form.setdefault(key, []).append(value)
    context = _page(console)
    answer: PolicyAnswer | None = None
    problem: str | None = None
    try:
        question = parse_question(form, own_org=console.org, own_roles=tuple(console.service.roles))
        answer = may_this_be_shared(console.directory.payload, _catalogue(console), question)
    except BadQuery as exc:
        problem = str(exc)
    filters = {
        "type": "".join(form.get("message_type", [""])[:1])[:60],
        "purpose": "".join(form.get("purpose", [""])[:1])[:60],
        "decision": "" if answer is None else ("allow" if answer.allowed else "deny"),
    }
    await console.look(Access(session.identity, "policy.ask", 0, filters))
    asked = {k: set(v) for k, v in form.items() if k != "csrf"}
    return render(
        request,
        "policy.html",
        {**context, "answer": answer, "problem": problem, "asked": asked},
        status=400 if problem else 200,
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/case", case_page)
    app.router.add_get("/policy", policy_page)
    app.router.add_post("/policy", policy_ask)
