"""The LDV read API, ``POST /v1/processing-activities`` (issue 17 point 2; decision 0102):
answers validated against the read extension's OpenAPI document (1.1.0, vendored unchanged in
tests/vectors/ldv/lezen-1.1.0 with its source and licence), the 400 without a trace,
processing activity or subject, the roles, the cursor pagination, the BSN query, and the
``ldv.read`` audit record of every call.
"""

from __future__ import annotations

import json
import logging
import os
from functools import cache, partial
from pathlib import Path
from typing import Any

import pytest
from openapi_schema_validator import OAS30Validator, oas30_format_checker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from gateway.audit.inspect import open_readonly
from gateway.audit.ldv import ldv_lines
from gateway.audit.ldv_read import LdvQuery, read_page
from gateway.console.data.subject import subject_pseudonym
from gateway.node.activities import processing_activity
from gateway.node.config import Token, hash_token
from gateway.node.ldv_api import read_line
from tests.pg import STORES
from tests.unit.node._inproc import GEM, Answer, ApiNode, InProcFederation, request_from_example
from tests.unit.node.test_audit_trace_ids import ACTOR, run_exchange

VENDORED = Path(__file__).parents[2] / "vectors" / "ldv" / "lezen-1.1.0"
BASE = "https://ldv.invalid/media/"
ROUTE = "/v1/processing-activities"
#: Two fictional BSNs (they pass the elfproef): the person asked about and someone else.
BSN, OTHER_BSN = "111222333", "123456782"


@cache
def _registry() -> Registry[Any]:
    registry: Registry[Any] = Registry()
    for name in ("openapi.json", "ProblemJson.schema.json", "attributes.schema.json"):
        doc = json.loads((VENDORED / name).read_text("utf-8"))
        resource = Resource.from_contents(doc, default_specification=DRAFT4)
        registry = registry.with_resource(BASE + name, resource)
    return registry


def _errors(component: str, instance: Any) -> list[str]:
    """What the extension's document says is wrong with ``instance`` as ``component``."""
    validator = OAS30Validator(
        {"$ref": f"{BASE}openapi.json#/components/schemas/{component}"},
        registry=_registry(),
        format_checker=oas30_format_checker,
    )
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(instance)]


def _documented(path: str, method: str, status: int) -> str:
    """The schema name the document gives the answer ``status`` of ``method path``."""
    doc = json.loads((VENDORED / "openapi.json").read_text("utf-8"))
    ref = doc["paths"][path][method]["responses"][str(status)]["$ref"]
    response = doc["components"]["responses"][ref.rsplit("/", 1)[1]]
    (media,) = response["content"].values()
    return str(media["schema"]["$ref"].rsplit("/", 1)[1])


def _token(node: ApiNode, role: str) -> str:
    """The token ``write_node_config`` made for ``role`` (adapter, auditor, contactpunt...)."""
    return {"adapter": node.token, "auditor": node.auditor}.get(role, f"{node.token}-{role}")


async def _read(
    node: ApiNode,
    query: Any,
    role: str = "privacy-officer",
    params: str = "",
    *,
    conform: bool = True,
) -> Answer:
    """``query`` (as the document defines it, unless not ``conform``), its answer checked
    against the document's schema for the answer's status."""
    if conform:
        assert _errors("ProcessingActivityRequest", query) == [], query
    answer = await node.call(
        "POST", ROUTE + params, body=query, token=_token(node, role), headers=ACTOR
    )
    schema = _documented("/processing-activities", "post", answer.status)
    body = answer.json()
    assert _errors(schema, body) == [], (answer.status, body)
    if answer.status == 200:
        assert answer.headers["API-Version"] == "1.1.0"
    return answer


