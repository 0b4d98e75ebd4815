"""The checkpoint leader and the change listener of processes sharing one database (0109).

:func:`coordinate` runs in every process of an organisation on PostgreSQL, on two connections
of its own:

- **The lease.** The process holding the session-level advisory lock
  ``pg_try_advisory_lock(LEADER, hashtext(current_schema()))`` leads: it signs checkpoints,
  asks partners to cosign them and seals receipts (``leading`` is set). The others try every
  :data:`LEASE_RETRY_S`. PostgreSQL drops a session's locks when its connection ends — a
  ``kill -9`` closes the socket, so a follower takes over within one retry. The leader checks its
  connection every retry too and steps down (``leading`` cleared) when it is lost; TCP keepalives
  (:data:`_KEEPALIVE`) bound how long the server keeps a session whose peer vanished.
- **The listener.** ``LISTEN zvg_changes``: a change another process committed (an inbox entry, a
  receipt to seal) calls ``changed(what)``; after a (re)connection ``changed("*")`` once, for
  whatever was announced while nobody listened.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import psycopg

from gateway.node.store.pg_shared import CHANNEL, LEADER

__all__ = ["LEASE_RETRY_S", "coordinate"]

log = logging.getLogger("gateway.node")

#: Seconds between a follower's attempts to take the lead (and the leader's connection checks).
LEASE_RETRY_S = 2.0

_KEEPALIVE: dict[str, Any] = {
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 2,
}


async def coordinate(
    url: str,
    leading: asyncio.Event,
    changed: Callable[[str], None],
    stopping: asyncio.Event,
    *,
    retry_s: float = LEASE_RETRY_S,
) -> None:
    """Hold (or wait for) the lead and listen for changes until ``stopping`` is set."""
    tasks = [
        asyncio.create_task(_lease(url, leading, retry_s), name="leader lease"),
        asyncio.create_task(_listen(url, changed, retry_s), name="change listener"),
    ]
    try:
        await stopping.wait()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        leading.clear()


async def _connect(url: str) -> psycopg.AsyncConnection[Any]:
    return await psycopg.AsyncConnection.connect(url, autocommit=True, **_KEEPALIVE)


async def _lease(url: str, leading: asyncio.Event, retry_s: float) -> None:
    while True:
        try:
            async with await _connect(url) as conn:
                while True:
                    if not leading.is_set():
                        cur = await conn.execute(
                            "SELECT pg_try_advisory_lock(%s, hashtext(current_schema()))",
                            (LEADER,),
                        )
                        row = await cur.fetchone()
                        if row is not None and row[0]:
                            leading.set()
                            log.info("this process leads: it signs checkpoints, seals receipts")
                    else:
                        await conn.execute("SELECT 1")  # still connected: still holding it
                    await asyncio.sleep(retry_s)
        except psycopg.Error as exc:
            if leading.is_set():
                leading.clear()
                log.warning("lost the lead (%s); trying to take it again", type(exc).__name__)
            await asyncio.sleep(retry_s)


async def _listen(url: str, changed: Callable[[str], None], retry_s: float) -> None:
    while True:
        try:
            async with await _connect(url) as conn:
                cur = await conn.execute("SELECT current_schema()")
                row = await cur.fetchone()
                prefix = f"{row[0] if row else ''}:"
                await conn.execute(f"LISTEN {CHANNEL}")
                changed("*")
                async for note in conn.notifies():
                    if note.payload.startswith(prefix):
                        changed(note.payload[len(prefix) :])
        except psycopg.Error as exc:
            log.warning("change listener lost its connection (%s)", type(exc).__name__)
            await asyncio.sleep(retry_s)
