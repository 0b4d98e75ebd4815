"""``zvg rights``: data-subject rights across the federation (AVG art. 15-19).

``zvg rights notice`` passes a rectification, erasure or restriction on to every organisation
this node sent the person's data to (:mod:`gateway.cli.rights_notice`).
"""

from __future__ import annotations

import click

from gateway.cli.rights_notice import notice

__all__ = ["COMMANDS"]


@click.group("rights")
def rights() -> None:
    """Data-subject rights: pass corrections and erasures on (for privacy officers)."""


rights.add_command(notice)

COMMANDS = [rights]