async def _walk(
    node: ApiNode, query: dict[str, Any], limit: int, role: str = "privacy-officer"
) -> list[dict[str, Any]]:
    """Every line of ``query``, page by page (``limit`` lines a page)."""
    lines: list[dict[str, Any]] = []
    params = f"?limit={limit}"
    for _ in range(10_000):
        answer = await _read(node, query, role, params=params)
        assert answer.status == 200, answer.body
        doc = answer.json()
        lines += doc["processingActivities"]
        assert len(doc["processingActivities"]) <= limit
        if "nextCursor" not in doc:
            assert "Link" not in answer.headers
            return lines
        assert answer.headers["Link"].endswith('; rel="next"')
        params = answer.headers["Link"].split(ROUTE, 1)[1].split(">", 1)[0]
    raise AssertionError("the pages never ended")


def _export(node: ApiNode) -> list[dict[str, Any]]:
    """Every line of ``zvg audit export --format ldv`` in the read API's form."""
    activity = partial(processing_activity, node.node.config)
    with open_readonly(node.node.config.store_path) as db:
        return [read_line(x) for x in ldv_lines(db, org=node.org, activity_of=activity)]


def _key(tmp_path: Path) -> Path:
    path = tmp_path / "pseudonym.key"
    path.write_bytes(os.urandom(32).hex().encode())
    path.chmod(0o600)
    return path


#: The subject references of tests/examples/case.referral.json (subjects and body).
EXAMPLE_SUBJECTS = ("sub-7f3KqZ2mLw9xTa", "sub-c1Ra8Hn4Pe2Ydk", "sub-c2Wm5Jt7Qf3Ubs")


async def _send_about(pol: ApiNode, *subjects: str) -> str:
    """The example referral about ``subjects`` (three) instead of the example's."""
    text = json.dumps(request_from_example("case.referral"))
    for old, new in zip(EXAMPLE_SUBJECTS, subjects, strict=True):
        text = text.replace(old, new)
    return await pol.send(json.loads(text), headers=ACTOR)


def _reads(node: ApiNode) -> list[dict[str, Any]]:
    return node.node.audit(operation="ldv.read")


async def test_the_answers_validate_against_the_read_extensions_openapi_document(
    inproc: InProcFederation,
) -> None:
    pol, gem, message_ids = await run_exchange(inproc)
    lines = _export(gem)
    line = next(x for x in lines if x["attributes"].get("zvg.message_id") == message_ids[0])
    queries = [
        {"traceId": line["traceId"]},  # the UUID form the document gives
        {"traceId": line["traceId"].replace("-", "")},  # the standard's 32 hex digits
        {"dpl.core.processing_activity_id": line["processingActivityId"]},
        {"dpl.core.data_subject_id": line["attributes"]["dpl.core.data_subject_id"]},
        {
            "dpl.core.data_subject_id": line["attributes"]["dpl.core.data_subject_id"],
            "dpl.core.data_subject_id_type": "urn:zvg:subject-ref",
            "startTime": line["startTime"],
            "endTime": line["endTime"],
        },
    ]
    for query in queries:
        # The 32 hex digits are ours (as the export and OTLP write them): not the document's.
        answer = await _read(gem, query, conform=len(query.get("traceId", "-")) != 32)
        assert answer.status == 200, answer.body
        doc = answer.json()
        assert doc["metadata"]["logbookId"] == f"urn:zvg:{GEM}:audit-log"
        assert line in doc["processingActivities"], query
        for got in doc["processingActivities"]:
            assert got in lines  # the export's lines, in the read extension's form
    # What the schema cannot see: the trace id is the message's, in UUID form.
    assert len(line["traceId"]) == 36
    # A read on the other node finds its own lines of the same message.
    answer = await _read(pol, {"dpl.core.data_subject_id": queries[3]["dpl.core.data_subject_id"]})
    assert {x["attributes"]["zvg.message_id"] for x in answer.json()["processingActivities"]} >= {
        message_ids[0]
    }
    # An unknown token: the document's 401.
    answer = await gem.call("POST", ROUTE, body=queries[0], token="no-such-token-0123456789")
    assert answer.status == 401
    assert _errors(_documented("/processing-activities", "post", 401), answer.json()) == []


