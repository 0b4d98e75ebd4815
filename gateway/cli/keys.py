"""`zvg` commands for the keys area."""

from __future__ import annotations

import click

COMMANDS: list[click.Command] = []
