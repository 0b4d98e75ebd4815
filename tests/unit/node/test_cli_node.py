"""``zvg node check-config`` and ``zvg node new-token``: exit 0 and say so on a good file; a
non-zero exit with one readable line (``zvg: error: <file>: <setting>: <problem>``) on a bad one;
a new token's config lines are valid and hold the hash of the printed token."""

from __future__ import annotations

import shutil
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from gateway.cli import cli
from gateway.node.config import hash_token, load_config
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