@pytest.mark.parametrize(
    "query",
    [{}, {"startTime": "2026-03-01T00:00:00Z"}, {"dpl.core.data_subject_id_type": "BSN"}],
)
async def test_a_query_without_trace_activity_or_subject_is_400_problem_json(
    inproc: InProcFederation, query: dict[str, Any]
) -> None:
    gem = await inproc.start("gemeente", connect=False)
    answer = await gem.call("POST", ROUTE, body=query, token=_token(gem, "contactpunt"))
    answer.problem("invalid-request")
    assert _errors("Nlgovproblem", answer.json()) == []
    (record,) = _reads(gem)
    assert (record["view"]["status"], record["view"]["reason"]) == ("rejected", "invalid-request")


@pytest.mark.parametrize(
    "body",
    [
        b"[1]",
        b'{"traceId": "not-a-trace"}',
        b'{"traceId": "' + b"a" * 32 + b'", "startTime": "yesterday"}',
        b'{"traceId": "' + b"a" * 32 + b'", "unknown": 1}',
        b'{"dpl.core.data_subject_id": "x", "dpl.core.data_subject_id_type": "personeelsnummer"}',
        b'{"traceId": "' + b"a" * 32 + b'", "startTime": 2000, "endTime": 1000}',
    ],
)
async def test_a_malformed_query_is_400_problem_json(inproc: InProcFederation, body: bytes) -> None:
    gem = await inproc.start("gemeente", connect=False)
    answer = await gem.call("POST", ROUTE, raw=body, token=_token(gem, "privacy-officer"))
    answer.problem("invalid-request")


@pytest.mark.parametrize("role", ["adapter", "auditor"])
async def test_an_adapter_or_auditor_token_is_refused_403_and_the_refusal_recorded(
    inproc: InProcFederation, role: str
) -> None:
    gem = await inproc.start("gemeente", connect=False)
    answer = await gem.call(
        "POST", ROUTE, body={"traceId": "ab" * 16}, token=_token(gem, role), headers=ACTOR
    )
    answer.problem("forbidden")
    assert _errors("Nlgovproblem", answer.json()) == []
    (record,) = _reads(gem)
    assert record["view"]["status"] == "denied"
    assert record["view"]["detail"]["client_role"] == role
    assert record["personal"]["actor"]["id"] == ACTOR["ZVG-Actor"]


async def test_a_contactpunt_token_reads_about_a_person_only(inproc: InProcFederation) -> None:
    """As in the console, the contactpunt asks about one person: a query by trace or processing
    activity alone is 403 (and recorded); with the person's id it is answered."""
    _pol, gem, _ids = await run_exchange(inproc)
    line = _export(gem)[0]
    subject = line["attributes"]["dpl.core.data_subject_id"]
    for query in (
        {"traceId": line["traceId"]},
        {"dpl.core.processing_activity_id": line["processingActivityId"]},
    ):
        answer = await gem.call("POST", ROUTE, body=query, token=_token(gem, "contactpunt"))
        assert "data_subject_id" in answer.problem("forbidden")["detail"]
        answer = await _read(gem, {**query, "dpl.core.data_subject_id": subject}, "contactpunt")
        assert line in answer.json()["processingActivities"]
    refused = [r for r in _reads(gem) if r["view"]["status"] == "denied"]
    assert [r["view"]["reason"] for r in refused] == ["subject-required"] * 2


def test_a_token_cannot_carry_the_consoles_security_officer_role() -> None:
    """The console's security-officer is no API role: a token cannot carry it (only
    contactpunt and privacy-officer read, decision 0102)."""
    with pytest.raises(ValueError, match="role"):
        Token(name="so", role="security-officer", sha256=hash_token("x"))  # type: ignore[arg-type]  # a role the model refuses: the point


