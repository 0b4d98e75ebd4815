"""The Case page (lanes per partner, op-/afschalen marked) and the Policy page (the table and
"may this be shared?" answered by the node's own policy evaluation)."""

from __future__ import annotations

import re

from gateway.console.roles import Role
from tests.console.conftest import ConsoleUnderTest
from tests.console.exchange import CASE_REF, referral_accepted
from tests.unit.node._inproc import request_from_example

GEMEENTE = "00000001999000001000"
POLITIE = "00000001999000002000"


async def _case_story(cut: ConsoleUnderTest) -> tuple[str, str, str]:
    """politie refers the case to gemeente (ZVH), gemeente answers with a case.status, politie
    raises a risk.signal to the ZVH: three messages of one case at politie."""
    referral = (await referral_accepted(cut)).message_id
    status = await cut.gemeente.send(request_from_example("case.status"))
    await cut.federation.wait_status("gemeente", status, "delivered", "accepted")
    signal = await cut.politie.send(
        request_from_example("risk.signal", recipients=[{"org": GEMEENTE, "role": "ZVH"}])
    )
    await cut.federation.wait_status("politie", signal, "delivered", "accepted")
    return referral, status, signal


async def _login_as(cut: ConsoleUnderTest, role: Role) -> None:
    """Log out whoever is logged in, then log in as ``role``."""
    if cut.logged_in is not None:
        await cut.client.post("/logout", data={"csrf": cut.csrf})
    answer = await cut.login(role)
    assert answer.status == 303


def _rows(page: str) -> list[str]:
    body = page.split('<tbody class="utrecht-table__body">', 1)[1].split("</tbody>", 1)[0]
    return re.findall(r"<tr .*?</tr>", body, flags=re.S)


async def test_the_case_page_shows_every_message_in_time_order_in_the_partner_lane(
    cut: ConsoleUnderTest,
) -> None:
    referral, status, signal = await _case_story(cut)
    await cut.login(Role.SECURITY_OFFICER)
    answer = await cut.client.get(f"/case?ref={CASE_REF}")
    page = await answer.text()
    assert answer.status == 200, page
    assert "Gemeente" in page
    assert GEMEENTE in page
    rows = _rows(page)
    order = [next(m for m in (referral, status, signal) if m in row) for row in rows]
    assert order == [referral, status, signal]
    assert "verzonden aan" in rows[0]
    assert "ontvangen van" in rows[1]
    assert "zvg-step--status" in rows[1]
    assert "op-/afschalen" in rows[1]
    assert "zvg-step--opschalen" in rows[2]
    assert ">opschalen<" in rows[2]
    assert "accepted" in rows[0]  # gemeente's receipt on the referral
    (look,) = [r for r in cut.records("console.access") if r["view"]["detail"]["page"] == "case"]
    assert look["view"]["detail"]["count"] == 3
    assert look["personal"]["case_ref"] == CASE_REF
    assert CASE_REF not in str(look["view"])  # personal: never in the kept view


async def test_the_case_page_is_for_officers_only(cut: ConsoleUnderTest) -> None:
    await referral_accepted(cut)
    for role in (Role.AUDITOR, Role.CONTACTPUNT):
        await _login_as(cut, role)
        answer = await cut.client.get(f"/case?ref={CASE_REF}")
        assert answer.status == 403, role
        assert "zvg-case" not in await answer.text()  # no timeline
    assert [r for r in cut.records("console.access") if r["view"]["detail"]["page"] == "case"] == []


async def test_an_unknown_case_is_404_and_a_bsn_as_case_reference_is_refused_unrecorded(
    cut: ConsoleUnderTest,
) -> None:
    await cut.login(Role.PRIVACY_OFFICER)
    answer = await cut.client.get("/case?ref=Veenstad-1999-000")
    assert answer.status == 404
    assert "Geen berichten" in await answer.text()
    before = cut.politie.node.service.audit.size
    answer = await cut.client.get("/case?ref=111222333")
    assert answer.status == 400
    assert "111222333" not in (await answer.text()).split("<main", 1)[1]  # not even echoed
    assert cut.politie.node.service.audit.size == before


async def test_a_case_reference_with_html_is_shown_escaped(cut: ConsoleUnderTest) -> None:
    await cut.login(Role.SECURITY_OFFICER)
    answer = await cut.client.get("/case", params={"ref": "<script>alert(1)</script>"})
    page = await answer.text()
    assert "<script>alert(1)" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


