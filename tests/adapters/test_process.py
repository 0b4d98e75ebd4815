"""An adapter as the operator runs it: `zvg adapter folder --config FILE` in its own process —
JSON log lines, a health endpoint, a file sent, a clean stop on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

import aiohttp

from tests.adapters.conftest import free_port
from tests.adapters.nodefake import FakeNode
from tests.adapters.test_folder import referral_request


async def _wait_for(predicate: object, seconds: float = 20.0) -> bool:
    for _ in range(int(seconds / 0.05)):
        if predicate():  # type: ignore[operator]
            return True
        await asyncio.sleep(0.05)
    return False


async def test_folder_adapter_process(politie_node: FakeNode, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text(politie_node.token)
    token.chmod(0o600)
    port = free_port()
    config = tmp_path / "folder.toml"
    config.write_text(
        f"""
[node]
url = "{politie_node.url}"
token_file = "token"
[folder]
root_dir = "folders"
poll_seconds = 0.1
settle_seconds = 0.2
[health]
port = {port}
"""
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from gateway.cli import main; main()",
        "adapter",
        "folder",
        "--config",
        str(config),
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        inbox = tmp_path / "folders" / "inbox"
        assert await _wait_for(inbox.exists)
        tmp = inbox / "referral.json.tmp"
        tmp.write_text(json.dumps(referral_request()))
        tmp.rename(inbox / "referral.json")
        assert await _wait_for(lambda: len(politie_node.sent) == 1)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                assert resp.status == 200
            async with http.get(f"http://127.0.0.1:{port}/readyz") as resp:
                report = await resp.json(content_type=None)
                assert report["adapter"] == "folder"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0
    lines = [json.loads(line) for line in stderr.decode().splitlines() if line.strip()]
    events = [line["message"] for line in lines]
    assert events[0] == "health_listening"
    assert "sent" in events
    assert events[-1] == "stopped"
    assert all(line["adapter"] == "folder" for line in lines)
    assert "Vermeer" not in stderr.decode(), "no content in the logs"
