"""``zvg schemas``: the JSON Schema files partners validate against."""

from __future__ import annotations

from pathlib import Path

import click

from gateway.errors import LocalError

__all__ = ["COMMANDS"]


@click.group("schemas")
def schemas_group() -> None:
    """The message contract as JSON Schema (schemas/json/)."""


@schemas_group.command("export")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder to write into (default: the package's schemas/json/).",
)
@click.option(
    "--check",
    "check_only",
    is_flag=True,
    help="Only report stale or missing files (non-zero exit when any).",
)
def export(out: Path | None, check_only: bool) -> None:
    """Regenerate the JSON Schema files from the contract models."""
    from schemas import export as exporter

    target = out or exporter.JSON_DIR
    if check_only:
        stale = exporter.check(target)
        if stale:
            raise LocalError(
                f"stale JSON Schema files in {target}: {', '.join(stale)}; run: zvg schemas export"
            )
        click.echo(f"{target}: up to date")
        return
    for path in exporter.write(target):
        click.echo(f"wrote {path}")


COMMANDS: list[click.Command] = [schemas_group]
