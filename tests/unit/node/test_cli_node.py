"""``zvg node check-config`` and ``zvg node new-token``: exit 0 and say so on a good file; a
non-zero exit with one readable line (``zvg: error: <file>: <setting>: <problem>``) on a bad one;
a new token's config lines are valid and hold the hash of the printed token."""

from __future__ import annotations

import logging
import os
import shutil
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

import pytest
from click.testing import CliRunner, Result

from gateway.cli import cli
from gateway.errors import LocalError
from gateway.node import runner
from gateway.node.config import hash_token, load_config
from gateway.node.preflight import preflight
from gateway.node.trust import TRUSTED_FILE
from gateway.testing.veenstad import org_by_key
from tests.directories import revoke_signing_keys
from tests.unit.node.conftest import EXAMPLE_KEYS, NodeSetup


def zvg(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


def _one_error_line(result: Result, config: Path) -> str:
    assert result.exit_code != 0
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"zvg: error: {config}: "), lines[0]
    return lines[0]


def test_check_config_accepts_a_good_file(setup: NodeSetup) -> None:
    result = zvg("node", "check-config", "--config", setup.config)
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"{setup.config}: OK (production mode, org 00000001999000002000, node pol-veenstad-1)\n"
    )


def test_check_config_names_a_bad_setting(setup: NodeSetup) -> None:
    setup.edit('org = "00000001999000002000"', 'org = "1999000002000"')
    line = _one_error_line(zvg("node", "check-config", "--config", setup.config), setup.config)
    assert "node.org: String should match pattern" in line


def test_check_config_refuses_an_org_outside_the_directory(setup: NodeSetup) -> None:
    setup.edit('org = "00000001999000002000"', 'org = "00000001999000003000"')
    line = _one_error_line(zvg("node", "check-config", "--config", setup.config), setup.config)
    assert "node.org: 00000001999000003000 is not a member of directory v2" in line


def test_check_config_refuses_an_unknown_purpose(setup: NodeSetup) -> None:
    setup.append('[purposes."ZVH.ONBEKEND"]\nlegal_basis = ["WGS"]\nprocessing_activity = "x"')
    line = _one_error_line(zvg("node", "check-config", "--config", setup.config), setup.config)
    assert "purposes: unknown purpose codes ['ZVH.ONBEKEND']" in line


def test_check_config_lists_every_file_problem_on_one_line(setup: NodeSetup) -> None:
    config = load_config(setup.config)
    config.keys.signing.chmod(0o644)
    config.keys.audit.unlink()
    line = _one_error_line(zvg("node", "check-config", "--config", setup.config), setup.config)
    assert f"keys.signing: {config.keys.signing} is readable by group or others" in line
    assert f"keys.audit: {config.keys.audit} does not exist" in line


def test_check_config_refuses_copied_example_keys_in_production(
    tmp_path: Path, make_setup: Callable[..., NodeSetup]
) -> None:
    keys = tmp_path / "elsewhere"
    shutil.copytree(EXAMPLE_KEYS / "orgs" / "politie", keys)
    for pem in keys.glob("*.pem"):
        pem.chmod(0o600)
    setup = make_setup(keys_dir=keys)
    line = _one_error_line(zvg("node", "check-config", "--config", setup.config), setup.config)
    assert "keys: these are example keys from keys_example/" in line
    demo = make_setup(keys_dir=keys, mode="demo")
    assert zvg("node", "check-config", "--config", demo.config).exit_code == 0


def test_check_config_reports_bad_toml_in_one_line(setup: NodeSetup) -> None:
    setup.append("[[[")
    line = _one_error_line(zvg("node", "check-config", "--config", setup.config), setup.config)
    assert "not valid TOML" in line


@pytest.mark.parametrize("command", ["check-config", "run"])
def test_a_missing_config_file_is_one_line(tmp_path: Path, command: str) -> None:
    missing = tmp_path / "node.toml"
    result = zvg("node", command, "--config", missing)
    assert result.exit_code == 2
    assert result.stderr == (
        f"zvg: error: {missing}: cannot read the config file (No such file or directory)\n"
    )


def _token_lines(result: Result) -> tuple[str, str]:
    assert result.exit_code == 0, result.output
    head, _, config = result.stdout.partition("add to node.toml:\n")
    token = head.removeprefix("token (give it to the client, it is not stored): ").strip()
    return token, config


