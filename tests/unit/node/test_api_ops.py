"""The ops routes and the API's own routing, in process: ``/healthz``, ``/readyz`` (the
readiness of ``gateway.node.runner.Node``), ``/metrics``, ``/v1/openapi.json``; unknown routes
and methods are problems too; the ``Server`` header names no versions.

Replaces, e2e on RabbitMQ → here:

- test_node_flow.py::test_ops_endpoints
  → test_healthz_answers_while_the_process_runs,
  test_readyz_is_200_when_the_broker_store_and_directory_are_fine,
  test_the_openapi_document_describes_every_route, test_metrics_show_the_outbox_and_inbox_gauges
- test_api_guide.py, the health and metrics blocks → the same tests
"""

from __future__ import annotations

import logging
import re
import sqlite3

import pytest

from gateway.node.gauges import run_gauges
from tests.unit.node._inproc import InProcFederation, request_from_example
from tests.unit.node.conftest import BOTH_STORES

pytestmark = BOTH_STORES  # each test runs on SQLite and on PostgreSQL


def _sample(text: str, name: str, *labels: str) -> list[float]:
    """The values of the Prometheus samples ``name`` (with or without labels) whose labels
    include ``labels``."""
    samples = re.findall(rf"^{name}(?:\{{([^}}]*)\}})? (\S+)$", text, re.M)
    return [float(v) for found, v in samples if all(label in found for label in labels)]


async def test_healthz_answers_while_the_process_runs(inproc: InProcFederation) -> None:
    pol = await inproc.start("politie", connect=False)
    answer = await pol.call("GET", "/healthz", token=None)
    assert (answer.status, answer.json()) == (200, {"status": "ok"})


async def test_readyz_is_503_naming_the_broker_until_connected(inproc: InProcFederation) -> None:
    pol = await inproc.start("politie", connect=False)
    answer = await pol.call("GET", "/readyz", token=None)
    assert answer.status == 503
    doc = answer.json()
    assert doc["ready"] is False
    assert doc["checks"]["broker"] == {"ok": False}
    assert doc["checks"]["consumer"] == {"ok": False, "role": "stopped"}
    assert doc["checks"]["store"] == {"ok": True}
    assert (doc["checks"]["directory"]["ok"], doc["checks"]["directory"]["state"]) == (
        True,
        "valid",
    )


async def test_readyz_is_503_and_sends_fail_once_the_store_failed_closed(
    inproc: InProcFederation, caplog: pytest.LogCaptureFixture
) -> None:
    pol = await inproc.start("politie")
    assert (await pol.call("GET", "/readyz", token=None)).status == 200

    def broken(_db: sqlite3.Connection) -> None:  # e.g. the audit tree's catch-up finds a gap
        raise RuntimeError("a commit hook failed")

    pol.node.store.on_commit(broken)
    with caplog.at_level(logging.CRITICAL, logger="gateway.node"):
        first = await pol.call("GET", "/readyz", token=None)  # its store probe meets the error
    assert any(r.levelno == logging.CRITICAL for r in caplog.records)
    for answer in (first, await pol.call("GET", "/readyz", token=None)):
        assert answer.status == 503
        assert answer.json()["checks"]["store"] == {"ok": False}
    send = await pol.call("POST", "/v1/messages", body=request_from_example("case.referral"))
    assert send.problem("unavailable")["status"] == 503


async def test_healthz_fails_once_the_store_failed_closed_so_a_liveness_probe_restarts_it(
    inproc: InProcFederation, caplog: pytest.LogCaptureFixture
) -> None:
    """Found by the chaos soak (decision 0115): a PostgreSQL restart fails the store closed in
    every process of the organisation ("until the node restarts"), but ``/healthz`` stayed 200,
    so no liveness probe or supervisor ever restarted them: the organisation was down for good."""
    pol = await inproc.start("politie")
    assert (await pol.call("GET", "/healthz", token=None)).status == 200

    def broken(_db: sqlite3.Connection) -> None:  # e.g. the database connection was lost
        raise RuntimeError("a commit hook failed")

    pol.node.store.on_commit(broken)
    with caplog.at_level(logging.CRITICAL, logger="gateway.node"):
        assert (await pol.call("GET", "/readyz", token=None)).status == 503
    answer = await pol.call("GET", "/healthz", token=None)
    assert answer.status == 503
    assert answer.json()["status"] == "store failed closed: restart the process"


