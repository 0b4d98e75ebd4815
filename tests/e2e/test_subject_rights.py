"""Data-subject rights on the five Veenstad nodes and the real RabbitMQ (issue 17 point 5;
docs/subject-rights.md): one journey, one federation.

The demo case's man and a second person in the same case go through a few of the case's
exchanges (the police referral, the bekendheidsvraag to every partner and their answers, a
question about the second person only). The contactpunt starts an inzageverzoek; every
organisation answers by itself, the police defer and their privacy officer releases the answer;
the report lists every exchange about the man and nothing about the second person. The ZVH
then passes an erasure on to every organisation it sent the man's data to, and each accepts it.
Every node's LDV export validates against the standard's vendored definition; the LDV read API
answers the contactpunt and refuses an adapter token.

What each step does in detail is tested in process (tests/unit/node/test_rights*.py,
test_ldv_*.py); this test shows the pieces work together across five processes' worth of nodes.

Threats: an answer or report naming another person's exchanges; a deferral answered anyway; a
notice that reaches only some recipients; an adapter token reading the LDV log.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from click.testing import CliRunner, Result

from gateway.cli import cli
from gateway.console.data.subject import subject_pseudonym
from gateway.node.rights_report import build_report, report_text
from gateway.testing.veenstad import org_by_key
from schemas.catalogue import default_catalogue
from tests.e2e.harness import ROOT, Client, Fed, pseudonym_key, request_from_example, running_fed

pytestmark = [pytest.mark.broker, pytest.mark.slow]

ORGS = ("gemeente", "politie", "om", "ggz", "veiligthuis")
OIN = {key: org_by_key(key).oin for key in ORGS}
ZVH, POL, OM, GGZ, VT = (OIN[k] for k in ORGS)
BSN = "999990019"  # the demo case's man (test range)
OTHER_BSN = "999990020"  # someone else in the same case
IDENTITY_CHECK = "paspoort getoond aan de balie van het ZVH"
#: Bound on waits for the federation to get somewhere (not a timed assert).
WAIT_S = 60
#: Set to a file name to keep the report this journey produced (docs/examples/inzage-report.txt).
REPORT_ENV = "ZVG_INZAGE_REPORT"
SUBJECT_REF = "urn:zvg:subject-ref"  # dpl.core.data_subject_id_type of a pseudonym
VENDORED = ROOT / "tests" / "vectors" / "ldv" / "processing-activity.openapi-1.1.0.yaml"


@pytest.fixture
async def five(tmp_path: Path) -> AsyncIterator[Fed]:
    async with running_fed(tmp_path, ORGS, rights=True) as fed:
        await asyncio.gather(*(fed.start(key) for key in ORGS))
        yield fed


def _as(fed: Fed, key: str, role: str) -> Client:
    """``key``'s node through the API token of ``role`` (harness tokens: ``<token>-<role>``)."""
    node = fed.nodes[key]
    return Client(dataclasses.replace(node, token=f"{node.token}-{role}"))


def _pseudonym(fed: Fed, key: str, bsn: str) -> str:
    return subject_pseudonym(pseudonym_key(fed.root, key).read_bytes().rstrip(b"\r\n"), bsn)


def _subject(ref: str) -> list[dict[str, Any]]:
    return [{"subject_ref": ref, "role": "betrokkene", "minor": False}]


async def _send(client: Client, request: dict[str, Any]) -> str:
    request.pop("processing_activity", None)  # the node's register entry for the purpose
    code, doc = await client.send(request)
    assert code == 202, doc
    return str(doc["message_id"])


async def _case(fed: Fed) -> dict[str, str]:
    """Some of the demo case's exchanges, about the man and (one question) the other person."""
    man, other = _pseudonym(fed, "gemeente", BSN), _pseudonym(fed, "gemeente", OTHER_BSN)
    referral = request_from_example("case.referral")
    referral["subjects"][0]["subject_ref"] = _pseudonym(fed, "politie", BSN)
    ids = {"referral": await _send(fed.client("politie"), referral)}
    ids["bekendheid"] = await _send(
        fed.client("gemeente"), request_from_example("info.request", subjects=_subject(man))
    )
    to_police = request_from_example(
        "info.request",
        subjects=_subject(man),
        recipients=[{"org": POL, "role": "POL"}],
        data_categories=["ID_PSEUDO"],
    )
    del to_police["body"]["identification"]  # the police are asked pseudonymously
    ids["bekendheid-pol"] = await _send(fed.client("gemeente"), to_police)
    ids["other"] = await _send(
        fed.client("gemeente"),
        request_from_example(
            "info.request", subjects=_subject(other), recipients=[{"org": GGZ, "role": "GGZ"}]
        ),
    )
    for key, role, asked in (
        ("ggz", "GGZ", "bekendheid"),
        ("om", "OM", "bekendheid"),
        ("veiligthuis", "VT", "bekendheid"),
        ("politie", "POL", "bekendheid-pol"),
    ):
        ids[f"answer-{key}"] = await _send(
            fed.client(key),
            request_from_example(
                "info.response", sender_role=role, in_reply_to=ids[asked], subjects=_subject(man)
            ),
        )
    ids["answer-other"] = await _send(
        fed.client("ggz"),
        request_from_example("info.response", in_reply_to=ids["other"], subjects=_subject(other)),
    )
    senders = {"referral": "politie", "answer-other": "ggz"}
    for label, message_id in ids.items():
        sender = senders.get(label) or label.removeprefix("answer-")
        sender = sender if sender in ORGS else "gemeente"
        await fed.client(sender).wait_status(message_id, "delivered", seconds=WAIT_S)
    return ids


