"""`zvg` commands for the audit area."""

from __future__ import annotations

import click

COMMANDS: list[click.Command] = []