@pytest.mark.parametrize("limit", [1, 2, 5])
async def test_the_pages_walk_every_line_exactly_once(inproc: InProcFederation, limit: int) -> None:
    pol, gem, _ids = await run_exchange(inproc)
    for node in (pol, gem):
        everything = _export(node)
        for query in (
            {"dpl.core.data_subject_id": everything[0]["attributes"]["dpl.core.data_subject_id"]},
            {"dpl.core.processing_activity_id": everything[0]["processingActivityId"]},
        ):
            (key, value), *_ = query.items()
            expected = [
                x
                for x in everything
                if value in (x["attributes"]["dpl.core.data_subject_id"], x["processingActivityId"])
            ]
            walked = await _walk(node, query, limit)
            assert walked == expected, (node.org, key)
            assert len(walked) > limit


async def test_pages_of_a_short_scan_may_be_empty_and_still_lead_on(
    inproc: InProcFederation,
) -> None:
    """A page reads at most ``scan_max`` records: a rare line far in the log is reached through
    pages that found nothing, each with a next position, and is read once."""
    _pol, gem, _ids = await run_exchange(inproc)
    everything = _export(gem)
    last = everything[-1]
    query = LdvQuery(trace_id=last["traceId"].replace("-", ""))
    activity = partial(processing_activity, gem.node.config)
    found: list[dict[str, Any]] = []
    position: tuple[int, int] | None = (0, 0)
    pages = 0
    while position is not None:
        page = read_page(
            gem.node.service.audit.store.read,
            query,
            position=position,
            limit=1,
            org=gem.org,
            activity_of=activity,
            scan_max=1,
        )
        found += [read_line(x) for x in page.lines]
        position, pages = page.next_position, pages + 1
    assert found == [x for x in everything if x["traceId"] == last["traceId"]]
    assert pages > len(found)


async def test_a_cursor_serves_only_its_own_query(inproc: InProcFederation) -> None:
    _pol, gem, _ids = await run_exchange(inproc)
    subject = _export(gem)[0]["attributes"]["dpl.core.data_subject_id"]
    first = await _read(gem, {"dpl.core.data_subject_id": subject}, params="?limit=1")
    cursor = first.json()["nextCursor"]
    other = {"dpl.core.data_subject_id": subject, "startTime": "2000-01-01T00:00:00Z"}
    answer = await gem.call(
        "POST", f"{ROUTE}?cursor={cursor}", body=other, token=_token(gem, "contactpunt")
    )
    answer.problem("invalid-request")
    # Nothing of the query is in the cursor (an opaque position and a digest).
    assert subject not in cursor
    assert subject.encode() not in __import__("base64").urlsafe_b64decode(cursor + "==")


