"""Dutch first, English on request: both tables have the same keys, every key the templates use
exists, and the pages render in both (gateway/console/i18n.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway.console.i18n import MESSAGES
from gateway.console.roles import Role
from tests.console.conftest import ConsoleUnderTest

TEMPLATES = Path(__file__).resolve().parents[2] / "gateway" / "console" / "templates"
CODE = Path(__file__).resolve().parents[2] / "gateway" / "console"


def test_every_role_and_search_field_has_its_words() -> None:
    from gateway.console.roles import Role as Roles

    for role in Roles:
        assert f"role.{role.value}" in MESSAGES["nl"]
    for name in ("message_id", "trace_id", "case_ref", "subject", "partner", "purpose"):
        assert f"search.{name}" in MESSAGES["nl"]


def test_dutch_and_english_have_the_same_keys_and_placeholders() -> None:
    assert MESSAGES["nl"].keys() == MESSAGES["en"].keys()
    for key, text in MESSAGES["nl"].items():
        assert set(re.findall(r"{(\w+)}", text)) == set(
            re.findall(r"{(\w+)}", MESSAGES["en"][key])
        ), key


def test_every_key_the_templates_and_pages_use_exists() -> None:
    used = set()
    for path in [*TEMPLATES.glob("*.html"), *CODE.glob("*.py")]:
        used |= set(re.findall(r"""\bt\(\s*["']([a-z_.-]+)["']""", path.read_text("utf-8")))
        used |= set(re.findall(r'"((?:error|login|search)\.[a-z_]+)"', path.read_text("utf-8")))
    assert used
    # "role." ~ role and "search." ~ field build their keys: every role and field has one
    missing = sorted(
        k
        for k in used
        if k not in MESSAGES["nl"] and not k.endswith(".html") and not k.endswith(".")
    )
    assert missing == []


@pytest.mark.parametrize(
    ("lang", "words"),
    [("nl", ["Zoeken", "Overzicht", "Uitloggen"]), ("en", ["Search", "Overview", "Log out"])],
)
async def test_the_pages_render_in_the_chosen_language(
    cut: ConsoleUnderTest, lang: str, words: list[str]
) -> None:
    await cut.login(Role.SECURITY_OFFICER)
    switch = await cut.client.get(f"/lang/{lang}?next=/search", allow_redirects=False)
    assert switch.status == 303
    assert switch.headers["Location"] == "/search"
    page = await (await cut.client.get("/search")).text()
    assert f'<html lang="{lang}"' in page
    for word in words:
        assert word in page


async def test_the_language_switch_goes_back_only_to_this_console(cut: ConsoleUnderTest) -> None:
    for target in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        answer = await cut.client.get(f"/lang/en?next={target}", allow_redirects=False)
        assert answer.headers["Location"] == "/"
    assert (await cut.client.get("/lang/de", allow_redirects=False)).status == 404
