"""Bounded waits for broker tests: the bound only stops a hang; it is not a timed assert."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aio_pika.abc import AbstractConnection, AbstractIncomingMessage

WAIT_S = 20.0
"""Upper bound for anything that should happen within milliseconds on a healthy broker."""


async def get_one(
    connection: AbstractConnection, queue: str, *, wait_s: float = WAIT_S
) -> AbstractIncomingMessage:
    """Consume from ``queue`` until a message arrives; ack it and return it. (A consumer, not
    basic.get: inboxes are single-active-consumer quorum queues, which refuse basic.get.)"""
    taken = await _take(connection, queue, 1, wait_s)
    return taken[0]


async def drain(
    connection: AbstractConnection, queue: str, *, wait_s: float = WAIT_S
) -> list[AbstractIncomingMessage]:
    """Take (and ack) every message ready in ``queue`` now (as many as a passive declare
    counts); nobody else may be consuming it."""
    channel = await connection.channel()
    try:
        declared = await channel.declare_queue(queue, passive=True)
        ready = int(declared.declaration_result.message_count or 0)
    finally:
        await channel.close()
    return await _take(connection, queue, ready, wait_s) if ready else []


async def _take(
    connection: AbstractConnection, queue: str, count: int, wait_s: float
) -> list[AbstractIncomingMessage]:
    channel = await connection.channel()
    try:
        await channel.set_qos(prefetch_count=count)
        q = await channel.get_queue(queue, ensure=False)
        taken: list[AbstractIncomingMessage] = []
        async with asyncio.timeout(wait_s), q.iterator() as messages:
            async for message in messages:
                await message.ack()
                taken.append(message)
                if len(taken) >= count:
                    break
        return taken
    finally:
        await channel.close()


async def until(condition: Callable[[], bool], *, wait_s: float = WAIT_S) -> None:
    """Wait until ``condition()`` is true (checked every 20 ms)."""
    async with asyncio.timeout(wait_s):
        while not condition():  # noqa: ASYNC110 - polling plain counters; no event to wait on
            await asyncio.sleep(0.02)


def death_reason(message: AbstractIncomingMessage) -> object:
    """The reason RabbitMQ recorded when it dead-lettered ``message``."""
    return (message.headers or {}).get("x-first-death-reason")
