"""`zvg` commands for the broker area: ``zvg broker provision``, ``quarantine`` and ``release``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
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


def _ops_options(command: Callable[..., None]) -> Callable[..., None]:
    """ORG, --config, --rabbitmqctl and --node, shared by quarantine and release."""
    for option in reversed(
        [
            click.argument("org"),
            click.option(
                "--config",
                "config_file",
                required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path),
                help="This node's node.toml: the directory it trusts names the member's broker "
                "user, and the act is recorded in its audit log.",
            ),
            click.option("--rabbitmqctl", "executable", default="rabbitmqctl", show_default=True),
            click.option("--node", default=None, help="RabbitMQ node for rabbitmqctl -n."),
        ]
    ):
        command = option(command)
    return command


async def _act(action: str, org: str, config_file: Path, executable: str, node: str | None) -> str:
    """Quarantine or release ``org`` on the broker and record it in this node's audit log (opened,
    and checked against its last checkpoint, before the broker is touched)."""
    import os
    from datetime import UTC, datetime

    from gateway.audit.log import AuditLog
    from gateway.broker import quarantine as q
    from gateway.broker.provision import Rabbitmqctl
    from gateway.cli.audit import node_context
    from gateway.core.audit import new_record
    from gateway.core.broker_topology import BrokerMember, check_org
    from gateway.errors import LocalError
    from gateway.node.pg_store import open_store
    from gateway.node.preflight import broker_vhost

    config, directory, own = node_context(config_file)
    check_org(org)
    if org == own:
        raise LocalError(f"{org} is this node's own organisation; refusing to {action} it")
    member = directory.member(org)
    if member is None:
        raise LocalError(f"{org} is not a member of directory v{directory.version}")
    target = BrokerMember(org, member.broker_user)
    vhost = broker_vhost(config, directory)
    ctl = Rabbitmqctl(executable, node)
    store = open_store(config)
    try:
        audit = await AuditLog.open(
            store,
            origin=directory.audit_origin(own),
            key=None,
            rand=os.urandom,
            retention_s=config.retention.audit_personal_days * 86400,
        )
        detail: dict[str, int | str] = {"broker_user": target.broker_user, "vhost": vhost}
        if action == "quarantine":
            detail["connections_closed"] = q.quarantine(target, vhost, ctl=ctl)
        else:
            q.release(target, vhost, ctl=ctl)
        now = datetime.now(UTC)
        record = new_record(
            name=f"broker.{action}",
            status="ok",
            start_time=now,
            end_time=now,
            peer=org,
            detail=detail,
        )
        (index,) = (await store.commit(audit.append([record], now))).indexes
    finally:
        await store.close()
    name = directory.names().get(org, org)
    if action == "quarantine":
        what = (
            f"quarantined {name} ({org}): broker user {target.broker_user} may no longer publish "
            f"in {vhost}; {detail['connections_closed']} connection(s) closed"
        )
    else:
        what = (
            f"released {name} ({org}): broker user {target.broker_user} may publish in {vhost} "
            "again, as provisioned"
        )
    return f"{what}; audit record {index}"


@broker.command("quarantine")
@_ops_options
def quarantine_cmd(org: str, config_file: Path, executable: str, node: str | None) -> None:
    """Stop member ORG (its OIN) from publishing: revoke its broker user's write and topic
    permissions on the federation's vhost and close its connections. Its node keeps receiving.
    Recorded in this node's audit log (broker.quarantine). Undo with ``zvg broker release``."""
    click.echo(asyncio.run(_act("quarantine", org, config_file, executable, node)))


@broker.command("release")
@_ops_options
def release_cmd(org: str, config_file: Path, executable: str, node: str | None) -> None:
    """Let member ORG publish again: restore exactly the permissions provisioning grants.
    Recorded in this node's audit log (broker.release)."""
    click.echo(asyncio.run(_act("release", org, config_file, executable, node)))


COMMANDS.append(broker)
