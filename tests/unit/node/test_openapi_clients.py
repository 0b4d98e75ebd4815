"""The served OpenAPI document as client generators and API fuzzers use it (issue 18, point 1),
in process: the node's aiohttp app on a loopback port, the broker in memory.

- ``openapi-spec-validator`` accepts the document; every operation has an ``operationId``, tags
  and a description; the send request and the inbox item are unions on ``message_type``.
- ``openapi-python-client`` generates a Python client from the served document (into a
  temporary folder, one subprocess of about a second) and that client sends a referral from the
  police, receives it at the ZVH, acks it, and reads the ``accepted`` status back.
- ``schemathesis`` fuzzes every operation but the event stream (a few examples each, no
  deadline) and sends valid messages made from tests/examples/: no 5xx, no status, header,
  content type or body that the document does not declare.
"""

from __future__ import annotations

import asyncio
import copy
import importlib
import itertools
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from openapi_spec_validator import validate
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from schemas.catalogue import MESSAGE_TYPES
from tests.unit.node._inproc import ApiNode, InProcFederation, request_from_example

#: The node serves requests on this process's event loop while hypothesis draws examples in a
#: worker thread, so the node's own use of ``random`` looks to hypothesis like the strategy's.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Do not use the `random` module:hypothesis.errors.HypothesisDeprecationWarning"
)
GENERATOR = Path(sys.executable).with_name("openapi-python-client")
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
#: Examples the ZVH (gemeente) sends to members of the in-process federation (case.closure and
#: info.request also go to OM and VT, which it lacks; receipts are the node's, not an adapter's).
ZVH_SENDS = ("case.handover", "case.status", "plan.task")


async def _document(node: ApiNode) -> dict[str, Any]:
    answer = await node.call("GET", "/v1/openapi.json", token="auditor")
    assert answer.status == 200, answer.body
    return dict(answer.json())


def _url(node: ApiNode) -> str:
    return f"http://{node.client.host}:{node.client.port}"


async def test_the_served_document_is_valid_openapi_for_generators(
    inproc: InProcFederation,
) -> None:
    pol = await inproc.start("politie", connect=False)
    doc = await _document(pol)
    validate(doc)
    assert doc["servers"][0]["url"] == f"http://{pol.runner.config.api.listen}"
    operations = [op for item in doc["paths"].values() for op in item.values()]
    assert len(operations) == 20  # 13 for adapters and auditors, the LDV read API, 6 of the
    # inzageverzoek (gateway.node.rights_api)
    ids = [op["operationId"] for op in operations]
    assert len(set(ids)) == len(ids)
    assert all(op["tags"] and op["description"] for op in operations)
    schemas = doc["components"]["schemas"]
    send = schemas["SendRequest"]
    assert send["discriminator"]["propertyName"] == "message_type"
    assert len(send["oneOf"]) == len(MESSAGE_TYPES)
    referral = schemas["SendRequestCaseReferral"]["properties"]["body"]
    assert referral == {"$ref": "#/components/schemas/ReferralBody"}
    claims = schemas["InboxItem"]["properties"]["claims"]
    assert claims["discriminator"]["mapping"]["case.referral"].endswith("/CaseReferral")
    post = doc["paths"]["/v1/messages"]["post"]["responses"]
    assert {"Location", "Idempotent-Replayed"} <= set(post["202"]["headers"])
    assert "Retry-After" in post["429"]["headers"]
    stream = doc["paths"]["/v1/inbox/stream"]["get"]["parameters"]
    assert "Last-Event-ID" in {p["name"] for p in stream}


