"""Search the audit log through the console's indexes: by subject, case, partner and time,
paginated, with what each role may ask and see."""

from __future__ import annotations

import os
import random
import sqlite3
from dataclasses import replace
from datetime import timedelta

import pytest

from adapters._runtime import Pseudonymiser
from gateway.audit import inspect
from gateway.audit.log import AuditLog
from gateway.audit.search import RecordQuery, search
from gateway.console.data.records import (
    BadQuery,
    NotAllowed,
    OrgRef,
    RecordRow,
    SearchRequest,
    search_records,
    to_csv,
)
from gateway.console.roles import Role
from tests.console.data.conftest import GGZ, NAMES, NOW, POLITIE, ZVH, Log, msg

KEY = b"gemeente-veenstad-pseudonym-key!"
BSN = "999990019"
OFFICER = Role.SECURITY_OFFICER


def run(
    db: sqlite3.Connection, request: SearchRequest, role: Role = OFFICER
) -> list[tuple[int, str | None]]:
    page = search_records(db, role, request, pseudonym_key=KEY, names=NAMES)
    return [(r.idx, r.message_id) for r in page.rows]


async def test_a_search_by_subject_finds_only_that_subjects_records_newest_first(
    audit: Log, reader: sqlite3.Connection
) -> None:
    await audit.add(
        msg(1, "message.send", at=NOW - timedelta(hours=3), subjects=("sub-aaaa",)),
        msg(2, "message.send", at=NOW - timedelta(hours=2), subjects=("sub-bbbb", "sub-aaaa")),
        msg(3, "message.send", at=NOW - timedelta(hours=1), subjects=("sub-bbbb",)),
    )
    assert [i for i, _ in run(reader, SearchRequest(subject="sub-aaaa"))] == [1, 0]
    assert [i for i, _ in run(reader, SearchRequest(subject="sub-bbbb"))] == [2, 1]
    assert run(reader, SearchRequest(subject="sub-cccc")) == []


async def test_a_bsn_is_searched_as_the_adapters_pseudonym_and_never_kept_in_the_page(
    audit: Log, reader: sqlite3.Connection
) -> None:
    pseudonym = Pseudonymiser(KEY).subject_ref("bsn", BSN)
    await audit.add(msg(1, "message.receive", at=NOW, sender=GGZ, subjects=(pseudonym,)))
    page = search_records(
        reader, OFFICER, SearchRequest(subject=BSN), pseudonym_key=KEY, names=NAMES
    )
    assert [r.subjects for r in page.rows] == [(pseudonym,)]
    assert page.asked == {"subject": "(BSN)"}
    assert BSN not in repr(page)


async def test_an_invalid_bsn_is_refused_without_repeating_it(reader: sqlite3.Connection) -> None:
    with pytest.raises(BadQuery) as caught:
        run(reader, SearchRequest(subject="123456789"))  # fails the elfproef
    assert "123456789" not in str(caught.value)


async def test_a_bsn_without_a_pseudonym_key_is_refused(reader: sqlite3.Connection) -> None:
    with pytest.raises(BadQuery):
        search_records(reader, OFFICER, SearchRequest(subject=BSN), pseudonym_key=None, names=NAMES)


