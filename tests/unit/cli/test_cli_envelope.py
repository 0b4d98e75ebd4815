"""`zvg keys generate` and `zvg envelope inspect|seal|open`, as an integrator would run them."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from gateway.cli import cli
from schemas.claims import parse_claims
from tests.envelope_forge import EXAMPLES, example_claims

SENDER = "00000001999000002000"  # the police in the example referral
RECEIVER = "00000001999000001000"  # the ZVH
CLAIMS_FILE = EXAMPLES / "case.referral.json"
NOW = example_claims("case.referral").created_at.strftime("%Y-%m-%dT%H:%M:%SZ")


def _run(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture
def keydir(tmp_path: Path) -> Path:
    assert (
        _run(
            "keys", "generate", "--org", SENDER, "--out", tmp_path, "--suite", "curve25519"
        ).exit_code
        == 0
    )
    assert _run("keys", "generate", "--org", RECEIVER, "--out", tmp_path).exit_code == 0
    return tmp_path


def _seal(keydir: Path, out: Path) -> None:
    result = _run(
        "envelope",
        "seal",
        "--claims",
        CLAIMS_FILE,
        "--signing-key",
        keydir / f"{SENDER}.signing.key.pem",
        "--to",
        keydir / f"{RECEIVER}.public.jwks.json",
        "--out",
        out,
    )
    assert result.exit_code == 0, result.output


def _open(keydir: Path, envelope: Path, *extra: str) -> Result:
    return _run(
        "envelope",
        "open",
        envelope,
        "--key",
        keydir / f"{RECEIVER}.encryption.key.pem",
        "--sender-keys",
        keydir / f"{SENDER}.public.jwks.json",
        *extra,
    )


def test_keys_generate_writes_private_keys_0600(keydir: Path) -> None:
    for name in (f"{SENDER}.signing.key.pem", f"{RECEIVER}.encryption.key.pem"):
        assert stat.S_IMODE((keydir / name).stat().st_mode) == 0o600
    doc = json.loads((keydir / f"{SENDER}.public.jwks.json").read_text())
    assert {k["alg"] for k in doc["keys"]} == {"Ed25519", "ECDH-ES+A256KW"}


def test_keys_generate_refuses_to_overwrite(keydir: Path) -> None:
    result = _run("keys", "generate", "--org", SENDER, "--out", keydir)
    assert result.exit_code == 2
    assert "refusing to overwrite" in result.output


def test_keys_generate_checks_the_oin(tmp_path: Path) -> None:
    result = _run("keys", "generate", "--org", "12345", "--out", tmp_path)
    assert result.exit_code == 2
    assert "20 digits" in result.output


def test_keys_generate_with_a_passphrase_file(tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("secret\n")
    result = _run(
        "keys", "generate", "--org", SENDER, "--out", tmp_path / "k", "--passphrase-file", pw
    )
    assert result.exit_code == 0, result.output
    assert b"ENCRYPTED" in (tmp_path / "k" / f"{SENDER}.signing.key.pem").read_bytes()


def test_seal_then_open_prints_the_verified_claims(keydir: Path, tmp_path: Path) -> None:
    envelope = tmp_path / "env.json"
    _seal(keydir, envelope)
    result = _open(keydir, envelope, "--now", NOW)
    assert result.exit_code == 0, result.output
    assert parse_claims(result.stdout) == example_claims("case.referral")
    assert "verified: sender" in result.stderr


def test_open_refusal_is_one_line_and_exit_1(keydir: Path, tmp_path: Path) -> None:
    envelope = tmp_path / "env.json"
    _seal(keydir, envelope)
    result = _open(keydir, envelope, "--now", "2030-01-01T00:00:00Z")
    assert result.exit_code == 1
    assert result.stderr == "zvg: error: refused (expired): exp has passed\n"
    assert result.stdout == ""


def test_open_with_the_wrong_sender_keys_is_refused(keydir: Path, tmp_path: Path) -> None:
    envelope = tmp_path / "env.json"
    _seal(keydir, envelope)
    result = _run(
        "envelope",
        "open",
        envelope,
        "--key",
        keydir / f"{RECEIVER}.encryption.key.pem",
        "--sender-keys",
        keydir / f"{RECEIVER}.public.jwks.json",  # the receiver's own keys, not the sender's
        "--now",
        NOW,
    )
    assert result.exit_code == 1
    assert result.stderr.startswith("zvg: error: refused (unknown_sender)")


def test_inspect_shows_headers_without_keys(keydir: Path, tmp_path: Path) -> None:
    envelope = tmp_path / "env.json"
    _seal(keydir, envelope)
    result = _run("envelope", "inspect", envelope)
    assert result.exit_code == 0, result.output
    view = json.loads(result.stdout)
    assert view["protected"]["zvg_snd"] == SENDER
    assert view["protected"]["zvg_rcp"] == [RECEIVER]
    assert view["recipients"][0]["alg"] == "ECDH-ES+A256KW"
    assert view["iv_bytes"] == 12
    assert view["tag_bytes"] == 16


def test_inspect_reports_a_profile_violation_after_showing_it(tmp_path: Path, keydir: Path) -> None:
    envelope = tmp_path / "env.json"
    _seal(keydir, envelope)
    obj = json.loads(envelope.read_text())
    obj["aad"] = "AAAA"
    envelope.write_text(json.dumps(obj))
    result = _run("envelope", "inspect", envelope)
    assert result.exit_code == 1
    assert json.loads(result.stdout)["other_members"] == ["aad"]
    assert result.stderr.startswith("zvg: error: refused (unsupported)")


def test_inspect_reads_a_test_vector(tmp_path: Path, keydir: Path) -> None:
    envelope = tmp_path / "env.json"
    _seal(keydir, envelope)
    vector = tmp_path / "vector.json"
    vector.write_text(
        json.dumps({"description": "x", "envelope": json.loads(envelope.read_text())})
    )
    result = _run("envelope", "inspect", vector)
    assert result.exit_code == 0, result.output


def test_inspect_of_garbage_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk"
    junk.write_bytes(b"\x00\x01garbage")
    result = _run("envelope", "inspect", junk)
    assert result.exit_code == 1
    assert result.stderr.startswith("zvg: error: refused (malformed)")


def test_seal_refuses_claims_that_break_the_contract(keydir: Path, tmp_path: Path) -> None:
    data = json.loads(CLAIMS_FILE.read_text())
    data["purpose"] = "NOPE"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    result = _run(
        "envelope",
        "seal",
        "--claims",
        bad,
        "--signing-key",
        keydir / f"{SENDER}.signing.key.pem",
        "--to",
        keydir / f"{RECEIVER}.public.jwks.json",
    )
    assert result.exit_code == 1
    assert "refused (invalid_claims)" in result.stderr
    assert "purpose" in result.stderr


def test_seal_needs_recipient_encryption_keys(keydir: Path, tmp_path: Path) -> None:
    only_sig = tmp_path / "sig.json"
    doc = json.loads((keydir / f"{RECEIVER}.public.jwks.json").read_text())
    only_sig.write_text(json.dumps({"keys": [k for k in doc["keys"] if k["use"] == "sig"]}))
    result = _run(
        "envelope",
        "seal",
        "--claims",
        CLAIMS_FILE,
        "--signing-key",
        keydir / f"{SENDER}.signing.key.pem",
        "--to",
        only_sig,
    )
    assert result.exit_code == 2
    assert "no encryption keys" in result.stderr
