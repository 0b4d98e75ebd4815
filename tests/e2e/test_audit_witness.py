"""Partners witness each other's audit logs over the broker (issue 7 §3)."""

from __future__ import annotations

import asyncio

import pytest

from gateway.core import note
from tests.e2e.harness import Fed, request_from_example

pytestmark = pytest.mark.broker


async def test_peers_cosign_each_others_checkpoints(fed: Fed) -> None:
    nodes = {key: await fed.start(key) for key in ("politie", "gemeente", "ggz")}
    code, doc = await fed.client("politie").send(request_from_example("case.referral"))
    assert code == 202
    await fed.client("politie").wait_status(doc["message_id"], "delivered")
    gem = nodes["gemeente"].service
    for _ in range(100):
        await gem.request_cosignatures()
        latest = gem.audit.latest
        if latest is not None and len(note.parse_note(latest.note).signatures) >= 3:
            break
        await asyncio.sleep(0.1)
    assert latest is not None
    directory = gem.directory
    cosigners = [
        note.ed25519_verifier(directory.witness_name(org), k, sig_type=note.SIG_TYPE_COSIGNATURE_V1)
        for org in (nodes["politie"].service.org, nodes["ggz"].service.org)
        for k in directory.audit_keys(org, gem.clock())
    ]
    verified = note.open_checkpoint(
        latest.note,
        log_keys=[note.ed25519_verifier(gem.audit.origin, gem.keys.audit.public_key())],
        cosigners=cosigners,
        quorum=2,
    )
    assert len(verified.cosignatures) == 2