async def test_a_bsn_query_finds_the_pseudonymised_records_and_never_logs_the_bsn(
    inproc: InProcFederation, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key_file = _key(tmp_path)
    key = key_file.read_bytes()
    mine, other = subject_pseudonym(key, BSN), subject_pseudonym(key, OTHER_BSN)
    pol = await inproc.start("politie", console__pseudonym_key_file=str(key_file))
    await inproc.start("gemeente")
    about_both = await _send_about(pol, mine, other, "sub-h0useh0ldMember1")
    about_other = await _send_about(pol, other, "sub-h0useh0ldMember2", "sub-h0useh0ldMember3")
    for message_id in (about_both, about_other):
        await inproc.wait_status("politie", message_id, "delivered", "accepted")
    caplog.set_level(logging.DEBUG)
    for query in (
        {"dpl.core.data_subject_id": BSN, "dpl.core.data_subject_id_type": "BSN"},
        {"dpl.core.data_subject_id": BSN},  # nine digits: taken as a BSN
    ):
        answer = await _read(pol, query, "contactpunt")
        lines = answer.json()["processingActivities"]
        assert lines
        assert {x["attributes"]["dpl.core.data_subject_id"] for x in lines} == {mine}
        assert {x["attributes"]["zvg.message_id"] for x in lines} == {about_both}
        assert BSN.encode() not in answer.body
    # The calls are recorded with the pseudonym, in the personal part; the BSN is nowhere.
    records = _reads(pol)
    assert len(records) == 2
    for record in records:
        assert record["personal"]["data_subjects"] == [mine]
        assert record["view"]["detail"]["filter.data_subject_id_type"] == "BSN"
        assert record["view"]["detail"]["count"] == len(lines)
        assert record["personal"]["actor"]["id"] == ACTOR["ZVG-Actor"]
    everything = json.dumps(pol.node.audit(limit=1_000_000))
    assert BSN not in everything
    assert BSN not in caplog.text
    # An invalid BSN is refused without repeating it.
    answer = await pol.call(
        "POST",
        ROUTE,
        body={"dpl.core.data_subject_id": "111222334"},
        token=_token(pol, "contactpunt"),
    )
    assert "111222334" not in answer.problem("invalid-request")["detail"]
    assert "111222334" not in json.dumps(pol.node.audit(limit=1_000_000))


async def test_a_bsn_query_without_a_pseudonym_key_is_400(inproc: InProcFederation) -> None:
    gem = await inproc.start("gemeente", connect=False)
    answer = await gem.call(
        "POST", ROUTE, body={"dpl.core.data_subject_id": BSN}, token=_token(gem, "contactpunt")
    )
    assert "pseudonym key" in answer.problem("invalid-request")["detail"]


async def test_every_read_is_an_audit_record_of_who_what_and_how_many(
    inproc: InProcFederation,
) -> None:
    _pol, gem, _ids = await run_exchange(inproc)
    line = _export(gem)[0]
    query = {
        "dpl.core.processing_activity_id": line["processingActivityId"],
        "startTime": "2000-01-01T00:00:00Z",
    }
    answer = await _read(gem, query, role="privacy-officer", params="?limit=2")
    count = len(answer.json()["processingActivities"])
    (record,) = _reads(gem)
    view, personal = record["view"], record["personal"]
    assert view["status"] == "ok"
    assert view["detail"]["count"] == count == 2
    assert view["detail"]["client"] == "gemeente-privacy-officer"
    assert view["detail"]["filter.processing_activity_id"] == line["processingActivityId"]
    assert view["detail"]["filter.start_time"].startswith("2000-01-01T00:00:00")
    actor = (personal["actor"]["id"], personal["actor"]["role"])
    assert actor == (ACTOR["ZVG-Actor"], ACTOR["ZVG-Actor-Role"])
    assert personal["data_subjects"] == []
    # The read itself is no line: it concerns no data subject.
    again = await _walk(gem, query, 500)
    assert all(x["name"] != "ldv.read" for x in again)


@pytest.mark.parametrize("inproc", STORES, indirect=True)
async def test_the_read_api_reads_a_postgresql_store_as_a_sqlite_one(
    inproc: InProcFederation,
) -> None:
    """The queries are the store's SQL on both stores (the other tests use SQLite)."""
    pol, gem, message_ids = await run_exchange(inproc)
    (sent,) = pol.node.audit(operation="message.send", message_id=message_ids[0])
    subject = sent["personal"]["data_subjects"][0]
    for node in (pol, gem):
        query = {"dpl.core.data_subject_id": subject}
        whole = await _walk(node, query, 500, "contactpunt")
        assert whole == await _walk(node, query, 2, "contactpunt")
        assert {x["attributes"]["dpl.core.data_subject_id"] for x in whole} == {subject}
        names = {x["name"] for x in whole}
        assert {"message.send", "message.publish"} <= names or {"message.receive"} <= names
        by_trace = await _read(node, {"traceId": whole[-1]["traceId"]})
        assert whole[-1] in by_trace.json()["processingActivities"]
