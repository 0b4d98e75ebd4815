"""``GET /v1/directory`` and what an expired directory does to the node (in process).

Once the federation directory has expired (on the node's injected clock) the node sends nothing
(``503 unavailable`` with ``Retry-After``) and takes no incoming messages: they are held unacked
until a newer directory is trusted (tests/unit/node/test_store_outage.py).

Replaces, e2e on RabbitMQ → here:

- test_api_guide.py, the directory block → test_the_directory_shows_what_this_organisation_may_send
"""

from __future__ import annotations

from datetime import timedelta

from tests.unit.node._inproc import GEM, POL, InProcFederation, request_from_example
from tests.unit.node.conftest import BOTH_STORES

pytestmark = BOTH_STORES  # each test runs on SQLite and on PostgreSQL


async def test_the_directory_shows_what_this_organisation_may_send(
    inproc: InProcFederation,
) -> None:
    pol = await inproc.start("politie", connect=False)
    doc = (await pol.call("GET", "/v1/directory")).json()
    directory = pol.node.service.directory
    assert (doc["version"], doc["federation"]) == (
        directory.version,
        directory.payload.federation,
    )
    assert doc["this_org"] == {"org": POL, "name": "Politie, basisteam Veenstad", "roles": ["POL"]}
    assert {m["org"] for m in doc["members"]} == {m.oin for m in directory.payload.members}
    (referral,) = [r for r in doc["may_send"] if r["purpose"] == "ZVH.AANMELDING"]
    assert (referral["rule"], referral["message_types"], referral["as_role"]) == (
        "aanmelding-pol",
        ["case.referral"],
        ["POL"],
    )
    assert [(t["org"], t["role"]) for t in referral["to"]] == [(GEM, "ZVH")]
    assert referral["data_categories"] == [
        "ID_PSEUDO",
        "CONTACT_PROF",
        "ID_DIRECT",
        "LEEFGEBIEDEN",
        "SYSTEEM",
        "POLITIE",
        "RISICO",
        "VRIJE_TEKST",
    ]
    # Only rules that let this organisation send.
    assert all("POL" in r["as_role"] for r in doc["may_send"])


async def test_an_expired_directory_makes_a_send_a_503_with_retry_after(
    inproc: InProcFederation,
) -> None:
    pol = await inproc.start("politie")
    inproc.clock.now = pol.node.service.directory.payload.expires + timedelta(seconds=1)
    answer = await pol.call("POST", "/v1/messages", body=request_from_example("case.referral"))
    assert "has expired" in answer.problem("unavailable")["detail"]
    assert answer.headers["Retry-After"] == "300"
    assert pol.node.store.read("SELECT count(*) FROM outbox") == [(0,)]
    assert pol.node.audit() == []
