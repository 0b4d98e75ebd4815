"""Every look is logged: the ``console.access`` and ``console.login`` audit records.

Each console request that shows or exports records appends one ``console.access`` record to
the node's own Merkle audit log before the answer leaves (NEN 7513: access to logs is logged):
who (the actor: the person's subject and role), which page, what was searched or opened (the
filters), how many records it showed, when. The filters that are personal — a case reference,
a subject pseudonym — go into the record's personal fields (committed in the leaf, shredded at
the end of retention like every other record's), never into its kept-for-ever view. A record
that cannot be written stops the answer: no record, no look.

Logins are ``console.login`` records: ``ok``, or ``denied`` with the reason (never the password
or the code typed).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from gateway.console.identity import Identity
from gateway.core.audit import Actor, Record, new_record
from gateway.node.store import AppendAudit, Committed, SqliteStore

__all__ = ["Access", "AccessLog", "AppendFn", "access_record", "login_record"]

#: ``AuditLog.append``: records to the command that appends them.
AppendFn = Callable[[Sequence[Record], datetime], AppendAudit]


@dataclass(frozen=True)
class Access:
    """One look: the page, how many records it showed or exported, and what was asked."""

    identity: Identity
    page: str
    count: int
    filters: Mapping[str, str] = field(default_factory=dict)
    """Non-personal filters (partner, purpose, operation, status, times, page cursor)."""
    message_id: str | None = None
    trace_id: str | None = None
    case_ref: str | None = None
    subjects: tuple[str, ...] = ()


def _actor(identity: Identity) -> Actor:
    return Actor(id=identity.subject, role=identity.role.value)


def access_record(access: Access, at: datetime) -> Record:
    detail: dict[str, int | str] = {
        "page": access.page,
        "count": access.count,
        "method": access.identity.method,
    }
    detail.update({f"filter.{k}": v for k, v in sorted(access.filters.items()) if v})
    return new_record(
        name="console.access",
        status="ok",
        start_time=at,
        end_time=at,
        message_id=access.message_id,
        # Logboek Dataverwerkingen: every record has a trace and a span; a look at a message
        # joins its trace, any other page is a trace of its own (docs/decisions/0098).
        trace_id=access.trace_id or os.urandom(16).hex(),
        span_id=os.urandom(8).hex(),
        case_ref=access.case_ref,
        data_subjects=access.subjects,
        actor=_actor(access.identity),
        detail=detail,
    )


def login_record(
    *, account: str, method: str, at: datetime, reason: str | None = None, role: str | None = None
) -> Record:
    """A login: ``ok`` without ``reason``, else ``denied`` with it."""
    return new_record(
        name="console.login",
        status="ok" if reason is None else "denied",
        start_time=at,
        end_time=at,
        reason=reason,
        actor=Actor(id=account, role=role),
        detail={"method": method},
    )


class AccessLog:
    """Writes console records into the node's audit log through its store (one commit each,
    group-committed with the node's other writes)."""

    def __init__(self, store: SqliteStore, append: AppendFn) -> None:
        self._store = store
        self._append = append

    async def write(self, record: Record, now: datetime) -> Committed:
        return await self._store.commit(self._append([record], now))
