"""The broker topology as data (docs/ops/broker.md §2): names, patterns, policies, definitions.

The broker's own enforcement is tested in tests/integration/; these tests pin the data that goes
into it, one rule per test, without a broker.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import Any

import pytest

from gateway.core import broker_topology as t
from gateway.core.decisions import Deliver, Reject, Retry
from gateway.errors import LocalError, RemoteError

ZVH, POL, GGZ = "00000001823288444000", "00000001003214345000", "00000003271247974000"
MEMBERS = [t.BrokerMember(POL, "pol-node"), t.BrokerMember(ZVH, "zvh-node")]
HASHES = {"pol-node": "h1", "zvh-node": "h2"}


def _defs(**kw: Any) -> dict[str, Any]:
    return t.definitions("veenstad", MEMBERS, password_hashes=HASHES, **kw)


# ------------------------------------------------------------------------------ names


def test_names() -> None:
    assert t.vhost_name("veenstad") == "zvg-veenstad"
    assert t.inbox_queue(ZVH) == f"zvg.inbox.{ZVH}"
    assert t.dead_letter_queue(ZVH) == f"zvg.dead.{ZVH}"
    assert t.routing_key(ZVH, POL) == f"{ZVH}.{POL}"
    assert t.binding_key(ZVH) == f"{ZVH}.*"


@pytest.mark.parametrize(
    "org",
    ["", "1234", "0000000182328844400", "000000018232884440000", "0000000182328844400a", " " + ZVH],
)
def test_an_org_id_is_exactly_20_digits(org: str) -> None:
    with pytest.raises(LocalError):
        t.inbox_queue(org)


@pytest.mark.parametrize(
    "federation", ["", "Veenstad", "veen stad", "-veenstad", "a" * 64, "veen/stad"]
)
def test_federation_ids_are_vhost_safe(federation: str) -> None:
    with pytest.raises(LocalError):
        t.vhost_name(federation)


@pytest.mark.parametrize("user", ["", "guest", "pol node", "pol\nnode", "^.*$", "a" * 129, "pol'"])
def test_broker_users_are_plain_names_and_never_guest(user: str) -> None:
    with pytest.raises(LocalError):
        t.BrokerMember(POL, user)


@pytest.mark.parametrize(
    "key", ["", ZVH, f"{ZVH}.", f".{POL}", f"{ZVH}.{POL}.x", f"{ZVH}.pol", f"{ZVH}:{POL}", "#"]
)
def test_a_received_routing_key_must_be_two_oins(key: str) -> None:
    with pytest.raises(RemoteError) as caught:
        t.split_routing_key(key)
    assert caught.value.reason == "malformed"


def test_split_routing_key() -> None:
    assert t.split_routing_key(f"{ZVH}.{POL}") == (ZVH, POL)


# ------------------------------------------------------------------------------ permissions


def test_topic_write_pattern_admits_only_keys_naming_the_org_as_sender() -> None:
    """Mirrors RabbitMQ's regex match (re.search semantics, anchored by the pattern)."""
    pattern = re.compile(t.topic_write_pattern(POL))
    assert pattern.search(f"{ZVH}.{POL}")
    assert pattern.search(f"{GGZ}.{POL}")
    for key in [f"{ZVH}.{GGZ}", f"{POL}.{ZVH}", f"{ZVH}.{POL}.x", f"x.{POL}", f"{ZVH}.{POL}0", "#"]:
        assert not pattern.search(key), key


def test_permissions_configure_nothing_write_the_exchange_read_own_queues() -> None:
    perms = t.permissions_for(POL)
    assert perms.configure == "^$"
    write, read = re.compile(perms.write), re.compile(perms.read)
    assert write.search(t.ENVELOPE_EXCHANGE)
    for name in [t.DEAD_LETTER_EXCHANGE, "amq.default", "amq.topic", t.inbox_queue(POL)]:
        assert not write.search(name), name
    assert read.search(t.inbox_queue(POL))
    assert read.search(t.dead_letter_queue(POL))
    for name in [
        t.inbox_queue(ZVH),
        t.dead_letter_queue(ZVH),
        t.inbox_queue(POL) + "x",
        "x" + t.inbox_queue(POL),
    ]:
        assert not read.search(name), name


