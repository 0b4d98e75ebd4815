"""Broker topology as data: names, permissions, policies and RabbitMQ definitions
(docs/architecture.md §8, docs/ops/broker.md).

Pure: no I/O, no clock, no randomness (password salts come in as arguments). The shell
(:mod:`gateway.broker.provision`) writes what this module computes; the transport
(:mod:`gateway.broker.transport`) uses the same names.

Rules enforced here (docs/ops/broker.md §2):

- One vhost per federation: ``zvg-<federation>``.
- One durable topic exchange for envelopes (:data:`ENVELOPE_EXCHANGE`); routing key
  ``<recipient-oin>.<sender-oin>``; one durable **quorum** queue per organisation
  (``zvg.inbox.<oin>``) bound with ``<oin>.*``.
- One internal topic dead-letter exchange (:data:`DEAD_LETTER_EXCHANGE`); dead-lettered messages
  keep their routing key, so one dead-letter queue per organisation (``zvg.dead.<oin>``) bound with
  ``<oin>.*`` collects what was addressed to it. Internal: no client can publish to it.
- Tunables (TTL cap, delivery limit, length bounds, overflow — ``reject-publish`` on inboxes,
  ``drop-head`` on dead-letter queues — and dead-letter settings) live in **policies**, never
  in queue arguments, so they change without re-declaring (``import_definitions`` never
  overwrites an existing queue). The only queue arguments are the two RabbitMQ cannot set by
  policy: ``x-queue-type`` on every queue, and ``x-single-active-consumer`` on inboxes
  (:data:`INBOX_ARGUMENTS`): the broker hands an organisation's messages to one consumer at a
  time, so a second node process of the same organisation waits instead of taking half of the
  inbox into a store of its own.
- Each organisation's broker user: configure nothing (``^$``), write only the envelope exchange,
  read only its own inbox and dead-letter queue, and a topic permission on the envelope exchange
  whose write pattern admits only routing keys naming that organisation as the sender
  (``^[0-9]{20}\\.<oin>$``): the broker itself refuses a routing key that names another sender.
- No tags that grant anything (no ``administrator``, ``management``, ``impersonator``): an
  ``impersonator`` could set another user's AMQP ``user_id``. Members carry only the marker tag
  :data:`MEMBER_TAG`, so provisioning can tell the users it created from anybody else's.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from gateway.errors import LocalError, RemoteError

__all__ = [
    "CONTENT_TYPE",
    "CONTENT_TYPES",
    "DEAD_LETTER_EXCHANGE",
    "DEFAULT_LIMITS",
    "ENVELOPE_EXCHANGE",
    "HASHING_ALGORITHM",
    "INBOX_ARGUMENTS",
    "MEMBER_TAG",
    "PASSWORD_SALT_BYTES",
    "WITNESS_CONTENT_TYPE",
    "BrokerLimits",
    "BrokerMember",
    "Permissions",
    "TopicPermissions",
    "binding_key",
    "check_broker_user",
    "check_federation",
    "check_org",
    "dead_letter_queue",
    "definitions",
    "inbox_queue",
    "password_hash",
    "permissions_for",
    "routing_key",
    "split_routing_key",
    "topic_permissions_for",
    "topic_write_pattern",
    "vhost_name",
]

ENVELOPE_EXCHANGE = "zvg.envelopes"
"""Topic exchange every node publishes its envelopes to."""

DEAD_LETTER_EXCHANGE = "zvg.dead-letters"
"""Internal topic exchange that receives rejected, expired and poison messages."""

CONTENT_TYPE = "application/jose+json"
#: Content type of the audit-log witnessing traffic between nodes (C2SP add-checkpoint requests
#: and cosignatures: tree sizes, roots and signatures, never personal data; decision 0055).
WITNESS_CONTENT_TYPE = "text/x.zvg-witness"
CONTENT_TYPES = frozenset({CONTENT_TYPE, WITNESS_CONTENT_TYPE})
"""AMQP ``content_type`` of every envelope (a JWE in General JSON Serialization,
docs/envelope.md)."""

MEMBER_TAG = "zvg-member"
"""User tag marking broker users that ``zvg broker provision`` created. Grants nothing."""

HASHING_ALGORITHM = "rabbit_password_hashing_sha256"
"""RabbitMQ's password hashing scheme used in the definitions (the broker's default)."""

PASSWORD_SALT_BYTES = 4
"""RabbitMQ's salted SHA-256 password hash uses a 32-bit salt (rabbit_password.erl)."""

_QUORUM_ARGUMENTS: Mapping[str, Any] = MappingProxyType({"x-queue-type": "quorum"})
"""Arguments of a dead-letter queue: a quorum queue (replicated, confirms after a majority)."""