async def _until(what: str, check: Any) -> Any:
    """Poll the async ``check`` until it returns something truthy (bounded by WAIT_S)."""
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while True:
        got = await check()
        if got:
            return got
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"never {what}")
        await asyncio.sleep(0.1)


def _rows(doc: dict[str, Any], org: str) -> list[tuple[str, str, tuple[str, ...], int]]:
    exchanges = doc["organisations"][org]["response"].get("exchanges", [])
    return sorted(
        (e["direction"], e["message_type"], tuple(sorted(e["organisations"])), e["count"])
        for e in exchanges
    )


async def _zvg(*args: str) -> Result:
    """``zvg`` in a thread: it calls the nodes' APIs, which this event loop serves."""
    return await asyncio.to_thread(CliRunner().invoke, cli, list(args))


async def _inzage(fed: Fed) -> dict[str, Any]:
    """The inzageverzoek: every partner answers, the police defer and release later."""
    contactpunt = _as(fed, "gemeente", "contactpunt")
    code, started = await contactpunt.request(
        "POST", "/v1/rights/requests", body={"bsn": BSN, "identity_check": IDENTITY_CHECK}
    )
    assert code == 201, started
    path = f"/v1/rights/requests/{started['request_id']}"

    async def answered(want: dict[str, str]) -> dict[str, Any] | None:
        code, doc = await contactpunt.request("GET", path)
        assert code == 200, doc
        got = {org: entry["status"] for org, entry in doc["organisations"].items()}
        return dict(doc) if got == want else None

    first = {ZVH: "answered", POL: "deferred", OM: "answered", GGZ: "answered", VT: "answered"}
    doc = await _until("answered or deferred", lambda: answered(first))
    deferral = doc["organisations"][POL]["response"]["deferral"]
    assert deferral["ground"] == "WPG"
    assert not doc["organisations"][POL]["response"].get("exchanges")

    officer = _as(fed, "politie", "privacy-officer")
    code, deferrals = await officer.request("GET", "/v1/rights/deferrals")
    assert code == 200, deferrals
    [held] = deferrals
    assert held["request_message_id"] == doc["organisations"][POL]["request_message_id"]
    assert held["released_on"] is None
    code, released = await officer.request(
        "POST", f"/v1/rights/deferrals/{held['request_message_id']}/release"
    )
    assert code == 200, released
    return dict(await _until("released", lambda: answered(dict(first, **{POL: "answered"}))))


def _check_report(doc: dict[str, Any]) -> None:
    """Every exchange of the case about the man, at the organisation that logged it; nothing
    about the other person (whose question and answer went the same day, same way, as the
    man's: they would show as a count of 2)."""
    partners = tuple(sorted((GGZ, OM, VT)))
    assert _rows(doc, ZVH) == sorted(
        [
            ("received", "info.response", (GGZ,), 1),
            ("received", "info.response", (OM,), 1),
            ("received", "info.response", (POL,), 1),
            ("received", "info.response", (VT,), 1),
            ("sent", "info.request", partners, 1),
            ("sent", "info.request", (POL,), 1),
        ]
    )
    for org in (GGZ, OM, VT):
        assert _rows(doc, org) == [
            ("received", "info.request", (ZVH,), 1),
            ("sent", "info.response", (ZVH,), 1),
        ], org
    assert _rows(doc, POL) == [
        ("received", "info.request", (ZVH,), 1),
        ("sent", "case.referral", (ZVH,), 1),
        ("sent", "info.response", (ZVH,), 1),
    ]
    assert doc["organisations"][POL]["response"]["released_from"]
    report = build_report(
        doc, names=doc["names"], catalogue=default_catalogue(), today=datetime.now(UTC).date()
    )
    text = report_text(report)
    assert "wacht nog op" not in text
    assert "Politie, basisteam Veenstad: beantwoord" in text
    assert "nu vrijgegeven" in text
    assert BSN not in text
    assert OTHER_BSN not in text
    assert "Kuipers" not in text  # no employee, no content
    if os.environ.get(REPORT_ENV):
        Path(os.environ[REPORT_ENV]).write_text(text, "utf-8")


