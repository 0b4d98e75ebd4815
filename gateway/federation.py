"""Administering the federation directory: create, change, sign, show (``zvg federation`` and
``zvg directory``). Shell code around :mod:`gateway.core.directory`.

Every change produces a **new version** (version + 1, ``issued_at`` now, no signatures yet),
written to a new file ``directory.v<N>.json`` beside the old one; a signed version is never edited
in place. ``zvg directory sign`` adds one authority's signature to a version (the payload is
untouched), so administrators can sign one at a time on their own machines; ``verify`` says who
signed and who is missing.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import ValidationError

from gateway.core import jose
from gateway.core.directory import (
    SignedDirectory,
    add_signature,
    parse_signed,
    unsigned,
    verify_signatures,
)
from gateway.core.keys import SigningKey, Suite
from gateway.errors import LocalError
from gateway.keyfiles import PublicKeys, load_signing_key, write_private_key
from schemas._base import describe_errors
from schemas.catalogue import Catalogue
from schemas.directory import (
    Authority,
    AuthorityKey,
    DirectoryPayload,
    KeyEntry,
    Member,
    Policy,
    PolicyRule,
    PublicJwk,
)

__all__ = [
    "add_member",
    "add_rule",
    "authority_key_entry",
    "init_federation",
    "key_entries",
    "next_path",
    "now_utc",
    "read_directory",
    "render_show",
    "rotate_member_keys",
    "write_directory",
]

_VERSION_NAME = re.compile(r"^(?P<stem>.*?)(\.v[0-9]+)?\.json$")


def now_utc() -> datetime:
    """The current time in whole UTC seconds (directory times have no fractions)."""
    return datetime.now(UTC).replace(microsecond=0)


def read_directory(path: Path, catalogue: Catalogue) -> SignedDirectory:
    """Parse a directory file (signatures not checked). ``LocalError`` when unreadable."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise LocalError(f"{path}: cannot read ({exc.strerror})") from None
    return parse_signed(raw, catalogue=catalogue)


def write_directory(signed: SignedDirectory, path: Path, *, replace: bool = False) -> Path:
    """Write a directory version. Refuses to overwrite another file unless ``replace`` (used by
    ``sign``, which only adds a signature to the same payload)."""
    if path.exists() and not replace:
        raise LocalError(f"{path} already exists; a new version needs a new file")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(signed.to_json() + b"\n")
    tmp.replace(path)
    return path


def next_path(current: Path, version: int) -> Path:
    """``directory.v<version>.json`` beside ``current``."""
    m = _VERSION_NAME.match(current.name)
    stem = m.group("stem") if m else current.stem
    return current.with_name(f"{stem}.v{version}.json")


def _jwk(key_jwk: dict[str, str]) -> PublicJwk:
    return PublicJwk.model_validate(
        {k: key_jwk[k] for k in ("kty", "crv", "x", "y") if k in key_jwk}
    )


def authority_key_entry(name: str, key: SigningKey) -> AuthorityKey:
    return AuthorityKey(kid=key.kid, name=name, jwk=_jwk(key.public.jwk()))


def key_entries(
    public: PublicKeys, *, not_before: datetime, not_after: datetime
) -> tuple[KeyEntry, ...]:
    """Directory key entries for the keys of a JWK Set file (``zvg keys generate`` output)."""
    jwks: list[tuple[str, str, dict[str, str]]] = [
        *(("sig", k.kid, k.jwk()) for k in public.signing),
        *(("enc", k.kid, k.jwk()) for k in public.encryption),
        *(("audit", jose.thumbprint(k), jose.public_jwk(k)) for k in public.audit),
    ]
    entries = [
        KeyEntry.model_validate(
            {
                "kid": kid,
                "use": use,
                "jwk": _jwk(jwk),
                "not_before": not_before,
                "not_after": not_after,
            }
        )
        for use, kid, jwk in jwks
    ]
    if not any(e.use == "sig" for e in entries) or not any(e.use == "enc" for e in entries):
        raise LocalError("a member needs at least a signing and an encryption key")
    if not any(e.use == "audit" for e in entries):
        raise LocalError("a member needs an Ed25519 audit-log key (zvg keys generate writes one)")
    return tuple(entries)


