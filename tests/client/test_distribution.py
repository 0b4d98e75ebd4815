"""zv-gateway-client on its own (issue 18 point 8; decision 0095): its wheel, built from
clients/python, installs into a fresh virtualenv without the node's dependencies, and the client
it installs sends, receives and acknowledges a message through a node.

The nodes run in this process (tests/unit/node/_inproc.py: their HTTP API on a real port, a
broker in memory); the client runs in the fresh virtualenv's Python, started in isolated mode
(``-I``), so it can import only what the wheel installed — never this checkout. uv's cache makes
the build and the install take about two seconds; they need the package index the first time.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import zvg_client
from gateway.testing.federation import FederationFiles
from tests.node_pair import make_federation
from tests.unit.node._inproc import InProcFederation, request_from_example

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "clients" / "python"
#: Distributions the node needs and an integrator's client must not drag in.
NODE_ONLY = (
    "aio-pika",
    "aiormq",
    "cryptography",
    "opentelemetry-api",
    "opentelemetry-sdk",
    "uvloop",
    "click",
    "prometheus-client",
    "zv-gateway",
)
INSTALL_TIMEOUT_S = 300
"""Only stops a hang (a first install downloads aiohttp and pydantic)."""

SCRIPT = """
import asyncio, json, sys
from pathlib import Path

import zvg_client
from zvg_client import InvalidMessage, NodeClient, item_claims, request_from_dict

sender_url, sender_token, recipient_url, recipient_token, request_file = sys.argv[1:]
assert Path(zvg_client.__file__).is_relative_to(sys.prefix), zvg_client.__file__


async def main() -> dict:
    try:
        request_from_dict({"message_type": "case.referral"})
    except InvalidMessage as exc:
        refused = [e.field for e in exc.errors]
    doc = json.loads(Path(request_file).read_text())
    async with NodeClient(sender_url, sender_token) as sender:
        accepted = await sender.send(request_from_dict(doc), idempotency_key="dist-test-1")
    async with NodeClient(recipient_url, recipient_token) as recipient:
        async for item in recipient.inbox_items(wait=30):
            claims = item_claims(item)
            await recipient.ack(item.message_id)
            break
    return {
        "version": zvg_client.__version__,
        "message_id": str(accepted.message_id),
        "received": str(item.message_id),
        "claims_type": type(claims).__name__,
        "refused_fields": refused,
    }


print(json.dumps(asyncio.run(main())))
"""


def _uv() -> str:
    uv = shutil.which("uv", path=str(Path(sys.executable).parent))
    if uv is None:  # scripts/lib.sh installs uv into .venv; without it there is nothing to test
        pytest.fail("uv is not installed next to this Python (run scripts/test, which adds it)")
    return uv


def _run(*args: str | Path) -> str:
    result = subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        check=False,
        timeout=INSTALL_TIMEOUT_S,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    return result.stdout


@pytest.fixture(scope="module")
def client_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Python of a fresh virtualenv holding only the client wheel and its dependencies."""
    uv, tmp = _uv(), tmp_path_factory.mktemp("client-dist")
    _run(uv, "build", "--quiet", "--wheel", CLIENT, "-o", tmp / "dist")
    (wheel,) = (tmp / "dist").glob("zv_gateway_client-*.whl")
    _run(uv, "venv", "--quiet", "--python", sys.executable, tmp / "venv")
    python = tmp / "venv" / "bin" / "python"
    _run(uv, "pip", "install", "--quiet", "--python", python, wheel)
    return python


def test_the_client_installs_without_the_node_or_its_dependencies(client_python: Path) -> None:
    listed = _run(_uv(), "pip", "list", "--python", client_python, "--format", "json")
    installed = {d["name"].lower().replace("_", "-") for d in json.loads(listed)}
    assert {"zv-gateway-client", "aiohttp", "pydantic", "orjson"} <= installed
    assert not installed & set(NODE_ONLY), installed & set(NODE_ONLY)
    declared = tomllib.loads((CLIENT / "pyproject.toml").read_text("utf-8"))["project"]
    assert sorted(r.split(">")[0] for r in declared["dependencies"]) == [
        "aiohttp",
        "orjson",
        "pydantic",
    ]
    probe = "import importlib.util as u; print([m for m in %r if u.find_spec(m)])"
    found = _run(client_python, "-I", "-c", probe % (("gateway", "adapters", "demo"),))
    assert found.strip() == "[]"


@pytest.fixture
async def federation(tmp_path: Path) -> AsyncIterator[InProcFederation]:
    files: FederationFiles = make_federation(tmp_path / "federation", ("politie", "gemeente"))
    nodes = InProcFederation(files, tmp_path / "nodes")
    try:
        yield nodes
    finally:
        await nodes.close()


async def test_the_installed_client_sends_receives_and_acks_through_a_node(
    client_python: Path, federation: InProcFederation, tmp_path: Path
) -> None:
    pol = await federation.start("politie")
    gem = await federation.start("gemeente")
    request = tmp_path / "request.json"
    request.write_text(json.dumps(request_from_example("case.referral")), "utf-8")
    script = tmp_path / "use_client.py"
    script.write_text(SCRIPT, "utf-8")
    process = await asyncio.create_subprocess_exec(
        str(client_python),
        "-I",
        str(script),
        str(pol.client.make_url("/")),
        pol.token,
        str(gem.client.make_url("/")),
        gem.token,
        str(request),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()[-3000:]
    result = json.loads(out)
    assert result["received"] == result["message_id"]
    assert result["claims_type"] == "CaseReferral"
    assert "case_ref" in result["refused_fields"], "request_from_dict raises InvalidMessage"
    assert result["version"] == zvg_client.__version__, "the wheel of this checkout"
    await federation.wait_status("politie", result["message_id"], "accepted")
