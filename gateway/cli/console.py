"""``zvg console``: local accounts of the officer console (docs/console.md).

``zvg console add-user`` asks for the password twice (never on the command line, where the
shell history and ``ps`` would see it), writes the argon2id hash and a new TOTP secret to the
accounts file, and prints the secret and its ``otpauth://`` URI once, for the person's
authenticator app.
"""

from __future__ import annotations

from pathlib import Path

import click

from gateway.console.roles import Role

__all__ = ["COMMANDS"]


@click.group("console")
def console() -> None:
    """The officer console's local accounts."""


@console.command("add-user")
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The node's TOML config file (the accounts file is console.users_file).",
)
@click.option("--name", required=True, help="The user name (a-z 0-9 . _ @ -).")
@click.option("--display-name", required=True, help="The name the console shows.")
@click.option(
    "--role",
    type=click.Choice([r.value for r in Role]),
    required=True,
    help="The console role (deny by default: the role decides what the person sees).",
)
@click.option("--replace", is_flag=True, help="Reset an existing account (new password, new TOTP).")
@click.password_option(
    "--password",
    prompt="Password (at least 12 characters)",
    help="Asked for twice when not given; prefer the prompt.",
)
def add_user(
    config_file: Path, name: str, display_name: str, role: str, replace: bool, password: str
) -> None:
    """Add a local account: argon2id password and a new TOTP secret (printed once)."""
    from gateway.console.auth import add_account, totp_uri
    from gateway.node.config import load_config

    config = load_config(config_file)
    path = config.console_users_file
    account = add_account(
        path,
        name=name,
        display_name=display_name,
        role=Role(role),
        password=password,
        replace=replace,
    )
    issuer = f"zv-gateway {config.node.org}"
    click.echo(f"account {account.name} ({account.role.value}) written to {path}")
    click.echo("Add this TOTP secret to the person's authenticator app (shown only now):")
    click.echo(f"  secret: {account.totp_secret}")
    click.echo(f"  uri:    {totp_uri(account, issuer)}")


COMMANDS = [console]
