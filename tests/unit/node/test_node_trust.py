"""A node never rolls its directory back across restarts, and production mode fails closed.

Issue 14 point 1: every newly trusted version is durable (file and folder fsynced, store and
audit log written) before the node uses it, and the highest version ever trusted survives the
loss of ``trusted-directory.json``: the store and the audit log hold it too."""

from __future__ import annotations

import asyncio
import errno
import os
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.core.directory import TrustedDirectory
from gateway.errors import LocalError, RemoteError
from gateway.federation import add_rule, read_directory, sign_with, write_directory
from gateway.node import preflight, runner
from gateway.node.config import load_config
from gateway.node.trust import TRUSTED_FILE, change_record, load_trusted_directory
from gateway.testing.federation import create_demo_federation
from gateway.testing.nodes import write_node_config
from gateway.testing.veenstad import org_by_key
from schemas import ids
from schemas.catalogue import default_catalogue
from tests.directories import signed_directory
from tests.e2e.harness import free_port

CAT = default_catalogue()


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A federation, a node config for the police, and a signed version 3 beside version 2."""
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    files = create_demo_federation(
        tmp_path / "fed", now=now, lifetime=timedelta(days=30), catalogue=CAT, rand=os.urandom
    )
    org = org_by_key("politie")
    password = tmp_path / "broker.password"
    password.write_text("not-a-real-password\n", "utf-8")
    password.chmod(0o600)
    node = write_node_config(
        tmp_path / "node.toml",
        org=org,
        keys_dir=files.keys_dir("politie"),
        directory=files.directory,
        data_dir=tmp_path / "data",
        # No broker listens on port 1: the node keeps retrying in the background, as it would
        # while its broker is down; nothing here needs one.
        broker_url="amqp://127.0.0.1:1/zvg-veenstad",
        password_file=password,
        listen=f"127.0.0.1:{free_port()}",
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
    monkeypatch.setattr(preflight, "EXAMPLE_KIDS_FILE", tmp_path / "missing.json")
    with pytest.raises(LocalError, match="reinstall"):
        preflight.example_kids()
    assert len(preflight.EXAMPLE_KIDS_FILE.parent.name) > 0


# ---------------------------------------------------------------------------- issue 14 point 1


async def _running(config_path: Path) -> runner.Node:
    return await runner.Node.start(load_config(config_path))


async def _refused_start(config_path: Path) -> str:
    """Start the node, which must refuse: the one line it refuses with."""
    try:
        node = await _running(config_path)
    except LocalError as exc:
        return str(exc)
    await node.stop()
    raise AssertionError("the node started")


@pytest.fixture
async def on_v3(setup: tuple[Path, Path, Path]) -> tuple[Path, Path, Path]:
    """A node that started on v2 and trusted v3 while running (the poll's path), then stopped;
    its ``directory.file`` is still the v2 file, as after a rollback of that file."""
    config_path, _v2, v3_path = setup
    node = await _running(config_path)
    try:
        assert node.service.directory.version == 2
        assert await node.service.load_directory(v3_path.read_bytes(), CAT)
        assert node.service.directory.version == 3
    finally:
        await node.stop()
    return setup


def _directory_changes(config_path: Path) -> list[tuple[str, int]]:
    """(status, version) of the ``directory.change`` records in the node's audit log."""
    store = load_config(config_path).store_path
    db = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    try:
        rows = db.execute(
            "SELECT json_extract(view, '$.status'), json_extract(view, '$.policy_version')"
            " FROM audit_records WHERE name = 'directory.change' ORDER BY idx"
        ).fetchall()
    finally:
        db.close()
    return [(str(status), int(version)) for status, version in rows]


async def test_deleting_the_remembered_directory_does_not_reopen_a_rollback(
    on_v3: tuple[Path, Path, Path],
) -> None:
    config_path, _v2, _v3 = on_v3
    (load_config(config_path).node.data_dir / TRUSTED_FILE).unlink()
    line = await _refused_start(config_path)
    assert "\n" not in line
    assert "directory version 2, older than version 3" in line, line
    assert _directory_changes(config_path)[-2:] == [("ok", 3), ("rejected", 2)]


async def test_the_audit_log_alone_still_refuses_a_rollback(
    on_v3: tuple[Path, Path, Path],
) -> None:
    """Remembered file and the store's copy both gone, and a first-trust pin of v2 in the config:
    the audit log's ``directory.change`` to v3 still refuses v2 (only an empty store falls back
    to the pin)."""
    config_path, v2_path, _v3 = on_v3
    config = load_config(config_path)
    (config.node.data_dir / TRUSTED_FILE).unlink()
    db = sqlite3.connect(config.store_path)
    with db:
        deleted = db.execute("DELETE FROM meta WHERE key LIKE 'trusted_directory%'").rowcount
    db.close()
    assert deleted >= 1, "the store keeps no copy of the trusted directory"
    text = config_path.read_text("utf-8")
    config_path.write_text(
        text.replace("[directory]", f'[directory]\ntrust_anchor = "{v2_path}"'), "utf-8"
    )
    assert load_config(config_path).directory.trust_anchor == v2_path
    assert "older than version 3" in await _refused_start(config_path)


async def test_a_node_with_an_empty_store_falls_back_to_the_trust_anchor(
    setup: tuple[Path, Path, Path],
) -> None:
    config_path, v2_path, v3_path = setup
    text = config_path.read_text("utf-8")
    config_path.write_text(
        text.replace("[directory]", f'[directory]\ntrust_anchor = "{v3_path}"'), "utf-8"
    )
    assert load_config(config_path).directory.trust_anchor == v3_path
    assert "directory version 2, older than version 3" in await _refused_start(config_path)
    config_path.write_text(config_path.read_text("utf-8").replace(str(v2_path), str(v3_path)))
    node = await _running(config_path)
    try:
        assert node.service.directory.version == 3
    finally:
        await node.stop()
    # The refusal is on record; the store held no trusted version, so the pin still decides.
    assert _directory_changes(config_path) == [("rejected", 2), ("ok", 3)]


async def _until(what: str, check: Callable[[], bool]) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"not within 60 s: {what}")
        await asyncio.sleep(0.02)


