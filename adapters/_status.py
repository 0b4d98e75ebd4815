"""Following the delivery status of sent messages, done one way for every adapter that reports
receipts back to the partner's system (the folder adapter writes status files, the webhook
adapter pushes status events).

A :class:`StatusFollower` keeps, in one table of the adapter's state file
(:class:`~adapters._runtime.StateFile`), each followed message id with the last per-recipient
summary the partner was given. Each :meth:`~StatusFollower.poll` round asks the node for every
followed message's status, hands a changed one to the adapter, and stops following a message
once every recipient's status is final (:data:`FINAL`) or the node no longer knows it. The table
is bounded by :data:`MAX_TRACKED`; it survives a restart with the state file.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from adapters._runtime import StateFile
from schemas.api import MessageStatus
from zvg_client.errors import NodeError, Unavailable

__all__ = ["FINAL", "MAX_TRACKED", "StatusFollower", "StatusSource"]

#: Messages whose delivery status an adapter follows at once (oldest dropped first): bounds the
#: state file and the status requests of one poll round (one per followed message).
MAX_TRACKED = 10_000

#: Statuses after which a recipient's delivery does not change any more.
FINAL = frozenset({"accepted", "rejected", "expired"})


class StatusSource(Protocol):
    """Where statuses come from: :class:`~zvg_client.client.NodeClient` (or a test's stand-in).
    Raises :class:`~adapters.errors.Unavailable` or another
    :class:`~adapters.errors.NodeError` like the client does."""

    async def status(self, message_id: str) -> MessageStatus: ...


class StatusFollower:
    """The messages an adapter follows, in table ``table`` of ``state``.

    Each entry maps a message id to the last summary handed on: a list of ``[org, role, status,
    reason]`` per recipient, or None before the first. With ``summary_key`` the entry is instead
    a JSON object that holds the summary under that key beside what else the adapter keeps
    about the message (the folder adapter's ``{"source": …, "last": …}``); the two shapes are
    the adapters' existing state files, kept readable.
    """

    def __init__(
        self,
        state: StateFile,
        *,
        table: str = "tracked",
        summary_key: str | None = None,
        limit: int = MAX_TRACKED,
    ) -> None:
        self.state = state
        self.table = table
        self.summary_key = summary_key
        self.limit = limit
        state.data.setdefault(table, {})

    @property
    def tracked(self) -> dict[str, Any]:
        """The followed messages (message id → entry), oldest first. Live: an edit is written
        with the state file's next save."""
        entries: dict[str, Any] = self.state.data[self.table]
        return entries

    def track(self, message_id: str, entry: Any = None) -> list[str]:
        """Follow ``message_id`` and save; when it is followed already nothing changes (its
        entry is kept, nothing is saved).

        ``entry`` is its new entry (see the class): None, or with ``summary_key`` an object
        whose summary is None. Returns the ids dropped to stay within the limit, oldest first,
        so the adapter can say so; their statuses are no longer reported.
        """
        if message_id in self.tracked:
            return []
        return self.state.remember(self.table, message_id, entry, self.limit)

    async def poll(
        self,
        node: StatusSource,
        on_change: Callable[[str, MessageStatus], Awaitable[bool]],
        on_unknown: Callable[[str, NodeError], None] | None = None,
    ) -> int:
        """One round over the followed messages, oldest first; returns how many changed
        statuses ``on_change`` took.

        ``on_change(message_id, status)`` gets each status whose summary differs from the
        entry's; it returns False when it could not hand the status on (the partner is down):
        the round stops there and the status counts as unchanged, so the next round offers it
        again. A message is no longer followed when every recipient's status is in
        :data:`FINAL` (after ``on_change`` took the change) or when the node answers its status
        request with an error (``on_unknown(message_id, error)`` is told). When the node is
        unavailable the round stops and the rest waits for the next. The table is saved at the
        end of every round, also one that stopped early.
        """
        tracked = self.tracked
        changed = 0
        for mid in list(tracked):
            try:
                status = await node.status(mid)
            except Unavailable:
                break
            except NodeError as exc:
                if on_unknown is not None:
                    on_unknown(mid, exc)
                del tracked[mid]
                continue
            summary = [[r.org, r.role, r.status, r.reason] for r in status.recipients]
            if summary != self._summary(tracked[mid]):
                if not await on_change(mid, status):
                    break
                self._set_summary(mid, summary)
                changed += 1
            if all(r.status in FINAL for r in status.recipients):
                del tracked[mid]
        self.state.save()
        return changed

    def _summary(self, entry: Any) -> Any:
        return entry if self.summary_key is None else entry[self.summary_key]

    def _set_summary(self, mid: str, summary: list[list[Any]]) -> None:
        if self.summary_key is None:
            self.tracked[mid] = summary
        else:
            self.tracked[mid][self.summary_key] = summary
