"""Partners witness each other's audit logs over the broker (in process: three nodes on the
broker in memory; ``service.witnessing.request_cosignatures`` runs one witnessing round).

Replaces, e2e on RabbitMQ → here (same name):

- test_audit_witness.py::test_peers_cosign_each_others_checkpoints
"""

from __future__ import annotations

from gateway.core import note
from gateway.core.broker_topology import WITNESS_CONTENT_TYPE
from tests.unit.node._inproc import GGZ, POL, InProcFederation, request_from_example
from tests.unit.node.conftest import BOTH_STORES

pytestmark = BOTH_STORES  # each test runs on SQLite and on PostgreSQL


async def test_peers_cosign_each_others_checkpoints(inproc: InProcFederation) -> None:
    pol = await inproc.start("politie")
    gem = await inproc.start("gemeente")
    await inproc.start("ggz")
    message_id = await pol.send(request_from_example("case.referral"))
    await inproc.wait_status("politie", message_id, "delivered")
    service = gem.node.service
    assert await service.witnessing.request_cosignatures() == 2

    async def cosigned_by_both() -> bool:
        latest = service.audit.latest
        return latest is not None and len(note.parse_note(latest.note).signatures) >= 3

    await inproc.broker.until(cosigned_by_both, "both partners cosigned the ZVH's checkpoint")
    latest = service.audit.latest
    assert latest is not None
    directory = service.directory
    cosigners = [
        note.ed25519_verifier(directory.witness_name(org), k, sig_type=note.SIG_TYPE_COSIGNATURE_V1)
        for org in (POL, GGZ)
        for k in directory.audit_keys(org, inproc.clock())
    ]
    verified = note.open_checkpoint(
        latest.note,
        log_keys=[note.ed25519_verifier(service.audit.origin, service.ctx.keys.audit.public_key())],
        cosigners=cosigners,
        quorum=2,
    )
    assert len(verified.cosignatures) == 2
    assert await service.audit.peer_sizes() == {POL: latest.size, GGZ: latest.size}
    assert {p.content_type for p in inproc.broker.published if p.sender == gem.org} >= {
        WITNESS_CONTENT_TYPE
    }