def test_new_token_prints_valid_config_holding_the_hash(setup: NodeSetup) -> None:
    token, lines = _token_lines(zvg("node", "new-token", "--name", "ggz-ehr"))
    assert len(token) >= 43, "32 random bytes"
    assert token not in lines, "the config holds only the hash"
    assert tomllib.loads(lines) == {
        "api": {"tokens": [{"name": "ggz-ehr", "role": "adapter", "sha256": hash_token(token)}]}
    }
    setup.append(lines)
    added = load_config(setup.config).api.tokens[-1]
    assert added.name == "ggz-ehr"
    assert added.role == "adapter"
    assert added.matches(token)


def test_new_token_for_an_auditor_and_fresh_each_time() -> None:
    first, lines = _token_lines(
        zvg("node", "new-token", "--name", "fg-office", "--role", "auditor")
    )
    second, _ = _token_lines(zvg("node", "new-token", "--name", "fg-office", "--role", "auditor"))
    assert first != second
    assert tomllib.loads(lines)["api"]["tokens"][0]["role"] == "auditor"


def test_new_token_refuses_a_name_that_is_not_a_config_name() -> None:
    result = zvg("node", "new-token", "--name", 'x" injected = "y')
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith("zvg: error: invalid input: name: String should match")


def test_check_config_warns_of_a_rollback_and_leaves_the_refusal_to_node_run(
    setup: NodeSetup, tmp_path: Path
) -> None:
    """The node once trusted v3; its directory file is v2 again. check-config runs before every
    start (systemd, the image): failing there would keep `zvg node run` from recording the
    attempt in the audit log, so it warns in one line and passes."""
    data_dir = load_config(setup.config).node.data_dir
    data_dir.mkdir(parents=True, mode=0o700)
    v3 = revoke_signing_keys(
        setup.fed, setup.fed.directory, org_by_key("politie").oin, tmp_path / "directory.v3.json"
    )
    shutil.copyfile(v3, data_dir / TRUSTED_FILE)
    (data_dir / TRUSTED_FILE).chmod(0o600)  # as the node writes it: no warning about modes
    result = zvg("node", "check-config", "--config", setup.config)
    assert result.exit_code == 0, result.output
    assert result.stdout.endswith(
        "OK (production mode, org 00000001999000002000, node pol-veenstad-1)\n"
    )
    warning = result.stderr.splitlines()
    assert len(warning) == 1, result.stderr
    assert warning[0].startswith("zvg: warning: "), warning[0]
    assert "directory version 2, older than version 3" in warning[0], warning[0]
    assert "zvg node run will refuse to start" in warning[0], warning[0]


# ------------------------------------------------------------- issue 18 point 7: check-config = run


def _no_scheme(setup: NodeSetup) -> None:
    setup.edit('url = "amqp://127.0.0.1:5672/zvg-veenstad"', 'url = "http://127.0.0.1:5672/x"')


def _credentials_in_url(setup: NodeSetup) -> None:
    setup.edit(
        'url = "amqp://127.0.0.1:5672/zvg-veenstad"',
        'url = "amqp://politie:hunter2@127.0.0.1:5672/zvg-veenstad"',
    )


def _amqps_without_ca(setup: NodeSetup) -> None:
    setup.edit('url = "amqp://127.0.0.1:5672/zvg-veenstad"', 'url = "amqps://127.0.0.1/zvg"')


def _no_password_file(setup: NodeSetup) -> None:
    text = setup.config.read_text("utf-8")
    line = next(x for x in text.splitlines() if x.startswith("password_file"))
    setup.edit(line, "")


_URL_LINE = 'url = "amqp://127.0.0.1:5672/zvg-veenstad"'


def _urls(*urls: str) -> str:
    return "urls = [" + ", ".join(f'"{u}"' for u in urls) + "]"


def _url_and_urls(setup: NodeSetup) -> None:
    setup.edit(_URL_LINE, f"{_URL_LINE}\n{_urls('amqp://127.0.0.1:5673/zvg-veenstad')}")


def _urls_mixing_tls(setup: NodeSetup) -> None:
    setup.edit(_URL_LINE, _urls("amqp://a:5672/zvg-veenstad", "amqps://b:5671/zvg-veenstad"))


def _urls_with_two_vhosts(setup: NodeSetup) -> None:
    setup.edit(_URL_LINE, _urls("amqp://a:5672/zvg-veenstad", "amqp://b:5672/zvg-elders"))


