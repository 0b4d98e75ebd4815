"""The basic pages on a real exchange: Overview (the log's health), Search (filters, pages,
CSV), Message (metadata, this node's records, the partner's receipts verified)."""

from __future__ import annotations

import csv
import io
import re

from gateway.console.reads import policy_sentence
from gateway.console.roles import Role
from tests.console.conftest import ConsoleUnderTest
from tests.console.exchange import CASE_REF, referral_accepted
from tests.unit.node._inproc import GEM


async def test_the_overview_shows_the_records_and_the_latest_checkpoint(
    cut: ConsoleUnderTest,
) -> None:
    await referral_accepted(cut)
    audit = cut.politie.node.service.audit
    # A checkpoint of the exchange's records, signed now: the node's own checkpoint loop runs on
    # its interval, and on a busy machine had not yet signed one covering them (seen in CI).
    signed = await audit.checkpoint()
    assert signed is not None
    size = signed.size
    await cut.login(Role.SECURITY_OFFICER)
    page = await (await cut.client.get("/")).text()
    # The node's own loops may append (and checkpoint) beside the test: the page shows the log
    # as it was when it was read — at least the records before the login plus the login record
    # and cut.login's look at the search page, at most what the log holds now.
    records = re.search(r"<dd>(\d+)</dd>", page)
    assert records is not None, page
    assert size + 2 <= int(records[1]) <= audit.size
    checkpoint = re.search(r"omvang (\d+),", page)
    assert checkpoint is not None, page
    assert size <= int(checkpoint[1]) <= int(records[1])
    assert "Nog geen checkpoint" not in page


async def test_search_by_message_id_case_trace_and_partner_finds_the_exchange(
    cut: ConsoleUnderTest,
) -> None:
    exchange = await referral_accepted(cut)
    await cut.login(Role.SECURITY_OFFICER)
    for query in (
        f"message_id={exchange.message_id}",
        f"case_ref={CASE_REF}",
        f"trace_id={exchange.trace_id}",
        f"partner={GEM}&operation=message.send",
    ):
        page = await (await cut.client.get(f"/search?{query}")).text()
        assert f'href="/message/{exchange.message_id}"' in page, query
        assert "message.send" in page
        assert "Gemeente Veenstad" in page  # organisation names beside OINs
        assert f"{GEM}</span>: accepted" in page  # the receipt status column
    nothing = await (await cut.client.get("/search?case_ref=no-such-case")).text()
    assert "Geen records gevonden." in nothing


async def test_search_pages_through_the_records_newest_first(cut: ConsoleUnderTest) -> None:
    await referral_accepted(cut)
    await cut.login(Role.SECURITY_OFFICER)
    for _ in range(8):  # each look is a record too: 5 + 1 login + 9 looks = 15 records
        await cut.client.get("/search?operation=retention.purge")
    total = cut.politie.node.service.audit.size
    seen: list[int] = []
    url = "/search"
    while True:
        page = await (await cut.client.get(url)).text()
        seen += [
            int(line.split(">")[1].split("<")[0])
            for line in page.splitlines()
            if "utrecht-table__cell--numeric" in line
        ]
        marker = 'href="/search?cursor='
        if marker not in page:
            break
        url = "/search?cursor=" + page.split(marker)[1].split('"')[0]
    assert len(seen) > 10  # more than one page (page_size 10)
    assert seen == sorted(seen, reverse=True)
    assert len(set(seen)) == len(seen)
    assert max(seen) <= total


async def test_a_bsn_typed_into_the_search_is_refused_and_never_recorded(
    cut: ConsoleUnderTest,
) -> None:
    await cut.login(Role.SECURITY_OFFICER)
    before = cut.politie.node.service.audit.size
    answer = await cut.client.get("/search?case_ref=111222333")
    assert answer.status == 400
    page = await answer.text()
    assert "Typ hier geen BSN" in page
    assert "111222333" not in page  # the refusal is a redirect: not even in the links
    assert cut.politie.node.service.audit.size == before
    assert "111222333" not in str(cut.politie.node.audit())


async def test_an_invalid_search_is_answered_400_with_the_reason(cut: ConsoleUnderTest) -> None:
    await cut.login(Role.SECURITY_OFFICER)
    for query, reason in (
        ("partner=gemeente", "OIN"),
        ("since=yesterday", "YYYY-MM-DD"),
        ("operation=drop.table", "unknown operation"),
        ("cursor=abc", "not a page of this search"),
    ):
        answer = await cut.client.get(f"/search?{query}")
        assert answer.status == 400, query
        assert reason in await answer.text()


async def test_the_csv_export_holds_the_search_result(cut: ConsoleUnderTest) -> None:
    exchange = await referral_accepted(cut)
    await cut.login(Role.SECURITY_OFFICER)
    answer = await cut.client.get(f"/search.csv?message_id={exchange.message_id}")
    assert answer.status == 200
    assert answer.headers["Content-Type"].startswith("text/csv")
    assert answer.headers["Content-Disposition"].startswith("attachment;")
    rows = list(csv.DictReader(io.StringIO(await answer.text())))
    assert rows
    assert {r["message_id"] for r in rows} == {exchange.message_id}
    assert {r["case_ref"] for r in rows} == {CASE_REF}
    assert "message.send" in {r["operation"] for r in rows}


