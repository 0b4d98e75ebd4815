"""The inzageverzoek pages on the ZVH's console (gemeente, in process, nodes on the broker in
memory): the contactpunt starts a request with the identity check, the police node defers, the
report shows every organisation's answer (HTML, print, PDF), the term raises an alert the
officers see, and the BSN appears in no page and no record.

Threats: another role starting requests or reading reports; a BSN leaking into a page or the
audit log; a term that passes without an alert.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from aiohttp import CookieJar
from aiohttp.test_utils import TestClient, TestServer

from gateway.console.app import build_console_app
from gateway.console.auth import add_account
from gateway.console.config import ConsoleSettings
from gateway.console.roles import Role
from gateway.testing.federation import FederationFiles
from gateway.testing.veenstad import org_by_key
from tests.console.conftest import FAST, PASSWORD, USERS, ConsoleUnderTest
from tests.unit.node._inproc import ApiNode, InProcFederation

BSN = "999990019"
POL = org_by_key("politie").oin


def _key(folder: Path) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "pseudonym.key"
    path.write_bytes(os.urandom(32).hex().encode())
    path.chmod(0o600)
    return str(path)


@pytest.fixture
async def zvh(tmp_path: Path, veenstad: FederationFiles) -> AsyncIterator[ConsoleUnderTest]:
    """Gemeente's (the ZVH's) console; politie defers its answers."""
    federation = InProcFederation(veenstad, tmp_path)
    gemeente = await federation.start(
        "gemeente", rights__pseudonym_key_file=_key(tmp_path / "gem-secrets")
    )
    politie = await federation.start(
        "politie",
        rights__pseudonym_key_file=_key(tmp_path / "pol-secrets"),
        rights__defer=True,
        rights__defer_ground="WPG",
    )
    cut = await _console(federation, gemeente, politie, tmp_path / "zvh-console")
    try:
        yield cut
    finally:
        await cut.client.close()
        await federation.close()


async def _console(
    federation: InProcFederation, node: ApiNode, other: ApiNode, folder: Path
) -> ConsoleUnderTest:
    """``node``'s console, with an account for every role (``other``: the partner node)."""
    users_file = folder.parent / f"{folder.name}-users.json"
    accounts = {
        role: add_account(
            users_file,
            name=name,
            display_name=name.title(),
            role=role,
            password=PASSWORD,
            hasher=FAST,
        )
        for role, name in USERS.items()
    }
    app = build_console_app(
        node.node.service, ConsoleSettings(enabled=True), users_file=users_file, hasher=FAST
    )
    server = TestServer(app)
    await server.start_server()
    jar = CookieJar(unsafe=True, treat_as_secure_origin=[str(server.make_url("/"))])
    client = TestClient(server, cookie_jar=jar)
    await client.start_server()
    # ConsoleUnderTest calls the console's node "politie": here it is ``node``
    return ConsoleUnderTest(federation, node, other, client, accounts, users_file, app=app)


async def _start(cut: ConsoleUnderTest, **form: str) -> str:
    data = {"csrf": cut.csrf, "bsn": BSN, "identity_check": "rijbewijs gezien", **form}
    answer = await cut.client.post("/rights/start", data=data, allow_redirects=False)
    assert answer.status == 303
    location = answer.headers["Location"]
    assert re.fullmatch(r"/rights/[0-9a-f-]{36}", location), location
    return location.rsplit("/", 1)[1]


async def _deferred(cut: ConsoleUnderTest, request_id: str) -> None:
    desk = cut.politie.node.service.contactpunt

    async def answered() -> bool:
        doc = desk.request(request_id)
        return doc is not None and doc["organisations"][POL]["status"] == "deferred"

    await cut.federation.broker.until(answered, "the police's deferred answer")


