"""``zvg audit export --format ldv``: the audit log of both nodes of an in-process exchange as
Logboek Dataverwerkingen lines, validated against the standard's published definition of a
line (the ``ProcessingActivity`` schema of the read extension's OpenAPI 1.1.0, vendored in
tests/vectors/ldv with its source and licence), one line per data subject (docs/decisions/0098).

Lives with the node tests for the in-process federation fixture (``inproc``).
"""

from __future__ import annotations

import json
import re
import sqlite3
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import jsonschema
import yaml
from click.testing import CliRunner

from gateway.audit.inspect import open_readonly
from gateway.audit.ldv import SUBJECT_ID_TYPE, LdvExport, ldv_lines
from gateway.cli import cli
from gateway.node.activities import processing_activity
from tests.unit.node._inproc import ApiNode, InProcFederation
from tests.unit.node.test_audit_trace_ids import run_exchange

VENDORED = Path(__file__).parents[2] / "vectors" / "ldv" / "processing-activity.openapi-1.1.0.yaml"


def _schema() -> dict[str, Any]:
    schema = yaml.safe_load(VENDORED.read_text("utf-8"))["ProcessingActivity"]
    assert isinstance(schema, dict)
    return schema


def _export(node: ApiNode, tmp_path: Path) -> list[dict[str, Any]]:
    out = tmp_path / f"{node.org}.ldv.jsonl"
    config = node.node.config.source
    result = CliRunner().invoke(
        cli, ["audit", "export", "--config", str(config), "--format", "ldv", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "LDV line(s)" in result.output
    assert out.stat().st_mode & 0o077 == 0, "subject pseudonyms: owner only"
    return [json.loads(line) for line in out.read_text("utf-8").splitlines()]


def _is_uri(text: str) -> bool:
    parsed = urlparse(text)
    return bool(parsed.scheme) and bool(parsed.netloc or parsed.path)


async def test_the_ldv_export_of_both_nodes_validates_against_the_published_schema(
    inproc: InProcFederation, tmp_path: Path
) -> None:
    pol, gem, _ids = await run_exchange(inproc)
    validator = jsonschema.Draft4Validator(_schema())
    for node in (pol, gem):
        lines = _export(node, tmp_path)
        assert lines
        for line in lines:
            errors = [e.message for e in validator.iter_errors(line)]
            assert errors == [], (line["name"], errors)
            # What the schema leaves to the normative text: 16- and 8-byte ids, URIs.
            assert re.fullmatch("[0-9a-f]{32}", line["traceId"]), line
            assert re.fullmatch("[0-9a-f]{16}", line["spanId"]), line
            attributes = line["attributes"]
            assert _is_uri(attributes["dpl.core.processing_activity_id"]), line
            assert attributes["dpl.core.processing_activity_id"] == line["processingActivityId"]
            assert attributes["dpl.core.data_subject_id_type"] == SUBJECT_ID_TYPE
            assert attributes["dpl.core.data_subject_id"].startswith("sub-")
            processor = attributes.get("dpl.core.foreign_operation.processor")
            assert processor is None or _is_uri(processor)
            assert line["startTime"] <= line["endTime"]
        names = {line["name"] for line in lines}
        assert {"message.deliver", "access"} <= names or {"message.publish", "access"} <= names
    # No schema can be fooled by an empty line: the validator refuses a line without subject.
    bad = dict(lines[0], attributes={"dpl.core.processing_activity_id": "urn:x:y"})
    assert list(validator.iter_errors(bad))


async def test_a_record_about_three_subjects_is_three_lines_one_subject_each(
    inproc: InProcFederation,
) -> None:
    pol, gem, message_ids = await run_exchange(inproc)
    (sent, *_) = pol.node.audit(operation="message.send", message_id=message_ids[0])
    subjects = sent["personal"]["data_subjects"]
    assert len(subjects) == 3
    for node, names in (
        (pol, ("message.send", "message.publish", "receipt.receive", "access")),
        (gem, ("message.receive", "message.deliver", "adapter.ack", "receipt.send", "access")),
    ):
        with open_readonly(node.node.config.store_path) as db:
            lines = list(
                ldv_lines(
                    db, org=node.org, activity_of=partial(processing_activity, node.node.config)
                )
            )
        for name in names:
            of_record: dict[int, list[str]] = {}
            for line in lines:
                a = line["attributes"]
                if line["name"] == name and a.get("zvg.message_id") == message_ids[0]:
                    of_record.setdefault(a["zvg.audit_index"], []).append(
                        a["dpl.core.data_subject_id"]
                    )
            assert of_record, name
            for got in of_record.values():
                assert got == subjects, name


async def test_records_about_no_subject_and_shredded_ones_are_counted_not_written(
    inproc: InProcFederation, tmp_path: Path
) -> None:
    pol, _gem, _ids = await run_exchange(inproc)
    copy = sqlite3.connect(tmp_path / "copy.db")
    with open_readonly(pol.node.config.store_path) as db:
        db.backup(copy)
    total = copy.execute("SELECT count(*) FROM audit_records").fetchone()[0]
    # Record 0 past retention (personal part shredded); the last made about no one and no
    # message (as a directory or key record is).
    copy.execute("UPDATE audit_records SET personal=NULL, salt=NULL WHERE idx=0")
    (view_text,) = copy.execute(
        "SELECT view FROM audit_records WHERE idx=?", (total - 1,)
    ).fetchone()
    view = {**json.loads(view_text), "message_id": None}
    copy.execute(
        "UPDATE audit_records SET view=?, personal=? WHERE idx=?",
        (
            json.dumps(view),
            json.dumps({"case_ref": None, "data_subjects": [], "actor": None}),
            total - 1,
        ),
    )
    report = LdvExport()
    activity = partial(processing_activity, pol.node.config)
    written = {
        line["attributes"]["zvg.audit_index"]
        for line in ldv_lines(copy, org=pol.org, activity_of=activity, report=report)
    }
    copy.close()
    assert (report.records, report.shredded, report.no_subject) == (total, 1, 1)
    assert written == set(range(1, total - 1))
