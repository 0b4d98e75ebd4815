"""The federation directory (docs/architecture.md §6): members, their keys, the authority, and
the policy.

The directory is one JSON document, the *payload* of a JWS in JSON General Serialization signed
by a threshold of the federation's authority keys (see ``gateway.core.directory`` for the
verification rules). This module is only the shape of the payload and of its parts; it checks
what can be checked without keys or a clock:

- key ids are unique across the whole directory, and a key's validity window is not empty; a
  revoked key names when and why;
- members are unique by OIN and by broker user; their node ids are unique;
- the authority threshold is between 1 and the number of authority keys;
- the witness threshold, when given, is between 1 and the number of members less one (a log's
  witnesses are the other members);
- policy rules have unique ids, name exactly one of role or org per party, and use only message
  types the purpose allows (checked against the catalogue in the validation context);
- ``expires`` is later than ``issued_at``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints, ValidationInfo, model_validator

from schemas._base import (
    CategoryCode,
    NodeId,
    Oin,
    PurposeCode,
    RoleCode,
    ShortText,
    Wire,
    WireTime,
    catalogue_of,
    rule_error,
)
from schemas.catalogue import MessageType

__all__ = [
    "DIRECTORY_TYPE",
    "Authority",
    "AuthorityKey",
    "DirectoryPayload",
    "KeyEntry",
    "Member",
    "PartySelector",
    "PolicyFlag",
    "PolicyRule",
    "PublicJwk",
]

DIRECTORY_TYPE = "zvg-directory"

#: RFC 7638 thumbprint (SHA-256, base64url without padding).
Kid = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{43}$")]
_B64U = r"^[A-Za-z0-9_-]+$"

#: Flags a policy rule may allow. ``art9``/``art10``/``police_data`` follow from the categories
#: (GEZONDHEID/JUSTITIEEL/POLITIE); the others must be allowed explicitly.
PolicyFlag = Literal["professional_secrecy", "minors", "emergency"]


class PublicJwk(Wire):
    """A public key as a JWK (RFC 7517) of one of the two suites (docs/envelope.md §1)."""

    kty: Literal["EC", "OKP"]
    crv: Literal["P-256", "Ed25519", "X25519"]
    x: Annotated[str, StringConstraints(pattern=_B64U, max_length=64)]
    y: Annotated[str, StringConstraints(pattern=_B64U, max_length=64)] | None = None

    @model_validator(mode="after")
    def _shape(self) -> PublicJwk:
        if (self.kty == "EC") != (self.crv == "P-256"):
            raise rule_error(("crv",), f"crv {self.crv} does not go with kty {self.kty}")
        if (self.kty == "EC") != (self.y is not None):
            raise rule_error(("y",), "required for EC keys, absent for OKP keys")
        return self

    def as_dict(self) -> dict[str, str]:
        """The JWK as a plain mapping (what JOSE libraries and thumbprints take)."""
        return self.model_dump(exclude_none=True)


class KeyEntry(Wire):
    """One public key of a member, with its purpose, validity window and status.

    ``use``: ``sig`` (signs envelopes: P-256 or Ed25519), ``enc`` (receives envelopes: P-256 or
    X25519), ``audit`` (signs audit-log checkpoints: Ed25519 only). A ``revoked`` key names
    ``revoked_at`` and ``revocation_reason`` (docs/decisions/0021-revocation.md).
    """

    kid: Kid
    use: Literal["sig", "enc", "audit"]
    jwk: PublicJwk
    not_before: WireTime
    not_after: WireTime
    status: Literal["active", "revoked"] = "active"
    revoked_at: WireTime | None = None
    revocation_reason: Literal["superseded", "compromised"] | None = None

    @model_validator(mode="after")
    def _rules(self) -> KeyEntry:
        if self.not_after <= self.not_before:
            raise rule_error(("not_after",), "must be later than not_before")
        allowed = {"sig": ("P-256", "Ed25519"), "enc": ("P-256", "X25519"), "audit": ("Ed25519",)}
        if self.jwk.crv not in allowed[self.use]:
            raise rule_error(
                ("jwk", "crv"),
                f"a '{self.use}' key must be on {' or '.join(allowed[self.use])}",
            )
        revoked = self.status == "revoked"
        if revoked != (self.revoked_at is not None) or revoked != (
            self.revocation_reason is not None
        ):
            raise rule_error(
                ("revoked_at",),
                "revoked_at and revocation_reason are given exactly when status is 'revoked'",
            )
        return self


class Member(Wire):
    """A participating organisation."""

    oin: Oin
    name: ShortText
    roles: Annotated[tuple[RoleCode, ...], Field(min_length=1, max_length=8)]
    node_ids: Annotated[tuple[NodeId, ...], Field(min_length=1, max_length=16)]
    broker_user: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{2,63}$")]
    keys: Annotated[tuple[KeyEntry, ...], Field(max_length=64)]

    @model_validator(mode="after")
    def _unique(self) -> Member:
        if len(set(self.roles)) != len(self.roles):
            raise rule_error(("roles",), "a role is listed twice")
        if len(set(self.node_ids)) != len(self.node_ids):
            raise rule_error(("node_ids",), "a node id is listed twice")
        return self


class AuthorityKey(Wire):
    """A federation administrator's key that signs directory versions."""

    kid: Kid
    name: ShortText
    jwk: PublicJwk

    @model_validator(mode="after")
    def _signing_curve(self) -> AuthorityKey:
        if self.jwk.crv not in ("P-256", "Ed25519"):
            raise rule_error(("jwk", "crv"), "an authority key signs: P-256 or Ed25519")
        return self