def _generate(doc_path: Path, out: Path) -> None:
    config = out.parent / "generator.yaml"
    config.write_text("package_name_override: zvg_node_client\npost_hooks: []\n", "utf-8")
    subprocess.run(
        [
            str(GENERATOR),
            "generate",
            "--path",
            str(doc_path),
            "--config",
            str(config),
            "--meta",
            "none",
            "--output-path",
            str(out / "zvg_node_client"),
            "--fail-on-warning",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )


async def test_a_generated_client_sends_receives_and_acks(
    inproc: InProcFederation, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pol = await inproc.start("politie")
    gem = await inproc.start("gemeente")
    doc_path = tmp_path / "openapi.json"
    doc_path.write_bytes((await pol.call("GET", "/v1/openapi.json")).body)
    await asyncio.to_thread(_generate, doc_path, tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [m for m in sys.modules if m.startswith("zvg_node_client")]:
        monkeypatch.delitem(sys.modules, name)
    client_mod = importlib.import_module("zvg_node_client")
    models = importlib.import_module("zvg_node_client.models")
    send_message = importlib.import_module("zvg_node_client.api.messages.send_message")
    get_status = importlib.import_module("zvg_node_client.api.messages.get_message_status")
    list_sent = importlib.import_module("zvg_node_client.api.messages.list_sent_messages")
    list_inbox = importlib.import_module("zvg_node_client.api.inbox.list_inbox")
    ack_message = importlib.import_module("zvg_node_client.api.inbox.ack_message")

    police = client_mod.AuthenticatedClient(base_url=_url(pol), token=pol.token)
    zvh = client_mod.AuthenticatedClient(base_url=_url(gem), token=gem.token)
    body = models.SendRequestCaseReferral.from_dict(request_from_example("case.referral"))
    sent = await send_message.asyncio_detailed(
        client=police, body=body, idempotency_key="generated-1"
    )
    assert sent.status_code == 202, sent.content
    assert isinstance(sent.parsed, models.SendAccepted)
    message_id = sent.parsed.message_id
    assert sent.headers["Location"] == f"/v1/messages/{message_id}"

    page = await list_inbox.asyncio(client=zvh, wait=30)
    assert isinstance(page, models.InboxPage)
    (item,) = page.items
    assert item.message_id == message_id
    assert isinstance(item.claims, models.CaseReferral), "the claims come typed per message type"
    assert isinstance(item.claims.body, models.ReferralBody)
    acked = await ack_message.asyncio_detailed(client=zvh, message_id=message_id)
    assert acked.status_code == 204

    await inproc.wait_status("politie", message_id, "accepted")
    status = await get_status.asyncio(client=police, message_id=message_id)
    assert isinstance(status, models.MessageStatus)
    assert [r.status for r in status.recipients] == ["accepted"]
    accepted = models.ListSentMessagesStatus("accepted")
    listed = await list_sent.asyncio(client=police, status=accepted)
    assert isinstance(listed, models.MessagePage)
    assert [m.message_id for m in listed.items] == [message_id]
    missing = await get_status.asyncio(
        client=police, message_id="01a2b3c4-0000-7000-8000-000000000000"
    )
    assert isinstance(missing, models.Problem)
    assert missing.type_ == "/problems/not-found"


def _fuzz_all(schema: Any, base_url: str, headers: dict[str, str]) -> int:
    """Generated requests for every operation but the event stream; returns how many."""
    calls = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path == "/v1/inbox/stream":
            continue  # an endless response: the stream has its own tests

        @settings(
            max_examples=4,
            deadline=None,
            derandomize=True,  # the same examples every run: bounded and reproducible
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def run(case: Any) -> None:
            nonlocal calls
            response = case.call(base_url=base_url, headers=headers, timeout=30)
            case.validate_response(response, checks=CHECKS)
            calls += 1

        run()
    return calls


def _send_examples(schema: Any, base_url: str, headers: dict[str, str]) -> list[int]:
    """Valid messages made from the examples the ZVH sends, varied by hypothesis; statuses."""
    operation = schema["/v1/messages"]["POST"]
    statuses: list[int] = []
    keys = itertools.count()  # a new key per request: hypothesis repeats values it generates
    requests = st.builds(
        lambda name, case_ref, actor: (
            {**request_from_example(name), "case_ref": case_ref},
            {**headers, **({"ZVG-Actor": actor} if actor else {})},
        ),
        st.sampled_from(ZVH_SENDS),
        st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._-]{2,20}\Z"),
        st.none() | st.from_regex(r"\A[a-z0-9-]{1,20}\Z"),
    )

    @settings(
        max_examples=10,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(request=requests)
    def run(request: tuple[dict[str, Any], dict[str, str]]) -> None:
        body, sent_headers = request
        sent_headers["Idempotency-Key"] = f"fuzz-{next(keys)}"
        case = operation.Case(body=body, headers=sent_headers, media_type="application/json")
        response = case.call(base_url=base_url, timeout=30)
        case.validate_response(response, checks=CHECKS)
        statuses.append(response.status_code)

    run()
    return statuses


def _inbox_item_conforms(schema: Any, base_url: str, headers: dict[str, str]) -> int:
    """``GET /v1/inbox`` with a message waiting, checked like the fuzzed calls; its item count."""
    case = schema["/v1/inbox"]["GET"].Case(query={"limit": 10})
    response = case.call(base_url=base_url, headers=headers, timeout=30)
    case.validate_response(response, checks=CHECKS)
    return len(response.json()["items"])


def _bounded(doc: dict[str, Any]) -> dict[str, Any]:
    """The document with ``wait`` held at 0: a fuzzer must not sit in long-polls."""
    fuzzed = copy.deepcopy(doc)
    for param in fuzzed["paths"]["/v1/inbox"]["get"]["parameters"]:
        if param["name"] == "wait":
            param["schema"]["maximum"] = 0
    return fuzzed


async def _in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """Run a blocking fuzzer while this loop serves the node."""
    return await asyncio.to_thread(fn, *args)


async def test_schemathesis_finds_no_mismatch_and_no_5xx(inproc: InProcFederation) -> None:
    gem = await inproc.start("gemeente")  # connected: /readyz is 200, not its documented 503
    pol = await inproc.start("politie")
    # A message waiting in the ZVH's inbox: its item is checked against the typed claims.
    referral = await pol.send(request_from_example("case.referral"))
    await inproc.wait_status("politie", referral, "delivered")
    inbox = (await gem.call("GET", "/v1/inbox")).json()["items"]
    assert [i["message_id"] for i in inbox] == [referral]
    schema = schemathesis.openapi.from_dict(_bounded(await _document(gem)))
    headers = {"Authorization": f"Bearer {gem.token}"}
    assert await _in_thread(_inbox_item_conforms, schema, _url(gem), headers) == 1
    statuses = await _in_thread(_send_examples, schema, _url(gem), headers)
    assert statuses, "hypothesis generated no message"
    assert set(statuses) == {202}, statuses
    calls = await _in_thread(_fuzz_all, schema, _url(gem), headers)
    assert calls >= 12, "every operation but the stream ran"
