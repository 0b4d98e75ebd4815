"""``zvg schemas export``: regenerates the files and reports stale ones."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from gateway.cli import cli
from schemas.catalogue import MESSAGE_TYPES
from schemas.export import JSON_DIR


def test_export_writes_every_schema(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["schemas", "export", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    written = sorted(p.name for p in tmp_path.glob("*.schema.json"))
    assert written == sorted(p.name for p in JSON_DIR.glob("*.schema.json"))
    assert len(written) == len(MESSAGE_TYPES) + 2  # one per message type + claims + catalogue


def test_check_reports_stale_file(tmp_path: Path) -> None:
    CliRunner().invoke(cli, ["schemas", "export", "--out", str(tmp_path)])
    (tmp_path / "receipt.schema.json").write_text("{}", "utf-8")
    (tmp_path / "old.schema.json").write_text("{}", "utf-8")
    result = CliRunner().invoke(cli, ["schemas", "export", "--out", str(tmp_path), "--check"])
    assert result.exit_code != 0
    assert "receipt.schema.json" in result.output
    assert "old.schema.json" in result.output
    assert result.output.count("\n") == 1  # one readable line


def test_check_passes_on_committed_files() -> None:
    result = CliRunner().invoke(cli, ["schemas", "export", "--check"])
    assert result.exit_code == 0, result.output