def _urls_with_a_member_twice(setup: NodeSetup) -> None:
    setup.edit(_URL_LINE, _urls("amqp://a:5672/zvg-veenstad", "amqp://a:5672/zvg-veenstad"))


def _urls_with_credentials(setup: NodeSetup) -> None:
    setup.edit(_URL_LINE, _urls("amqp://a:5672/zvg-veenstad", "amqp://u:hunter2@b/zvg-veenstad"))


def _urls_with_a_bad_port(setup: NodeSetup) -> None:
    setup.edit(_URL_LINE, _urls("amqp://a:5672/zvg-veenstad", "amqp://b:99999/zvg-veenstad"))


def _node_id_not_in_directory(setup: NodeSetup) -> None:
    setup.edit('node_id = "pol-veenstad-1"', 'node_id = "pol-elders-9"')


def _org_not_in_directory(setup: NodeSetup) -> None:
    setup.edit('org = "00000001999000002000"', 'org = "00000001999000003000"')


def _unknown_purpose(setup: NodeSetup) -> None:
    setup.append('[purposes."ZVH.ONBEKEND"]\nlegal_basis = ["WGS"]\nprocessing_activity = "x"')


def _bad_setting(setup: NodeSetup) -> None:
    setup.edit('org = "00000001999000002000"', 'org = "1999000002000"')


def _key_readable_by_others(setup: NodeSetup) -> None:
    load_config(setup.config).keys.signing.chmod(0o644)


def _key_missing(setup: NodeSetup) -> None:
    load_config(setup.config).keys.audit.unlink()


def _not_a_key(setup: NodeSetup) -> None:
    load_config(setup.config).keys.signing.write_text("not a key\n", "utf-8")


def _example_keys_in_production(setup: NodeSetup) -> None:
    keys = load_config(setup.config).keys.signing.parent
    for pem in (EXAMPLE_KEYS / "orgs" / "politie").glob("*.pem"):
        (keys / pem.name).write_bytes(pem.read_bytes())


def _directory(setup: NodeSetup, content: bytes) -> None:
    """Point the config at a directory file of its own (the federation's is shared)."""
    own = setup.config.with_name("own-directory.json")
    own.write_bytes(content)
    setup.edit(str(load_config(setup.config).directory.file), str(own))


def _example_directory_in_production(setup: NodeSetup) -> None:
    _directory(setup, (EXAMPLE_KEYS / "directory.json").read_bytes())


def _directory_not_signed(setup: NodeSetup) -> None:
    _directory(setup, b'{"payload": "x"}')


#: Every refusal `zvg node run` makes before it opens its store or connects, but the one it must
#: record first (a directory rollback: check-config warns, see the test above and decision 0022).
RUN_REFUSALS: dict[str, tuple[Callable[[NodeSetup], None], str]] = {
    "a setting that is not valid": (_bad_setting, "node.org: String should match pattern"),
    "a key file missing": (_key_missing, "does not exist"),
    "a key file readable by others": (_key_readable_by_others, "readable by group or others"),
    "a key file that holds no key": (_not_a_key, "is not a PKCS#8 PEM private key"),
    "example keys in production": (_example_keys_in_production, "these are example keys"),
    "the example directory in production": (
        _example_directory_in_production,
        "directory: signed by the example authority",
    ),
    "a directory file that is not signed": (_directory_not_signed, "directory.file: refused"),
    "node.org not in the directory": (_org_not_in_directory, "node.org: 00000001999000003000"),
    "node.node_id not in the directory": (_node_id_not_in_directory, "node.node_id: pol-elders"),
    "an unknown purpose": (_unknown_purpose, "purposes: unknown purpose codes"),
    "broker.url not amqp": (_no_scheme, "broker.url: scheme must be amqp or amqps"),
    "credentials in broker.url": (_credentials_in_url, "broker.url: put no credentials"),
    "amqps without broker.ca_file": (_amqps_without_ca, "broker.ca_file is needed"),
    "broker.url and broker.urls": (_url_and_urls, "set broker.url (one address) or broker.urls"),
    "broker.urls mixing amqp and amqps": (_urls_mixing_tls, "broker.urls: mix of amqp and amqps"),
    "broker.urls with two vhosts": (_urls_with_two_vhosts, "members name different vhosts"),
    "broker.urls with a member twice": (_urls_with_a_member_twice, "a member is listed twice"),
    "credentials in broker.urls": (_urls_with_credentials, "broker.urls: put no credentials"),
    "a port out of range in broker.urls": (_urls_with_a_bad_port, "has no valid port"),
    "no broker password and no client certificate": (
        _no_password_file,
        "broker.password_file is needed",
    ),
}