# ------------------------------------------------------------------------------ definitions


def test_definitions_hold_one_user_queue_pair_and_bindings_per_member() -> None:
    defs = _defs()
    assert defs["vhosts"] == [{"name": "zvg-veenstad"}]
    users = {u["name"]: u for u in defs["users"]}
    assert set(users) == {"pol-node", "zvh-node"}
    assert users["pol-node"]["tags"] == [t.MEMBER_TAG]
    assert users["pol-node"]["password_hash"] == "h1"
    queues = {q["name"]: q for q in defs["queues"]}
    assert set(queues) == {t.inbox_queue(o) for o in (POL, ZVH)} | {
        t.dead_letter_queue(o) for o in (POL, ZVH)
    }
    for name, queue in queues.items():
        # Only what RabbitMQ cannot set by policy is an argument; every tunable is in a policy.
        inbox = name.startswith("zvg.inbox.")
        assert queue["arguments"] == (
            {"x-queue-type": "quorum", "x-single-active-consumer": True}
            if inbox
            else {"x-queue-type": "quorum"}
        )
        assert queue["durable"] is True
    bindings = {(b["source"], b["destination"], b["routing_key"]) for b in defs["bindings"]}
    assert (t.ENVELOPE_EXCHANGE, t.inbox_queue(ZVH), f"{ZVH}.*") in bindings
    assert (t.DEAD_LETTER_EXCHANGE, t.dead_letter_queue(ZVH), f"{ZVH}.*") in bindings
    assert len(bindings) == 4


def test_an_inbox_hands_messages_to_one_consumer_at_a_time() -> None:
    """A second node process of one organisation must not take half of its inbox (issue 14)."""
    queues = {q["name"]: q for q in _defs()["queues"]}
    for org in (POL, ZVH):
        assert queues[t.inbox_queue(org)]["arguments"]["x-single-active-consumer"] is True
        assert t.INBOX_ARGUMENTS["x-single-active-consumer"] is True


def test_dead_letter_exchange_is_internal_and_envelope_exchange_is_topic() -> None:
    exchanges = {e["name"]: e for e in _defs()["exchanges"]}
    assert exchanges[t.ENVELOPE_EXCHANGE]["type"] == "topic"
    assert exchanges[t.ENVELOPE_EXCHANGE]["internal"] is False
    assert exchanges[t.DEAD_LETTER_EXCHANGE]["internal"] is True


def test_policies_carry_ttl_limits_overflow_and_dead_lettering() -> None:
    limits = t.BrokerLimits(message_ttl_ms=1000, delivery_limit=3, max_length=7)
    policies = {p["name"]: p for p in _defs(limits=limits)["policies"]}
    inbox = policies["zvg-inbox"]["definition"]
    assert inbox == {
        "message-ttl": 1000,
        "delivery-limit": 3,
        "max-length": 7,
        "max-length-bytes": limits.max_length_bytes,
        "overflow": "reject-publish",
        "dead-letter-exchange": t.DEAD_LETTER_EXCHANGE,
        "dead-letter-strategy": "at-least-once",
    }
    dead = policies["zvg-dead"]["definition"]
    # A full dead-letter queue drops its oldest; refusing would keep junk in the inbox (0039).
    assert dead["overflow"] == "drop-head"
    assert dead["message-ttl"] == limits.dead_letter_ttl_ms
    assert "dead-letter-exchange" not in dead  # dead letters do not loop
    assert re.search(policies["zvg-inbox"]["pattern"], t.inbox_queue(ZVH))
    assert not re.search(policies["zvg-inbox"]["pattern"], t.dead_letter_queue(ZVH))
    assert re.search(policies["zvg-dead"]["pattern"], t.dead_letter_queue(ZVH))


