"""`zvg` commands for the adapter area."""

from __future__ import annotations

import click

COMMANDS: list[click.Command] = []