INBOX_ARGUMENTS: Mapping[str, Any] = MappingProxyType(
    {**_QUORUM_ARGUMENTS, "x-single-active-consumer": True}
)
"""Arguments of an inbox: a quorum queue with one active consumer at a time. Arguments cannot be
changed on an existing queue (RabbitMQ refuses a re-declaration with other arguments and
``import_definitions`` keeps the old queue): provisioning reports inboxes made without it."""

_INBOX_PREFIX = "zvg.inbox."
_DEAD_PREFIX = "zvg.dead."

OIN_DIGITS = 20
"""An OIN (Organisatie-identificatienummer) is exactly 20 decimal digits."""

_OIN = re.compile(r"[0-9]{20}")
_FEDERATION = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
"""Federation ids become part of a vhost name: lowercase letters, digits, inner hyphens, ≤ 63."""

_BROKER_USER = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._@-]{0,126}[A-Za-z0-9])?")
"""Broker user names: ≤ 128 plain characters (they also appear as certificate CNs); no spaces,
quotes or regex metacharacters that could leak into patterns or command lines."""

_RESERVED_USERS = frozenset({"guest"})
"""Users that provisioning must never create, change or hand to a node."""


def check_org(org: str) -> str:
    """Return ``org`` when it is a 20-digit OIN; raise :class:`LocalError` otherwise."""
    if not isinstance(org, str) or not _OIN.fullmatch(org):
        raise LocalError(f"organisation id must be a {OIN_DIGITS}-digit OIN")
    return org


def check_federation(federation: str) -> str:
    """Return ``federation`` when it is a valid federation id; raise :class:`LocalError`."""
    if not isinstance(federation, str) or not _FEDERATION.fullmatch(federation):
        raise LocalError("federation id must be 1-63 lowercase letters, digits or inner hyphens")
    return federation


def check_broker_user(user: str) -> str:
    """Return ``user`` when it is an acceptable broker user name; raise :class:`LocalError`.

    Refuses ``guest``: nodes never use the broker's default account.
    """
    if not isinstance(user, str) or not _BROKER_USER.fullmatch(user):
        raise LocalError("broker user must be 1-128 letters, digits or . _ @ - characters")
    if user in _RESERVED_USERS:
        raise LocalError(f"broker user {user!r} is reserved and never given to a node")
    return user


def vhost_name(federation: str) -> str:
    """The federation's virtual host: ``zvg-<federation>``."""
    return "zvg-" + check_federation(federation)


def inbox_queue(org: str) -> str:
    """The organisation's inbound quorum queue: ``zvg.inbox.<oin>``."""
    return _INBOX_PREFIX + check_org(org)


def dead_letter_queue(org: str) -> str:
    """The organisation's dead-letter quorum queue: ``zvg.dead.<oin>``."""
    return _DEAD_PREFIX + check_org(org)


def binding_key(org: str) -> str:
    """The binding key of the organisation's queues: ``<oin>.*`` (anything addressed to it)."""
    return check_org(org) + ".*"


def routing_key(recipient: str, sender: str) -> str:
    """The routing key of one publish: ``<recipient-oin>.<sender-oin>``."""
    return f"{check_org(recipient)}.{check_org(sender)}"


def split_routing_key(key: str) -> tuple[str, str]:
    """Return ``(recipient, sender)`` from a routing key received from the broker.

    Raises :class:`RemoteError` (``malformed``) when it is not two OINs joined by a dot.
    """
    recipient, dot, sender = key.partition(".")
    if not dot or not _OIN.fullmatch(recipient) or not _OIN.fullmatch(sender):
        raise RemoteError("malformed", "routing key is not <recipient-oin>.<sender-oin>")
    return recipient, sender


def topic_write_pattern(org: str) -> str:
    """Topic-permission write pattern: routing keys that name ``org`` as the sender only."""
    return r"^[0-9]{20}\." + check_org(org) + "$"


@dataclass(frozen=True, slots=True)
class Permissions:
    """A user's vhost permissions (regular expressions, as RabbitMQ stores them)."""

    configure: str
    write: str
    read: str


@dataclass(frozen=True, slots=True)
class TopicPermissions:
    """A user's topic permissions on one exchange (regular expressions over routing keys)."""

    exchange: str
    write: str
    read: str


_NOTHING = "^$"
"""The pattern that matches no name: RabbitMQ's way of granting nothing."""


def permissions_for(org: str, *, quarantined: bool = False) -> Permissions:
    """The vhost permissions of ``org``'s broker user (docs/ops/broker.md §2).

    configure nothing; write only the envelope exchange; read only its own two queues. When
    ``quarantined`` (``zvg broker quarantine``), write nothing either: the member can still
    consume its own queues, so receiving continues, but cannot publish.
    """
    check_org(org)
    return Permissions(
        configure=_NOTHING,
        write=_NOTHING if quarantined else "^" + re.escape(ENVELOPE_EXCHANGE) + "$",
        read="^" + re.escape(_INBOX_PREFIX) + org + "$|^" + re.escape(_DEAD_PREFIX) + org + "$",
    )


