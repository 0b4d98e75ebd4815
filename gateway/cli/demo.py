"""`zvg` commands for the demo area."""

from __future__ import annotations

import click

COMMANDS: list[click.Command] = []
