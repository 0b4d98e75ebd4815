"""`zvg` commands for the broker area: ``zvg broker provision``."""

from __future__ import annotations

from pathlib import Path

import click

COMMANDS: list[click.Command] = []


@click.group("broker")
def broker() -> None:
    """RabbitMQ provisioning for a federation."""


@broker.command("provision")
@click.option(
    "--directory",
    "directory",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Federation directory file (JWS JSON) listing the members and their broker users.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the RabbitMQ definitions here (mode 0600: they hold password hashes).",
)
@click.option("--apply", "apply_", is_flag=True, help="Load them with rabbitmqctl.")
@click.option(
    "--secrets-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("broker-secrets"),
    show_default=True,
    help="Where each organisation's broker password file is created once and reused.",
)
@click.option(
    "--limits",
    type=click.Path(dir_okay=False, path_type=Path),
    help="TOML file overriding policy tunables (message_ttl_ms, delivery_limit, max_length, ...).",
)
@click.option("--rabbitmqctl", "executable", default="rabbitmqctl", show_default=True)
@click.option("--node", default=None, help="RabbitMQ node for rabbitmqctl -n (default: local).")
def provision(
    *,
    directory: Path,
    out: Path | None,
    apply_: bool,
    secrets_dir: Path,
    limits: Path | None,
    executable: str,
    node: str | None,
) -> None:
    """Generate (and optionally apply) the broker topology for the directory's federation.

    Safe to re-run: passwords are reused, nothing is deleted, and existing users that
    provisioning did not create are never changed.
    """
    from gateway.broker import provision as prov
    from gateway.core.broker_topology import BrokerLimits, vhost_name

    if out is None and not apply_:
        raise click.UsageError("give --out FILE, --apply, or both")
    from gateway.federation import now_utc
    from schemas.catalogue import default_catalogue

    federation, members = prov.members_from_directory(
        directory, now=now_utc(), catalogue=default_catalogue()
    )
    broker_limits = prov.limits_from_toml(limits) if limits is not None else BrokerLimits()
    definitions = prov.build_definitions(
        federation, members, secrets_dir=secrets_dir, limits=broker_limits
    )
    if out is not None:
        prov.write_definitions(definitions, out)
        click.echo(f"wrote {out}")
    if apply_:
        prov.apply_definitions(definitions, ctl=prov.Rabbitmqctl(executable, node))
        click.echo(f"applied to vhost {vhost_name(federation)}")
    click.echo(
        f"{len(members)} member(s) of federation {federation}; password files in {secrets_dir}/ "
        "(give each organisation's node only its own file)"
    )


COMMANDS.append(broker)
