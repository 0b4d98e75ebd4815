"""Hypothesis properties of the envelope (design principle 14, "tests organised around threats",
docs/architecture.md §14; as in cryptography's tests/hypothesis/).

1. seal → open round-trips arbitrary valid claims, for any mix of suites and 1 to 3 recipients.
2. Arbitrary bytes only ever raise ``RemoteError`` from ``open_envelope`` and ``peek_header``.
3. Any mutation of a valid envelope — bit flips, cuts, insertions, or JSON-level edits of any
   member, header or header parameter — either raises ``RemoteError`` or opens to exactly the
   original signed message (a mutation can change formatting, never content).
"""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from gateway.core import jose
from gateway.core.envelope import open_envelope, peek_header, seal
from gateway.core.keys import KeyRing, StaticSenderKeys, Suite
from gateway.errors import RemoteError
from schemas import ids
from schemas.claims import ClaimsBase, claims_to_json, parse_claims
from tests.envelope_forge import (
    SeededRand,
    b64json,
    decryption_key,
    example_claims,
    just_after,
    never_seen,
    signing_key,
    unb64json,
)

SETTINGS = settings(deadline=None, max_examples=20, suppress_health_check=[HealthCheck.too_slow])

BASE = json.loads(claims_to_json(example_claims("case.status")))
SENDER_ORG = BASE["sender"]["org"]
PARTNERS = [
    ("00000001999000002000", "POL"),
    ("00000001999000003000", "OM"),
    ("00000001999000004000", "GGZ"),
    ("00000001999000005000", "VT"),
    ("00000001999000001000", "GEM"),  # the sender's own org in another role
]
EPOCH_2001 = 978_307_200
EPOCH_2099 = 4_070_908_800

# ------------------------------------------------------------------ strategies


def stamp(unix: int) -> str:
    """RFC 3339 UTC text of a Unix time in whole seconds, as the claims carry it."""
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@st.composite
def valid_claims(draw: st.DrawFn) -> ClaimsBase:
    created = draw(st.integers(EPOCH_2001, EPOCH_2099))
    lifetime = draw(st.integers(1, 7 * 24 * 3600))
    data = dict(BASE)
    data["message_id"] = ids.uuid7(
        created * 1000 + draw(st.integers(0, 999)), draw(st.binary(min_size=10, max_size=10))
    )
    data["created_at"] = stamp(created)
    data["expires_at"] = stamp(created + lifetime)
    data["body"] = {**BASE["body"], "effective_at": stamp(created)}
    data["case_ref"] = draw(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{2,63}", fullmatch=True))
    trace_id = draw(st.integers(1, 2**128 - 1))
    span_id = draw(st.integers(1, 2**64 - 1))
    data["trace"] = f"00-{trace_id:032x}-{span_id:016x}-01"
    chosen = draw(st.lists(st.sampled_from(PARTNERS), min_size=1, max_size=5, unique=True))
    data["recipients"] = [{"org": o, "role": r} for o, r in chosen]
    note = draw(
        st.none()
        | st.text(
            st.characters(exclude_categories=["Cs"], exclude_characters="\x00\x7f"),
            min_size=1,
            max_size=300,
        )
    )
    if note is not None:
        data["body"] = {**data["body"], "note": note}
        data["data_categories"] = ["ID_PSEUDO", "VRIJE_TEKST"]
    try:
        return parse_claims(json.dumps(data))
    except ValidationError:
        assume(False)  # e.g. a control character or a BSN-shaped number in the note
        raise


suites = st.sampled_from(list(Suite))

# ------------------------------------------------------------------ 1. round trip


@SETTINGS
@given(
    claims=valid_claims(),
    sender_suite=suites,
    recipient_suites=st.lists(suites, min_size=1, max_size=3),
    seed=st.text(max_size=8),
)
def test_seal_then_open_round_trips_valid_claims(
    claims: ClaimsBase, sender_suite: Suite, recipient_suites: list[Suite], seed: str
) -> None:
    sender = signing_key(sender_suite, "prop-sender")
    owners = [decryption_key(s, f"prop-{i}") for i, s in enumerate(recipient_suites)]
    raw = seal(
        claims, signing_key=sender, recipients=[o.public for o in owners], rand=SeededRand(seed)
    ).raw
    lookup = StaticSenderKeys({claims.sender.org: [sender.public]})
    for own in owners:
        message = open_envelope(
            raw,
            keyring=KeyRing([own]),
            sender_keys=lookup,
            now=just_after(claims, 0),
            is_replay=never_seen,
        )
        assert message.claims == claims
        assert jose.b64u_decode(message.inner_jws.split(b".")[1]) == claims_to_json(claims)
        assert message.recipient_kid == own.kid


# ------------------------------------------------------------------ 2. arbitrary input

CLAIMS = example_claims("case.referral")
SENDER = signing_key(Suite.P256, "prop-sender")
OWN = decryption_key(Suite.P256, "prop-own")
OTHER = decryption_key(Suite.CURVE25519, "prop-other")
LOOKUP = StaticSenderKeys({CLAIMS.sender.org: [SENDER.public]})
RING = KeyRing([OWN, OTHER])
GOOD = seal(
    CLAIMS, signing_key=SENDER, recipients=[OWN.public, OTHER.public], rand=SeededRand("g")
).raw
NOW = just_after(CLAIMS)


def _open_only_remote_errors(raw: bytes) -> None:
    """Open ``raw``: a RemoteError, or exactly the original message — nothing else."""
    try:
        message = open_envelope(
            raw, keyring=RING, sender_keys=LOOKUP, now=NOW, is_replay=never_seen
        )
    except RemoteError:
        return
    assert message.claims == CLAIMS
    assert jose.b64u_decode(message.inner_jws.split(b".")[1]) == claims_to_json(CLAIMS)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(deadline=None, max_examples=100)
@given(raw=st.binary(max_size=2048) | json_values.map(lambda v: json.dumps(v).encode()))
def test_arbitrary_bytes_only_raise_remote_error(raw: bytes) -> None:
    _open_only_remote_errors(raw)
    with contextlib.suppress(RemoteError):
        peek_header(raw, now=NOW)


# ------------------------------------------------------------------ 3. mutations


@st.composite
def byte_mutations(draw: st.DrawFn) -> bytes:
    data = bytearray(GOOD)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["flip", "delete", "insert", "truncate", "replace"]))
        i = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif kind == "delete":
            del data[i : i + draw(st.integers(1, 16))]
        elif kind == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "truncate":
            del data[i:]
        else:
            data[i] = draw(st.sampled_from(b'{}[]",:0aA-_=. \\'))
        if not data:
            break
    return bytes(data)