def _next(payload: DirectoryPayload, now: datetime, **changes: object) -> DirectoryPayload:
    data = payload.model_dump()
    data.update(version=payload.version + 1, issued_at=now, **changes)
    try:
        return DirectoryPayload.model_validate(data, strict=False)
    except ValidationError as exc:
        raise LocalError(f"the new directory version is invalid: {describe_errors(exc)}") from None


def init_federation(
    out: Path,
    *,
    federation: str,
    name: str,
    authorities: Sequence[str],
    threshold: int,
    suite: Suite,
    catalogue: Catalogue,
    now: datetime,
    lifetime: timedelta,
    rand: Callable[[int], bytes] = os.urandom,
    passphrase: bytes | None = None,
) -> Path:
    """Create authority keys (``out/authority/<name>.key.pem``) and directory version 1 with no
    members and no rules, signed by every authority. Returns the directory file."""
    if len(set(authorities)) != len(authorities):
        raise LocalError("authority names must be unique")
    target = out / "directory.v1.json"
    key_dir = out / "authority"
    paths = [key_dir / f"{n}.key.pem" for n in authorities]
    for p in [target, *paths]:
        if p.exists():
            raise LocalError(f"{p} already exists; refusing to overwrite")
    keys = [SigningKey.derive(suite, rand) for _ in authorities]
    payload = DirectoryPayload.model_validate(
        {
            "type": "zvg-directory",
            "federation": federation,
            "name": name,
            "version": 1,
            "issued_at": now,
            "expires": now + lifetime,
            "catalogue_version": catalogue.version,
            "authority": Authority(
                threshold=threshold,
                keys=tuple(
                    authority_key_entry(n, k) for n, k in zip(authorities, keys, strict=True)
                ),
            ),
            "members": (),
            "policy": Policy(rules=()),
        },
        strict=False,
        context={"catalogue": catalogue},
    )
    key_dir.mkdir(parents=True, exist_ok=True)
    for path, n, key in zip(paths, authorities, keys, strict=True):
        write_private_key(path, key.private, passphrase)
        (key_dir / f"{n}.public.jwk.json").write_text(
            jose.json_dumps(key.public.jwk()).decode("utf-8") + "\n", encoding="utf-8"
        )
    signed = unsigned(payload)
    for key in keys:
        signed = add_signature(signed, key)
    return write_directory(signed, target)


def add_member(
    signed: SignedDirectory, member: Member, *, now: datetime, catalogue: Catalogue
) -> SignedDirectory:
    """A new, unsigned version with ``member`` added (or replaced when the OIN exists)."""
    members = [m for m in signed.payload.members if m.oin != member.oin] + [member]
    return unsigned(_validated(_next(signed.payload, now, members=tuple(members)), catalogue))


def add_rule(
    signed: SignedDirectory, rule: PolicyRule, *, now: datetime, catalogue: Catalogue
) -> SignedDirectory:
    """A new, unsigned version with ``rule`` added (or replaced when the id exists)."""
    rules = [r for r in signed.payload.policy.rules if r.id != rule.id] + [rule]
    return unsigned(
        _validated(_next(signed.payload, now, policy=Policy(rules=tuple(rules))), catalogue)
    )


def set_witness_threshold(
    signed: SignedDirectory, threshold: int | None, *, now: datetime, catalogue: Catalogue
) -> SignedDirectory:
    """A new, unsigned version whose witness threshold is ``threshold`` (``None``: a majority of
    the other members)."""
    return unsigned(_validated(_next(signed.payload, now, witness_threshold=threshold), catalogue))


def rotate_member_keys(
    signed: SignedDirectory,
    org: str,
    new_keys: PublicKeys,
    *,
    now: datetime,
    overlap: timedelta,
    valid_for: timedelta,
    catalogue: Catalogue,
) -> SignedDirectory:
    """A new, unsigned version where ``org``'s new keys start now and its current keys end
    after ``overlap`` (senders switch to the newest key at once; receivers accept old
    signatures until the overlap ends)."""
    member = signed.payload.member(org)
    if member is None:
        raise LocalError(f"{org} is not a member of this directory")
    fresh = key_entries(new_keys, not_before=now, not_after=now + valid_for)
    ends = now + overlap
    old = tuple(
        k.model_copy(update={"not_after": min(k.not_after, ends)}) if k.status == "active" else k
        for k in member.keys
    )
    updated = member.model_copy(update={"keys": (*old, *fresh)})
    return add_member(signed, updated, now=now, catalogue=catalogue)


