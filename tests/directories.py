"""Signed directories for tests: deterministic authority keys, any members and rules."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from gateway.core.directory import add_signature, unsigned
from gateway.core.keys import Suite
from gateway.federation import (
    add_member,
    authority_key_entry,
    now_utc,
    read_directory,
    sign_with,
    write_directory,
)
from gateway.testing.federation import AUTHORITIES, THRESHOLD, FederationFiles
from schemas.catalogue import default_catalogue
from schemas.directory import Authority, DirectoryPayload, KeyEntry, Member, Policy, PolicyRule
from tests.envelope_forge import signing_key

AUTHORITY_KEYS = [signing_key(Suite.P256, f"test-authority-{i}") for i in range(3)]
AUTHORITY = Authority(
    threshold=2,
    keys=tuple(authority_key_entry(f"admin-{i}", k) for i, k in enumerate(AUTHORITY_KEYS)),
)


def signed_directory(
    *,
    federation: str = "veenstad",
    members: Sequence[Member] = (),
    rules: Sequence[PolicyRule] = (),
    version: int = 1,
    issued_at: datetime | None = None,
    lifetime: timedelta = timedelta(days=365),
) -> bytes:
    """A directory signed by two of the three test authority keys."""
    issued = issued_at or datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    payload = DirectoryPayload(
        type="zvg-directory",
        federation=federation,
        name=f"Test federation {federation}",
        version=version,
        issued_at=issued,
        expires=issued + lifetime,
        catalogue_version="1.0.0",
        authority=AUTHORITY,
        members=tuple(members),
        policy=Policy(rules=tuple(rules)),
    )
    signed = unsigned(payload)
    for key in AUTHORITY_KEYS[:2]:
        signed = add_signature(signed, key)
    return signed.to_json()


def member(
    oin: str,
    broker_user: str,
    *,
    name: str = "Test member",
    roles: tuple[str, ...] = ("OTHER",),
    keys: tuple[KeyEntry, ...] = (),
) -> Member:
    return Member(
        oin=oin,
        name=name,
        roles=roles,
        node_ids=("node-1",),
        broker_user=broker_user,
        keys=keys,
    )


def write_directory_file(
    path: Path, users: Mapping[str, str], federation: str = "veenstad"
) -> Path:
    """A signed directory whose members are ``{oin: broker_user}``."""
    path.write_bytes(
        signed_directory(federation=federation, members=[member(o, u) for o, u in users.items()])
    )
    return path


def revoke_signing_keys(
    files: FederationFiles,
    current: Path,
    oin: str,
    out: Path,
    *,
    reason: Literal["superseded", "compromised"] = "compromised",
) -> Path:
    """Write to ``out`` the version after ``current`` in which ``oin``'s signing keys are revoked
    (as of now, for ``reason``), signed by two of the demo federation's administrators."""
    catalogue = default_catalogue()
    signed = read_directory(current, catalogue)
    holder = signed.payload.member(oin)
    assert holder is not None, oin
    now = now_utc()
    keys = tuple(
        k.model_copy(update={"status": "revoked", "revoked_at": now, "revocation_reason": reason})
        if k.use == "sig"
        else k
        for k in holder.keys
    )
    new = add_member(signed, holder.model_copy(update={"keys": keys}), now=now, catalogue=catalogue)
    for name in AUTHORITIES[:THRESHOLD]:
        new = sign_with(new, files.authority_dir / f"{name}.key.pem", None)
    return write_directory(new, out)