@SETTINGS
@given(raw=byte_mutations())
def test_byte_mutations_of_a_valid_envelope_only_raise_remote_error(raw: bytes) -> None:
    _open_only_remote_errors(raw)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(doc, dict):
        return {**doc, head: _set(doc.get(head), rest, value)}
    copy = list(doc)
    copy[head] = _set(doc[head], rest, value)
    return copy


def _delete(doc: Any, path: tuple[Any, ...]) -> Any:
    head, rest = path[0], path[1:]
    if rest:
        return _set(doc, (head,), _delete(doc[head], rest))
    if isinstance(doc, dict):
        return {k: v for k, v in doc.items() if k != head}
    return [v for i, v in enumerate(doc) if i != head]


@st.composite
def json_mutations(draw: st.DrawFn) -> bytes:
    doc: Any = json.loads(GOOD)
    decode_header = draw(st.booleans())
    if decode_header:  # edit inside the protected header, re-encoded (no re-encryption)
        doc["protected"] = unb64json(doc["protected"])
    paths = _paths(doc)[1:]
    path = draw(st.sampled_from(paths))
    kind = draw(st.sampled_from(["replace", "delete", "add"]))
    if kind == "replace":
        doc = _set(doc, path, draw(json_values))
    elif kind == "delete":
        doc = _delete(doc, path)
    else:
        parent = path[:-1]
        target: Any = doc
        for p in parent:
            target = target[p]
        if isinstance(target, dict):
            doc = _set(doc, (*parent, draw(st.text(max_size=8))), draw(json_values))
        else:
            doc = _set(doc, parent, [*target, draw(json_values)])
    if decode_header and isinstance(doc.get("protected"), dict):
        doc["protected"] = b64json(doc["protected"])
    return json.dumps(doc).encode()


@SETTINGS
@given(raw=json_mutations())
def test_json_mutations_of_a_valid_envelope_only_raise_remote_error(raw: bytes) -> None:
    _open_only_remote_errors(raw)


def test_the_mutation_baseline_opens() -> None:
    assert open_envelope(GOOD, keyring=RING, sender_keys=LOOKUP, now=NOW, is_replay=never_seen)
    assert peek_header(GOOD, now=NOW - timedelta(seconds=1)).message_id == CLAIMS.message_id