async def test_a_directory_update_that_cannot_be_made_durable_is_not_used(
    setup: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    config_path, v2_path, v3_path = setup
    v2, v3 = v2_path.read_bytes(), v3_path.read_bytes()
    remembered = load_config(config_path).node.data_dir / TRUSTED_FILE
    monkeypatch.setattr(runner, "DIRECTORY_POLL_S", 0.02)
    real_fsync, failed = os.fsync, []

    def broken_disk(fd: int) -> None:
        failed.append(fd)
        raise OSError(errno.EIO, "Input/output error")

    node = await _running(config_path)
    try:
        monkeypatch.setattr(os, "fsync", broken_disk)
        v2_path.write_bytes(v3)  # ops install v3; the poll sees it
        await _until(
            "two attempts to make v3 durable, or v3 in use",
            lambda: len(failed) >= 2 or node.service.directory.version == 3,
        )
        assert node.service.directory.version == 2, "v3 is in use but not durable"
        assert remembered.read_bytes() == v2
        monkeypatch.setattr(os, "fsync", real_fsync)
        await _until("v3 trusted once the disk works", lambda: node.service.directory.version == 3)
        assert remembered.read_bytes() == v3
    finally:
        monkeypatch.setattr(os, "fsync", real_fsync)
        await node.stop()
    assert _directory_changes(config_path) == [("ok", 2), ("ok", 3)]


async def test_a_trusted_update_is_fsynced_with_its_folder_before_use(
    setup: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    config_path, _v2, v3_path = setup
    v3 = v3_path.read_bytes()
    data_dir = load_config(config_path).node.data_dir
    remembered = data_dir / TRUSTED_FILE
    node = await _running(config_path)
    real_fsync = os.fsync
    synced: list[tuple[Path, int, bytes]] = []  # what, the version in use, the remembered file

    def watching(fd: int) -> None:
        real_fsync(fd)
        what = Path(f"/proc/self/fd/{fd}").readlink()
        state = remembered.read_bytes() if remembered.exists() else b""
        synced.append((what, node.service.directory.version, state))

    try:
        monkeypatch.setattr(os, "fsync", watching)
        assert await node.service.load_directory(v3, CAT)
        monkeypatch.setattr(os, "fsync", real_fsync)
        assert node.service.directory.version == 3
    finally:
        monkeypatch.setattr(os, "fsync", real_fsync)
        await node.stop()
    files = [i for i, (what, _v, _s) in enumerate(synced) if what.parent == data_dir]
    folder = [i for i, (what, _v, _s) in enumerate(synced) if what == data_dir]
    assert files, f"the new version's file was not fsynced: {synced}"
    assert folder, f"the data folder was not fsynced after the rename: {synced}"
    assert files[0] < folder[-1]
    _what, version, state = synced[folder[-1]]
    assert version == 2, "v3 was in use before it was durable"
    assert state == v3
    assert remembered.read_bytes() == v3


def test_a_directory_whose_digest_looks_like_a_bsn_is_still_recorded() -> None:
    """The digest is hex: some versions hold nine digits that pass the 11-proef. In the record's
    free-form ``detail`` the BSN guard refused it, so such a version could never be trusted by
    polling (and the poll stopped); the opaque ``digest`` field is where it belongs."""
    now = datetime.now(UTC)
    for version in range(2, 2_000):
        trusted = TrustedDirectory.first(signed_directory(version=version), now=now, catalogue=CAT)
        if ids.find_bsn(trusted.signed.digest()):
            break
    else:
        raise AssertionError("no version with a BSN-shaped digest in 2,000")
    record = change_record(trusted, version - 1, now)
    assert record.digest == trusted.signed.digest()
    assert record.policy_version == version


async def test_a_rollback_is_recorded_even_when_another_problem_also_stops_the_node(
    on_v3: tuple[Path, Path, Path],
) -> None:
    """Issue 18 point 7: run and check-config share their checks (gateway.node.preflight); with
    a rollback and another problem, run still records the rollback, and refuses with the line
    check-config gives for the other problem."""
    config_path, _v2, _v3 = on_v3
    text = config_path.read_text("utf-8")
    config_path.write_text(text.replace("amqp://127.0.0.1:1/", "amqp://u:p@127.0.0.1:1/"), "utf-8")
    line = await _refused_start(config_path)
    assert line == "broker.url: put no credentials in the URL; use broker.password_file"
    assert _directory_changes(config_path)[-1] == ("rejected", 2)
