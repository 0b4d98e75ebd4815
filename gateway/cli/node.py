"""``zvg node``: run a node, check its config, migrate its store, make API tokens."""

from __future__ import annotations

import secrets
from pathlib import Path

import click

from gateway.errors import LocalError

__all__ = ["COMMANDS"]

_config = click.option(
    "--config",
    "config_file",
    # Not exists=True: load_config names a missing file in one line, like every other problem.
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The node's TOML config file.",
)


@click.group("node")
def node() -> None:
    """Run and configure a node."""


@node.command("run")
@_config
@click.option("--log-level", default="INFO", show_default=True)
def run(config_file: Path, log_level: str) -> None:
    """Run the node (local API, outbox, inbox) until SIGTERM; then drain and exit 0.

    Before it opens its store or connects it makes the checks of ``check-config`` (decision
    0084) and refuses to start with the same one line."""
    import asyncio

    from gateway.logs import setup_logging
    from gateway.node.config import load_config
    from gateway.node.preflight import PreflightError
    from gateway.node.runner import run_node

    setup_logging(log_level.upper())
    config = load_config(config_file)
    try:
        try:
            import uvloop
        except ImportError:  # pragma: no cover - uvloop is a dependency where it exists
            asyncio.run(run_node(config))
        else:  # libuv's event loop: the node is CPU-bound in the event loop (docs/performance.md)
            uvloop.run(run_node(config))
    except PreflightError as failed:
        raise LocalError(f"{config_file}: {failed}") from None


@node.command("check-config")
@_config
def check_config(config_file: Path) -> None:
    """Make every check ``zvg node run`` makes before it connects (the config file, the files
    it names, the directory, this node in it, the broker settings); exit non-zero on any
    problem, with the one line ``run`` would refuse with."""
    from gateway.node.config import load_config
    from gateway.node.datadir import exposure
    from gateway.node.preflight import preflight

    config = load_config(config_file)
    found = preflight(config)
    if found.problems:
        raise LocalError(f"{config_file}: " + "; ".join(found.problems))
    if found.rollback is not None:
        # Not a failure here: `zvg node run` refuses it and records the attempt in the audit
        # log, which a failed pre-start check would keep it from doing (decision 0022).
        click.echo(
            f"zvg: warning: {found.rollback.refused.detail}; zvg node run will refuse to start "
            "and record the attempt in the audit log",
            err=True,
        )
    for line in exposure(config.node.data_dir):
        click.echo(f"zvg: warning: {line}", err=True)
    click.echo(
        f"{config_file}: OK ({config.node.mode} mode, org {config.node.org}, "
        f"node {config.node.node_id})"
    )


@node.command("migrate")
@_config
def migrate(config_file: Path) -> None:
    """Bring the PostgreSQL store's schema (``store.url``) to this version's: apply the
    migrations it lacks, each in one transaction (decision 0094). Run it before ``zvg node run``
    after an install or an upgrade; the SQLite store needs none."""
    from gateway.node.config import load_config
    from gateway.node.pg_store import migrate as apply

    config = load_config(config_file)
    if config.store.url is None:
        click.echo(f"{config_file}: the store is SQLite ({config.store_path}): nothing to migrate")
        return
    before, after = apply(config.store.url)
    if before == after:
        click.echo(f"{config_file}: the store's schema is at version {after}: nothing to do")
    else:
        click.echo(f"{config_file}: migrated the store's schema from version {before} to {after}")


@node.command("new-token")
@click.option("--name", required=True, help="A name for the client, e.g. ggz-ehr.")
@click.option(
    "--role",
    type=click.Choice(["adapter", "auditor", "contactpunt", "privacy-officer"]),
    default="adapter",
    show_default=True,
    help="adapter: send and receive; auditor: read status; contactpunt, privacy-officer: only"
    " the LDV read API (POST /v1/processing-activities) and the inzageverzoek (/v1/rights).",
)
def new_token(name: str, role: str) -> None:
    """Make a random bearer token. Prints the token once and the config lines with its hash."""
    from gateway.node.config import Token, hash_token

    token = secrets.token_urlsafe(32)
    Token(name=name, role=role, sha256=hash_token(token))  # type: ignore[arg-type]
    click.echo(f"token (give it to the client, it is not stored): {token}")
    click.echo("add to node.toml:")
    click.echo("[[api.tokens]]")
    click.echo(f'name = "{name}"')
    click.echo(f'role = "{role}"')
    click.echo(f'sha256 = "{hash_token(token)}"')


COMMANDS: list[click.Command] = [node]
