"""``zvg federation`` and ``zvg directory``: create, change, sign, verify and show the directory.

Every command that changes the directory writes a new version to a new file
(``directory.v<N>.json``) and never edits a signed version; ``sign`` only adds a signature.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import click

from gateway.core.directory import TrustedDirectory, require_threshold, verify_signatures
from gateway.core.keys import Suite
from gateway.federation import (
    add_member,
    add_rule,
    init_federation,
    key_entries,
    next_path,
    now_utc,
    read_directory,
    render_show,
    set_witness_threshold,
    sign_with,
    write_directory,
)
from gateway.keyfiles import load_public_keys, read_passphrase
from schemas.catalogue import Catalogue, default_catalogue, load_catalogue
from schemas.directory import Member, PartySelector, PolicyRule

__all__ = ["COMMANDS"]

_dir_file = click.Path(exists=True, dir_okay=False, path_type=Path)
_FLAGS = ("professional_secrecy", "minors", "emergency")


def _catalogue(path: Path | None) -> Catalogue:
    return load_catalogue(path) if path else default_catalogue()


def _passphrase(path: Path | None) -> bytes | None:
    return read_passphrase(path) if path else None


catalogue_option = click.option(
    "--catalogue",
    "catalogue_file",
    type=_dir_file,
    default=None,
    help="Purpose catalogue file (default: the packaged one).",
)
directory_option = click.option(
    "--directory",
    "directory_file",
    type=_dir_file,
    required=True,
    help="The directory version to start from.",
)
out_option = click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write the new version (default: directory.v<N>.json beside --directory).",
)


@click.group("federation")
def federation() -> None:
    """Create a federation: authority keys and an empty signed directory."""


@federation.command("init")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder to create it in.",
)
@click.option(
    "--federation",
    "federation_id",
    required=True,
    help="Short id, e.g. veenstad (names the broker vhost).",
)
@click.option("--name", required=True, help='Readable name, e.g. "ZVH Veenstad".')
@click.option(
    "--authority",
    "authorities",
    multiple=True,
    required=True,
    help="An administrator's name (repeat).",
)
@click.option("--threshold", type=int, required=True, help="Signatures needed, e.g. 2 (of 3).")
@click.option(
    "--suite", type=click.Choice([s.value for s in Suite]), default="p256", show_default=True
)
@click.option(
    "--valid-days",
    type=click.IntRange(1, 3650),
    default=365,
    show_default=True,
    help="Directory lifetime.",
)
@click.option("--passphrase-file", type=_dir_file, default=None, help="Encrypt the authority keys.")
@catalogue_option
def init(
    out: Path,
    federation_id: str,
    name: str,
    authorities: tuple[str, ...],
    threshold: int,
    suite: str,
    valid_days: int,
    passphrase_file: Path | None,
    catalogue_file: Path | None,
) -> None:
    """Make authority keys (OUT/authority/) and directory version 1, signed by all of them.

    In production each administrator keeps only their own key: move the other key files to
    their owners (or have each generate theirs) before the federation grows.
    """
    if not 1 <= threshold <= len(authorities):
        raise click.BadParameter(
            f"must be between 1 and {len(authorities)}", param_hint="--threshold"
        )
    path = init_federation(
        out,
        federation=federation_id,
        name=name,
        authorities=authorities,
        threshold=threshold,
        suite=Suite(suite),
        catalogue=_catalogue(catalogue_file),
        now=now_utc(),
        lifetime=timedelta(days=valid_days),
        rand=os.urandom,
        passphrase=_passphrase(passphrase_file),
    )
    click.echo(f"wrote {path} (version 1, {threshold} of {len(authorities)} authorities)")
    click.echo(f"authority keys in {out / 'authority'}")


@click.group("directory")
def directory() -> None:
    """Change, sign, verify and show the federation directory."""


@directory.command("add-member")
@directory_option
@click.option("--oin", required=True)
@click.option("--name", required=True)
@click.option(
    "--role", "roles", multiple=True, required=True, help="A role code (repeat for several)."
)
@click.option("--node", "nodes", multiple=True, required=True, help="A node id (repeat).")
@click.option("--broker-user", required=True)
@click.option(
    "--keys",
    "keys_file",
    type=_dir_file,
    required=True,
    help="The member's public JWK Set (zvg keys generate).",
)
@click.option("--valid-days", type=click.IntRange(1, 3650), default=365, show_default=True)
@out_option
@catalogue_option
def add_member_cmd(
    directory_file: Path,
    oin: str,
    name: str,
    roles: tuple[str, ...],
    nodes: tuple[str, ...],
    broker_user: str,
    keys_file: Path,
    valid_days: int,
    out: Path | None,
    catalogue_file: Path | None,
) -> None:
    """Add (or replace) a member; writes a new, unsigned version."""
    cat = _catalogue(catalogue_file)
    signed = read_directory(directory_file, cat)
    now = now_utc()
    member = Member.model_validate(
        {
            "oin": oin,
            "name": name,
            "roles": roles,
            "node_ids": nodes,
            "broker_user": broker_user,
            "keys": key_entries(
                load_public_keys(keys_file),
                not_before=now,
                not_after=now + timedelta(days=valid_days),
            ),
        },
        strict=False,
        context={"catalogue": cat},
    )
    new = add_member(signed, member, now=now, catalogue=cat)
    _wrote(write_directory(new, out or next_path(directory_file, new.version)), new.version)


@directory.command("add-rule")
@directory_option
@click.option("--id", "rule_id", required=True)
@click.option("--description", required=True)
@click.option("--purpose", required=True)
@click.option("--sender-role", "sender_roles", multiple=True)
@click.option("--sender-org", "sender_orgs", multiple=True)
@click.option("--recipient-role", "recipient_roles", multiple=True)
@click.option("--recipient-org", "recipient_orgs", multiple=True)
@click.option("--type", "types", multiple=True, required=True, help="A message type (repeat).")
@click.option("--category", "categories", multiple=True, help="An allowed data category (repeat).")
@click.option(
    "--flag", "flags", multiple=True, type=click.Choice(_FLAGS), help="An allowed flag (repeat)."
)
@out_option
@catalogue_option
def add_rule_cmd(
    directory_file: Path,
    rule_id: str,
    description: str,
    purpose: str,
    sender_roles: tuple[str, ...],
    sender_orgs: tuple[str, ...],
    recipient_roles: tuple[str, ...],
    recipient_orgs: tuple[str, ...],
    types: tuple[str, ...],
    categories: tuple[str, ...],
    flags: tuple[str, ...],
    out: Path | None,
    catalogue_file: Path | None,
) -> None:
    """Add (or replace) a policy rule; writes a new, unsigned version."""
    cat = _catalogue(catalogue_file)
    signed = read_directory(directory_file, cat)
    rule = PolicyRule.model_validate(
        {
            "id": rule_id,
            "description": description,
            "purpose": purpose,
            "sender": _selector(sender_roles, sender_orgs, "sender"),
            "recipient": _selector(recipient_roles, recipient_orgs, "recipient"),
            "message_types": types,
            "data_categories": categories,
            "flags": flags,
        },
        strict=False,
        context={"catalogue": cat},
    )
    new = add_rule(signed, rule, now=now_utc(), catalogue=cat)
    _wrote(write_directory(new, out or next_path(directory_file, new.version)), new.version)


def _selector(roles: tuple[str, ...], orgs: tuple[str, ...], who: str) -> PartySelector:
    if bool(roles) == bool(orgs):
        raise click.UsageError(f"give --{who}-role or --{who}-org (not both)")
    return PartySelector(roles=roles or None, orgs=orgs or None)


@directory.command("set-witness-threshold")
@directory_option
@click.option(
    "--threshold",
    type=click.IntRange(0, 499),
    required=True,
    help="Partners whose cosignature makes a log's records witnessed; 0: a majority (default).",
)
@out_option
@catalogue_option
def set_witness_threshold_cmd(
    directory_file: Path, threshold: int, out: Path | None, catalogue_file: Path | None
) -> None:
    """Set how many partners must cosign a member's audit log before ``zvg audit verify`` counts
    its records as witnessed; writes a new, unsigned version."""
    cat = _catalogue(catalogue_file)
    signed = read_directory(directory_file, cat)
    new = set_witness_threshold(signed, threshold or None, now=now_utc(), catalogue=cat)
    _wrote(write_directory(new, out or next_path(directory_file, new.version)), new.version)


@directory.command("sign")
@click.argument("directory_file", type=_dir_file)
@click.option("--key", "key_file", type=_dir_file, required=True, help="Your authority key (PEM).")
@click.option("--passphrase-file", type=_dir_file, default=None)
@catalogue_option
def sign(
    directory_file: Path, key_file: Path, passphrase_file: Path | None, catalogue_file: Path | None
) -> None:
    """Add your authority signature to DIRECTORY_FILE (the content is not changed)."""
    cat = _catalogue(catalogue_file)
    signed = sign_with(read_directory(directory_file, cat), key_file, _passphrase(passphrase_file))
    write_directory(signed, directory_file, replace=True)
    result = verify_signatures(signed, signed.payload.authority)
    click.echo(f"signed {directory_file} (version {signed.version}): {result.describe()}")


@directory.command("verify")
@click.argument("directory_file", type=_dir_file)
@click.option(
    "--previous",
    type=_dir_file,
    default=None,
    help="The version nodes trust now (checks the update rules).",
)
@catalogue_option
def verify(directory_file: Path, previous: Path | None, catalogue_file: Path | None) -> None:
    """Check signatures (threshold), expiry and, with --previous, the update rules."""
    cat = _catalogue(catalogue_file)
    raw = directory_file.read_bytes()
    now = now_utc()
    signed = read_directory(directory_file, cat)
    result = verify_signatures(signed, signed.payload.authority)
    click.echo(f"version {signed.version}, own authority: {result.describe()}")
    if previous is None:
        require_threshold(result, "its authority")
        trusted = TrustedDirectory.first(raw, now=now, catalogue=cat)
    else:
        trusted_prev = TrustedDirectory.first(previous.read_bytes(), now=now, catalogue=cat)
        prev_result = verify_signatures(signed, trusted_prev.payload.authority)
        click.echo(f"previous authority (v{trusted_prev.version}): {prev_result.describe()}")
        trusted = trusted_prev.update(raw, now=now, catalogue=cat)
    state, left = trusted.status(now, timedelta(days=14))
    if not trusted.payload.policy.rules:
        click.echo("warning: the policy has no rules, so every message will be denied")
    click.echo(f"OK: version {trusted.version} is valid ({state}, expires in {left.days} days)")


@directory.command("show")
@click.argument("directory_file", type=_dir_file)
@click.option("--previous", type=_dir_file, default=None)
@catalogue_option
def show(directory_file: Path, previous: Path | None, catalogue_file: Path | None) -> None:
    """Print members, keys with days to expiry, signatures and the policy per purpose."""
    cat = _catalogue(catalogue_file)
    prev = read_directory(previous, cat) if previous else None
    click.echo(
        render_show(
            read_directory(directory_file, cat), now=now_utc(), catalogue=cat, previous=prev
        ),
        nl=False,
    )


def _wrote(path: Path, version: int) -> None:
    click.echo(f"wrote {path} (version {version}, unsigned: run zvg directory sign {path} --key …)")


COMMANDS: list[click.Command] = [federation, directory]
