"""``node.toml``: every invalid setting is refused with one readable line naming the setting;
``check_files`` finds missing, too-readable and example key files; production mode refuses the
public example keys even when they are copied elsewhere (threat: a node in production running on
keys anyone can read in the repository)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.errors import LocalError
from gateway.node.activities import processing_activity
from gateway.node.config import NodeConfig, hash_token, load_config
from gateway.node.preflight import (
    EXAMPLE_KIDS_FILE,
    check_files,
    example_kids,
    load_keys,
    production_problems,
)
from gateway.node.trust import load_trusted_directory
from schemas.catalogue import default_catalogue
from tests.unit.node.conftest import EXAMPLE_KEYS, TOKEN, NodeSetup


def _error(path: Path) -> str:
    with pytest.raises(LocalError) as caught:
        load_config(path)
    message = str(caught.value)
    assert "\n" not in message, "one line"
    assert message.startswith(f"{path}: ")
    return message


def test_a_generated_file_loads_with_documented_defaults(setup: NodeSetup) -> None:
    config = load_config(setup.config)
    assert config.node.mode == "production"
    assert config.api.listen == "127.0.0.1:8400"
    assert config.limits.max_request_bytes == 512 * 1024
    assert config.retention.inbox_after_ack_days == 30
    assert config.retention.outbox_after_final_days == 7
    assert config.broker.prefetch == 128
    assert config.store_path == setup.node.data_dir / "node.db"
    assert config.source == setup.config.resolve()
    assert check_files(config) == []
    adapter = next(t for t in config.api.tokens if t.role == "adapter")
    assert adapter.matches(TOKEN)
    assert not adapter.matches(TOKEN + "x")


def test_relative_paths_resolve_against_the_config_folder(setup: NodeSetup) -> None:
    setup.edit(f'data_dir = "{setup.node.data_dir}"', 'data_dir = "var/state"')
    config = load_config(setup.config)
    assert config.node.data_dir == setup.config.parent.resolve() / "var" / "state"


def test_a_minimal_file_gets_every_default(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text(
        '[node]\norg = "00000001999000002000"\nnode_id = "pol-1"\n'
        '[keys]\nsigning = "s.pem"\nencryption = "e.pem"\naudit = "a.pem"\n'
        '[directory]\nfile = "directory.json"\n',
        "utf-8",
    )
    config = load_config(path)
    base = tmp_path.resolve()
    assert config.node.mode == "production", "production is the default: fail closed"
    assert config.node.data_dir == base / "var"
    assert config.keys.encryption == (base / "e.pem",), "one file may stand for a list"
    assert config.directory.file == base / "directory.json"
    assert config.api.tokens == (), "no token: nobody may use the API"
    defaults = NodeConfig.model_fields
    for section in ("broker", "api", "limits", "retention", "audit"):
        assert getattr(config, section) == defaults[section].default, section


def test_the_processing_activity_of_a_purpose_is_its_setting_else_derived_from_its_code(
    tmp_path: Path,
) -> None:
    path = tmp_path / "node.toml"
    text = (
        '[node]\norg = "00000001999000002000"\nnode_id = "pol-1"\n'
        '[keys]\nsigning = "s.pem"\nencryption = "e.pem"\naudit = "a.pem"\n'
        '[directory]\nfile = "directory.json"\n'
        '[purposes."ZVH.BEKENDHEID"]\nlegal_basis = ["WGS"]\n'
        'processing_activity = "https://register.example/verwerkingen/bekendheid/v2"\n'
    )
    path.write_text(text, "utf-8")
    config = load_config(path)
    assert processing_activity(config, "ZVH.BEKENDHEID") == (
        "https://register.example/verwerkingen/bekendheid/v2"
    )
    assert processing_activity(config, "ZVH.AANMELDING") == (
        "urn:zvg:00000001999000002000:verwerkingsactiviteit:zvh.aanmelding"
    )
    path.write_text(
        text + '[audit]\nprocessing_activities = "https://register.example/verwerkingen/"\n',
        "utf-8",
    )
    config = load_config(path)
    assert processing_activity(config, "ZVH.AANMELDING") == (
        "https://register.example/verwerkingen/zvh.aanmelding"
    )


@pytest.mark.parametrize(
    ("old", "new", "setting", "says"),
    [
        ('org = "00000001999000002000"', 'org = "1999000002000"', "node.org", "pattern"),
        ('org = "00000001999000002000"', 'org = "0000000199900000200X"', "node.org", "pattern"),
        ('mode = "production"', 'mode = "prod"', "node.mode", "'production' or 'demo'"),
        ("[node]", '[node]\ncolour = "red"', "node.colour", "Extra inputs"),
        ("[api]", "[api]\nport = 8400", "api.port", "Extra inputs"),
        ("[api]", "[apis]\n[api]", "apis", "Extra inputs"),
        ('listen = "127.0.0.1:8400"', 'listen = "localhost"', "api.listen", "pattern"),
        ('listen = "127.0.0.1:8400"', 'listen = "127.0.0.1:"', "api.listen", "pattern"),
        ('listen = "127.0.0.1:8400"', 'listen = "127.0.0.1:99999"', "api.listen", "port"),
        ('listen = "127.0.0.1:8400"', 'listen = "127.0.0.1:0"', "api.listen", "port"),
        ('listen = "127.0.0.1:8400"', 'listen = "0.0.0.0 :8400"', "api.listen", "pattern"),
        (
            'role = "adapter"',
            'role = "admin"',
            "api.tokens.0.role",
            "'contactpunt' or 'privacy-officer'",
        ),
        ("[broker]", "[broker]\nprefetch = 0", "broker.prefetch", "greater than or equal to 1"),
        (
            "[api]",
            '[audit.ldv_otlp]\nendpoint = "ftp://logboek"\n[api]',
            "audit.ldv_otlp.endpoint",
            "pattern",
        ),
        ("[api]", "[limits]\nmax_request_bytes = 10\n[api]", "limits.max_request_bytes", "1024"),
        ("[api]", "[retention]\ninbox_after_ack_days = -1\n[api]", "retention", "0"),
        ("encryption = [", "encryption = 5 #[", "keys.encryption", "tuple"),
        ("encryption = [", "encryption = [] #[", "keys.encryption", "at least 1"),
    ],
    ids=[
        "short-oin",
        "letter-in-oin",
        "mode",
        "unknown-key",
        "unknown-api-key",
        "unknown-section",
        "listen-no-port",
        "listen-empty-port",
        "listen-port-too-high",
        "listen-port-zero",
        "listen-space",
        "token-role",
        "prefetch",
        "ldv-otlp-endpoint",
        "request-limit",
        "negative-retention",
        "encryption-not-a-list",
        "no-encryption-key",
    ],
)
def test_a_bad_setting_is_named_in_one_line(
    setup: NodeSetup, old: str, new: str, setting: str, says: str
) -> None:
    setup.edit(old, new)
    message = _error(setup.config)
    assert f": {setting}" in message
    assert says in message


def test_a_missing_required_setting_is_named(setup: NodeSetup) -> None:
    text = setup.config.read_text("utf-8")
    setup.config.write_text(
        "\n".join(line for line in text.splitlines() if not line.startswith("node_id")), "utf-8"
    )
    assert "node.node_id: Field required" in _error(setup.config)


def test_several_problems_are_all_named_on_one_line(setup: NodeSetup) -> None:
    setup.edit('mode = "production"', 'mode = "prod"')
    setup.edit('listen = "127.0.0.1:8400"', 'listen = "localhost"')
    message = _error(setup.config)
    assert "node.mode" in message
    assert "api.listen" in message


def test_duplicate_token_names_are_refused(setup: NodeSetup) -> None:
    setup.edit('name = "politie-auditor"', 'name = "politie-adapter"')
    message = _error(setup.config)
    assert f"{setup.config}: api.tokens: two tokens share a name" == message


def test_duplicate_token_hashes_are_refused(setup: NodeSetup) -> None:
    setup.append(
        f'[[api.tokens]]\nname = "second"\nrole = "auditor"\nsha256 = "{hash_token(TOKEN)}"'
    )
    message = _error(setup.config)
    assert f"{setup.config}: api.tokens: two tokens share a hash" == message


def test_a_token_in_clear_is_refused(setup: NodeSetup) -> None:
    setup.edit(f'sha256 = "{hash_token(TOKEN)}"', f'sha256 = "{TOKEN}"')
    message = _error(setup.config)
    assert "api.tokens.0.sha256" in message
    assert TOKEN not in message, "the refused value is never echoed"


def test_a_missing_file_is_one_line(tmp_path: Path) -> None:
    message = _error(tmp_path / "nope.toml")
    assert "cannot read the config file (No such file or directory)" in message


def test_bad_toml_is_one_line_with_the_position(setup: NodeSetup) -> None:
    setup.append('[broker\nurl = "x"')
    message = _error(setup.config)
    assert "not valid TOML" in message
    assert "line" in message


def test_invalid_utf8_is_one_line(setup: NodeSetup) -> None:
    setup.config.write_bytes(setup.config.read_bytes() + b"\n# \xff\xfe\n")
    assert "not UTF-8" in _error(setup.config)


# ---------------------------------------------------------------------------- check_files


def test_missing_files_are_named(setup: NodeSetup) -> None:
    config = load_config(setup.config)
    config.keys.signing.unlink()
    config.directory.file.rename(config.directory.file.with_suffix(".moved"))
    try:
        problems = check_files(config)
    finally:
        config.directory.file.with_suffix(".moved").rename(config.directory.file)
    assert problems == [
        f"keys.signing: {config.keys.signing} does not exist",
        f"directory.file: {config.directory.file} does not exist",
    ]


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644])
def test_a_key_readable_by_group_or_others_is_refused(setup: NodeSetup, mode: int) -> None:
    config = load_config(setup.config)
    config.keys.audit.chmod(mode)
    expected = (
        f"keys.audit: {config.keys.audit} is readable by group or others; "
        f"run: chmod 600 {config.keys.audit}"
    )
    assert check_files(config) == [expected]


def test_a_readable_broker_password_file_is_refused(
    make_setup: Callable[..., NodeSetup],
) -> None:
    config = load_config(make_setup(secret=False).config)
    assert [p.split(":")[0] for p in check_files(config)] == ["broker.password_file"]


def test_every_encryption_key_is_checked(setup: NodeSetup) -> None:
    old = setup.config.read_text("utf-8").split("encryption = [")[1].split("]")[0]
    setup.edit(f"encryption = [{old}]", f'encryption = [{old}, "old.encryption.key.pem"]')
    config = load_config(setup.config)
    assert check_files(config) == [
        f"keys.encryption[1]: {setup.config.parent / 'old.encryption.key.pem'} does not exist"
    ]


def test_the_directory_may_be_world_readable(setup: NodeSetup) -> None:
    config = load_config(setup.config)
    config.directory.file.chmod(0o644)
    assert check_files(config) == []


# ---------------------------------------------------------------------------- example keys


def _example_copy(tmp: Path, folder_name: str) -> Path:
    """keys_example copied under ``tmp/<folder_name>`` with the keys made private again (git
    does not keep the 0600 mode of committed files)."""
    target = tmp / folder_name
    shutil.copytree(EXAMPLE_KEYS, target)
    for pem in target.rglob("*.pem"):
        pem.chmod(0o600)
    return target


def _production_problems(config_file: Path) -> list[str]:
    config = load_config(config_file)
    catalogue = default_catalogue()
    directory = load_trusted_directory(config, catalogue)
    return production_problems(config, directory, load_keys(config))


def test_example_keys_are_refused_by_path_in_production(
    tmp_path: Path, make_setup: Callable[..., NodeSetup]
) -> None:
    example = _example_copy(tmp_path, "keys_example")
    setup = make_setup(keys_dir=example / "orgs" / "politie", directory=example / "directory.json")
    config = load_config(setup.config)
    by_path = [p for p in check_files(config) if "keys_example" in p]
    assert {p.split(":")[0] for p in by_path} == {
        "keys.signing",
        "keys.audit",
        "keys.encryption[0]",
        "directory.file",
    }
    assert all("production mode refuses example keys" in p for p in by_path)
    problems = _production_problems(setup.config)
    assert any(p.startswith("keys: these are example keys") for p in problems)
    assert any(p.startswith("directory: signed by the example authority") for p in problems)


def test_example_keys_copied_elsewhere_are_refused_by_key_id(
    tmp_path: Path, make_setup: Callable[..., NodeSetup]
) -> None:
    example = _example_copy(tmp_path, "innocent-looking")
    setup = make_setup(keys_dir=example / "orgs" / "politie")
    config = load_config(setup.config)
    assert check_files(config) == [], "nothing in the paths gives them away"
    assert _production_problems(setup.config) == [
        "keys: these are example keys from keys_example/; production mode refuses them"
    ]


def test_an_example_directory_copied_elsewhere_is_refused_by_authority(
    tmp_path: Path, make_setup: Callable[..., NodeSetup]
) -> None:
    example = _example_copy(tmp_path, "innocent-looking")
    setup = make_setup(directory=example / "directory.json")
    assert _production_problems(setup.config) == [
        "directory: signed by the example authority of keys_example/; production refuses it"
    ]


def test_an_example_audit_key_alone_is_refused(
    tmp_path: Path, make_setup: Callable[..., NodeSetup]
) -> None:
    # Fresh message keys but the public example audit-log key: anyone could sign checkpoints of
    # this node's log.
    setup = make_setup()
    example = _example_copy(tmp_path, "innocent-looking")
    audit = next((example / "orgs" / "politie").glob("*.audit.key.pem"))
    shutil.copyfile(audit, load_config(setup.config).keys.audit)
    assert _production_problems(setup.config) == [
        "keys: these are example keys from keys_example/; production mode refuses them"
    ]


def test_demo_mode_allows_example_keys(
    tmp_path: Path, make_setup: Callable[..., NodeSetup]
) -> None:
    example = _example_copy(tmp_path, "keys_example")
    setup = make_setup(
        mode="demo", keys_dir=example / "orgs" / "politie", directory=example / "directory.json"
    )
    assert _production_problems(setup.config) == []


def test_fresh_keys_pass_in_production(setup: NodeSetup) -> None:
    assert _production_problems(setup.config) == []


def test_the_example_key_list_is_present_and_complete() -> None:
    # If the file were missing, example_kids() would return nothing and production mode would
    # silently accept copied example keys: keep it in the package and in step with keys_example.
    assert EXAMPLE_KIDS_FILE.is_file()
    from gateway.core.directory import parse_signed

    signed = parse_signed(
        (EXAMPLE_KEYS / "directory.json").read_bytes(), catalogue=default_catalogue()
    )
    listed = {k.kid for m in signed.payload.members for k in m.keys} | {
        k.kid for k in signed.payload.authority.keys
    }
    assert listed == example_kids()


# ---------------------------------------------------------------------------- store.url_file
# Threat: the PostgreSQL password (inside the URL a Kubernetes Secret or a database operator
# hands over) in a readable file, or quoted in an error line that reaches a log.

SECRET_URL = "postgresql://zvg_politie:s3cret-Pw@db.politie.example:5432/zvg_politie"


def _url_file(setup: NodeSetup, text: str, mode: int = 0o600) -> Path:
    path = setup.config.parent / "store-url"
    path.write_text(text, "utf-8")
    path.chmod(mode)
    setup.append('[store]\nurl_file = "store-url"')
    return path


def test_the_store_url_is_read_from_its_file(setup: NodeSetup) -> None:
    path = _url_file(setup, SECRET_URL + "\n")
    config = load_config(setup.config)
    assert config.store.url == SECRET_URL
    assert config.store.url_file == path.resolve()


@pytest.mark.parametrize("mode", [0o640, 0o604])
def test_a_store_url_file_readable_by_others_is_refused_without_quoting_it(
    setup: NodeSetup, mode: int
) -> None:
    path = _url_file(setup, SECRET_URL, mode)
    message = _error(setup.config)
    assert f"store.url_file: {path.resolve()} is readable by group or others" in message
    assert "s3cret" not in message


@pytest.mark.parametrize(
    "text", ["", "mysql://x@y/z", f"{SECRET_URL}\n{SECRET_URL}\n", "postgresql://" + "x" * 5000]
)
def test_a_store_url_file_without_one_url_is_refused_without_quoting_it(
    setup: NodeSetup, text: str
) -> None:
    _url_file(setup, text)
    message = _error(setup.config)
    assert "does not hold one postgresql:// URL" in message
    assert "s3cret" not in message
    assert "mysql" not in message


def test_a_missing_store_url_file_is_one_line(setup: NodeSetup) -> None:
    setup.append('[store]\nurl_file = "nowhere"')
    assert "store.url_file: " in _error(setup.config)
    assert "cannot read it (No such file or directory)" in _error(setup.config)


def test_store_url_and_url_file_together_are_refused(setup: NodeSetup) -> None:
    _url_file(setup, SECRET_URL)
    setup.edit("[store]\n", '[store]\nurl = "postgresql://a@b/c"\n')
    assert "give url or url_file, not both" in _error(setup.config)
