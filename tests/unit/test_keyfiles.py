"""Key files: private keys never readable by others, never overwritten, loud when loose."""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path

import pytest

from gateway.core.keys import Suite
from gateway.errors import LocalError
from gateway.keyfiles import (
    generate_keys,
    load_audit_key,
    load_decryption_key,
    load_public_keys,
    load_signing_key,
    read_passphrase,
    write_private_key,
)
from tests.envelope_forge import SeededRand, decryption_key, signing_key

ORG = "00000001999000001000"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("suite", list(Suite))
def test_generate_writes_0600_pkcs8_and_a_public_jwks(tmp_path: Path, suite: Suite) -> None:
    out = generate_keys(ORG, tmp_path / "keys", suite, rand=SeededRand("g"))
    assert _mode(out.signing_key_file) == 0o600
    assert _mode(out.encryption_key_file) == 0o600
    assert out.signing_key_file.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert load_signing_key(out.signing_key_file).kid == out.signing_kid
    assert load_decryption_key(out.encryption_key_file).kid == out.encryption_kid
    doc = json.loads(out.jwks_file.read_text())
    assert doc["zvg_org"] == ORG
    assert all("d" not in k for k in doc["keys"])
    public = load_public_keys(out.jwks_file)
    assert public.org == ORG
    assert [k.kid for k in public.signing] == [out.signing_kid]
    assert [k.kid for k in public.encryption] == [out.encryption_kid]
    assert {k["use"] for k in doc["keys"]} == {"sig", "enc", "audit"}
    assert _mode(out.audit_key_file) == 0o600
    audit = load_audit_key(out.audit_key_file)
    assert [k.public_bytes_raw() for k in public.audit] == [audit.public_key().public_bytes_raw()]


def test_generate_refuses_to_overwrite_existing_keys(tmp_path: Path) -> None:
    first = generate_keys(ORG, tmp_path, Suite.P256, rand=SeededRand("1"))
    before = first.signing_key_file.read_bytes()
    with pytest.raises(LocalError, match="refusing to overwrite"):
        generate_keys(ORG, tmp_path, Suite.P256, rand=SeededRand("2"))
    assert first.signing_key_file.read_bytes() == before


def test_write_private_key_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "k.pem"
    path.write_bytes(b"precious")
    with pytest.raises(LocalError, match="already exists"):
        write_private_key(path, signing_key(Suite.P256, "a").private)
    assert path.read_bytes() == b"precious"


def test_private_key_is_0600_even_under_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        write_private_key(tmp_path / "k.pem", signing_key(Suite.CURVE25519, "a").private)
    finally:
        os.umask(old)
    assert _mode(tmp_path / "k.pem") == 0o600


def test_passphrase_protects_the_key(tmp_path: Path) -> None:
    out = generate_keys(ORG, tmp_path, Suite.CURVE25519, rand=SeededRand("p"), passphrase=b"pw")
    assert b"ENCRYPTED PRIVATE KEY" in out.signing_key_file.read_bytes()
    assert load_signing_key(out.signing_key_file, b"pw").kid == out.signing_kid
    with pytest.raises(LocalError, match="passphrase"):
        load_signing_key(out.signing_key_file)
    with pytest.raises(LocalError, match="passphrase is wrong"):
        load_signing_key(out.signing_key_file, b"wrong")


def test_passphrase_given_for_an_unencrypted_key_is_an_error(tmp_path: Path) -> None:
    out = generate_keys(ORG, tmp_path, Suite.P256, rand=SeededRand("u"))
    with pytest.raises(LocalError, match="not encrypted"):
        load_signing_key(out.signing_key_file, b"pw")


def test_loading_a_key_readable_by_others_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = generate_keys(ORG, tmp_path, Suite.P256, rand=SeededRand("w"))
    with caplog.at_level(logging.WARNING, logger="gateway.keyfiles"):
        load_signing_key(out.signing_key_file)
    assert caplog.records == []
    out.signing_key_file.chmod(0o640)
    with caplog.at_level(logging.WARNING, logger="gateway.keyfiles"):
        key = load_signing_key(out.signing_key_file)
    assert key.kid == out.signing_kid  # still loads: a warning, not an outage
    assert len(caplog.records) == 1
    assert "0640" in caplog.records[0].getMessage()
    assert str(out.signing_key_file) in caplog.records[0].getMessage()


def test_a_key_of_the_wrong_kind_is_refused(tmp_path: Path) -> None:
    write_private_key(tmp_path / "x.pem", decryption_key(Suite.CURVE25519, "x").private)
    write_private_key(tmp_path / "e.pem", signing_key(Suite.CURVE25519, "e").private)
    with pytest.raises(LocalError, match="signing key"):
        load_signing_key(tmp_path / "x.pem")
    with pytest.raises(LocalError, match="encryption key"):
        load_decryption_key(tmp_path / "e.pem")


@pytest.mark.parametrize(
    "content",
    [b"", b"not a key", b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"],
)
def test_a_file_that_is_not_a_key_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.pem"
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(LocalError, match="not a PKCS#8"):
        load_signing_key(path)


def test_missing_and_oversized_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(LocalError, match="cannot read"):
        load_signing_key(tmp_path / "missing.pem")
    big = tmp_path / "big.pem"
    big.write_bytes(b"x" * 70_000)
    big.chmod(0o600)
    with pytest.raises(LocalError, match="larger than"):
        load_signing_key(big)


def test_public_key_files_are_checked(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    sk = signing_key(Suite.P256, "a").public.jwk()
    path.write_text(json.dumps(sk))
    assert load_public_keys(path).signing[0].kid == sk["kid"]
    path.write_text(json.dumps({"keys": [{**sk, "kid": "forged"}]}))
    with pytest.raises(LocalError, match="thumbprint"):
        load_public_keys(path)
    ambiguous = {k: v for k, v in sk.items() if k != "use"}
    path.write_text(json.dumps({"keys": [ambiguous]}))
    with pytest.raises(LocalError, match="ambiguous"):
        load_public_keys(path)
    path.write_text("[]")
    with pytest.raises(LocalError):
        load_public_keys(path)
    path.write_text("{")
    with pytest.raises(LocalError, match="not JSON"):
        load_public_keys(path)


def test_passphrase_file_is_its_first_line(tmp_path: Path) -> None:
    path = tmp_path / "pw"
    path.write_bytes(b"correct horse\nignored\n")
    assert read_passphrase(path) == b"correct horse"
    path.write_bytes(b"\n")
    with pytest.raises(LocalError, match="empty"):
        read_passphrase(path)
