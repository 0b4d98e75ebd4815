"""docs/api.md works as written, in process: every ```sh block runs, in order, in one bash
session (as a reader pasting them into a terminal) against the police's node served by its own
aiohttp app on a loopback port, exits cleanly and prints what the ```text block under it says
(``…`` matches any text within a line). The ZVH's node runs next to it; the broker is in memory.

The test plays the other side of the story: an adapter at the ZVH (gemeente) acks the police's
referral and answers with a ``case.status`` and a ``plan.task`` (tests/guides.py), which the
guide then receives, acks and rejects.

Replaces, e2e on RabbitMQ → here (same names):

- test_api_guide.py::test_the_guide_has_examples_with_outputs
- test_api_guide.py::test_every_example_in_the_api_guide_works
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from gateway.node.gauges import run_gauges
from tests.guides import API_GUIDE, Block, guide_blocks, matches, run_api_guide, zvh_answers
from tests.unit.node._inproc import POL, ApiNode, InProcFederation


def test_the_guide_has_examples_with_outputs() -> None:
    blocks = guide_blocks(API_GUIDE.read_text("utf-8"))
    assert len(blocks) >= 12
    assert all(b.expected is not None for b in blocks), [
        b.number for b in blocks if b.expected is None
    ]
    assert matches("a …\nb", "a 123\nb")
    assert not matches("a …\nb", "a 123\nc")
    assert not matches("a", "a\nb")


async def _zvh_adapter(zvh: ApiNode, stop: asyncio.Event) -> None:
    """The other side: ack what arrives at the ZVH and answer the referral."""
    while not stop.is_set():
        for item in await zvh.inbox(wait=30):
            referral_id = item["message_id"]
            assert await zvh.settle(referral_id) == 204
            if item["claims"]["message_type"] == "case.referral":
                for answer in zvh_answers(referral_id):
                    await zvh.send(answer)


async def test_every_example_in_the_api_guide_works(
    inproc: InProcFederation, tmp_path: Path
) -> None:
    gem = await inproc.start("gemeente")
    pol = await inproc.start("politie")
    service = pol.node.service
    service.ctx.spawn(run_gauges(service.ctx), "gauges")  # the metrics block greps the gauges
    stop = asyncio.Event()
    zvh = asyncio.create_task(_zvh_adapter(gem, stop))

    async def before(block: Block) -> None:
        if "/v1/inbox?wait=30" in block.code:  # the block expects both answers waiting

            async def both_waiting() -> bool:
                count = "SELECT count(*) FROM inbox WHERE status='delivered'"
                return bool(pol.node.store.read(count)[0][0] >= 2)

            await inproc.broker.until(both_waiting, "the ZVH's two answers reached the police")

    work = tmp_path / "reader"
    work.mkdir()
    node = f"http://{pol.client.host}:{pol.client.port}"
    try:
        failures = await run_api_guide(work, node, pol.token, before)
        assert not failures, "\n\n".join(failures)
        # The story happened: the ZVH's status was accepted, its plan task rejected.
        sent = gem.node.store.read(
            "SELECT message_type, message_id FROM outbox WHERE message_type != 'receipt'"
        )
        assert sorted(t for t, _ in sent) == ["case.status", "plan.task"]
        for message_type, message_id in sent:
            final = "accepted" if message_type == "case.status" else "rejected"
            await inproc.wait_status("gemeente", message_id, final)
            ((org, _role, _status, reason),) = await gem.status(message_id)
            assert org == POL
            assert reason == (None if final == "accepted" else "adapter_rejected")
    finally:
        stop.set()
        zvh.cancel()  # it waits in a long-poll; nothing is half done on the ZVH's side
        await asyncio.gather(zvh, return_exceptions=True)
