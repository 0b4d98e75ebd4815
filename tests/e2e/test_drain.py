"""SIGTERM drains (issue 6 §1): a node run as its own process (``zvg node run``) that gets SIGTERM
with messages in flight stops taking new work, finishes what it holds, logs that it drained and
exits 0; after a restart nothing is lost and nothing reaches the adapter twice.

Threats: an orchestrator's routine stop (deploy, node drain, reboot) losing a message the API
already answered 202 for, or one the broker already handed over; a stop that hangs until the
orchestrator's SIGKILL; a non-zero exit that makes the orchestrator report a crash.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.e2e.harness import Fed, Progress, running_fed
from tests.e2e.test_crash_recovery import KILL_AT, MESSAGES, WINDOW, _requests, _wait_ready

pytestmark = [pytest.mark.broker, pytest.mark.slow]

# The stream is paced as in the crash tests (tests/e2e/test_crash_recovery.py): the sender stays
# at most WINDOW messages ahead of the receiving adapter's acks and the SIGTERM comes at KILL_AT
# acks, so it lands with most of the stream still to be sent, however fast or loaded the machine.
#: How long a drain may take before the test calls it hung. Typically well under a second; the
#: node gives in-flight publishes and handlers 10 s each (DRAIN_GRACE_S, the consumer's close
#: grace), and once, on a loaded shared broker, a drain took 22 s.
DRAIN_BOUND_S = 45


@pytest.fixture
async def two_nodes(tmp_path: Path) -> AsyncIterator[Fed]:
    async with running_fed(tmp_path, ("gemeente", "politie")) as fed:
        yield fed


def _terminate(fed: Fed, key: str) -> int:
    """SIGTERM the node's process; its exit code (raises if it does not exit in time)."""
    process = fed.processes.pop(key)
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout=DRAIN_BOUND_S)


def _log(fed: Fed, key: str) -> list[dict[str, str]]:
    lines = (fed.root / f"{key}.log").read_text("utf-8").splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


def _assert_drained_cleanly(fed: Fed, key: str, code: int) -> None:
    assert code == 0
    messages = [r["message"] for r in _log(fed, key)]
    assert "draining" in messages
    assert messages.index("stopped") > messages.index("draining")
    errors = [r for r in _log(fed, key) if r["level"] in ("error", "critical")]
    assert errors == []


async def test_sigterm_of_the_receiver_mid_stream_loses_nothing(two_nodes: Fed) -> None:
    fed = two_nodes
    await fed.start("politie")
    fed.spawn("gemeente")
    await _wait_ready(fed, "gemeente")
    pol, gem = fed.client("politie"), fed.client("gemeente")
    progress, some_acked = Progress(), asyncio.Event()
    sending = asyncio.create_task(pol.send_many(_requests(MESSAGES), pace=(progress, WINDOW)))
    draining = asyncio.create_task(
        gem.drain(MESSAGES, seconds=240, milestone=(KILL_AT, some_acked), progress=progress)
    )
    await asyncio.wait_for(some_acked.wait(), timeout=120)
    code = await asyncio.to_thread(_terminate, fed, "gemeente")
    _assert_drained_cleanly(fed, "gemeente", code)
    assert not draining.done(), "the SIGTERM must land mid-stream"
    fed.spawn("gemeente")
    sent = await sending
    acked, duplicates = await draining
    assert len(set(sent)) == MESSAGES
    assert duplicates == 0
    assert acked == set(sent), f"{len(set(sent) - acked)} missing"
    for message_id in sent[:: MESSAGES // 10]:
        await pol.wait_status(message_id, "accepted")


async def test_sigterm_of_the_sender_mid_stream_loses_nothing(two_nodes: Fed) -> None:
    fed = two_nodes
    await fed.start("gemeente")
    fed.spawn("politie")
    await _wait_ready(fed, "politie")
    pol, gem = fed.client("politie"), fed.client("gemeente")
    progress, some_acked = Progress(), asyncio.Event()
    # send_many retries a request (same Idempotency-Key) while the node is down.
    sending = asyncio.create_task(pol.send_many(_requests(MESSAGES), pace=(progress, WINDOW)))
    draining = asyncio.create_task(
        gem.drain(MESSAGES, seconds=240, milestone=(KILL_AT, some_acked), progress=progress)
    )
    await asyncio.wait_for(some_acked.wait(), timeout=120)
    code = await asyncio.to_thread(_terminate, fed, "politie")
    _assert_drained_cleanly(fed, "politie", code)
    # Mid-stream: messages were still in the sender's outbox or on their way, and POSTs were
    # still coming in (the pace keeps most of the stream unsent).
    assert not draining.done(), "the SIGTERM must land mid-stream"
    fed.spawn("politie")
    sent = await sending
    acked, duplicates = await draining
    assert len(set(sent)) == MESSAGES, "every request got one message id"
    assert duplicates == 0
    assert acked == set(sent), f"{len(set(sent) - acked)} missing"