def topic_permissions_for(org: str, *, quarantined: bool = False) -> TopicPermissions:
    """The topic permissions of ``org``'s broker user on the envelope exchange: write only
    routing keys naming ``org`` as the sender (nothing when ``quarantined``); read nothing
    (members never bind queues). Topic permissions must stay set: with none at all, RabbitMQ
    allows every routing key."""
    return TopicPermissions(
        exchange=ENVELOPE_EXCHANGE,
        write=_NOTHING if quarantined else topic_write_pattern(org),
        read=_NOTHING,
    )


@dataclass(frozen=True, slots=True)
class BrokerMember:
    """One federation member as the broker sees it: its OIN and its broker user name."""

    org: str
    broker_user: str

    def __post_init__(self) -> None:
        check_org(self.org)
        check_broker_user(self.broker_user)


_DAY_MS = 24 * 60 * 60 * 1000
_MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class BrokerLimits:
    """Tunables that go into the federation's policies (all positive integers, units in names).

    Defaults and why:

    - ``message_ttl_ms`` (7 days): a cap on top of each message's own ``expiration`` (its ``exp``);
      a receiver refuses envelopes whose ``iat`` is older than 7 days anyway (docs/envelope.md
      §2.6), so the broker need not keep ciphertext longer.
    - ``delivery_limit`` (10): a message that was handed out and given back (requeue, consumer
      crash, dropped connection) this many times is dead-lettered as ``delivery_limit`` instead
      of looping. Ten leaves room for a few restarts and retries, but bounds a poison message.
    - ``max_length`` (50,000 messages) / ``max_length_bytes`` (256 MiB) per inbox: a partner that
      is offline for days at the busiest expected rate (a few thousand messages a day) still fits;
      beyond that the broker **nacks** new publishes (``overflow: reject-publish``), the sender's
      outbox keeps them and retries: nothing is dropped silently, and one stuck partner cannot
      fill the broker's disk for everyone.
    - ``dead_letter_ttl_ms`` (7 days), ``dead_letter_max_length`` (10,000),
      ``dead_letter_max_length_bytes`` (64 MiB): time for ops to look at dead letters, then they
      go. A full dead-letter queue drops its *oldest* dead letter for each new one
      (``overflow: drop-head``): it must never push back, because with at-least-once
      dead-lettering a refused message waits in the inbox — counted against the inbox's
      ``max_length`` — until the dead-letter queue takes it, so a flood of junk that filled the
      dead-letter queue would fill the inbox and have the broker nack legitimate messages
      (docs/decisions/0039).
    - ``max_connections`` (32) / ``max_channels`` (256) per broker user: one organisation cannot
      exhaust the broker's connections or memory for the others.
    - ``policy_priority`` (10): wins over catch-all operator-made policies (priority 0) that would
      otherwise strip the dead-letter settings from our queues.
    """

    message_ttl_ms: int = 7 * _DAY_MS
    delivery_limit: int = 10
    max_length: int = 50_000
    max_length_bytes: int = 256 * _MIB
    dead_letter_ttl_ms: int = 7 * _DAY_MS
    dead_letter_max_length: int = 10_000
    dead_letter_max_length_bytes: int = 64 * _MIB
    max_connections: int = 32
    max_channels: int = 256
    policy_priority: int = 10

    def __post_init__(self) -> None:
        for name in self.__slots__:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise LocalError(f"broker limit {name} must be a non-negative integer")
            if value == 0 and name != "policy_priority":
                raise LocalError(f"broker limit {name} must be positive")


DEFAULT_LIMITS = BrokerLimits()
"""The defaults above, as one shared (immutable) value."""


def password_hash(password: str, salt: bytes) -> str:
    """RabbitMQ's ``rabbit_password_hashing_sha256`` hash: ``b64(salt || sha256(salt || pw))``.

    ``salt`` must be :data:`PASSWORD_SALT_BYTES` fresh random bytes (the caller draws them).
    """
    if len(salt) != PASSWORD_SALT_BYTES:
        raise LocalError(f"password salt must be {PASSWORD_SALT_BYTES} bytes")
    digest = hashlib.sha256(salt + password.encode("utf-8")).digest()
    return base64.b64encode(salt + digest).decode("ascii")


