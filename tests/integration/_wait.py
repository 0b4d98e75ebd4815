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
    """Poll ``queue`` with basic.get until a message arrives; ack it and return it."""
    channel = await connection.channel()
    try:
        q = await channel.get_queue(queue, ensure=False)
        async with asyncio.timeout(wait_s):
            while True:
                message = await q.get(fail=False)
                if message is not None:
                    await message.ack()
                    return message
                await asyncio.sleep(0.05)
    finally:
        await channel.close()


async def drain(connection: AbstractConnection, queue: str) -> list[AbstractIncomingMessage]:
    """Take (and ack) everything currently in ``queue``."""
    channel = await connection.channel()
    try:
        q = await channel.get_queue(queue, ensure=False)
        taken = []
        while (message := await q.get(fail=False)) is not None:
            await message.ack()
            taken.append(message)
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
