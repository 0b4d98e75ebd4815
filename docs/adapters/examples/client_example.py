"""Runnable example of the node API client (docs/adapters/client.md).

GGZ Veenland answers the ZVH's bekendheidsvraag (demo case step 3): wait for the question,
answer "known" with a contact person, ack the question, and follow the answer's delivery.

    python docs/adapters/examples/client_example.py http://127.0.0.1:8470 secrets/node-token
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from schemas.claims import InfoRequest
from zvg_client.client import NodeClient, item_claims, request_from_dict
from zvg_client.errors import InvalidMessage, NodeError, PolicyDenied


async def answer_one_question(url: str, token: str, *, wait: float = 30) -> str | None:
    """Answer the first bekendheidsvraag in the inbox; returns the answer's message id."""
    async with NodeClient(url, token) as node:
        async for item in node.inbox_items(wait=wait):
            claims = item_claims(item)  # typed: InfoRequest, CaseHandover, ...
            if not isinstance(claims, InfoRequest) or claims.body.mode != "bekendheid":
                await node.reject(item.message_id, "not_responsible")
                continue
            answer = request_from_dict(
                {
                    "message_type": "info.response",
                    "purpose": "ZVH.BEKENDHEID",
                    "recipients": [{"org": claims.sender.org, "role": claims.sender.role}],
                    "case_ref": claims.case_ref,
                    "in_reply_to": claims.message_id,
                    "data_categories": ["ID_PSEUDO", "BETROKKENHEID", "CONTACT_PROF"],
                    "subjects": [s.model_dump() for s in claims.subjects],
                    "body": {
                        "disposition": "known",
                        "involvement": [{"kind": "former_care", "active": False}],
                        "contact": {"name": "A. Kuipers", "function": "psychiater"},
                    },
                }
            )
            try:
                # The key names this answer: a retry or a restart cannot send it twice.
                sent = await node.send(answer, idempotency_key=f"answer-{claims.message_id}")
            except PolicyDenied as exc:
                print("not allowed:", exc.decision)
                return None
            except InvalidMessage as exc:
                print("invalid:", [(e.field, e.message) for e in exc.errors])
                return None
            await node.ack(item.message_id)  # the ZVH now sees `accepted` for its question
            status = await node.status(sent.message_id)
            print([(r.org, r.status) for r in status.recipients])
            return sent.message_id
    return None


if __name__ == "__main__":
    try:
        asyncio.run(answer_one_question(sys.argv[1], Path(sys.argv[2]).read_text().strip()))
    except NodeError as exc:
        sys.exit(f"node: {exc}")