def _policies(vhost: str, limits: BrokerLimits) -> list[dict[str, Any]]:
    inbox = {
        "message-ttl": limits.message_ttl_ms,
        "delivery-limit": limits.delivery_limit,
        "max-length": limits.max_length,
        "max-length-bytes": limits.max_length_bytes,
        "overflow": "reject-publish",
        "dead-letter-exchange": DEAD_LETTER_EXCHANGE,
        # at-least-once: a message leaves the inbox only once the dead-letter queue confirmed it
        # (needs overflow reject-publish, which we want anyway).
        "dead-letter-strategy": "at-least-once",
    }
    dead = {
        "message-ttl": limits.dead_letter_ttl_ms,
        "max-length": limits.dead_letter_max_length,
        "max-length-bytes": limits.dead_letter_max_length_bytes,
        # drop-head, never reject-publish: a dead-letter queue that refused would keep refused
        # messages in the inbox (at-least-once), where junk would crowd out legitimate ones.
        "overflow": "drop-head",
    }
    return [
        {
            "vhost": vhost,
            "name": "zvg-inbox",
            "pattern": "^" + re.escape(_INBOX_PREFIX) + "[0-9]{20}$",
            "apply-to": "queues",
            "priority": limits.policy_priority,
            "definition": inbox,
        },
        {
            "vhost": vhost,
            "name": "zvg-dead",
            "pattern": "^" + re.escape(_DEAD_PREFIX) + "[0-9]{20}$",
            "apply-to": "queues",
            "priority": limits.policy_priority,
            "definition": dead,
        },
    ]


def definitions(
    federation: str,
    members: Sequence[BrokerMember],
    *,
    password_hashes: Mapping[str, str],
    limits: BrokerLimits = DEFAULT_LIMITS,
) -> dict[str, Any]:
    """RabbitMQ definitions (``import_definitions`` JSON) for one federation.

    ``password_hashes`` maps each member's broker user to its :func:`password_hash`. The result
    is deterministic for the same inputs (members sorted by OIN), so it can be diffed and
    committed. Raises :class:`LocalError` on an empty member list, duplicate OINs or broker
    users, or a missing password hash.
    """
    vhost = vhost_name(federation)
    if not members:
        raise LocalError("a federation needs at least one member")
    ordered = sorted(members, key=lambda m: m.org)
    orgs = [m.org for m in ordered]
    users = [m.broker_user for m in ordered]
    if len(set(orgs)) != len(orgs):
        raise LocalError("duplicate organisation in the member list")
    if len(set(users)) != len(users):
        raise LocalError("two members share one broker user")
    missing = [u for u in users if u not in password_hashes]
    if missing:
        raise LocalError(f"no password hash for broker user(s) {', '.join(missing)}")

    def exchange(name: str, *, internal: bool) -> dict[str, Any]:
        return {
            "name": name,
            "vhost": vhost,
            "type": "topic",
            "durable": True,
            "auto_delete": False,
            "internal": internal,
            "arguments": {},
        }

    def queue(name: str, arguments: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "name": name,
            "vhost": vhost,
            "durable": True,
            "auto_delete": False,
            "arguments": dict(arguments),
        }

    def binding(source: str, destination: str, org: str) -> dict[str, Any]:
        return {
            "source": source,
            "vhost": vhost,
            "destination": destination,
            "destination_type": "queue",
            "routing_key": binding_key(org),
            "arguments": {},
        }

    user_entries = []
    permission_entries = []
    topic_entries = []
    for m in ordered:
        perms = permissions_for(m.org)
        user_entries.append(
            {
                "name": m.broker_user,
                "password_hash": password_hashes[m.broker_user],
                "hashing_algorithm": HASHING_ALGORITHM,
                "tags": [MEMBER_TAG],
                "limits": {
                    "max-connections": limits.max_connections,
                    "max-channels": limits.max_channels,
                },
            }
        )
        permission_entries.append(
            {
                "user": m.broker_user,
                "vhost": vhost,
                "configure": perms.configure,
                "write": perms.write,
                "read": perms.read,
            }
        )
        topic = topic_permissions_for(m.org)
        topic_entries.append(
            {
                "user": m.broker_user,
                "vhost": vhost,
                "exchange": topic.exchange,
                "write": topic.write,
                "read": topic.read,
            }
        )

    return {
        "vhosts": [{"name": vhost}],
        "users": user_entries,
        "permissions": permission_entries,
        "topic_permissions": topic_entries,
        "exchanges": [
            exchange(ENVELOPE_EXCHANGE, internal=False),
            exchange(DEAD_LETTER_EXCHANGE, internal=True),
        ],
        "queues": [queue(inbox_queue(o), INBOX_ARGUMENTS) for o in orgs]
        + [queue(dead_letter_queue(o), _QUORUM_ARGUMENTS) for o in orgs],
        "bindings": [binding(ENVELOPE_EXCHANGE, inbox_queue(o), o) for o in orgs]
        + [binding(DEAD_LETTER_EXCHANGE, dead_letter_queue(o), o) for o in orgs],
        "policies": _policies(vhost, limits),
        "parameters": [],
        "global_parameters": [],
    }
