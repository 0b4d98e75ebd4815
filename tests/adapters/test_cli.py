"""`zvg adapter NAME --config FILE`: the CLI wires every adapter; configuration errors are one
readable line and exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway.cli import cli

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "adapters" / "examples"


@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("folder", "politie/folder.toml"),
        ("folder", "om/folder.toml"),
        ("webhook", "veiligthuis/webhook.toml"),
        ("zgw", "gemeente/zgw.toml"),
        ("fhir", "ggz/fhir.toml"),
    ],
)
def test_example_configurations_check(name: str, path: str) -> None:
    result = CliRunner().invoke(cli, ["adapter", name, "--config", str(EXAMPLES / path), "--check"])
    assert result.exit_code == 0, result.output
    assert "is valid" in result.output


def test_a_bad_configuration_is_one_line_and_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "folder.toml"
    bad.write_text('[node]\nurl = "http://127.0.0.1:1"\ntoken_file = "t"\n[folder]\nroot = "x"\n')
    result = CliRunner().invoke(cli, ["adapter", "folder", "--config", str(bad)])
    assert result.exit_code == 2
    assert "folder.root" in result.output or "folder" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_unknown_adapter_is_a_usage_error(tmp_path: Path) -> None:
    config = tmp_path / "x.toml"
    config.write_text("")
    result = CliRunner().invoke(cli, ["adapter", "hl7v2", "--config", str(config)])
    assert result.exit_code == 2
