"""`zvg` commands for the directory area."""

from __future__ import annotations

import click

COMMANDS: list[click.Command] = []
