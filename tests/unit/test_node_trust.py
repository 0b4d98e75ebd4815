"""A node never rolls its directory back across restarts, and production mode fails closed."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.demo.federation import create_demo_federation
from gateway.demo.nodes import write_node_config
from gateway.demo.veenstad import org_by_key
from gateway.errors import LocalError, RemoteError
from gateway.federation import add_rule, read_directory, sign_with, write_directory
from gateway.node import runner
from gateway.node.config import load_config
from gateway.node.trust import TRUSTED_FILE, load_trusted_directory
from schemas.catalogue import default_catalogue

CAT = default_catalogue()


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A federation, a node config for the police, and a signed version 3 beside version 2."""
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    files = create_demo_federation(
        tmp_path / "fed", now=now, lifetime=timedelta(days=30), catalogue=CAT, rand=os.urandom
    )
    org = org_by_key("politie")
    node = write_node_config(
        tmp_path / "node.toml",
        org=org,
        keys_dir=files.keys_dir("politie"),
        directory=files.directory,
        data_dir=tmp_path / "data",
        broker_url="amqp://127.0.0.1:5672/zvg-veenstad",
        password_file=None,
        listen="127.0.0.1:1",
        token="t" * 32,
        catalogue=CAT,
    )
    v2 = read_directory(files.directory, CAT)
    rule = v2.payload.policy.rules[0]
    v3 = add_rule(v2, rule.model_copy(update={"description": "changed"}), now=now, catalogue=CAT)
    for name in ("zvh-manager", "ciso-police"):
        v3 = sign_with(v3, files.authority_dir / f"{name}.key.pem", None)
    v3_path = write_directory(v3, tmp_path / "fed" / "directory.v3.json")
    return node.config, files.directory, v3_path


def test_the_trusted_version_is_remembered_and_never_rolled_back(
    setup: tuple[Path, Path, Path],
) -> None:
    config_path, v2_path, v3_path = setup
    config = load_config(config_path)
    assert load_trusted_directory(config, CAT, remember=True).version == 2
    assert (config.node.data_dir / TRUSTED_FILE).read_bytes() == v2_path.read_bytes()
    config_path.write_text(config_path.read_text().replace(str(v2_path), str(v3_path)))
    config = load_config(config_path)
    assert load_trusted_directory(config, CAT, remember=True).version == 3
    # An operator (or an attacker with write access to the config) points back at version 2:
    config_path.write_text(config_path.read_text().replace(str(v3_path), str(v2_path)))
    with pytest.raises(RemoteError) as caught:
        load_trusted_directory(load_config(config_path), CAT)
    assert caught.value.reason == "replayed"


def test_another_federations_directory_is_refused_after_first_use(
    setup: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    config_path, v2_path, _v3 = setup
    load_trusted_directory(load_config(config_path), CAT, remember=True)
    other = create_demo_federation(
        tmp_path / "other",
        now=datetime.now(UTC).replace(microsecond=0),
        lifetime=timedelta(days=30),
        catalogue=CAT,
        rand=os.urandom,
    )
    config_path.write_text(config_path.read_text().replace(str(v2_path), str(other.directory)))
    with pytest.raises(RemoteError) as caught:
        load_trusted_directory(load_config(config_path), CAT)
    assert caught.value.reason in ("bad_signature", "replayed")


def test_production_mode_fails_closed_without_the_example_key_list(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(runner, "EXAMPLE_KIDS_FILE", tmp_path / "missing.json")
    with pytest.raises(LocalError, match="reinstall"):
        runner.example_kids()
    assert len(runner.EXAMPLE_KIDS_FILE.parent.name) > 0