_PAST_THE_CHECKS = "got past the pre-connect checks"


@pytest.fixture
def run_stops_after_its_checks(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """`zvg node run` in this process, stopped where it would open its store: a config that
    passes its checks ends with one known line rather than a node running until SIGTERM. The
    process-wide state `run` sets (umask, root logger) is put back."""

    async def past_the_checks(*args: object, **kwargs: object) -> NoReturn:
        raise LocalError(_PAST_THE_CHECKS)

    monkeypatch.setattr(runner, "open_service", past_the_checks)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    umask = os.umask(0o022)  # reading the umask sets it: put it back at once
    os.umask(umask)
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        os.umask(umask)


def test_a_good_config_passes_check_config_and_run_gets_past_the_same_checks(
    setup: NodeSetup, run_stops_after_its_checks: None
) -> None:
    assert zvg("node", "check-config", "--config", setup.config).exit_code == 0
    ran = zvg("node", "run", "--config", setup.config)
    assert ran.exit_code == 2
    assert ran.stderr.splitlines()[-1] == f"zvg: error: {_PAST_THE_CHECKS}"


@pytest.mark.parametrize(("refusal", "says"), RUN_REFUSALS.values(), ids=RUN_REFUSALS.keys())
def test_every_refusal_of_run_is_a_refusal_of_check_config_with_the_same_line(
    setup: NodeSetup,
    run_stops_after_its_checks: None,
    refusal: Callable[[NodeSetup], None],
    says: str,
) -> None:
    refusal(setup)
    checked = _one_error_line(zvg("node", "check-config", "--config", setup.config), setup.config)
    ran = _one_error_line(zvg("node", "run", "--config", setup.config), setup.config)
    assert ran == checked
    assert says in ran
    assert _PAST_THE_CHECKS not in ran


def test_check_config_refuses_a_node_id_the_directory_does_not_list(setup: NodeSetup) -> None:
    """Issue 18: check-config passed it, and run started with it."""
    _node_id_not_in_directory(setup)
    line = _one_error_line(zvg("node", "check-config", "--config", setup.config), setup.config)
    assert line.endswith(
        "node.node_id: pol-elders-9 is not a node of 00000001999000002000 in directory v2 "
        "(it lists pol-veenstad-1)"
    )


def test_check_config_refuses_credentials_in_the_broker_url(setup: NodeSetup) -> None:
    """Issue 18: run refused them, check-config passed them (and never prints them)."""
    _credentials_in_url(setup)
    line = _one_error_line(zvg("node", "check-config", "--config", setup.config), setup.config)
    assert line.endswith("broker.url: put no credentials in the URL; use broker.password_file")
    assert "hunter2" not in line


def test_broker_urls_pass_check_config_and_name_every_member_in_order(
    setup: NodeSetup, run_stops_after_its_checks: None
) -> None:
    """Issue 19 point 3: several cluster members; the login, vhost and password file apply to
    each, and a member without a port gets the AMQP default."""
    members = ("amqp://rabbit-1:5672/zvg-veenstad", "amqp://rabbit-2/zvg-veenstad")
    setup.edit(_URL_LINE, _urls(*members, "amqp://10.0.0.3:5673/zvg-veenstad"))
    assert zvg("node", "check-config", "--config", setup.config).exit_code == 0
    ran = zvg("node", "run", "--config", setup.config)
    assert ran.stderr.splitlines()[-1] == f"zvg: error: {_PAST_THE_CHECKS}"
    checked = preflight(load_config(setup.config)).checked
    assert checked is not None
    endpoint = checked.endpoint
    assert endpoint.members == (("rabbit-1", 5672), ("rabbit-2", 5672), ("10.0.0.3", 5673))
    assert (endpoint.vhost, endpoint.password is not None) == ("zvg-veenstad", True)


def test_new_token_for_the_ldv_read_roles(setup: NodeSetup) -> None:
    for role in ("contactpunt", "privacy-officer"):
        token, lines = _token_lines(
            zvg("node", "new-token", "--name", f"zvh-{role}", "--role", role)
        )
        setup.append(lines)
        added = load_config(setup.config).api.tokens[-1]
        assert (added.role, added.matches(token)) == (role, True)
    refused = zvg("node", "new-token", "--name", "so", "--role", "security-officer")
    assert refused.exit_code != 0