def test_topic_permissions_restrict_the_envelope_exchange_per_member() -> None:
    topics = {p["user"]: p for p in _defs()["topic_permissions"]}
    assert topics["pol-node"]["exchange"] == t.ENVELOPE_EXCHANGE
    assert topics["pol-node"]["write"] == t.topic_write_pattern(POL)
    assert topics["pol-node"]["read"] == "^$"


def test_quarantine_revokes_writing_only_and_release_is_what_provisioning_grants() -> None:
    """Threat: a flooding member keeps publishing (issue 14). Quarantined it writes nothing —
    neither the exchange nor any routing key — and still reads its own queues; released, it has
    exactly the provisioned permissions again (both come from the same functions)."""
    perms = {p["user"]: p for p in _defs()["permissions"]}["pol-node"]
    topics = {p["user"]: p for p in _defs()["topic_permissions"]}["pol-node"]
    held = t.permissions_for(POL, quarantined=True)
    held_topic = t.topic_permissions_for(POL, quarantined=True)
    assert (held.configure, held.write, held.read) == ("^$", "^$", perms["read"])
    assert (held_topic.exchange, held_topic.write, held_topic.read) == (
        t.ENVELOPE_EXCHANGE,
        "^$",
        "^$",
    )
    free = t.permissions_for(POL)
    free_topic = t.topic_permissions_for(POL)
    assert (free.configure, free.write, free.read) == (
        perms["configure"],
        perms["write"],
        perms["read"],
    )
    assert (free_topic.exchange, free_topic.write, free_topic.read) == (
        topics["exchange"],
        topics["write"],
        topics["read"],
    )
    assert not re.search(held.write, t.ENVELOPE_EXCHANGE)
    assert not re.search(held_topic.write, t.routing_key(ZVH, POL))


def test_definitions_are_deterministic_whatever_the_member_order() -> None:
    a = t.definitions("veenstad", MEMBERS, password_hashes=HASHES)
    b = t.definitions("veenstad", list(reversed(MEMBERS)), password_hashes=HASHES)
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


@pytest.mark.parametrize(
    ("members", "hashes", "message"),
    [
        ([], {}, "at least one member"),
        ([t.BrokerMember(POL, "a"), t.BrokerMember(POL, "b")], {"a": "", "b": ""}, "duplicate"),
        ([t.BrokerMember(POL, "a"), t.BrokerMember(ZVH, "a")], {"a": ""}, "share one broker user"),
        ([t.BrokerMember(POL, "a")], {}, "no password hash"),
    ],
)
def test_definitions_refuse_inconsistent_member_lists(
    members: list[t.BrokerMember], hashes: dict[str, str], message: str
) -> None:
    with pytest.raises(LocalError, match=message):
        t.definitions("veenstad", members, password_hashes=hashes)


@pytest.mark.parametrize(
    "field", ["message_ttl_ms", "delivery_limit", "max_length", "max_connections"]
)
@pytest.mark.parametrize("value", [0, -1, True, 1.5])
def test_limits_must_be_positive_integers(field: str, value: object) -> None:
    with pytest.raises(LocalError):
        t.BrokerLimits(**{field: value})  # type: ignore[arg-type]


def test_password_hash_is_rabbitmq_salted_sha256() -> None:
    salt = bytes.fromhex("908dc60a")
    encoded = t.password_hash("test12", salt)
    raw = base64.b64decode(encoded)
    assert raw[:4] == salt
    assert raw[4:] == hashlib.sha256(salt + b"test12").digest()
    with pytest.raises(LocalError):
        t.password_hash("x", b"\x00" * 3)


# ------------------------------------------------------------------------------ decisions


def test_decisions_are_closed_values() -> None:
    assert Deliver() == Deliver()
    assert Reject("malformed", "x").reason == "malformed"
    with pytest.raises(ValueError, match="reject reason"):
        Reject("because", "x")  # type: ignore[arg-type]
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="after_seconds"):
            Retry(bad)
