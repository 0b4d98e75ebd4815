"""Issue 14 point 1: a restart must never undo a revocation (directory rollback).

The attack, on the real broker: the ZVH node (gemeente) trusts directory v2; v3, in which the
police's signing key is revoked as ``compromised``, is polled and trusted, and the police's next
message is refused. Someone who can write the node's disk puts the directory file back to v2 and
restarts the node. It must refuse to start (one line, exit 2, the attempt in its audit log)
rather than trust v2 again and hand the adapter a message signed with the revoked key.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway.audit.inspect import query
from gateway.cli import cli
from gateway.node import runner
from gateway.testing.veenstad import org_by_key
from tests.directories import revoke_signing_keys
from tests.e2e.harness import Fed, request_from_example, running_fed

pytestmark = [pytest.mark.broker, pytest.mark.slow]

#: Generous: the machine is shared; every wait below polls a condition and ends as soon as it holds.
DEADLINE_S = 60.0


@pytest.fixture
async def fed(tmp_path: Path) -> AsyncIterator[Fed]:
    async with running_fed(tmp_path, ("gemeente", "politie")) as federation:
        yield federation


def _own_directory_file(fed: Fed, key: str) -> Path:
    """Give node ``key`` a directory file of its own (the others keep the federation's)."""
    own = fed.root / "nodes" / key / "directory.json"
    shutil.copyfile(fed.files.directory, own)
    config = fed.nodes[key].config
    text = config.read_text("utf-8")
    assert str(fed.files.directory) in text
    config.write_text(text.replace(str(fed.files.directory), str(own)), "utf-8")
    return own


def _install(path: Path, raw: bytes) -> None:
    """Replace a directory file the way ops (or an attacker) would: whole, in one rename."""
    tmp = path.with_name(path.name + ".new")
    tmp.write_bytes(raw)
    tmp.replace(path)


async def _until(what: str, check: Callable[[], Awaitable[bool]]) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE_S
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"not within {DEADLINE_S} s: {what}")
        await asyncio.sleep(0.05)


async def test_restart_on_a_rolled_back_directory_does_not_deliver_a_revoked_keys_message(
    fed: Fed, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner, "DIRECTORY_POLL_S", 0.05)
    directory = _own_directory_file(fed, "gemeente")
    v2 = directory.read_bytes()
    v3 = revoke_signing_keys(
        fed.files, directory, org_by_key("politie").oin, fed.root / "directory.v3.json"
    ).read_bytes()
    await fed.start("politie")
    gemeente = await fed.start("gemeente")
    assert gemeente.service.directory.version == 2
    pol = fed.client("politie")

    # v3 is polled and trusted; the police's message is refused.
    _install(directory, v3)

    async def on_v3() -> bool:
        return gemeente.service.directory.version == 3

    await _until("gemeente trusts v3", on_v3)
    code, first = await pol.send(request_from_example("case.referral"))
    assert code == 202, first

    police = org_by_key("politie").oin

    async def refused() -> bool:
        # Unauthenticated refusals are summarised per sender (refusal.summary), not one by one.
        await gemeente.service.refusals.flush()
        hits = await gemeente.store.run(lambda db: query(db, operation="refusal.summary"))
        return any(
            h["view"]["peer"] == police and h["view"]["detail"].get("unknown_sender") for h in hits
        )

    await _until("gemeente refuses the revoked key's message", refused)

    # The directory file is put back to v2 and the node restarts (as `zvg node run`).
    _install(directory, v2)
    await fed.stop("gemeente")
    code, second = await pol.send(request_from_example("case.referral", case_ref="Veenstad-2"))
    assert code == 202, second
    await pol.wait_status(second["message_id"], "sent", seconds=DEADLINE_S)
    process = fed.spawn("gemeente")
    gem = fed.client("gemeente")
    delivered: list[str] = []

    async def stopped_or_delivered() -> bool:
        if process.poll() is not None:
            return True
        try:
            items = await gem.inbox(wait=1)
        except Exception:  # noqa: BLE001 - not listening (yet)
            return False
        delivered.extend(i["message_id"] for i in items)
        return bool(delivered)

    await _until("the restarted node exits or delivers", stopped_or_delivered)
    assert not delivered, (
        f"the node restarted on v2 and handed the adapter {delivered} "
        "(signed with the key v3 revoked as compromised)"
    )
    assert process.wait(timeout=DEADLINE_S) == 2
    fed.processes.pop("gemeente")
    output = (fed.root / "gemeente.log").read_text("utf-8").strip().splitlines()
    assert len(output) == 1, output
    assert output[0].startswith("zvg: error: "), output[0]
    assert "directory version 2, older than version 3" in output[0], output[0]

    # The attempt is in the node's audit log, and a security officer can read it.
    result = CliRunner().invoke(
        cli,
        [
            "audit",
            "query",
            "--config",
            str(fed.nodes["gemeente"].config),
            "--operation",
            "directory.change",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    changes = [json.loads(line)["view"] for line in result.stdout.splitlines()]
    assert [(c["status"], c["policy_version"]) for c in changes][-2:] == [
        ("ok", 3),
        ("rejected", 2),
    ], changes
    assert changes[-1]["reason"] == "replayed"
    assert changes[-1]["detail"]["trusted_version"] == 3
