"""The node's side of an erasure notice (``rights.notice``, kind ``erase``; AVG art. 17, 19).

When this node sends an erase notice (its organisation erased the person's data and tells the
recipients) or receives one (a partner erased what it sent us), it erases its own stored copy
**in the same transaction** that stores the notice: :func:`notice_erasure` plans with
:func:`gateway.audit.erasure.plan` and returns the shredding command and the ``rights.erase``
record that lists it, which the caller commits with the notice's outbox or inbox entry and its
records — so a crash leaves either both or neither, and ``zvg audit verify`` can always tell
the erasure from damage (docs/decisions/0107-erasure-shreds-personal-parts-and-is-logged.md).
A received notice erases only what its sender sent us. Nothing here logs the pseudonym or a
payload.
"""

from __future__ import annotations

import dataclasses
import logging
import sqlite3

from gateway.audit.erasure import ERASE_OPERATION, ErasurePlan, format_indexes, plan
from gateway.core.audit import MessageFields, Record
from gateway.node.context import NodeContext
from gateway.node.store import ShredForErasure
from schemas.bodies import RightsNoticeBody
from schemas.claims import ClaimsBase

__all__ = ["naming_no_one", "notice_erasure"]

log = logging.getLogger("gateway.erasure")


async def notice_erasure(
    ctx: NodeContext, claims: ClaimsBase, *, received: bool
) -> tuple[list[ShredForErasure], list[Record]]:
    """When ``claims`` is an erase notice: the command that erases this node's copy of the
    person's data (per its subjects and the messages it names; of its sender only, when
    ``received``) and the ``rights.erase`` record, to commit with the notice. Otherwise, or
    when there is nothing to erase: nothing."""
    body = claims.body
    if not isinstance(body, RightsNoticeBody) or body.kind != "erase":
        return [], []
    sender = claims.sender.org if received else None
    subjects = tuple(s.subject_ref for s in claims.subjects)

    def read(db: sqlite3.Connection) -> ErasurePlan:
        indexes: set[int] = set()
        message_ids: dict[str, None] = {}
        for subject in subjects:
            one = plan(db, subject, body.concerns, from_sender=sender)
            indexes.update(one.indexes)
            message_ids.update(dict.fromkeys(one.message_ids))
        return ErasurePlan(tuple(sorted(indexes)), tuple(message_ids))

    done = await ctx.audit.store.run(read)
    if not done.indexes and not done.message_ids:
        return [], []
    record = ctx.record(
        ERASE_OPERATION,
        trace_id=claims.trace.split("-")[1],
        detail={
            "erased_records": format_indexes(done.indexes),
            "erased_messages": len(done.message_ids),
        },
    )
    log.info(
        "erasing %d stored message(s) and %d audit personal part(s) for an erasure notice",
        len(done.message_ids),
        len(done.indexes),
    )
    return [done.command()], [record]


def naming_no_one(fields: MessageFields, claims: ClaimsBase) -> MessageFields:
    """The audit fields of an erase notice without its subjects: the records written with the
    erasure do not name the person they erase (the notice itself, its trace and its recipients
    stay on record). Any other message's fields as they are."""
    body = claims.body
    if not isinstance(body, RightsNoticeBody) or body.kind != "erase":
        return fields
    return dataclasses.replace(fields, data_subjects=())
