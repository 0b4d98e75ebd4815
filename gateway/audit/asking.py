"""``zvg audit verify --witnesses``: ask the partners over the broker which checkpoint of this
node's log they cosigned.

The command connects as the node (its broker user and credentials from ``node.toml``) and sends
each partner a ``get-head`` request with a fresh nonce (``gateway.audit.witnessing``). The
answers come back to the node's own queue, so the *running node* receives them: it verifies each
(our log key signed it, that partner cosigned it), keeps it in the store's ``peer_heads`` under
the nonce, and raises its alarm if the records no longer extend it. This command polls the store
(read-only) for answers with its nonce until every partner answered or
``audit.witness_answer_timeout_seconds`` passed, and verifies them again itself: it trusts the
partners' signatures, not the store. It never consumes the node's queue (it would take envelopes
away from the node).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from gateway.audit import witnessing
from gateway.audit.inspect import open_readonly, peer_heads
from gateway.broker.transport import Publisher, connect
from gateway.core.directory import TrustedDirectory
from gateway.node.config import NodeConfig
from gateway.node.preflight import broker_endpoint

__all__ = ["ANSWER_POLL_S", "ask_witnesses"]

ANSWER_POLL_S = 0.2
"""How often the store is read for answers (a cheap indexed read)."""


async def ask_witnesses(
    config: NodeConfig,
    directory: TrustedDirectory,
    *,
    timeout_s: float,
    rand: Callable[[int], bytes] = os.urandom,
) -> dict[str, bytes | None]:
    """The partners' answers: OIN -> the checkpoint it cosigned (``None``: none); partners that
    did not answer within ``timeout_s`` are absent. Raises ``TransientError`` when the broker
    cannot be reached and ``LocalError`` when it refuses the node's login."""
    org = config.node.org
    nonce = witnessing.new_nonce(rand)
    endpoint = broker_endpoint(config, directory)
    connection = await connect(endpoint, name=f"zvg-audit-verify-{config.node.node_id}")
    try:
        async with Publisher(connection, org=org, broker_user=endpoint.user) as publisher:
            now = datetime.now(UTC)
            asked = await witnessing.publish_head_requests(
                publisher,
                directory=directory,
                org=org,
                nonce=nonce,
                now=now,
                expires=now + timedelta(seconds=timeout_s),
                rand=rand,
            )
    finally:
        await connection.close()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        with open_readonly(config.store_path) as db:
            try:
                heads = peer_heads(db, nonce)
            except sqlite3.OperationalError:  # a store no node of this version has opened
                heads = {}
        if set(asked) <= set(heads) or loop.time() >= deadline:
            return heads
        await asyncio.sleep(ANSWER_POLL_S)
