"""The Notices page (``GET /notices``) on politie's console: the ``rights.notice`` messages
politie sent and who complied — open until every recipient accepted; the officers and the
contactpunt see it (not the auditor), and every view is a ``console.access`` record."""

from __future__ import annotations

from gateway.console.roles import Role
from tests.console.conftest import ConsoleUnderTest
from tests.console.exchange import referral_accepted
from tests.unit.node._inproc import GEM, request_from_example


def _notice(concerns: list[str]) -> dict[str, object]:
    request = request_from_example("rights.notice")
    request["sender_role"] = "POL"
    request["recipients"] = [{"org": GEM, "role": "ZVH"}]
    request["body"]["kind"] = "rectify"  # leaves the referral in place for the page tests
    request["body"]["concerns"] = concerns
    return request


async def test_a_notice_is_open_until_the_recipient_accepts_it(cut: ConsoleUnderTest) -> None:
    exchange = await referral_accepted(cut)
    notice_id = await cut.politie.send(_notice([exchange.message_id]))
    await cut.federation.wait_status("politie", notice_id, "delivered")
    assert (await cut.login(Role.PRIVACY_OFFICER)).status == 303

    page = await cut.client.get("/notices")
    assert page.status == 200
    text = await page.text()
    assert notice_id in text
    assert "Open: 1" in text
    assert "afgeleverd" in text  # delivered, not yet accepted

    assert await cut.gemeente.settle(notice_id) == 204
    await cut.federation.wait_status("politie", notice_id, "accepted")
    text = await (await cut.client.get("/notices")).text()
    assert "Open: 0" in text
    assert "Door iedereen opgevolgd" in text
    looks = [r["view"]["detail"] for r in cut.records("console.access")]
    assert [d["count"] for d in looks if d["page"] == "notices"] == [1, 1]


async def test_the_contactpunt_sees_notices(cut: ConsoleUnderTest) -> None:
    assert (await cut.login(Role.CONTACTPUNT)).status == 303
    page = await cut.client.get("/notices")
    assert page.status == 200
    assert "nog geen correcties of wissingen" in await page.text()


async def test_the_auditor_does_not_see_notices(cut: ConsoleUnderTest) -> None:
    assert (await cut.login(Role.AUDITOR)).status == 303
    assert (await cut.client.get("/notices")).status == 403
