"""``zvg rights``: data-subject rights across the federation (AVG art. 15-19).

``zvg rights notice`` passes a rectification, erasure or restriction on to every organisation
this node sent the person's data to (:mod:`gateway.cli.rights_notice`); ``zvg rights notices``
lists the notices sent and who complied (their ``accepted`` receipts).
"""

from __future__ import annotations

from pathlib import Path

import click

from gateway.cli.rights_notice import notice

__all__ = ["COMMANDS"]


@click.group("rights")
def rights() -> None:
    """Data-subject rights: pass corrections and erasures on (for privacy officers)."""


rights.add_command(notice)


@rights.command("notices")
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="The node's node.toml (its store is read, never written).",
)
@click.option("--open", "only_open", is_flag=True, help="Only notices not yet accepted by all.")
def notices(config_file: Path, only_open: bool) -> None:
    """The notices this node sent and each recipient's status (``accepted``: it complied)."""
    from gateway.audit.inspect import open_readonly
    from gateway.cli.audit import node_context
    from gateway.console.data.notices import sent_notices

    config, directory, _org = node_context(config_file)
    names = {m.oin: m.name for m in directory.payload.members}
    with open_readonly(config.store_path) as db:
        found = [n for n in sent_notices(db) if n.open or not only_open]
    for n in found:
        state = "open" if n.open else "complied"
        click.echo(f"{n.created_at:%Y-%m-%d %H:%M}  {n.message_id}  {state}")
        for r in n.recipients:
            click.echo(f"    {r.org}  {names.get(r.org, '?')}: {r.status}")
    click.echo(f"{len(found)} notice(s)")


COMMANDS = [rights]
