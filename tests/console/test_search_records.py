"""The Search page on the indexed side tables (``data/records.py``): a subject searched by a
typed BSN (turned into this organisation's pseudonym, never kept), legal basis, paging by
cursor, and the CSV export."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.console.data.subject import subject_pseudonym
from gateway.console.roles import Role
from gateway.testing.federation import FederationFiles
from tests.console.conftest import ConsoleUnderTest, start_console
from tests.console.exchange import referral_accepted
from tests.unit.node._inproc import request_from_example

BSN = "111222333"
KEY = b"k" * 32
GEM = "00000001999000001000"


@pytest.fixture
async def keyed(tmp_path: Path, veenstad: FederationFiles) -> AsyncIterator[ConsoleUnderTest]:
    """Politie's console with its pseudonym key configured."""
    key_file = tmp_path / "pseudonym.key"
    key_file.write_bytes(KEY + b"\n")
    key_file.chmod(0o600)
    under_test = await start_console(tmp_path, veenstad, page_size=10, pseudonym_key_file=key_file)
    try:
        yield under_test
    finally:
        await under_test.client.close()
        await under_test.federation.close()


async def _send_for_subject(cut: ConsoleUnderTest, pseudonym: str) -> str:
    request = request_from_example("case.referral")
    request["subjects"][0]["subject_ref"] = pseudonym
    message_id = await cut.politie.send(request)
    await cut.federation.wait_status("politie", message_id, "delivered", "accepted")
    return message_id


async def test_a_bsn_typed_as_subject_finds_the_subjects_messages_and_is_never_kept(
    keyed: ConsoleUnderTest,
) -> None:
    pseudonym = subject_pseudonym(KEY, BSN)
    message_id = await _send_for_subject(keyed, pseudonym)
    other = (await referral_accepted(keyed)).message_id  # other subjects: not found
    await keyed.login(Role.SECURITY_OFFICER)
    answer = await keyed.client.get(f"/search?subject={BSN}", allow_redirects=False)
    assert answer.status == 303
    location = answer.headers["Location"]
    assert BSN not in location
    assert pseudonym in location
    page = await (await keyed.client.get(location)).text()
    assert f'href="/message/{message_id}"' in page
    assert other not in page
    assert BSN not in page
    subject_looks = [
        r["personal"]["data_subjects"]
        for r in keyed.records("console.access")
        if r["view"]["detail"]["page"] == "search" and r["personal"]["data_subjects"]
    ]
    assert subject_looks == [[pseudonym]]  # the pseudonym, in the record's personal part
    assert BSN not in str(keyed.politie.node.audit())


async def test_a_contactpunt_searches_by_a_typed_bsn_too(keyed: ConsoleUnderTest) -> None:
    pseudonym = subject_pseudonym(KEY, BSN)
    message_id = await _send_for_subject(keyed, pseudonym)
    await keyed.login(Role.CONTACTPUNT)
    answer = await keyed.client.get(f"/search?subject={BSN}")
    page = await answer.text()
    assert answer.status == 200
    assert message_id in page
    assert f'href="/message/{message_id}"' not in page  # a contactpunt opens no message


async def test_an_invalid_bsn_is_refused_without_repeating_it(keyed: ConsoleUnderTest) -> None:
    await keyed.login(Role.SECURITY_OFFICER)
    before = keyed.politie.node.service.audit.size
    answer = await keyed.client.get("/search?subject=123456789")  # fails the elfproef
    page = await answer.text()
    assert answer.status == 400
    assert "not a valid BSN" in page
    assert "123456789" not in page  # not even in the links: the refusal is a redirect
    assert "123456789" not in str(answer.url)
    assert keyed.politie.node.service.audit.size == before


async def test_a_bsn_without_a_pseudonym_key_is_refused(cut: ConsoleUnderTest) -> None:
    await cut.login(Role.SECURITY_OFFICER)
    answer = await cut.client.get(f"/search?subject={BSN}")
    assert answer.status == 400
    page = await answer.text()
    assert "no pseudonym key" in page
    assert BSN not in page


async def test_an_auditor_may_not_search_by_a_bsn(keyed: ConsoleUnderTest) -> None:
    await keyed.login(Role.AUDITOR)
    answer = await keyed.client.get(f"/search?subject={BSN}")
    assert answer.status == 403
    assert BSN not in await answer.text()


async def test_search_by_legal_basis(cut: ConsoleUnderTest) -> None:
    exchange = await referral_accepted(cut)
    await cut.login(Role.SECURITY_OFFICER)
    page = await (await cut.client.get("/search?legal_basis=WPG_20")).text()
    assert f'href="/message/{exchange.message_id}"' in page
    page = await (await cut.client.get("/search?legal_basis=JW_7_1_4")).text()
    assert "Geen records gevonden." in page


async def test_the_csv_export_names_partners_and_reads_beyond_one_page(
    tmp_path: Path, veenstad: FederationFiles
) -> None:
    cut = await start_console(tmp_path, veenstad, page_size=10, export_max_rows=12)
    try:
        exchange = await referral_accepted(cut)
        await cut.login(Role.SECURITY_OFFICER)
        for _ in range(8):  # each look is a record: more than one page of 10
            await cut.client.get("/search?operation=retention.purge")
        answer = await cut.client.get("/search.csv")
        rows = list(csv.DictReader(io.StringIO(await answer.text())))
        assert len(rows) == 12  # export_max_rows, more than one page
        assert [int(r["index"]) for r in rows] == sorted(
            {int(r["index"]) for r in rows}, reverse=True
        )
        (look,) = [
            r for r in cut.records("console.access") if r["view"]["detail"]["page"] == "search.csv"
        ]
        assert look["view"]["detail"]["count"] == 12
        answer = await cut.client.get(
            f"/search.csv?message_id={exchange.message_id}&operation=message.send"
        )
        (sent,) = list(csv.DictReader(io.StringIO(await answer.text())))
        assert (
            f"Gemeente Veenstad (Zorg- en Veiligheidshuis Veenstad) ({GEM})" in sent["recipients"]
        )
        assert "accepted" in sent["receipts"]
    finally:
        await cut.client.close()
        await cut.federation.close()
