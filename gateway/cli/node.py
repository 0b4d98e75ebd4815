"""`zvg` commands for the node area."""

from __future__ import annotations

import click

COMMANDS: list[click.Command] = []
