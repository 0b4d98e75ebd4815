"""The Evidence page: export a message's or a case's bundle (officers), verify an uploaded
bundle on the server (officers, auditor); both are recorded looks (gateway/console/evidence.py)."""

from __future__ import annotations

import json
import re
from typing import Any

import aiohttp

from gateway.console.roles import Role
from tests.console.conftest import ConsoleUnderTest
from tests.console.exchange import CASE_REF, referral_accepted


async def _upload(cut: ConsoleUnderTest, data: bytes, csrf: str | None = None) -> Any:
    form = aiohttp.FormData()
    form.add_field("csrf", cut.csrf if csrf is None else csrf)
    form.add_field("bundle", data, filename="bundle.json", content_type="application/json")
    return await cut.client.post("/evidence/verify", data=form, allow_redirects=False)


async def test_an_officer_exports_a_bundle_that_the_server_verifies(
    cut: ConsoleUnderTest,
) -> None:
    exchange = await referral_accepted(cut)
    await cut.login(Role.SECURITY_OFFICER)
    answer = await cut.client.get(f"/evidence/export?message_id={exchange.message_id}")
    assert answer.status == 200
    assert answer.headers["Content-Disposition"].startswith("attachment;")
    data = await answer.read()
    bundle = json.loads(data)
    assert bundle["format"] == "zvg-evidence/v1"
    assert len(bundle["receipts"]) == 2
    exported = cut.records("console.access")[-1]
    assert exported["view"]["detail"]["page"] == "evidence.export"
    assert exported["view"]["message_id"] == exchange.message_id
    verified = await _upload(cut, data)
    assert verified.status == 200
    page = await verified.text()
    assert "✔ Geldig: 5 records bewezen tegen checkpoint" in page
    assert cut.records("console.access")[-1]["view"]["detail"]["page"] == "evidence.verify"


async def test_a_tampered_bundle_fails_on_the_server_with_the_reason(
    cut: ConsoleUnderTest,
) -> None:
    await referral_accepted(cut)
    await cut.login(Role.PRIVACY_OFFICER)
    data = await (await cut.client.get(f"/evidence/export?case_ref={CASE_REF}")).read()
    bundle = json.loads(data)
    bundle["records"][0]["view"]["purpose"] = "something-else"
    answer = await _upload(cut, json.dumps(bundle).encode())
    assert answer.status == 422
    page = await answer.text()
    # the reason code first where the verifier gives one (the browser's verifier gives the same)
    assert re.search(r"✘ Ongeldig: (record_proof_invalid: )?record 0:", page)
    assert "Geldig:" not in page
    garbage = await _upload(cut, b"<not json>")
    assert garbage.status == 422
    assert "not a well-formed bundle" in await garbage.text()


async def test_an_auditor_may_verify_but_not_export_and_the_contactpunt_neither(
    cut: ConsoleUnderTest,
) -> None:
    exchange = await referral_accepted(cut)
    await cut.login(Role.AUDITOR)
    denied = await cut.client.get(f"/evidence/export?message_id={exchange.message_id}")
    assert denied.status == 403
    assert (await cut.client.get("/evidence")).status == 200
    assert (await _upload(cut, b"{}")).status == 422
    cut.client.session.cookie_jar.clear()
    await cut.login(Role.CONTACTPUNT)
    assert (await cut.client.get("/evidence", allow_redirects=False)).status == 403


async def test_a_verify_upload_without_the_csrf_token_is_refused(cut: ConsoleUnderTest) -> None:
    await cut.login(Role.SECURITY_OFFICER)
    before = len(cut.records("console.access"))
    answer = await _upload(cut, b"{}", csrf="")
    assert answer.status == 403
    assert len(cut.records("console.access")) == before


async def test_an_export_of_nothing_or_of_both_is_refused(cut: ConsoleUnderTest) -> None:
    await cut.login(Role.SECURITY_OFFICER)
    none = await cut.client.get("/evidence/export?case_ref=no-such-case")
    assert none.status == 404
    both = await cut.client.get("/evidence/export?case_ref=a&message_id=b")
    assert both.status == 400


async def test_the_browser_check_is_a_module_file_with_the_nodes_directory_beside_it(
    cut: ConsoleUnderTest,
) -> None:
    await cut.login(Role.AUDITOR)
    page = await (await cut.client.get("/evidence")).text()
    # Without JavaScript the section stays hidden: the server's check works on its own.
    assert '<section aria-labelledby="browser" id="browser-verify" hidden' in page
    assert '<script type="module" src="/static/js/evidence-page.js"></script>' in page
    script = await cut.client.get("/static/js/evidence-page.js")
    assert script.status == 200
    assert "javascript" in script.headers["Content-Type"]
    text = await script.text()
    assert 'from "./evidence-verify.js"' in text
    assert "innerHTML" not in text  # results are set as text
    directory = await cut.client.get("/evidence/directory.json")
    assert directory.status == 200
    assert await directory.read() == cut.politie.node.service.directory.raw
    cut.client.session.cookie_jar.clear()
    await cut.login(Role.CONTACTPUNT)
    assert (await cut.client.get("/evidence/directory.json")).status == 403