async def test_the_contactpunt_starts_a_request_and_reads_the_report(
    zvh: ConsoleUnderTest,
) -> None:
    await zvh.login(Role.CONTACTPUNT)
    page = await (await zvh.client.get("/rights")).text()
    assert "Nieuw inzageverzoek" in page
    request_id = await _start(zvh)
    await _deferred(zvh, request_id)

    page = await (await zvh.client.get(f"/rights/{request_id}")).text()
    assert "Politie, basisteam Veenstad: uitgesteld" in page
    assert "Wet politiegegevens" in page
    assert "rijbewijs gezien" in page
    assert BSN not in page
    printed = await (await zvh.client.get(f"/rights/{request_id}/print")).text()
    assert "Overzicht inzageverzoek" in printed
    pdf = await zvh.client.get(f"/rights/{request_id}/pdf")
    assert pdf.status == 200
    assert pdf.content_type == "application/pdf"
    assert (await pdf.read()).startswith(b"%PDF")
    pages = [r["view"]["detail"]["page"] for r in zvh.records("console.access")]
    assert pages[-3:] == ["rights.report", "rights.print", "rights.pdf"]
    [started] = zvh.records("rights.request")
    assert started["personal"]["note"] == "rijbewijs gezien"
    assert BSN not in json.dumps(zvh.politie.node.audit())


async def test_a_bad_bsn_is_refused_on_the_page(zvh: ConsoleUnderTest) -> None:
    await zvh.login(Role.CONTACTPUNT)
    data = {"csrf": zvh.csrf, "bsn": "123456789", "identity_check": "paspoort"}
    answer = await zvh.client.post("/rights/start", data=data)
    page = await answer.text()
    assert "geen geldig BSN" in page
    assert "123456789" not in page


async def test_the_term_raises_an_alert_for_the_officers(zvh: ConsoleUnderTest) -> None:
    await zvh.login(Role.CONTACTPUNT)
    today = zvh.federation.clock.now.date()
    request_id = await _start(zvh, received_on=(today - timedelta(days=29)).isoformat())
    await _deferred(zvh, request_id)
    page = await (await zvh.client.get("/rights")).text()
    assert re.search(r"nog [0-9]+ dagen", page)  # the days left, marked
    zvh.client.session.cookie_jar.clear()
    await zvh.login(Role.PRIVACY_OFFICER)
    alerts = await (await zvh.client.get("/alerts")).text()
    assert "Termijn van een inzageverzoek" in alerts
    assert f"rights:{request_id}:3" in alerts
    assert "Politie, basisteam Veenstad" in alerts


async def test_only_the_contactpunt_and_the_officers_see_the_requests(
    zvh: ConsoleUnderTest,
) -> None:
    await zvh.login(Role.AUDITOR)
    assert (await zvh.client.get("/rights")).status == 403
    zvh.client.session.cookie_jar.clear()
    await zvh.login(Role.PRIVACY_OFFICER)
    page = await (await zvh.client.get("/rights")).text()
    assert "Nieuw inzageverzoek" not in page  # only the contactpunt starts one
    data = {"csrf": zvh.csrf, "bsn": BSN, "identity_check": "x"}
    answer = await zvh.client.post("/rights/start", data=data, allow_redirects=False)
    assert answer.status == 403


async def test_the_police_privacy_officer_sees_the_deferral_and_releases_it(
    zvh: ConsoleUnderTest, tmp_path: Path
) -> None:
    """The deferring partner's own console: its /rights page lists the deferral with the
    asking organisation's name (this page failed with a 500 as soon as it had a deferral)."""
    await zvh.login(Role.CONTACTPUNT)
    request_id = await _start(zvh)
    await _deferred(zvh, request_id)
    # zvh.gemeente is the police node there (ConsoleUnderTest names its console's node politie)
    pol = await _console(zvh.federation, zvh.gemeente, zvh.politie, tmp_path / "pol-console")
    try:
        await pol.login(Role.PRIVACY_OFFICER)
        answer = await pol.client.get("/rights")
        assert answer.status == 200
        page = await answer.text()
        [deferral] = pol.politie.node.service.rights.deferrals()
        assert deferral["request_message_id"] in page
        assert "Gemeente Veenstad" in page
        assert BSN not in page
        data = {"csrf": pol.csrf, "message": deferral["request_message_id"]}
        answer = await pol.client.post("/rights/release", data=data, allow_redirects=False)
        assert answer.status == 303
        [deferral] = pol.politie.node.service.rights.deferrals()
        assert deferral["released_on"] is not None
        page = await (await pol.client.get("/rights")).text()
        assert "vrijgegeven op" in page
    finally:
        await pol.client.close()
