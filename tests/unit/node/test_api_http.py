"""HTTP semantics of the local API, in process: a wrong method is ``405`` with ``Allow``; an
unknown route is a ``404`` problem of its own (not "No such message"); every problem ``type`` the
code can emit resolves to a page the node serves; an ``Idempotency-Key`` is bound to the parsed
request, not its bytes (issue 18, point 2)."""

from __future__ import annotations

import ast
import html
import json
from pathlib import Path

from gateway.core.retention import IDEMPOTENCY_KEEP
from gateway.node.problems import PROBLEM_TYPES
from tests.unit.node._inproc import InProcFederation, request_from_example

ROOT = Path(__file__).resolve().parents[3]


def _emitted_slugs() -> set[str]:
    """Every slug passed as the first argument of ``ApiError(...)`` anywhere in ``gateway/``."""
    slugs = set()
    for path in (ROOT / "gateway").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "ApiError"
                and node.args
            ):
                first = node.args[0]
                assert isinstance(first, ast.Constant), f"{path}: ApiError with a computed slug"
                slugs.add(str(first.value))
    return slugs


async def test_a_wrong_method_is_405_with_allow(inproc: InProcFederation) -> None:
    pol = await inproc.start("politie", connect=False)
    answer = await pol.call("PUT", "/v1/inbox")
    problem = answer.problem("method-not-allowed")
    assert answer.headers["Allow"] == "GET, HEAD"
    assert "PUT" in problem["detail"]
    answer = await pol.call("DELETE", "/v1/messages")
    answer.problem("method-not-allowed")
    assert set(answer.headers["Allow"].split(", ")) == {"GET", "HEAD", "POST"}


async def test_an_unknown_route_is_a_404_problem_that_does_not_say_no_such_message(
    inproc: InProcFederation,
) -> None:
    pol = await inproc.start("politie", connect=False)
    answer = await pol.call("GET", "/v1/nothing-here")
    problem = answer.problem("no-route")
    assert "message" not in (problem["title"] + problem["detail"]).lower()
    # A message id that is not ours is still the message's not-found.
    missing = await pol.call("GET", "/v1/messages/01a2b3c4-0000-7000-8000-000000000000")
    assert missing.problem("not-found")["title"] == "No such message"


async def test_every_problem_type_the_code_can_emit_resolves_to_a_page(
    inproc: InProcFederation,
) -> None:
    emitted = _emitted_slugs()
    assert {"invalid-request", "no-route", "method-not-allowed", "outbox-full"} <= emitted
    assert emitted <= set(PROBLEM_TYPES), "every emitted type is documented"
    pol = await inproc.start("politie", connect=False)
    # The type as a client sees it in a problem, resolved against the request's URL.
    seen = (await pol.call("GET", "/v1/directory", token=None)).json()["type"]
    assert seen == "/problems/unauthorized"
    for slug in sorted(PROBLEM_TYPES):
        status, title = PROBLEM_TYPES[slug]
        page = await pol.call("GET", f"/problems/{slug}", token=None)
        assert page.status == 200, slug
        assert page.headers["Content-Type"].startswith("text/html"), slug
        text = page.body.decode()
        assert f"{status} {slug}" in text, slug
        assert html.escape(title) in text, slug
        assert "What to do" in text, slug
    (await pol.call("GET", "/problems/no-such-type", token=None)).problem("no-route")


async def test_an_idempotency_key_with_the_same_json_pretty_printed_is_the_same_request(
    inproc: InProcFederation,
) -> None:
    """The bug: the fingerprint was the SHA-256 of the body's bytes, so a retry from a client
    that formats its JSON differently (indentation, key order) was a 409 conflict."""
    pol = await inproc.start("politie", connect=False)
    request = request_from_example("case.referral")
    key = {"Idempotency-Key": "pretty-1"}
    first = await pol.call("POST", "/v1/messages", raw=json.dumps(request).encode(), headers=key)
    assert first.status == 202, first.body
    reordered = dict(reversed(list(request.items())))
    again = await pol.call(
        "POST", "/v1/messages", raw=json.dumps(reordered, indent=4).encode(), headers=key
    )
    assert again.status == 202, again.body
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["message_id"] == first.json()["message_id"]
    # A different request under the same key is still a conflict.
    changed = {**request, "case_ref": "ZVH-2026-0999"}
    conflict = await pol.call("POST", "/v1/messages", body=changed, headers=key)
    conflict.problem("idempotency-conflict")


def test_the_idempotency_window_of_7_days_is_documented() -> None:
    assert IDEMPOTENCY_KEEP.days == 7
    api = (ROOT / "docs" / "api.md").read_text("utf-8")
    assert "kept for 7 days" in api