async def _erase(fed: Fed) -> None:
    """The ZVH erases the man's data and tells every organisation it sent it to; each partner
    system takes the notice over (acks it) and the ZVH sees every notice accepted."""
    gem = fed.nodes["gemeente"]
    token = fed.root / "gemeente.adapter.token"
    token.write_text(gem.token + "\n", "utf-8")
    token.chmod(0o600)
    sent = await _zvg(
        "rights", "notice", "--config", str(gem.config), "--bsn", BSN,
        "--pseudonym-key-file", str(pseudonym_key(fed.root, "gemeente")),
        "--kind", "erase", "--sender-role", "ZVH", "--token-file", str(token),
        "--node-url", gem.url,
    )  # fmt: skip
    assert sent.exit_code == 0, sent.output
    assert "4 notice(s) sent" in sent.output
    assert BSN not in sent.output
    for key in ("politie", "om", "ggz", "veiligthuis"):
        partner = fed.client(key)

        async def notice(partner: Client = partner) -> str | None:
            for item in await partner.inbox(wait=1):
                acked = await partner.ack(item["message_id"])
                if item["claims"]["message_type"] == "rights.notice":
                    assert acked == 204
                    assert item["claims"]["body"]["kind"] == "erase"
                    return str(item["message_id"])
                # An earlier message about the man, listed just before the notice arrived, is
                # erased with it and no longer handed out (decision 0107): gone by the ack.
                assert acked in (204, 404), item["claims"]["message_type"]
            return None

        message_id = await _until(f"a notice at {key}", notice)
        await fed.client("gemeente").wait_status(message_id, "accepted", seconds=WAIT_S)
    listed = await _zvg("rights", "notices", "--config", str(gem.config), "--open")
    assert listed.exit_code == 0, listed.output
    assert "0 notice(s)" in listed.output


async def _ldv_exports_validate(fed: Fed) -> None:
    schema = yaml.safe_load(VENDORED.read_text("utf-8"))["ProcessingActivity"]
    validator = jsonschema.Draft4Validator(schema)
    for key in ORGS:
        out = fed.root / f"{key}.ldv.jsonl"
        result = await _zvg(
            "audit", "export", "--config", str(fed.nodes[key].config), "--format", "ldv",
            "--out", str(out),
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        lines = [json.loads(line) for line in out.read_text("utf-8").splitlines()]
        assert lines, key
        for line in lines:
            errors = [e.message for e in validator.iter_errors(line)]
            assert errors == [], (key, line["name"], errors)
        names = {line["name"] for line in lines}
        assert {"rights.answer", "message.receive"} <= names or key == "gemeente", (key, names)


async def _read_api(fed: Fed, bsn: str) -> list[dict[str, Any]]:
    """The ZVH's LDV lines about the person with ``bsn``, as its contactpunt reads them; an
    adapter token asking the same is refused."""
    subject = _pseudonym(fed, "gemeente", bsn)
    query = {"dpl.core.data_subject_id": subject, "dpl.core.data_subject_id_type": SUBJECT_REF}
    code, doc = await _as(fed, "gemeente", "contactpunt").request(
        "POST", "/v1/processing-activities?limit=500", body=query
    )
    assert code == 200, doc
    assert "nextCursor" not in doc or not doc["nextCursor"]
    lines: list[dict[str, Any]] = doc["processingActivities"]
    assert {line["attributes"]["dpl.core.data_subject_id"] for line in lines} <= {subject}
    code, doc = await fed.client("gemeente").request(
        "POST", "/v1/processing-activities", body=query
    )
    assert code == 403, doc
    return lines


async def test_inzage_deferral_erasure_and_ldv_across_five_nodes(five: Fed) -> None:
    fed = five
    await _case(fed)
    doc = await _inzage(fed)
    _check_report(doc)
    man, other = await _read_api(fed, BSN), await _read_api(fed, OTHER_BSN)
    assert man
    assert other
    assert {"message.send", "message.receive", "rights.request"} <= {m["name"] for m in man}
    await _erase(fed)
    await _ldv_exports_validate(fed)
    # The erasure shredded the man's personal parts at the ZVH: no line names him any more;
    # the other person's lines are all still there (and the ldv.read of the first look).
    assert await _read_api(fed, BSN) == []
    after = {(line["spanId"], line["name"]) for line in await _read_api(fed, OTHER_BSN)}
    assert {(line["spanId"], line["name"]) for line in other} < after