async def test_pages_follow_each_other_without_overlap_or_gap(
    audit: Log, reader: sqlite3.Connection
) -> None:
    # Two records share one time: the cursor's index breaks the tie.
    await audit.add(
        *(msg(i, "message.send", at=NOW - timedelta(minutes=i // 2)) for i in range(11))
    )
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        page = search_records(
            reader,
            OFFICER,
            SearchRequest(case_ref="Veenstad-2026-031", cursor=cursor, page_size=3),
            pseudonym_key=KEY,
            names=NAMES,
        )
        seen += [r.idx for r in page.rows]
        pages += 1
        cursor = page.next_cursor
        if cursor is None:
            break
    assert pages == 4
    assert sorted(seen) == list(range(11))
    assert len(seen) == len(set(seen))
    times = [(NOW - timedelta(minutes=i // 2), i) for i in seen]
    assert times == sorted(times, reverse=True)


async def test_a_forged_cursor_is_a_bad_query(reader: sqlite3.Connection) -> None:
    with pytest.raises(BadQuery):
        run(reader, SearchRequest(cursor="1; DROP TABLE audit_records"))


async def test_a_search_by_partner_and_time_range_finds_sent_and_received_records(
    audit: Log, reader: sqlite3.Connection
) -> None:
    await audit.add(
        msg(1, "message.send", at=NOW - timedelta(days=3), recipients=(POLITIE,)),
        msg(2, "message.send", at=NOW - timedelta(days=1), recipients=(POLITIE, GGZ)),
        msg(3, "message.receive", at=NOW - timedelta(hours=5), sender=GGZ, recipients=(ZVH,)),
        msg(4, "receipt.receive", at=NOW - timedelta(hours=4), recipients=(GGZ,), peer=GGZ),
        msg(5, "message.send", at=NOW - timedelta(hours=1), recipients=(POLITIE,)),
    )
    got = run(
        reader,
        SearchRequest(partner=GGZ, since=NOW - timedelta(days=2), until=NOW - timedelta(hours=2)),
    )
    assert [i for i, _ in got] == [3, 2, 1]
    politie = run(reader, SearchRequest(partner=POLITIE, since=NOW - timedelta(days=2)))
    assert [i for i, _ in politie] == [4, 1]


async def test_filters_combine_purpose_operation_status_and_legal_basis(
    audit: Log, reader: sqlite3.Connection
) -> None:
    await audit.add(
        msg(1, "message.send", at=NOW, purpose="ZVH.AANMELDING", legal_basis=("WGS",)),
        msg(2, "policy.decision", at=NOW, status="denied", legal_basis=("AVG6E",)),
        msg(3, "message.send", at=NOW, legal_basis=("AVG6E",)),
    )
    assert [i for i, _ in run(reader, SearchRequest(purpose="ZVH.AANMELDING"))] == [0]
    assert [i for i, _ in run(reader, SearchRequest(status="denied"))] == [1]
    assert [i for i, _ in run(reader, SearchRequest(legal_basis="AVG6E"))] == [2, 1]
    assert [
        i for i, _ in run(reader, SearchRequest(legal_basis="AVG6E", operation="message.send"))
    ] == [2]


async def test_rows_name_organisations_and_the_latest_receipt_status_per_partner(
    audit: Log, reader: sqlite3.Connection
) -> None:
    await audit.add(
        msg(1, "message.send", at=NOW - timedelta(minutes=3), recipients=(POLITIE, GGZ)),
        msg(
            1,
            "receipt.receive",
            at=NOW - timedelta(minutes=2),
            peer=POLITIE,
            detail={"status": "delivered"},
        ),
        msg(
            1,
            "receipt.receive",
            at=NOW - timedelta(minutes=1),
            peer=POLITIE,
            detail={"status": "accepted"},
        ),
        msg(1, "receipt.receive", at=NOW, peer=GGZ, detail={"status": "delivered"}),
    )
    page = search_records(
        reader, OFFICER, SearchRequest(operation="message.send"), pseudonym_key=KEY, names=NAMES
    )
    (row,) = page.rows
    assert str(row.sender) == f"Gemeente Veenstad ({ZVH})"
    assert [(o.name, s) for o, s in row.receipts] == [
        ("Politie Eenheid Veenland", "accepted"),
        ("GGZ Veenland", "delivered"),
    ]


async def test_an_auditor_sees_no_case_reference_or_pseudonym_and_cannot_search_by_them(
    audit: Log, reader: sqlite3.Connection
) -> None:
    await audit.add(msg(1, "message.send", at=NOW))
    page = search_records(
        reader, Role.AUDITOR, SearchRequest(partner=POLITIE), pseudonym_key=KEY, names=NAMES
    )
    assert [(r.case_ref, r.subjects) for r in page.rows] == [(None, ())]
    assert "Veenstad-2026-031" not in to_csv(page.rows)
    assert "sub-" not in to_csv(page.rows)
    for asked in (SearchRequest(subject="sub-c1Ra8Hn4Pe2Ydk"), SearchRequest(case_ref="x")):
        with pytest.raises(NotAllowed):
            run(reader, asked, Role.AUDITOR)


async def test_a_contactpunt_may_only_search_by_subject(
    audit: Log, reader: sqlite3.Connection
) -> None:
    await audit.add(msg(1, "message.send", at=NOW))
    assert run(reader, SearchRequest(subject="sub-c1Ra8Hn4Pe2Ydk"), Role.CONTACTPUNT)
    for asked in (
        SearchRequest(),
        SearchRequest(partner=POLITIE),
        SearchRequest(subject="sub-c1Ra8Hn4Pe2Ydk", purpose="ZVH.BEKENDHEID"),
    ):
        with pytest.raises(NotAllowed):
            run(reader, asked, Role.CONTACTPUNT)


async def test_shredding_a_records_personal_part_drops_it_from_the_subject_index(
    audit: Log, reader: sqlite3.Connection
) -> None:
    old = NOW - timedelta(days=400)  # past the fixture's 365-day retention
    await audit.add(
        msg(1, "message.send", at=old, subjects=("sub-aaaa",)),
        msg(2, "message.send", at=NOW, subjects=("sub-aaaa",)),
    )
    assert await audit.log.shred(NOW) == 1
    assert [i for i, _ in run(reader, SearchRequest(subject="sub-aaaa"))] == [1]
    assert reader.execute("SELECT count(*) FROM audit_subjects WHERE idx = 0").fetchone() == (0,)
    # The record itself is still found (by partner) and shown as shredded.
    page = search_records(
        reader, OFFICER, SearchRequest(partner=POLITIE), pseudonym_key=KEY, names=NAMES
    )
    assert [(r.idx, r.shredded, r.case_ref) for r in page.rows] == [
        (1, False, "Veenstad-2026-031"),
        (0, True, None),
    ]


def test_csv_cells_that_a_spreadsheet_would_run_as_formulas_are_quoted_as_text() -> None:
    row = RecordRow(
        idx=7,
        time=NOW,
        operation="message.refuse",
        status="denied",
        message_id=None,
        message_type=None,
        purpose=None,
        legal_basis=(),
        sender=OrgRef(POLITIE),
        recipients=(),
        peer=None,
        data_categories=(),
        policy_decision=None,
        policy_rule=None,
        policy_version=None,
        reason='=HYPERLINK("http://evil")',
        trace_id=None,
        receipts=(),
        case_ref="+31-case",
        subjects=(),
        shredded=False,
    )
    text = to_csv([row])
    assert text.splitlines()[0].startswith("index,time,operation,status,message_id")
    assert "'=HYPERLINK" in text
    assert ",'+31-case," in text


@pytest.mark.parametrize(
    ("query", "index"),
    [
        (RecordQuery(subject="sub-x"), "SEARCH s USING PRIMARY KEY (subject=?)"),
        (RecordQuery(case_ref="c"), "audit_by_case_time"),
        (
            RecordQuery(party=POLITIE, since=0.0, until=1.0),
            "SEARCH p USING PRIMARY KEY (org=? AND time>? AND time<?)",
        ),
        (RecordQuery(trace_id="t"), "audit_by_trace"),
        (RecordQuery(since=0.0, until=1.0), "audit_by_time"),
    ],
)
async def test_each_first_page_query_seeks_an_index_and_sorts_nothing(
    audit: Log, reader: sqlite3.Connection, query: RecordQuery, index: str
) -> None:
    """(A message id or trace id finds a handful of records: sorting those is nothing; the
    other first pages must be read in index order, however many records match.)"""
    traced: list[str] = []
    reader.set_trace_callback(traced.append)
    search(reader, query)
    reader.set_trace_callback(None)
    sql = traced[-1]
    plan = " | ".join(str(r[3]) for r in reader.execute("EXPLAIN QUERY PLAN " + sql))
    assert index in plan
    if query.trace_id is None:
        assert "TEMP B-TREE" not in plan  # the page is read in index order, not sorted
    assert "SCAN a" not in plan
    assert "SCAN audit_records" not in plan


async def test_a_log_written_before_the_console_indexes_is_indexed_when_it_opens(
    audit: Log, reader: sqlite3.Connection
) -> None:
    await audit.add(
        msg(1, "message.send", at=NOW - timedelta(hours=1), subjects=("sub-aaaa",)),
        msg(2, "message.receive", at=NOW, sender=GGZ, recipients=(ZVH,), subjects=("sub-aaaa",)),
    )

    def forget(db: sqlite3.Connection) -> None:  # as an older node left its store
        for table in (
            "audit_subjects",
            "audit_parties",
            "audit_hourly",
            "audit_notable",
            "audit_indexed",
        ):
            db.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed table names

    await audit.store.run(forget)
    assert run(reader, SearchRequest(subject="sub-aaaa")) == []
    reopened = await AuditLog.open(
        audit.store, origin="zvh.example/x/audit-log", key=None, rand=os.urandom, retention_s=1e9
    )
    assert reopened.size == 2
    assert [i for i, _ in run(reader, SearchRequest(subject="sub-aaaa"))] == [1, 0]
    assert [i for i, _ in run(reader, SearchRequest(partner=GGZ))] == [1]
    hourly = reader.execute("SELECT sum(n) FROM audit_hourly WHERE party = '*'").fetchone()
    assert hourly == (2,)


async def test_paged_indexed_search_finds_what_the_unindexed_query_finds(
    audit: Log, reader: sqlite3.Connection
) -> None:
    """Every filter, through the indexes and pages, against ``zvg audit query``'s scan of the
    JSON of every record (an independent implementation) on the same mixed log."""
    rng = random.Random(16)
    orgs = (POLITIE, GGZ, "00000001999000005000")
    records = []
    for i in range(120):
        outgoing = rng.random() < 0.5
        partner = rng.choice(orgs)
        records.append(
            msg(
                i % 40,
                rng.choice(["message.send", "message.receive", "receipt.receive"]),
                at=NOW - timedelta(hours=rng.randrange(72)),
                sender=ZVH if outgoing else partner,
                recipients=(partner, rng.choice(orgs)) if outgoing else (ZVH,),
                case_ref=f"case-{i % 7}",
                subjects=(f"sub-s{i % 11}", f"sub-t{i % 5}"),
                purpose=rng.choice(["ZVH.AANMELDING", "ZVH.RISICO"]),
                peer=partner if rng.random() < 0.3 else None,
            )
        )
    await audit.add(*records)
    since, until = NOW - timedelta(hours=48), NOW - timedelta(hours=12)
    cases: list[tuple[SearchRequest, dict[str, object]]] = [
        (SearchRequest(subject="sub-s3"), {"subject": "sub-s3"}),
        (
            SearchRequest(subject="sub-t1", purpose="ZVH.RISICO"),
            {"subject": "sub-t1", "purpose": "ZVH.RISICO"},
        ),
        (SearchRequest(case_ref="case-2"), {"case_ref": "case-2"}),
        (SearchRequest(case_ref="case-4", partner=GGZ), {"case_ref": "case-4", "partner": GGZ}),
        (
            SearchRequest(partner=GGZ, since=since, until=until),
            {"partner": GGZ, "since": since, "until": until},
        ),
        (
            SearchRequest(partner=POLITIE, operation="receipt.receive"),
            {"partner": POLITIE, "operation": "receipt.receive"},
        ),
        (
            SearchRequest(since=since, until=until, subject="sub-s5"),
            {"since": since, "until": until, "subject": "sub-s5"},
        ),
        (SearchRequest(message_id=records[5].message_id), {"message_id": records[5].message_id}),
    ]
    for request, reference in cases:
        got: list[int] = []
        cursor = None
        while True:
            page = search_records(
                reader,
                OFFICER,
                replace(request, cursor=cursor, page_size=4),
                pseudonym_key=KEY,
                names=NAMES,
            )
            got += [r.idx for r in page.rows]
            cursor = page.next_cursor
            if cursor is None:
                break
        expected = {h["index"] for h in inspect.query(reader, **reference)}  # type: ignore[arg-type] # the filters above
        assert expected, reference  # each case finds something
        assert sorted(got) == sorted(expected), reference
        assert len(got) == len(set(got)), reference