async def test_readyz_is_200_when_the_broker_store_and_directory_are_fine(
    inproc: InProcFederation,
) -> None:
    pol = await inproc.start("politie")
    answer = await pol.call("GET", "/readyz", token=None)
    assert answer.status == 200, answer.body
    doc = answer.json()
    assert doc["ready"] is True
    assert {name: check["ok"] for name, check in doc["checks"].items()} == {
        "broker": True,
        "consumer": True,
        "directory": True,
        "store": True,
    }
    assert doc["checks"]["directory"]["version"] == pol.node.service.directory.version


async def test_the_openapi_document_describes_every_route(inproc: InProcFederation) -> None:
    pol = await inproc.start("politie", connect=False)
    answer = await pol.call("GET", "/v1/openapi.json")
    assert answer.status == 200
    paths = answer.json()["paths"]
    served: dict[str, set[str]] = {}
    for route in pol.client.app.router.routes() if pol.client.app else ():
        path = route.resource.canonical if route.resource is not None else ""
        if route.method != "HEAD":
            served.setdefault(path, set()).add(route.method.lower())
    assert {p: set(ops) for p, ops in paths.items()} == served


async def test_metrics_show_the_outbox_and_inbox_gauges(inproc: InProcFederation) -> None:
    pol = await inproc.start("politie", connect=False)
    await pol.send(request_from_example("case.referral"))
    service = pol.node.service
    service.ctx.spawn(run_gauges(service.ctx), "gauges")

    async def pending_shown() -> bool:
        text = (await pol.call("GET", "/metrics", token=None)).body.decode()
        return _sample(text, "zvg_outbox_pending") == [1.0]

    await inproc.broker.until(pending_shown, "the outbox gauge shows the queued message")
    answer = await pol.call("GET", "/metrics", token=None)
    assert answer.headers["Content-Type"] == "text/plain; charset=utf-8"
    text = answer.body.decode()
    assert _sample(text, "zvg_inbox_waiting") == [0.0]
    # The other (type, purpose) series are there at 0 from the start.
    queued = _sample(text, "zvg_messages_total", 'direction="out"', 'outcome="queued"')
    assert sorted(queued)[-2:] == [0.0, 1.0]
    assert sum(queued) == 1.0


async def test_every_answer_names_the_server_without_versions(inproc: InProcFederation) -> None:
    pol = await inproc.start("politie", connect=False)
    for path in ("/healthz", "/v1/directory", "/v1/nothing-here"):
        assert (await pol.call("GET", path)).headers["Server"] == "zv-gateway"


async def test_requests_while_the_store_failed_closed_log_one_line_each_without_a_traceback(
    inproc: InProcFederation, caplog: pytest.LogCaptureFixture
) -> None:
    """Found in the chaos soak's logs: every request a process answered 503 while its store was
    down was logged as an "unexpected error" with a traceback (about 7,400 such lines in ten
    minutes), burying what an operator needs to see. A store outage is expected: one warning
    line per request naming the store, no traceback, and the adapter a 503 problem to retry."""
    pol = await inproc.start("politie")

    def broken(_db: sqlite3.Connection) -> None:  # e.g. the database connection was lost
        raise RuntimeError("a commit hook failed")

    pol.node.store.on_commit(broken)
    with caplog.at_level(logging.CRITICAL, logger="gateway.node"):
        assert (await pol.call("GET", "/readyz", token=None)).status == 503
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="gateway.api"):
        send = await pol.call("POST", "/v1/messages", body=request_from_example("case.referral"))
    problem = send.problem("unavailable")
    assert problem["status"] == 503
    assert send.headers["Retry-After"]
    lines = [r for r in caplog.records if r.name == "gateway.api"]
    assert [(r.levelno, r.exc_info) for r in lines] == [(logging.WARNING, None)], lines
    assert "store" in lines[0].getMessage()
