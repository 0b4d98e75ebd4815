"""The node's side of an erasure notice (``rights.notice``, kind ``erase``; AVG art. 17, 19).

When this node sends an erase notice (its organisation erased the person's data and tells the
recipients) or receives one (a partner erased what it sent us), it erases its own stored copy:
:func:`erase` plans with :func:`gateway.audit.erasure.plan` and commits the shredding together
with the ``rights.erase`` record that lists it, so ``zvg audit verify`` can tell it from damage
(docs/decisions/0107-erasure-shreds-personal-parts-and-is-logged.md). A received notice erases
only what its sender sent us. Nothing here logs the pseudonym or a payload.
"""

from __future__ import annotations

import logging
import sqlite3

from gateway.audit.erasure import ERASE_OPERATION, ErasurePlan, format_indexes, plan
from gateway.node.context import NodeContext
from schemas.bodies import RightsNoticeBody
from schemas.claims import ClaimsBase

__all__ = ["erase", "erase_for_notice"]

log = logging.getLogger("gateway.erasure")


async def erase(
    ctx: NodeContext,
    subject: str,
    concerns: tuple[str, ...] = (),
    *,
    from_sender: str | None = None,
    trace_id: str | None = None,
) -> ErasurePlan:
    """Erase what this node holds about ``subject`` (module docstring). Returns the plan done."""

    def read(db: sqlite3.Connection) -> ErasurePlan:
        return plan(db, subject, concerns, from_sender=from_sender)

    done = await ctx.audit.store.run(read)
    if not done.indexes and not done.message_ids:
        return done
    record = ctx.record(
        ERASE_OPERATION,
        trace_id=trace_id,
        detail={
            "erased_records": format_indexes(done.indexes),
            "erased_messages": len(done.message_ids),
        },
    )
    await ctx.store.commit(done.command(), ctx.audit.append([record], ctx.now()))
    log.info(
        "erased %d stored message(s) and %d audit personal part(s) for an erasure",
        len(done.message_ids),
        len(done.indexes),
    )
    return done


async def erase_for_notice(ctx: NodeContext, claims: ClaimsBase, *, received: bool) -> None:
    """When ``claims`` is an erase notice: erase per its subjects and the messages it names
    (of its sender only, when ``received``)."""
    body = claims.body
    if not isinstance(body, RightsNoticeBody) or body.kind != "erase":
        return
    trace_id = claims.trace.split("-")[1]
    for subject in claims.subjects:
        await erase(
            ctx,
            subject.subject_ref,
            body.concerns,
            from_sender=claims.sender.org if received else None,
            trace_id=trace_id,
        )