async def test_the_message_page_shows_both_receipts_verified(cut: ConsoleUnderTest) -> None:
    exchange = await referral_accepted(cut)
    await cut.login(Role.SECURITY_OFFICER)
    answer = await cut.client.get(f"/message/{exchange.message_id}")
    assert answer.status == 200
    page = await answer.text()
    assert page.count("✔ Geverifieerd") == 2  # delivered and accepted
    assert "Verificatie mislukt" not in page
    assert "case.referral" in page
    assert CASE_REF in page
    assert "allow" in page  # the policy decision


async def test_a_tampered_receipt_fails_verification_with_the_reason(
    cut: ConsoleUnderTest,
) -> None:
    exchange = await referral_accepted(cut)
    (jws,) = cut.politie.node.store.read(
        "SELECT inner_jws FROM receipts_in WHERE message_id=? AND status='accepted'",
        (exchange.message_id,),
    )[0]
    head, payload, signature = bytes(jws).split(b".")
    forged = head + b"." + payload + b"." + signature[:-4] + b"AAAA"

    def tamper(db: object) -> None:
        db.execute(  # type: ignore[attr-defined]  # a sqlite3 connection
            "UPDATE receipts_in SET inner_jws=? WHERE message_id=? AND status='accepted'",
            (forged, exchange.message_id),
        )

    await cut.politie.node.store.run(tamper)
    await cut.login(Role.SECURITY_OFFICER)
    page = await (await cut.client.get(f"/message/{exchange.message_id}")).text()
    assert page.count("✔ Geverifieerd") == 1
    assert "✘ Verificatie mislukt: signature:" in page


async def test_an_unknown_message_is_404(cut: ConsoleUnderTest) -> None:
    await cut.login(Role.SECURITY_OFFICER)
    answer = await cut.client.get("/message/no-such-message")
    assert answer.status == 404
    assert "Geen records over dit bericht." in await answer.text()


async def test_a_full_verification_from_the_overview_shows_its_result(
    cut: ConsoleUnderTest,
) -> None:
    await referral_accepted(cut)
    await cut.login(Role.AUDITOR)
    before = await (await cut.client.get("/")).text()
    assert "Nog niet uitgevoerd" in before
    answer = await cut.client.post("/verify", data={"csrf": cut.csrf}, allow_redirects=False)
    assert answer.status == 303
    page = await (await cut.client.get("/")).text()
    assert "✔ Geslaagd op" in page
    assert cut.records("console.access")[-2]["view"]["detail"]["page"] == "verify"

    def tamper(db: object) -> None:
        db.execute(  # type: ignore[attr-defined]  # a sqlite3 connection
            "UPDATE audit_records SET view = replace(view, 'case.referral', 'case.Referral')"
            " WHERE idx = 1"
        )

    await cut.politie.node.store.run(tamper)
    await cut.client.post("/verify", data={"csrf": cut.csrf})
    page = await (await cut.client.get("/")).text()
    assert "✘ Mislukt op" in page
    assert "record 1" in page


async def test_the_overview_lists_messages_delivered_but_not_accepted_in_time(
    cut: ConsoleUnderTest,
) -> None:
    from tests.unit.node._inproc import request_from_example

    message_id = await cut.politie.send(request_from_example("case.referral"))
    await cut.federation.wait_status("politie", message_id, "delivered")
    await cut.login(Role.SECURITY_OFFICER)
    assert f'href="/message/{message_id}"' not in await (await cut.client.get("/")).text()
    cut.federation.clock.move(hours=24, minutes=1)
    cut.client.session.cookie_jar.clear()  # the session idled out meanwhile
    await cut.login(Role.SECURITY_OFFICER)
    page = await (await cut.client.get("/")).text()
    assert f'href="/message/{message_id}"' in page
    assert "Gemeente Veenstad" in page


async def test_the_message_page_explains_the_policy_decision_in_one_sentence(
    cut: ConsoleUnderTest,
) -> None:
    exchange = await referral_accepted(cut)
    await cut.login(Role.SECURITY_OFFICER)
    page = await (await cut.client.get(f"/message/{exchange.message_id}")).text()
    (sentence,) = re.findall(r'<span class="zvg-explanation">([^<]+)</span>', page)
    assert sentence.startswith("policy (directory v")
    assert "allows case.referral under ZVH.AANMELDING from Politie, basisteam Veenstad" in sentence
    assert "to Gemeente Veenstad (Zorg- en Veiligheidshuis Veenstad) (rule " in sentence
    assert f'href="/case?ref={CASE_REF}"' in page  # on to the case's timeline


def test_a_denial_is_explained_with_its_reason_and_what_was_at_fault() -> None:
    view = {
        "policy_decision": "deny",
        "policy_rule": "r-zvh-aanmelding",
        "policy_version": 7,
        "message_type": "case.referral",
        "purpose": "ZVH.AANMELDING",
        "sender": "01",
        "reason": "category_not_allowed",
        "detail": {"category": "MEDISCH", "recipient": "02"},
    }
    assert policy_sentence(view, {"01": "Politie", "02": "Gemeente"}) == (
        "policy (directory v7) denies case.referral under ZVH.AANMELDING from Politie to"
        " Gemeente: data category MEDISCH is not allowed (rule r-zvh-aanmelding)"
    )
    assert policy_sentence({"policy_decision": None}, {}) == ""
