"""The adapters' connection to their node (``adapters._runtime``): ``[node]`` settings become an
authenticated client that acts for the configured employee, a token file anyone may read is
refused before anything connects, and an unavailable node shows in the health report."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters import _runtime as rt
from adapters.errors import ConfigError
from tests.adapters.nodefake import FakeNode, fresh_copy, load_example
from zvg_client.client import NodeClient, RetryPolicy
from zvg_client.errors import Unauthorized


def token_file(folder: Path, token: str, mode: int = 0o600) -> Path:
    path = folder / "token"
    path.write_text(token + "\n")
    path.chmod(mode)
    return path


async def test_node_client_uses_the_token_file_and_the_actor(
    politie_node: FakeNode, tmp_path: Path
) -> None:
    settings = rt.NodeSettings(
        url=politie_node.url,
        token_file=token_file(tmp_path, politie_node.token),
        actor="emp-4711",
        actor_role="wijkagent",
    )
    async with rt.node_client(settings) as node:
        await node.inbox()
    method, path, headers = politie_node.requests[-1]
    assert (method, path) == ("GET", "/v1/inbox")
    assert headers["Authorization"] == f"Bearer {politie_node.token}"
    assert (headers["ZVG-Actor"], headers["ZVG-Actor-Role"]) == ("emp-4711", "wijkagent")


async def test_node_client_without_an_actor_sends_no_actor_headers(
    politie_node: FakeNode, tmp_path: Path
) -> None:
    settings = rt.NodeSettings(url=politie_node.url, token_file=token_file(tmp_path, "wrong"))
    async with rt.node_client(settings) as node:
        with pytest.raises(Unauthorized):
            await node.inbox()
    assert not any(k.lower().startswith("zvg-") for k in politie_node.requests[-1][2])


def test_node_client_refuses_a_token_file_others_can_read(tmp_path: Path) -> None:
    settings = rt.NodeSettings(
        url="http://127.0.0.1:9", token_file=token_file(tmp_path, "t", mode=0o644)
    )
    with pytest.raises(ConfigError, match="readable by others"):
        rt.node_client(settings)


async def test_fetch_inbox_records_whether_the_node_answered(politie_node: FakeNode) -> None:
    health = rt.Health("unit", ("node",))
    message = fresh_copy(load_example("case.status"))
    await politie_node.deliver(message)
    node = NodeClient(politie_node.url, politie_node.token, retry=RetryPolicy(attempts=1))
    try:
        politie_node.fail_next(1)
        assert await rt.fetch_inbox(node, health, wait=0, limit=10) is None
        assert health.report()["components"]["node"] == {"error": "Unavailable"}
        page = await rt.fetch_inbox(node, health, wait=0, limit=10)
    finally:
        await node.close()
    assert page is not None
    assert [i.message_id for i in page.items] == [message["message_id"]]
    assert "error" not in health.report()["components"]["node"]
