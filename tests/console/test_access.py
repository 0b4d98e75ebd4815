"""Every look is logged: each page that shows or exports records appends a ``console.access``
record (who, role, page, filters, how many records) before the answer; the personal filters go
into the record's personal part only; the console shows who looked at what
(gateway/console/access.py)."""

from __future__ import annotations

import json

from gateway.console.roles import Role
from gateway.errors import TransientError
from gateway.node.store import Committed
from tests.console.conftest import ConsoleUnderTest
from tests.console.exchange import CASE_REF, referral_accepted
from tests.unit.node._inproc import GEM


async def test_a_search_leaves_who_what_and_how_many(cut: ConsoleUnderTest) -> None:
    exchange = await referral_accepted(cut)
    await cut.login(Role.PRIVACY_OFFICER)
    await cut.client.get(f"/search?case_ref={CASE_REF}&partner={GEM}")
    record = cut.records("console.access")[-1]
    view, personal = record["view"], record["personal"]
    assert view["detail"]["page"] == "search"
    assert view["detail"]["filter.partner"] == GEM
    assert view["detail"]["count"] == len(cut.politie.node.audit(case_ref=CASE_REF, partner=GEM))
    assert view["detail"]["method"] == "local"
    # Logboek Dataverwerkingen (issue 17): a console look has a trace and a span of its own.
    assert len(view["trace_id"]) == 32
    assert len(view["span_id"]) == 16
    assert personal["actor"]["id"] == "pieter"
    assert personal["actor"]["role"] == "privacy-officer"
    assert personal["case_ref"] == CASE_REF
    # The case reference is personal: in the kept-for-ever view only as a commitment.
    assert CASE_REF not in json.dumps(view)
    assert exchange.message_id  # the exchange is what was found


async def test_opening_a_message_and_exporting_csv_are_recorded(cut: ConsoleUnderTest) -> None:
    exchange = await referral_accepted(cut)
    await cut.login(Role.SECURITY_OFFICER)
    await cut.client.get(f"/message/{exchange.message_id}")
    await cut.client.get(f"/search.csv?message_id={exchange.message_id}")
    opened, exported = cut.records("console.access")[-2:]
    assert opened["view"]["detail"]["page"] == "message"
    assert opened["view"]["message_id"] == exchange.message_id
    assert opened["view"]["detail"]["count"] == 5 + 2  # five records, two receipts
    assert exported["view"]["detail"]["page"] == "search.csv"
    assert exported["view"]["message_id"] == exchange.message_id


async def test_the_console_shows_who_looked_at_what(cut: ConsoleUnderTest) -> None:
    await cut.login(Role.AUDITOR)
    await cut.client.get(f"/search?partner={GEM}")
    cut.client.session.cookie_jar.clear()
    await cut.login(Role.SECURITY_OFFICER)
    page = await (await cut.client.get("/access")).text()
    assert "anouk" in page
    assert "auditor" in page
    assert f"partner={GEM}" in page
    assert "console.login" in page


async def test_a_look_that_cannot_be_recorded_shows_nothing(cut: ConsoleUnderTest) -> None:
    await referral_accepted(cut)
    await cut.login(Role.SECURITY_OFFICER)

    async def broken(*_: object) -> Committed:
        raise TransientError("the store is closing")

    cut.console.access.write = broken  # type: ignore[method-assign,assignment]  # the store fails
    answer = await cut.client.get(f"/search?case_ref={CASE_REF}")
    assert answer.status == 503
    page = await answer.text()
    assert "message.send" not in page
    assert "er wordt niets getoond" in page
