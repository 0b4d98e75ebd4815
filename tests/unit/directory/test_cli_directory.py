"""The administrators' workflow on the command line: init, add a member and a rule, gather
signatures one at a time, verify, show, rotate keys; and the committed keys_example directory."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from click.testing import CliRunner, Result

from gateway.cli import cli
from gateway.core.directory import TrustedDirectory
from gateway.federation import now_utc
from schemas.catalogue import default_catalogue
from tests.audit_logs import make_federation

ROOT = Path(__file__).resolve().parents[3]
GGZ = "00000001999000004000"
GEM = "00000001999000001000"


def zvg(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_administrator_workflow(tmp_path: Path) -> None:
    fed = tmp_path / "fed"
    r = zvg(
        "federation",
        "init",
        "--out",
        fed,
        "--federation",
        "veenstad",
        "--name",
        "ZVH Veenstad",
        "--authority",
        "zvh-manager",
        "--authority",
        "privacy-officer",
        "--authority",
        "ciso-police",
        "--threshold",
        "2",
    )
    assert r.exit_code == 0, r.output
    v1 = fed / "directory.v1.json"
    assert zvg("directory", "verify", v1).exit_code == 0

    r = zvg("keys", "generate", "--org", GGZ, "--out", tmp_path / "ggz")
    assert r.exit_code == 0, r.output
    r = zvg(
        "directory",
        "add-member",
        "--directory",
        v1,
        "--oin",
        GGZ,
        "--name",
        "GGZ Veenland",
        "--role",
        "GGZ",
        "--node",
        "ggz-veenland-1",
        "--broker-user",
        "zvg-ggz",
        "--keys",
        tmp_path / "ggz" / f"{GGZ}.public.jwks.json",
    )
    assert r.exit_code == 0, r.output
    v2 = fed / "directory.v2.json"
    assert v2.exists()
    assert v1.read_bytes() != v2.read_bytes()

    r = zvg(
        "directory",
        "add-rule",
        "--directory",
        v2,
        "--id",
        "bekendheid-antwoord",
        "--description",
        "GGZ answers hit/no-hit",
        "--purpose",
        "ZVH.BEKENDHEID",
        "--sender-role",
        "GGZ",
        "--recipient-role",
        "ZVH",
        "--type",
        "info.response",
        "--category",
        "ID_PSEUDO",
        "--category",
        "BETROKKENHEID",
        "--category",
        "CONTACT_PROF",
        "--flag",
        "professional_secrecy",
    )
    assert r.exit_code == 0, r.output
    v3 = fed / "directory.v3.json"

    # Unsigned: verify refuses with one line and a non-zero exit.
    r = zvg("directory", "verify", v3)
    assert r.exit_code == 1
    assert "0 of 2 needed" in r.output

    r = zvg("directory", "sign", v3, "--key", fed / "authority" / "zvh-manager.key.pem")
    assert r.exit_code == 0, r.output
    assert "1 of 2 needed (zvh-manager); missing: ciso-police, privacy-officer" in r.output
    assert zvg("directory", "verify", v3).exit_code == 1
    before = json.loads(v3.read_bytes())["payload"]
    r = zvg("directory", "sign", v3, "--key", fed / "authority" / "ciso-police.key.pem")
    assert json.loads(v3.read_bytes())["payload"] == before  # signing never edits content
    r = zvg("directory", "verify", v3, "--previous", v1)
    assert r.exit_code == 0, r.output
    assert "OK: version 3 is valid" in r.output

    r = zvg("directory", "show", v3)
    assert r.exit_code == 0
    for part in (
        "GGZ Veenland",
        "ZVH.BEKENDHEID — Bekendheidsvraag",
        "bekendheid-antwoord",
        "BETROKKENHEID",
        "days left",
        "audit",
        "VALID: 2 of 2 needed",
    ):
        assert part in r.output, part

    # Rotation: a new version with new keys overlapping the old ones.
    r = zvg("keys", "rotate", "--org", GGZ, "--keys-dir", tmp_path / "ggz", "--directory", v3)
    assert r.exit_code == 0, r.output
    v4 = fed / "directory.v4.json"
    payload = json.loads(
        __import__("base64").urlsafe_b64decode(json.loads(v4.read_bytes())["payload"] + "==")
    )
    ggz = next(m for m in payload["members"] if m["oin"] == GGZ)
    assert sorted(k["use"] for k in ggz["keys"]) == ["audit", "audit", "enc", "enc", "sig", "sig"]
    assert len(list((tmp_path / "ggz").glob("*.signing.key.pem"))) == 2


def test_a_signed_version_is_never_overwritten(tmp_path: Path) -> None:
    fed = tmp_path / "fed"
    zvg(
        "federation",
        "init",
        "--out",
        fed,
        "--federation",
        "x",
        "--name",
        "X",
        "--authority",
        "a",
        "--threshold",
        "1",
    )
    (fed / "directory.v2.json").write_text("{}")
    r = CliRunner().invoke(
        cli,
        [
            "directory",
            "add-rule",
            "--directory",
            str(fed / "directory.v1.json"),
            "--id",
            "r",
            "--description",
            "d",
            "--purpose",
            "ZVH.PLAN",
            "--sender-role",
            "ZVH",
            "--recipient-role",
            "GGZ",
            "--type",
            "plan.task",
            "--category",
            "PLAN",
        ],
    )
    assert r.exit_code == 2
    assert "already exists" in r.output
    assert (fed / "directory.v2.json").read_text() == "{}"


def test_rule_beyond_the_purpose_ceiling_is_refused(tmp_path: Path) -> None:
    fed = tmp_path / "fed"
    zvg(
        "federation",
        "init",
        "--out",
        fed,
        "--federation",
        "x",
        "--name",
        "X",
        "--authority",
        "a",
        "--threshold",
        "1",
    )
    r = CliRunner().invoke(
        cli,
        [
            "directory",
            "add-rule",
            "--directory",
            str(fed / "directory.v1.json"),
            "--id",
            "r",
            "--description",
            "d",
            "--purpose",
            "ZVH.BEKENDHEID",
            "--sender-role",
            "GGZ",
            "--recipient-role",
            "ZVH",
            "--type",
            "info.response",
            "--category",
            "GEZONDHEID",
        ],
    )
    assert r.exit_code != 0
    assert "exceed what purpose ZVH.BEKENDHEID can ever carry" in r.output


def test_keys_example_directory_is_valid_and_signed_by_two_of_three() -> None:
    raw = (ROOT / "keys_example" / "directory.json").read_bytes()
    trusted = TrustedDirectory.first(raw, now=now_utc(), catalogue=default_catalogue())
    assert len(trusted.payload.members) == 5
    assert trusted.payload.authority.threshold == 2
    assert len(trusted.payload.authority.keys) == 3
    assert trusted.payload.policy.rules
    readme = (ROOT / "keys_example" / "README.md").read_text()
    assert "PUBLIC" in readme
    assert "production mode" in readme


def test_the_witness_threshold_is_set_in_the_directory_and_bounded_by_the_partners(
    tmp_path: Path,
) -> None:
    # issue 14 §2: how many partners must cosign a member's audit log is the federation's
    # (signed) choice, not a node's; a threshold no set of partners can reach is refused.
    fed = make_federation(tmp_path / "fed")  # three members: two partners per log
    start = tmp_path / "directory.json"
    shutil.copy(fed.directory, start)
    cat = default_catalogue()
    trusted = TrustedDirectory.first(start.read_bytes(), now=now_utc(), catalogue=cat)
    assert trusted.payload.witness_threshold is None
    assert trusted.witness_threshold() == 2, "default: a majority of the two partners"
    assert (
        "2 of the 2 partners must cosign a member's log (default"
        in zvg("directory", "show", start).output
    )

    r = CliRunner().invoke(
        cli, ["directory", "set-witness-threshold", "--directory", str(start), "--threshold", "3"]
    )
    assert r.exit_code == 2, r.output
    assert "witness_threshold" in r.output
    assert "more than the 2 members that can witness a log" in r.output

    r = zvg("directory", "set-witness-threshold", "--directory", start, "--threshold", "1")
    assert r.exit_code == 0, r.output
    new = tmp_path / f"directory.v{trusted.version + 1}.json"
    for name in ("zvh-manager", "privacy-officer"):
        key = fed.authority_dir / f"{name}.key.pem"
        assert zvg("directory", "sign", new, "--key", key).exit_code == 0
    updated = trusted.update(new.read_bytes(), now=now_utc(), catalogue=cat)
    assert updated.witness_threshold() == 1
    assert (
        "1 of the 2 partners must cosign a member's log (set)"
        in zvg("directory", "show", new).output
    )
