"""`zvg keys`: make and inspect a node's key files (docs/envelope.md, "Keys and the CLI")."""

from __future__ import annotations

import os
import re
from pathlib import Path

import click

from gateway.core.keys import Suite
from gateway.keyfiles import generate_keys, read_passphrase

__all__ = ["COMMANDS"]

_OIN = re.compile(r"[0-9]{20}")


def _oin(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    if not _OIN.fullmatch(value):
        raise click.BadParameter("an OIN is 20 digits")
    return value


@click.group("keys")
def keys() -> None:
    """Make a node's signing and encryption keys."""


@keys.command("generate")
@click.option("--org", required=True, callback=_oin, help="The organisation's OIN (20 digits).")
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for the key files (created if missing).",
)
@click.option(
    "--suite",
    type=click.Choice([s.value for s in Suite]),
    default=Suite.P256.value,
    show_default=True,
    help="p256: ES256 + ECDH-ES on P-256 (every partner can use it); curve25519: Ed25519 + X25519.",
)
@click.option(
    "--passphrase-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Encrypt the private keys with the passphrase on the first line of this file.",
)
@click.option("--ask-passphrase", is_flag=True, help="Prompt for a passphrase instead.")
def generate(
    org: str, out_dir: Path, suite: str, passphrase_file: Path | None, ask_passphrase: bool
) -> None:
    """Write a signing and an encryption key for ORG.

    Private keys: OUT/<org>.signing.key.pem and OUT/<org>.encryption.key.pem (PKCS#8 PEM, mode
    0600). Public keys: OUT/<org>.public.jwks.json (a JWK Set with kid = RFC 7638 thumbprint).
    Existing files are never overwritten.
    """
    if passphrase_file and ask_passphrase:
        raise click.UsageError("use --passphrase-file or --ask-passphrase, not both")
    passphrase: bytes | None = None
    if passphrase_file:
        passphrase = read_passphrase(passphrase_file)
    elif ask_passphrase:
        text = click.prompt("Passphrase", hide_input=True, confirmation_prompt=True)
        passphrase = str(text).encode("utf-8")
    result = generate_keys(org, out_dir, Suite(suite), rand=os.urandom, passphrase=passphrase)
    click.echo(f"signing key     {result.signing_key_file}  kid {result.signing_kid}")
    click.echo(f"encryption key  {result.encryption_key_file}  kid {result.encryption_kid}")
    click.echo(f"audit-log key   {result.audit_key_file}")
    click.echo(f"public keys     {result.jwks_file}")


@keys.command("rotate")
@click.option("--org", required=True, callback=_oin, help="The organisation's OIN.")
@click.option(
    "--keys-dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The node's key folder; the new keys are written beside the old ones.",
)
@click.option(
    "--directory",
    "directory_file",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The current directory version.",
)
@click.option("--suite", type=click.Choice([s.value for s in Suite]), default=Suite.P256.value)
@click.option("--overlap-days", type=click.IntRange(1, 90), default=30, show_default=True)
@click.option("--valid-days", type=click.IntRange(1, 3650), default=365, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option("--passphrase-file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def rotate(
    org: str,
    keys_dir: Path,
    directory_file: Path,
    suite: str,
    overlap_days: int,
    valid_days: int,
    out: Path | None,
    passphrase_file: Path | None,
) -> None:
    """Make new keys for ORG and a new directory version listing them.

    The new keys are valid from now; the current ones end after the overlap, so senders seal to
    the new encryption key as soon as the new version is signed and loaded, and receivers keep
    accepting signatures by the old key until the overlap ends. Add the new encryption key file
    first in the node's keys.encryption list, point keys.signing/keys.audit at the new files, and
    restart the node once the version is signed.
    """
    from datetime import timedelta

    from gateway.federation import (
        next_path,
        now_utc,
        read_directory,
        rotate_member_keys,
        write_directory,
    )
    from gateway.keyfiles import load_public_keys
    from schemas.catalogue import default_catalogue

    cat = default_catalogue()
    signed = read_directory(directory_file, cat)
    now = now_utc()
    passphrase = read_passphrase(passphrase_file) if passphrase_file else None
    result = generate_keys(
        org,
        keys_dir,
        Suite(suite),
        rand=os.urandom,
        passphrase=passphrase,
        tag=f"{now:%Y%m%dT%H%M%S}",
    )
    new = rotate_member_keys(
        signed,
        org,
        load_public_keys(result.jwks_file),
        now=now,
        overlap=timedelta(days=overlap_days),
        valid_for=timedelta(days=valid_days),
        catalogue=cat,
    )
    path = write_directory(new, out or next_path(directory_file, new.version))
    click.echo(
        f"new keys: {result.signing_key_file.name}, {result.encryption_key_file.name}, "
        f"{result.audit_key_file.name}"
    )
    click.echo(f"wrote {path} (version {new.version}, unsigned: have the authorities sign it)")


COMMANDS: list[click.Command] = [keys]
