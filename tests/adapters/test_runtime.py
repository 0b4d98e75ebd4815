"""The shared runtime: configuration fails closed and names the key, secrets must be private,
state survives a crash whole, pseudonyms are keyed and BSN-free, health tells ready from not."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

import pytest

from adapters import _runtime as rt
from adapters.errors import ConfigError
from adapters.folder import FolderConfig
from schemas import ids


def write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


# ---------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[node\n", "not valid TOML"),
        ('[node]\nurl = "ftp://x"\ntoken_file = "t"\n[folder]\nroot_dir = "r"\n', "node.url"),
        (
            '[node]\nurl = "http://x"\ntoken_file = "t"\n[folder]\nroot_dir = "r"\ntypo = 1\n',
            "typo",
        ),
        ('[node]\nurl = "http://x"\n[folder]\nroot_dir = "r"\n', "node.token_file"),
    ],
    ids=["syntax", "bad-url", "unknown-key", "missing-key"],
)
def test_configuration_errors_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        rt.load_config(write(tmp_path / "c.toml", text), FolderConfig)


def test_relative_paths_are_resolved_against_the_config_file(tmp_path: Path) -> None:
    text = '[node]\nurl = "http://x"\ntoken_file = "secrets/t"\n[folder]\nroot_dir = "r"\n'
    config = rt.load_config(write(tmp_path / "c.toml", text), FolderConfig)
    assert config.node.token_file == tmp_path / "secrets" / "t"
    assert config.folder.root_dir == tmp_path / "r"


def test_oversized_or_missing_config_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        rt.load_toml(tmp_path / "missing.toml")
    big = write(tmp_path / "big.toml", "#" * (rt.MAX_CONFIG_BYTES + 1))
    with pytest.raises(ConfigError, match="larger than"):
        rt.load_toml(big)


# ---------------------------------------------------------------- secrets


def test_secret_readable_by_others_is_refused(tmp_path: Path) -> None:
    secret = write(tmp_path / "s", "x" * 40, mode=0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        rt.read_secret(secret)


def test_secret_too_short_or_missing_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="shorter than 32"):
        rt.read_secret(write(tmp_path / "s", "short\n"), min_bytes=32)
    with pytest.raises(ConfigError, match="cannot read"):
        rt.read_secret(tmp_path / "nope")
    assert rt.read_secret(write(tmp_path / "t", "token\n")) == b"token"


# ---------------------------------------------------------------- pseudonyms


def test_pseudonyms_are_keyed_stable_and_namespaced() -> None:
    a, b = rt.Pseudonymiser(b"a" * 32), rt.Pseudonymiser(b"b" * 32)
    ref = a.subject_ref("bsn", "999990019")
    assert ref == a.subject_ref("bsn", "999990019")
    assert ref != b.subject_ref("bsn", "999990019"), "another organisation, another pseudonym"
    assert ref != a.subject_ref("fhir-patient", "999990019"), "namespaces do not collide"
    assert "999990019" not in ref
    assert not ids.find_bsn(ref)
    assert rt.Pseudonymiser(b"a" * 32).case_ref("zaak", "u").startswith("case-")
    with pytest.raises(ConfigError):
        rt.Pseudonymiser(b"short")


def test_pseudonyms_never_hold_a_bsn_shaped_run() -> None:
    p = rt.Pseudonymiser(b"k" * 32)
    for n in range(2000):
        assert not ids.find_bsn(p.subject_ref("bsn", f"{n:09d}"))


# ---------------------------------------------------------------- state


def test_state_is_replaced_whole(tmp_path: Path) -> None:
    state = rt.StateFile(tmp_path / "s" / "state.json")
    assert state.load() == {}
    state.data["cursor"] = 7
    state.save()
    again = rt.StateFile(tmp_path / "s" / "state.json")
    assert again.load() == {"cursor": 7}
    assert [p.name for p in (tmp_path / "s").iterdir()] == ["state.json"], "no temp files left"


def test_corrupt_state_is_an_error_not_a_silent_reset(tmp_path: Path) -> None:
    write(tmp_path / "state.json", "{half")
    with pytest.raises(ConfigError, match="not JSON"):
        rt.StateFile(tmp_path / "state.json").load()
    write(tmp_path / "state.json", "[]")
    with pytest.raises(ConfigError, match="not a JSON object"):
        rt.StateFile(tmp_path / "state.json").load()


def test_open_state_has_its_tables_and_keeps_what_it_held(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    state = rt.StateFile.open(path, ("seen", "sent"))
    assert state.data == {"seen": {}, "sent": {}}
    assert not path.exists(), "opening writes nothing"
    state.data["seen"]["a"] = 1
    state.save()
    again = rt.StateFile.open(path, ("seen", "new"))
    assert again.data == {"seen": {"a": 1}, "sent": {}, "new": {}}


def test_remembered_tables_are_bounded_oldest_first_and_saved(tmp_path: Path) -> None:
    state = rt.StateFile.open(tmp_path / "state.json", ("seen",))
    assert [state.remember("seen", k, None, limit=3) for k in "abc"] == [[], [], []]
    assert state.remember("seen", "a", 1, limit=3) == [], "a new value keeps the key's place"
    assert state.remember("seen", "d", 4, limit=3) == ["a"]
    assert rt.StateFile(state.path).load() == {"seen": {"b": None, "c": None, "d": 4}}
    assert state.remember("seen", "e", 5, limit=1) == ["b", "c", "d"]
    assert list(state.data["seen"]) == ["e"]


# ---------------------------------------------------------------- logs and health


def _fail_with_personal_data() -> None:
    raise ValueError("secret value 999990019")


def test_log_lines_are_json_with_the_event_and_fields() -> None:
    stream = io.StringIO()
    log = rt.EventLog("unit", stream=stream)
    log.info("sent", message_id="m1", time="clash", filename="f.csv")
    try:
        _fail_with_personal_data()
    except ValueError:
        log.exception("failed", source="f1")
    first, second = (json.loads(x) for x in stream.getvalue().splitlines())
    # The node's shape (gateway/logs.py): a caller's field never takes the line's own names.
    assert list(first)[:4] == ["time", "level", "logger", "message"]
    assert first["message"] == "sent"
    assert first["field_time"] == "clash"
    assert first["field_filename"] == "f.csv"
    assert first["message_id"] == "m1"
    assert first["adapter"] == "unit"
    assert second["exception"] == "ValueError"
    assert "999990019" not in stream.getvalue(), "exception messages are not logged"


async def test_health_report_and_endpoint() -> None:
    import aiohttp

    health = rt.Health("unit", ("node", "partner"))
    assert not health.ready()
    health.ok("node")
    health.ok("partner")
    assert health.ready()
    health.failed("partner", "ClientConnectorError")
    assert not health.ready()
    runner, port = await rt.serve_health(health, rt.HealthSettings())
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/readyz") as resp:
                assert resp.status == 503
                report = await resp.json()
            async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                assert resp.status == 200
    finally:
        await runner.cleanup()
    assert report["components"]["partner"]["error"] == "ClientConnectorError"


async def test_serving_stops_the_health_listener_and_says_so_however_the_run_ends() -> None:
    import aiohttp

    stream = io.StringIO()
    log = rt.EventLog("unit", stream=stream)
    health = rt.Health("unit", ("node",))
    answered: list[int] = []

    async def adapter_run() -> None:
        async with rt.serving(health, rt.HealthSettings(), log):
            port = json.loads(stream.getvalue().splitlines()[0])["port"]
            async with (
                aiohttp.ClientSession() as http,
                http.get(f"http://127.0.0.1:{port}/healthz") as resp,
            ):
                answered.append(resp.status)
            raise RuntimeError("the adapter failed")

    with pytest.raises(RuntimeError):
        await adapter_run()
    assert answered == [200]
    port = json.loads(stream.getvalue().splitlines()[0])["port"]
    events = [json.loads(x)["message"] for x in stream.getvalue().splitlines()]
    assert events == ["health_listening", "stopped"]
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.ClientConnectionError):
            await http.get(f"http://127.0.0.1:{port}/healthz")


async def test_serving_without_a_health_listener_still_says_stopped() -> None:
    stream = io.StringIO()
    log = rt.EventLog("unit", stream=stream)
    async with rt.serving(rt.Health("unit", ()), rt.HealthSettings(enabled=False), log):
        pass
    assert [json.loads(x)["message"] for x in stream.getvalue().splitlines()] == ["stopped"]


async def test_sleep_or_stop_returns_at_once_when_stopped() -> None:
    stop = asyncio.Event()
    assert not await rt.sleep_or_stop(stop, 0.01)
    stop.set()
    assert await rt.sleep_or_stop(stop, 3600)