def _validated(payload: DirectoryPayload, catalogue: Catalogue) -> DirectoryPayload:
    try:
        return DirectoryPayload.model_validate_json(
            payload.model_dump_json(), context={"catalogue": catalogue}
        )
    except ValidationError as exc:
        raise LocalError(f"the new directory version is invalid: {describe_errors(exc)}") from None


def sign_with(signed: SignedDirectory, key_file: Path, passphrase: bytes | None) -> SignedDirectory:
    """Add the signature of the authority key in ``key_file``. Refuses a key that is not one of
    the version's authority keys (it would not count)."""
    key = load_signing_key(key_file, passphrase)
    if key.kid not in {k.kid for k in signed.payload.authority.keys}:
        raise LocalError(f"{key_file} is not an authority key of this directory version")
    return add_signature(signed, key)


# ---------------------------------------------------------------------------- show


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    rows = [list(r) for r in rows]
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    out = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    out.append("  ".join("-" * w for w in widths))
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return out


def render_show(
    signed: SignedDirectory,
    *,
    now: datetime,
    catalogue: Catalogue,
    previous: SignedDirectory | None = None,
) -> str:
    """The directory as tables a privacy officer can read: signatures, members, keys with days
    to expiry, and the policy per purpose."""
    p = signed.payload
    names = {m.oin: m.name for m in p.members}
    days_left = (p.expires - now).days
    lines = [
        f"Federation directory: {p.name} ({p.federation}), version {p.version}",
        (
            f"issued {p.issued_at:%Y-%m-%d %H:%M}Z, expires {p.expires:%Y-%m-%d} "
            f"({'EXPIRED' if p.expires <= now else f'{days_left} days left'}), "
            f"catalogue {p.catalogue_version}"
        ),
    ]
    result = verify_signatures(signed, p.authority)
    state = "VALID" if result.verified else "NOT VALID"
    lines.append(f"signatures: {state}: {result.describe()}")
    if previous is not None:
        prev = verify_signatures(signed, previous.payload.authority)
        lines.append(f"signed by the previous authority (v{previous.version}): {prev.describe()}")
    partners = max(len(p.members) - 1, 0)
    how = "set" if p.witness_threshold is not None else "default: a majority"
    lines.append(
        f"audit-log witnesses: {p.witnesses_needed()} of the {partners} partners must cosign "
        f"a member's log ({how})"
    )
    lines += ["", "Members"]
    lines += _table(
        ["OIN", "organisation", "roles", "nodes", "broker user"],
        [
            (m.oin, m.name, "/".join(m.roles), ", ".join(m.node_ids), m.broker_user)
            for m in p.members
        ],
    )
    lines += ["", "Keys"]
    key_rows = []
    for m in p.members:
        for k in m.keys:
            left = (k.not_after - now).days
            status = k.status if k.status == "active" else f"revoked ({k.revocation_reason})"
            if k.status == "active" and k.not_after <= now:
                status = "expired"
            elif k.status == "active" and k.not_before > now:
                status = "not yet valid"
            key_rows.append(
                (
                    names.get(m.oin, m.oin)[:32],
                    k.use,
                    k.jwk.crv,
                    k.kid[:12] + "…",
                    f"{k.not_before:%Y-%m-%d}",
                    f"{k.not_after:%Y-%m-%d}",
                    str(left),
                    status,
                )
            )
    lines += _table(
        ["member", "use", "curve", "kid", "valid from", "valid until", "days left", "status"],
        key_rows,
    )
    lines += ["", f"Policy (deny by default; {len(p.policy.rules)} rules)"]
    if not p.policy.rules:
        lines.append("  no rules: every message is denied")
    purposes = catalogue.purpose_by_code
    for code in [pp.code for pp in catalogue.purposes]:
        rules = [r for r in p.policy.rules if r.purpose == code]
        if not rules:
            continue
        lines += ["", f"{code} — {purposes[code].name_nl}"]
        lines += [
            "  " + line
            for line in _table(
                ["rule", "sender", "recipients", "message types", "data categories", "flags"],
                [
                    (
                        r.id,
                        r.sender.label(),
                        r.recipient.label(),
                        ", ".join(r.message_types),
                        ", ".join(r.data_categories),
                        ", ".join(r.flags) or "-",
                    )
                    for r in rules
                ],
            )
        ]
    return "\n".join(lines) + "\n"
