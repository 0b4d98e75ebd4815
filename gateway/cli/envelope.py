"""`zvg envelope`: inspect, seal and open envelopes by hand, for integrators debugging interop.

Documented in docs/envelope.md ("The command line"). Refusals print one line
``zvg: error: refused (<reason>): <detail>`` and exit 1 (see :mod:`gateway.cli`).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import click
from pydantic import ValidationError

from gateway.core import jose
from gateway.core.envelope import (
    DEFAULT_LIMITS,
    claims_refusal,
    open_envelope,
    peek_header,
    seal,
)
from gateway.core.keys import KeyRing, SigningPublicKey, StaticSenderKeys
from gateway.errors import LocalError, RemoteError
from gateway.keyfiles import (
    load_decryption_key,
    load_public_keys,
    load_signing_key,
    read_passphrase,
)
from schemas.claims import parse_claims

__all__ = ["COMMANDS"]

_INPUT = click.File("rb")
_PASSPHRASE = click.option(
    "--passphrase-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Passphrase of the private key files (first line of this file).",
)


def _read(stream: BinaryIO, limit: int) -> bytes:
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise RemoteError("too_large", f"input exceeds {limit} bytes")
    return data


def _envelope_bytes(stream: BinaryIO) -> bytes:
    """The envelope in ``stream``; a test vector file (with an ``envelope`` member) also works."""
    data = _read(stream, 4 * DEFAULT_LIMITS.max_envelope_bytes)
    try:
        doc = json.loads(data)
    except ValueError:
        return data  # let the strict parser say what is wrong
    if isinstance(doc, dict) and isinstance(doc.get("envelope"), dict) and "protected" not in doc:
        return json.dumps(doc["envelope"], separators=(",", ":")).encode("utf-8")
    return data


def _decoded_view(raw: bytes) -> dict[str, Any]:
    jwe = jose.parse_json_object(raw, "envelope")
    view: dict[str, Any] = {"envelope_bytes": len(raw)}
    protected = jwe.get("protected")
    if isinstance(protected, str):
        header = jose.parse_json_object(jose.b64u_decode(protected, "protected"), "protected")
        view["protected"] = header
        for name in ("iat", "exp"):
            value = header.get(name)
            if type(value) is int and 0 < value < 253_402_300_800:
                stamp = datetime.fromtimestamp(value, UTC).isoformat().replace("+00:00", "Z")
                view[f"{name}_utc"] = stamp
    recipients = jwe.get("recipients")
    if isinstance(recipients, list):
        view["recipients"] = [r.get("header") if isinstance(r, dict) else r for r in recipients]
    for name in ("iv", "ciphertext", "tag"):
        value = jwe.get(name)
        if isinstance(value, str):
            view[f"{name}_bytes"] = len(jose.b64u_decode(value, name))
    others = sorted(set(jwe) - {"protected", "recipients", "iv", "ciphertext", "tag"})
    if others:
        view["other_members"] = others
    return view


@click.group("envelope")
def envelope() -> None:
    """Inspect, seal and open envelopes (JWE JSON around a signed JWS) by hand."""


@envelope.command("inspect")
@click.argument("file", type=_INPUT)
def inspect(file: BinaryIO) -> None:
    """Show the decoded headers of the envelope in FILE ('-' for stdin); no keys needed.

    Prints the protected header, the per-recipient headers and the sizes as JSON, then checks the
    header profile (size, strict JSON, allowed parameters; not the time window): exit 0 when it
    passes, otherwise one line with the reason and exit 1. FILE may also be a test vector.
    """
    raw = _envelope_bytes(file)
    click.echo(json.dumps(_decoded_view(raw), indent=2))
    peek_header(raw)


def _claims_bytes(stream: BinaryIO) -> bytes:
    return _read(stream, DEFAULT_LIMITS.max_claims_bytes)


@envelope.command("seal")
@click.option("--claims", "claims_file", required=True, type=_INPUT, help="Message claims JSON.")
@click.option(
    "--signing-key",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Our signing key (PKCS#8 PEM).",
)
@click.option(
    "--to",
    "recipients",
    required=True,
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A recipient's public JWK Set (its encryption keys are used). Repeat per recipient.",
)
@click.option("--out", type=click.File("wb"), default="-", help="Where to write the envelope.")
@_PASSPHRASE
def seal_command(
    claims_file: BinaryIO,
    signing_key: Path,
    recipients: tuple[Path, ...],
    out: BinaryIO,
    passphrase_file: Path | None,
) -> None:
    """Sign the claims with our key and encrypt them to each --to recipient.

    The claims must satisfy the message contract (schemas/claims.py); their created_at and
    expires_at become the envelope's iat and exp.
    """
    passphrase = read_passphrase(passphrase_file) if passphrase_file else None
    key = load_signing_key(signing_key, passphrase)
    to = [k for path in recipients for k in load_public_keys(path).encryption]
    if not to:
        raise LocalError("no encryption keys in the --to files")
    try:
        claims = parse_claims(_claims_bytes(claims_file))
    except ValidationError as exc:
        raise claims_refusal(exc) from None
    out.write(seal(claims, signing_key=key, recipients=to, rand=os.urandom).raw)


@envelope.command("open")
@click.argument("file", type=_INPUT)
@click.option(
    "--key",
    "keys",
    required=True,
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="One of our encryption keys (PKCS#8 PEM). Repeat during a key rotation.",
)
@click.option(
    "--sender-keys",
    required=True,
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The sender's public JWK Set. Trusted for its zvg_org, or for any sender without one.",
)
@click.option(
    "--now",
    type=click.DateTime(formats=["%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S%z"]),
    help="Check the time window at this UTC time instead of the clock (e.g. for test vectors).",
)
@_PASSPHRASE
def open_command(
    file: BinaryIO,
    keys: tuple[Path, ...],
    sender_keys: tuple[Path, ...],
    now: datetime | None,
    passphrase_file: Path | None,
) -> None:
    """Decrypt and verify the envelope in FILE ('-' for stdin); print the verified claims.

    Runs every check of the node except replay (this command keeps no history) and the
    federation directory (you name the sender's keys). On success prints the signed claims as
    JSON; otherwise one line with the reason and exit 1.
    """
    passphrase = read_passphrase(passphrase_file) if passphrase_file else None
    ring = KeyRing(load_decryption_key(path, passphrase) for path in keys)
    table: dict[str, list[SigningPublicKey]] = {}
    anyone: list[SigningPublicKey] = []
    for path in sender_keys:
        found = load_public_keys(path)
        (table.setdefault(found.org, []) if found.org else anyone).extend(found.signing)
    lookup = StaticSenderKeys(table, any_org=anyone)
    when = (now.replace(tzinfo=UTC) if now.tzinfo is None else now) if now else datetime.now(UTC)
    message = open_envelope(
        _envelope_bytes(file),
        keyring=ring,
        sender_keys=lookup,
        now=when,
        is_replay=lambda _sender, _mid: False,
    )
    payload = jose.b64u_decode(message.inner_jws.split(b".")[1])
    click.echo(json.dumps(json.loads(payload), indent=2, ensure_ascii=False))
    click.echo(
        f"verified: sender {message.header.sender_org} key {message.sender_kid}, "
        f"opened with key {message.recipient_kid}",
        err=True,
    )


COMMANDS: list[click.Command] = [envelope]
