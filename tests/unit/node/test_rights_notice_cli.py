"""``zvg rights notice``: the recipients come from the node's own audit log, one notice goes to
each through the node's API, and an erase notice erases the node's own copy as well.

In process (tests/unit/node/_inproc.py): the CLI runs in a thread (it runs its own event loop)
against the in-process node's HTTP API."""

from __future__ import annotations

import asyncio
from pathlib import Path

from click.testing import CliRunner, Result

from gateway.cli import cli
from tests.unit.node._inproc import GEM, ApiNode, InProcFederation, request_from_example

ANNA = "sub-7f3KqZ2mLw9xTa"  # the betrokkene of tests/examples/case.referral.json
ENVELOPE = "SELECT envelope IS NOT NULL FROM outbox WHERE message_id=?"


async def _zvg(*args: str) -> Result:
    return await asyncio.to_thread(CliRunner().invoke, cli, list(args))


def _token_file(node: ApiNode, tmp: Path) -> Path:
    path = tmp / f"{node.node.key}.token"
    path.write_text(node.token + "\n", "utf-8")
    path.chmod(0o600)
    return path


async def test_notice_goes_to_every_recipient_of_the_persons_data_and_erases_our_copy(
    inproc: InProcFederation, tmp_path: Path
) -> None:
    pol = await inproc.start("politie")
    gem = await inproc.start("gemeente")
    referral = await pol.send(request_from_example("case.referral"))
    assert [i["message_id"] for i in await gem.inbox(wait=30)] == [referral]
    # Taken and acked, so that the inbox's long-poll below waits for the notice (an unacked
    # referral would answer it at once, before the notice arrived: a race seen in CI).
    assert await gem.settle(referral) == 204
    await inproc.wait_status("politie", referral, "accepted")
    config = str(pol.node.config.source)

    dry = await _zvg(
        "rights", "notice", "--config", config, "--subject", ANNA, "--kind", "erase", "--dry-run"
    )
    assert dry.exit_code == 0, dry.output
    assert f"{GEM}" in dry.output
    assert "1 message(s)" in dry.output
    assert "1 notice(s) would be sent" in dry.output

    url = f"http://{pol.client.server.host}:{pol.client.server.port}"
    sent = await _zvg(
        "rights", "notice", "--config", config, "--subject", ANNA, "--kind", "erase",
        "--category", "POLITIE", "--token-file", str(_token_file(pol, tmp_path)),
        "--node-url", url,
    )  # fmt: skip
    assert sent.exit_code == 0, sent.output
    assert "1 notice(s) sent" in sent.output
    items = await gem.inbox(wait=30)
    (item,) = [i for i in items if i["claims"]["message_type"] == "rights.notice"]
    body = item["claims"]["body"]
    assert body["kind"] == "erase"
    assert body["concerns"] == [referral]
    assert body["categories"] == ["POLITIE"]
    assert item["claims"]["subjects"][0]["subject_ref"] == ANNA
    assert pol.node.store.read(ENVELOPE, (referral,)) == [(0,)], "our own copy is erased"

    listed = await _zvg("rights", "notices", "--config", config, "--open")
    assert listed.exit_code == 0, listed.output
    assert "open" in listed.output
    assert f"{GEM}" in listed.output
    assert await gem.settle(item["message_id"]) == 204
    await inproc.wait_status("politie", item["message_id"], "accepted")
    listed = await _zvg("rights", "notices", "--config", config)
    assert "complied" in listed.output
    assert ": accepted" in listed.output
    assert "0 notice(s)" in (await _zvg("rights", "notices", "--config", config, "--open")).output


async def test_no_recipient_no_notice_and_a_bad_bsn_is_one_line(
    inproc: InProcFederation, tmp_path: Path
) -> None:
    pol = await inproc.start("politie")
    config = str(pol.node.config.source)
    key = tmp_path / "pseudonym.key"
    key.write_bytes(b"k" * 32)
    key.chmod(0o600)
    none = await _zvg(
        "rights", "notice", "--config", config, "--bsn", "999990019",
        "--pseudonym-key-file", str(key), "--kind", "rectify", "--dry-run",
    )  # fmt: skip
    assert none.exit_code == 0, none.output
    assert "no organisation received data about this person" in none.output
    assert "999990019" not in none.output
    bad = await _zvg(
        "rights", "notice", "--config", config, "--bsn", "123456789",
        "--pseudonym-key-file", str(key), "--kind", "erase", "--dry-run",
    )  # fmt: skip
    assert bad.exit_code == 2
    assert "not a valid BSN" in bad.output
    assert "123456789" not in bad.output
