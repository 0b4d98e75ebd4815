"""Create the demo federation on disk: authority keys, member keys, the signed directory.

Used by the demo (a fresh federation in a working folder each run) and to make
``keys_example/`` (the committed, public demo keys). The directory is built the way an
administrator would: version 1 by ``init_federation``, then members and rules, then signatures
by two of the three administrators (the threshold).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from gateway.core.directory import add_signature, unsigned
from gateway.core.keys import Suite
from gateway.federation import init_federation, key_entries, read_directory, write_directory
from gateway.keyfiles import generate_keys, load_public_keys, load_signing_key
from gateway.testing.veenstad import ORGS, demo_payload
from schemas.catalogue import Catalogue

__all__ = ["AUTHORITIES", "FederationFiles", "create_demo_federation"]

#: The three administrators of docs/demo.md; two of them sign (threshold 2).
AUTHORITIES = ("zvh-manager", "privacy-officer", "ciso-police")
THRESHOLD = 2


@dataclass(frozen=True)
class FederationFiles:
    root: Path
    directory: Path
    authority_dir: Path

    def keys_dir(self, org_key: str) -> Path:
        return self.root / "orgs" / org_key


def create_demo_federation(
    root: Path,
    *,
    now: datetime,
    lifetime: timedelta,
    catalogue: Catalogue,
    rand: Callable[[int], bytes],
    suites: dict[str, Suite] | None = None,
    federation: str = "veenstad",
    user_prefix: str = "zvg-",
    orgs: tuple[str, ...] | None = None,
) -> FederationFiles:
    """Write the whole demo federation under ``root`` (which must not hold one yet)."""
    suites = suites or {}
    v1 = init_federation(
        root,
        federation=federation,
        name="ZVH Veenstad",
        authorities=AUTHORITIES,
        threshold=THRESHOLD,
        suite=Suite.P256,
        catalogue=catalogue,
        now=now,
        lifetime=lifetime,
        rand=rand,
    )
    first = read_directory(v1, catalogue)
    keys = {}
    for org in ORGS:
        if orgs is not None and org.key not in orgs:
            continue
        generated = generate_keys(
            org.oin, root / "orgs" / org.key, suites.get(org.key, Suite.P256), rand=rand
        )
        keys[org.key] = key_entries(
            load_public_keys(generated.jwks_file), not_before=now, not_after=now + lifetime
        )
    payload = demo_payload(
        version=2,
        issued_at=now,
        expires=now + lifetime,
        authority=first.payload.authority,
        keys=keys,
        federation=federation,
        user_prefix=user_prefix,
    )
    if orgs is not None:
        payload = payload.model_copy(
            update={
                "members": tuple(
                    m for m in payload.members if m.oin in {o.oin for o in ORGS if o.key in orgs}
                )
            }
        )
    signed = unsigned(payload)
    for name in AUTHORITIES[:THRESHOLD]:
        signed = add_signature(signed, load_signing_key(root / "authority" / f"{name}.key.pem"))
    directory = write_directory(signed, root / "directory.json")
    return FederationFiles(root, directory, root / "authority")