class Authority(Wire):
    """Who may sign the directory: ``threshold`` of ``keys`` (e.g. 2 of 3)."""

    threshold: Annotated[int, Field(ge=1, le=16)]
    keys: Annotated[tuple[AuthorityKey, ...], Field(min_length=1, max_length=16)]

    @model_validator(mode="after")
    def _threshold(self) -> Authority:
        if self.threshold > len(self.keys):
            raise rule_error(("threshold",), f"is more than the {len(self.keys)} authority keys")
        kids = [k.kid for k in self.keys]
        if len(set(kids)) != len(kids):
            raise rule_error(("keys",), "an authority key is listed twice")
        return self


class PartySelector(Wire):
    """Who a policy rule is about: members acting in one of ``roles``, or one of ``orgs``."""

    roles: Annotated[tuple[RoleCode, ...], Field(min_length=1, max_length=16)] | None = None
    orgs: Annotated[tuple[Oin, ...], Field(min_length=1, max_length=64)] | None = None

    @model_validator(mode="after")
    def _one(self) -> PartySelector:
        if (self.roles is None) == (self.orgs is None):
            raise rule_error(("roles",), "give exactly one of roles or orgs")
        return self

    def matches(self, org: str, role: str) -> bool:
        """True when a party acting as ``role`` for ``org`` is selected."""
        if self.roles is not None:
            return role in self.roles
        return self.orgs is not None and org in self.orgs

    def label(self) -> str:
        """``GGZ/VT`` or ``org 0000…``: for tables and explanations."""
        if self.roles is not None:
            return "/".join(self.roles)
        return "org " + "/".join(self.orgs or ())


class PolicyRule(Wire):
    """``(purpose, sender, recipient, message types) → allowed data categories and flags``.

    A message is allowed to a recipient when one rule matches its purpose, type, sender and that
    recipient, and allows every category and flag it declares (``gateway.core.policy``).
    """

    id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    description: ShortText
    purpose: PurposeCode
    sender: PartySelector
    recipient: PartySelector
    message_types: Annotated[tuple[MessageType, ...], Field(min_length=1, max_length=10)]
    data_categories: Annotated[tuple[CategoryCode, ...], Field(max_length=32)]
    flags: Annotated[tuple[PolicyFlag, ...], Field(max_length=3)] = ()


class Policy(Wire):
    """Deny by default: only what a rule allows is allowed."""

    rules: Annotated[tuple[PolicyRule, ...], Field(max_length=1000)]


class DirectoryPayload(Wire):
    """The signed content of one directory version."""

    type: Literal["zvg-directory"]
    federation: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,31}$")]
    name: ShortText
    version: Annotated[int, Field(ge=1, lt=2**31)]
    issued_at: WireTime
    expires: WireTime
    catalogue_version: Annotated[
        str, StringConstraints(pattern=r"^[0-9]{1,4}\.[0-9]{1,4}\.[0-9]{1,4}$")
    ]
    authority: Authority
    members: Annotated[tuple[Member, ...], Field(max_length=500)]
    policy: Policy
    witness_threshold: Annotated[int, Field(ge=1, le=499)] | None = None
    """How many partners must have cosigned a checkpoint of a member's audit log before the
    records it covers count as witnessed (``zvg audit verify``). Absent: a majority of the
    other members (docs/decisions/0056-witness-threshold-in-the-directory.md)."""

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> DirectoryPayload:
        if self.expires <= self.issued_at:
            raise rule_error(("expires",), "must be later than issued_at")
        if self.witness_threshold is not None and self.witness_threshold >= len(self.members):
            raise rule_error(
                ("witness_threshold",),
                f"is more than the {max(len(self.members) - 1, 0)} members that can witness a log",
            )
        seen_oin: set[str] = set()
        seen_user: set[str] = set()
        seen_kid: set[str] = {k.kid for k in self.authority.keys}
        for i, m in enumerate(self.members):
            if m.oin in seen_oin:
                raise rule_error(("members", i, "oin"), "the same OIN is listed twice")
            if m.broker_user in seen_user:
                raise rule_error(("members", i, "broker_user"), "the same broker user twice")
            seen_oin.add(m.oin)
            seen_user.add(m.broker_user)
            for j, k in enumerate(m.keys):
                if k.kid in seen_kid:
                    raise rule_error(("members", i, "keys", j, "kid"), "key id used twice")
                seen_kid.add(k.kid)
        cat = catalogue_of(info)
        seen_rule: set[str] = set()
        for i, r in enumerate(self.policy.rules):
            if r.id in seen_rule:
                raise rule_error(("policy", "rules", i, "id"), "the same rule id twice")
            seen_rule.add(r.id)
            purpose = cat.purpose_by_code[r.purpose]
            bad_types = [t for t in r.message_types if t not in purpose.message_types]
            if bad_types:
                raise rule_error(
                    ("policy", "rules", i, "message_types"),
                    f"{bad_types} not allowed for purpose {r.purpose}",
                )
            beyond = [c for c in r.data_categories if c not in purpose.data_categories]
            if beyond:
                raise rule_error(
                    ("policy", "rules", i, "data_categories"),
                    f"{beyond} exceed what purpose {r.purpose} can ever carry",
                )
        return self

    def witnesses_needed(self) -> int:
        """How many partners must cosign a member's audit log for its records to count as
        witnessed: ``witness_threshold``, else a majority of the other members (0 in a
        federation of one, where nobody can witness)."""
        if self.witness_threshold is not None:
            return self.witness_threshold
        partners = len(self.members) - 1
        return partners // 2 + 1 if partners > 0 else 0

    def member(self, oin: str) -> Member | None:
        """The member with this OIN, or ``None``."""
        for m in self.members:
            if m.oin == oin:
                return m
        return None