async def test_the_policy_page_shows_the_signed_rules_with_the_directory_version(
    cut: ConsoleUnderTest,
) -> None:
    await cut.login(Role.AUDITOR)
    answer = await cut.client.get("/policy")
    page = await answer.text()
    assert answer.status == 200
    payload = cut.console.directory.payload
    assert f"directoryversie {payload.version}" in page
    rules = payload.policy.rules
    assert rules
    for rule in rules:
        assert f">{rule.id}<" in page
    assert len(_rows(page.split('id="rules"', 1)[1])) == len(rules)
    assert "WPG_20" in page  # politie's default legal basis for ZVH.AANMELDING (node.toml)
    (look,) = [r for r in cut.records("console.access") if r["view"]["detail"]["page"] == "policy"]
    assert look["view"]["detail"]["count"] == len(rules)


def _referral_form(csrf: str, **changes: object) -> list[tuple[str, str]]:
    form = {
        "csrf": csrf,
        "message_type": "case.referral",
        "purpose": "ZVH.AANMELDING",
        "sender_role": "POL",
        "recipient": [f"{GEMEENTE}:ZVH"],
        "category": ["ID_PSEUDO", "POLITIE", "RISICO"],
        "flag": ["police_data"],
        **changes,
    }
    out: list[tuple[str, str]] = []
    for key, value in form.items():
        out.extend((key, str(one)) for one in (value if isinstance(value, list) else [value]))
    return out


async def test_may_this_be_shared_answers_with_the_nodes_own_policy_decision(
    cut: ConsoleUnderTest,
) -> None:
    await cut.login(Role.SECURITY_OFFICER)
    allowed = await cut.client.post("/policy", data=_referral_form(cut.csrf))
    page = await allowed.text()
    assert allowed.status == 200, page
    assert "Toegestaan" in page
    assert "allows case.referral under ZVH.AANMELDING" in page
    denied = await cut.client.post(
        "/policy", data=_referral_form(cut.csrf, purpose="ZVH.AFSLUITING")
    )
    page = await denied.text()
    assert denied.status == 200
    assert "Niet toegestaan" in page
    assert 'class="utrecht-alert utrecht-alert--error zvg-decision"' in page
    asks = [
        r["view"]["detail"]
        for r in cut.records("console.access")
        if r["view"]["detail"]["page"] == "policy.ask"
    ]
    assert [a["filter.decision"] for a in asks] == ["allow", "deny"]


async def test_the_policy_question_agrees_with_what_the_node_enforces(
    cut: ConsoleUnderTest,
) -> None:
    """A referral to gemeente's GEM role instead of its ZVH: the console says no, and the node
    refuses the same message for the same reason."""
    await cut.login(Role.SECURITY_OFFICER)
    answer = await cut.client.post(
        "/policy", data=_referral_form(cut.csrf, recipient=[f"{GEMEENTE}:GEM"])
    )
    page = await answer.text()
    assert "Niet toegestaan" in page
    request = request_from_example("case.referral", recipients=[{"org": GEMEENTE, "role": "GEM"}])
    sent = await cut.politie.call("POST", "/v1/messages", body=request)
    assert sent.status >= 400
    (reason,) = re.findall(r"Reden: ([a-z_.]+)", page)
    assert reason in sent.body.decode()


async def test_a_policy_question_without_the_csrf_token_is_refused(cut: ConsoleUnderTest) -> None:
    await cut.login(Role.SECURITY_OFFICER)
    answer = await cut.client.post("/policy", data=_referral_form("wrong"))
    assert answer.status == 403
    assert [r for r in cut.records("console.access") if "policy.ask" in str(r["view"])] == []


async def test_a_bad_policy_question_is_answered_400_and_a_contactpunt_may_not_ask(
    cut: ConsoleUnderTest,
) -> None:
    await cut.login(Role.SECURITY_OFFICER)
    answer = await cut.client.post(
        "/policy", data=_referral_form(cut.csrf, message_type="drop.table")
    )
    assert answer.status == 400
    assert "unknown message type" in await answer.text()
    answer = await cut.client.post("/policy", data=_referral_form(cut.csrf, recipient=[]))
    assert answer.status == 400
    await _login_as(cut, Role.CONTACTPUNT)
    assert (await cut.client.get("/policy")).status == 403
    assert (await cut.client.post("/policy", data=_referral_form(cut.csrf))).status == 403
