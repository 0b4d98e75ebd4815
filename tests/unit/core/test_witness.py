"""Peer witnessing (C2SP tlog-witness adapted to peers): a scenario table and tamper detection.

Threats: a peer that rewrites, truncates or forks its audit log and shows different histories
to different partners; forged checkpoints; replayed or rolled-back checkpoints; garbage proofs.
The witness must cosign exactly the consistent extensions of what it cosigned before, never
move backwards, and keep verifiable evidence when a log shows two histories.
"""

from __future__ import annotations

import base64
import contextlib
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core.merkle import MerkleTree, leaf_hash
from gateway.core.note import (
    SIG_TYPE_COSIGNATURE_V1,
    Checkpoint,
    add_signatures,
    audit_log_origin,
    ed25519_verifier,
    open_checkpoint,
    parse_checkpoint,
    parse_note,
    sign_checkpoint,
    witness_key_name,
)
from gateway.core.witness import (
    MAX_ADD_CHECKPOINT_BYTES,
    MAX_WITNESS_PROOF_LINES,
    AddCheckpointRequest,
    Cosigned,
    ForkEvidence,
    LogHead,
    Refused,
    WitnessResult,
    WitnessState,
    add_checkpoint,
    compare_with_log,
    format_add_checkpoint,
    parse_add_checkpoint,
    verify_fork_evidence,
)
from gateway.errors import LocalError, RemoteError
from tests.unit.core.c2sp_vectors import SPEC_CHECKPOINT_TEXT, SPEC_WITNESS_REQUEST

FEDERATION = "zvh-veenstad.example"
POLITIE = "00000001003214345000"
GGZ = "00000003273645710000"
ORIGIN = audit_log_origin(FEDERATION, POLITIE)
OTHER_ORIGIN = audit_log_origin(FEDERATION, "00000001001234567000")
NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


def fixed_key(label: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(leaf_hash(label.encode()))


LOG_KEY = fixed_key("politie audit log")
LOG = ed25519_verifier(ORIGIN, LOG_KEY)
OTHER_LOG_KEY = fixed_key("gemeente audit log")
OTHER_LOG = ed25519_verifier(OTHER_ORIGIN, OTHER_LOG_KEY)
WITNESS_KEY = fixed_key("ggz witness")
WITNESS_NAME = witness_key_name(FEDERATION, GGZ)
WITNESS = ed25519_verifier(WITNESS_NAME, WITNESS_KEY, sig_type=SIG_TYPE_COSIGNATURE_V1)

RECORDS = [b'{"record":%d}' % i for i in range(40)]


def log_of(records: list[bytes]) -> MerkleTree:
    return MerkleTree(leaf_hash(r) for r in records)


HONEST = log_of(RECORDS)


def signed(tree: MerkleTree, size: int, key: Ed25519PrivateKey = LOG_KEY) -> bytes:
    return sign_checkpoint(Checkpoint(ORIGIN, size, tree.root(size)), key=key)


def submit(
    state: WitnessState,
    old: int,
    proof: list[bytes],
    checkpoint: bytes,
    now: datetime = NOW,
) -> WitnessResult:
    return add_checkpoint(
        state,
        log_keys=[LOG, OTHER_LOG],
        old_size=old,
        consistency_proof=proof,
        signed_checkpoint=checkpoint,
        witness_key=WITNESS_KEY,
        witness_name=WITNESS_NAME,
        now=now,
    )


def cosign_honest(state: WitnessState, old: int, new: int) -> WitnessState:
    result = submit(state, old, HONEST.consistency_proof(old, new), signed(HONEST, new))
    assert isinstance(result, Cosigned), result
    return result.state


AT_10 = cosign_honest(WitnessState(), 0, 10)
AT_8 = cosign_honest(WitnessState(), 0, 8)

# A fork of the same log: the first 6 records kept, then a different history, signed by the
# real log key. Shown to this witness after it cosigned the honest history at size 10.
FORK = log_of([*RECORDS[:6], *(b'{"rewritten":%d}' % i for i in range(34))])


@dataclass(frozen=True)
class Case:
    name: str
    state: WitnessState
    old: int
    proof: list[bytes]
    checkpoint: bytes
    code: str | None  # None: cosigned
    status: int | None = None
    our_size: int | None = None
    proven_fork: bool | None = None


CASES = [
    Case("first checkpoint", WitnessState(), 0, [], signed(HONEST, 10), None),
    Case("first checkpoint of an empty log", WitnessState(), 0, [], signed(HONEST, 0), None),
    Case("growth", AT_10, 10, HONEST.consistency_proof(10, 25), signed(HONEST, 25), None),
    Case("same size, same root (re-cosign)", AT_10, 10, [], signed(HONEST, 10), None),
    Case(
        "conflict: peer thinks we saw less",
        AT_10,
        0,
        [],
        signed(HONEST, 25),
        "conflict",
        409,
        our_size=10,
    ),
    Case(
        "conflict: peer thinks we saw more",
        AT_10,
        12,
        HONEST.consistency_proof(12, 25),
        signed(HONEST, 25),
        "conflict",
        409,
        our_size=10,
    ),
    Case(
        "rollback to a smaller size",
        AT_10,
        10,
        [],
        signed(HONEST, 7),
        "bad_request",
        400,
    ),
    Case(
        "bad proof: garbage hashes",
        AT_10,
        10,
        [leaf_hash(b"junk")] * len(HONEST.consistency_proof(10, 25)),
        signed(HONEST, 25),
        "bad_proof",
        422,
        proven_fork=False,
    ),
    Case(
        "bad proof: missing",
        AT_10,
        10,
        [],
        signed(HONEST, 25),
        "bad_proof",
        422,
        proven_fork=False,
    ),
    Case(
        "bad proof: proof for other sizes",
        AT_10,
        10,
        HONEST.consistency_proof(11, 25),
        signed(HONEST, 25),
        "bad_proof",
        422,
        proven_fork=False,
    ),
    Case(
        "fork: another history, its own proof",
        AT_10,
        10,
        FORK.consistency_proof(10, 25),
        signed(FORK, 25),
        "inconsistent",
        422,
        proven_fork=True,
    ),
    Case(
        "fork: another history at the same size",
        AT_10,
        10,
        [],
        signed(FORK, 10),
        "inconsistent",
        409,
        proven_fork=True,
    ),
    Case(
        "fork from a power-of-two size: the proof cannot show it, refused as a bad proof",
        AT_8,
        8,
        FORK.consistency_proof(8, 25),
        signed(FORK, 25),
        "bad_proof",
        422,
        proven_fork=False,
    ),
    Case(
        "checkpoint with extension lines",
        AT_10,
        10,
        HONEST.consistency_proof(10, 25),
        sign_checkpoint(Checkpoint(ORIGIN, 25, HONEST.root(25), ("extra",)), key=LOG_KEY),
        "bad_request",
        400,
    ),
    Case(
        "proof from size 0",
        WitnessState(),
        0,
        [leaf_hash(b"x")],
        signed(HONEST, 5),
        "bad_request",
        400,
    ),
    Case(
        "old size above the checkpoint",
        WitnessState(),
        9,
        [],
        signed(HONEST, 5),
        "bad_request",
        400,
    ),
    Case("unparseable checkpoint", AT_10, 10, [], b"not a note", "bad_request", 400),
    Case(
        "unknown origin",
        AT_10,
        0,
        [],
        sign_checkpoint(
            Checkpoint(audit_log_origin(FEDERATION, "00000009999999999000"), 3, HONEST.root(3)),
            key=LOG_KEY,
        ),
        "unknown_origin",
        404,
    ),
    Case(
        "signed by an attacker's key",
        AT_10,
        10,
        FORK.consistency_proof(10, 25),
        signed(FORK, 25, key=fixed_key("attacker")),
        "bad_signature",
        403,
    ),
    Case(
        "signature altered",
        AT_10,
        10,
        HONEST.consistency_proof(10, 25),
        signed(HONEST, 25).replace(b"\n25\n", b"\n26\n"),
        "bad_signature",
        403,
    ),
    Case(
        "another known log's key signing this origin",
        AT_10,
        10,
        HONEST.consistency_proof(10, 25),
        signed(HONEST, 25, key=OTHER_LOG_KEY),
        "bad_signature",
        403,
    ),
    Case(
        "too many proof lines",
        AT_10,
        10,
        [leaf_hash(b"x")] * (MAX_WITNESS_PROOF_LINES + 1),
        signed(HONEST, 25),
        "bad_request",
        400,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_witness_scenario(case: Case) -> None:
    result = submit(case.state, case.old, case.proof, case.checkpoint)
    if case.code is None:
        assert isinstance(result, Cosigned), result
        checkpoint = parse_checkpoint(parse_note(case.checkpoint).text)
        assert result.checkpoint == checkpoint
        head = result.state.head(ORIGIN)
        assert head is not None
        assert (head.size, head.root, head.checkpoint) == (
            checkpoint.size,
            checkpoint.root,
            case.checkpoint,
        )
        assert head.cosigned_at == int(NOW.timestamp())
        # The cosignature is a valid tlog-cosignature over exactly this checkpoint.
        cosigned = add_signatures(case.checkpoint, [result.cosignature_line])
        verified = open_checkpoint(cosigned, log_keys=[LOG], cosigners=[WITNESS], quorum=1)
        assert verified.cosignatures[0].timestamp == int(NOW.timestamp())
        return
    assert isinstance(result, Refused), result
    assert result.code == case.code
    assert result.http_status == case.status
    assert result.our_size == case.our_size
    if case.proven_fork is None:
        assert result.evidence is None
    else:
        assert result.evidence is not None
        assert result.evidence.proven is case.proven_fork
        assert result.evidence.offered_checkpoint == case.checkpoint
        assert verify_fork_evidence(result.evidence, [LOG]) is case.proven_fork


def test_fork_shown_to_one_peer_is_detected_and_evidence_kept() -> None:
    # The log operator shows the honest history up to 20 to this peer, then tries to move it
    # onto a rewritten history (e.g. to hide records 6-19) while other peers see the honest one.
    state = cosign_honest(AT_10, 10, 20)
    result = submit(state, 20, FORK.consistency_proof(20, 30), signed(FORK, 30))
    assert isinstance(result, Refused)
    assert result.code == "inconsistent"
    evidence = result.evidence
    assert evidence is not None
    assert evidence.cosigned_checkpoint == signed(HONEST, 20)
    assert evidence.offered_checkpoint == signed(FORK, 30)
    assert verify_fork_evidence(evidence, [LOG])
    # The peer keeps witnessing the honest history it cosigned.
    assert isinstance(
        submit(state, 20, HONEST.consistency_proof(20, 30), signed(HONEST, 30)), Cosigned
    )


def test_two_peers_shown_two_histories_detect_the_fork_when_they_compare() -> None:
    # Peer A cosigned the honest history, peer B the fork (neither could tell alone). Once a
    # checkpoint of one reaches the other (a receipt, an envelope's log anchor), it is refused.
    peer_a = cosign_honest(WitnessState(), 0, 20)
    peer_b = submit(WitnessState(), 0, [], signed(FORK, 20))
    assert isinstance(peer_b, Cosigned)
    shown_to_a = submit(peer_a, 20, FORK.consistency_proof(20, 25), signed(FORK, 25))
    assert isinstance(shown_to_a, Refused)
    assert shown_to_a.code == "inconsistent"
    assert shown_to_a.evidence is not None
    assert verify_fork_evidence(shown_to_a.evidence, [LOG])
    # Two cosigned checkpoints of the same size with different roots are evidence by themselves.
    evidence = ForkEvidence(ORIGIN, signed(HONEST, 20), signed(FORK, 20), (), proven=True)
    assert verify_fork_evidence(evidence, [LOG])


# ---------------------------------------------------------------- tamper scenarios (issue 7 §5)


def test_peer_detects_a_changed_record() -> None:
    stored = list(RECORDS[:25])
    stored[3] = stored[3].replace(b"3", b"4")
    tampered = log_of(stored)
    result = submit(AT_10, 10, tampered.consistency_proof(10, 25), signed(tampered, 25))
    assert isinstance(result, Refused)
    assert result.code == "inconsistent"


def test_peer_detects_a_deleted_record() -> None:
    tampered = log_of(RECORDS[:4] + RECORDS[5:26])
    result = submit(AT_10, 10, tampered.consistency_proof(10, 25), signed(tampered, 25))
    assert isinstance(result, Refused)
    assert result.code == "inconsistent"


def test_peer_detects_a_truncated_log() -> None:
    # Truncated to 8 records: the next checkpoint is smaller than what the peer cosigned.
    truncated = log_of(RECORDS[:8])
    result = submit(AT_10, 10, [], signed(truncated, 8))
    assert isinstance(result, Refused)
    assert result.code == "bad_request"
    # Truncated and regrown past the cosigned size: the rewritten prefix is a proven fork.
    regrown = log_of([*RECORDS[:8], b"x1", b"x2", b"x3", b"x4", b"x5"])
    result = submit(AT_10, 10, regrown.consistency_proof(10, 13), signed(regrown, 13))
    assert isinstance(result, Refused)
    assert result.code == "inconsistent"


def test_peer_never_rolls_back() -> None:
    at_25 = cosign_honest(AT_10, 10, 25)
    result = submit(at_25, 10, HONEST.consistency_proof(10, 20), signed(HONEST, 20))
    assert isinstance(result, Refused)
    assert (result.code, result.our_size) == ("conflict", 25)


# ---------------------------------------------------------------- fork evidence


def test_unproven_or_forged_evidence_does_not_verify() -> None:
    good = ForkEvidence(
        ORIGIN, signed(HONEST, 10), signed(FORK, 25), tuple(FORK.consistency_proof(10, 25)), True
    )
    assert verify_fork_evidence(good, [LOG])
    assert not verify_fork_evidence(good, [OTHER_LOG]), "no key for the origin"
    consistent = replace(good, offered_checkpoint=signed(HONEST, 25))
    assert not verify_fork_evidence(consistent, [LOG]), "the two checkpoints agree"
    garbage = replace(good, consistency_proof=(leaf_hash(b"x"),) * 5)
    assert not verify_fork_evidence(garbage, [LOG]), "the proof proves nothing"
    forged = replace(good, offered_checkpoint=signed(FORK, 25, key=fixed_key("attacker")))
    assert not verify_fork_evidence(forged, [LOG]), "the log never signed the second one"
    wrong_origin = replace(good, origin=OTHER_ORIGIN)
    assert not verify_fork_evidence(wrong_origin, [LOG, OTHER_LOG])
    assert not verify_fork_evidence(replace(good, cosigned_checkpoint=b"junk"), [LOG])
    # Order does not matter: the smaller checkpoint is the old one.
    swapped = replace(
        good,
        cosigned_checkpoint=good.offered_checkpoint,
        offered_checkpoint=good.cosigned_checkpoint,
    )
    assert verify_fork_evidence(swapped, [LOG])


# ---------------------------------------------------------------- state, time and configuration


def test_state_is_immutable_and_per_origin() -> None:
    state = WitnessState()
    head = LogHead(1, HONEST.root(1), signed(HONEST, 1), 0)
    moved = state.with_head(ORIGIN, head)
    assert state.head(ORIGIN) is None
    assert moved.head(ORIGIN) == head
    assert moved.head(OTHER_ORIGIN) is None
    with pytest.raises(TypeError):
        moved.heads[ORIGIN] = head  # type: ignore[index]
    # A second log is witnessed independently.
    other = sign_checkpoint(Checkpoint(OTHER_ORIGIN, 3, HONEST.root(3)), key=OTHER_LOG_KEY)
    result = submit(AT_10, 0, [], other)
    assert isinstance(result, Cosigned)
    assert result.state.head(ORIGIN) == AT_10.head(ORIGIN)


def test_cosignature_time_is_now() -> None:
    later = NOW + timedelta(hours=1)
    result = submit(AT_10, 10, HONEST.consistency_proof(10, 12), signed(HONEST, 12), now=later)
    assert isinstance(result, Cosigned)
    head = result.state.head(ORIGIN)
    assert head is not None
    assert head.cosigned_at == int(later.timestamp())


def test_configuration_errors_are_local() -> None:
    with pytest.raises(LocalError):
        submit(AT_10, 10, [], signed(HONEST, 10), now=datetime(2026, 3, 2))  # noqa: DTZ001 - naive on purpose
    with pytest.raises(LocalError):
        add_checkpoint(
            WitnessState(),
            log_keys=[WITNESS],
            old_size=0,
            consistency_proof=[],
            signed_checkpoint=signed(HONEST, 1),
            witness_key=WITNESS_KEY,
            witness_name=WITNESS_NAME,
            now=NOW,
        )
    with pytest.raises(LocalError):
        add_checkpoint(
            WitnessState(),
            log_keys=[LOG],
            old_size=0,
            consistency_proof=[],
            signed_checkpoint=signed(HONEST, 1),
            witness_key=WITNESS_KEY,
            witness_name="not a name",
            now=NOW,
        )


# ---------------------------------------------------------------- request format


def test_spec_request_example_parses_and_round_trips() -> None:
    request = parse_add_checkpoint(SPEC_WITNESS_REQUEST)
    assert request.old_size == 20852014
    assert len(request.consistency_proof) == 4
    assert parse_note(request.checkpoint).text == SPEC_CHECKPOINT_TEXT
    assert format_add_checkpoint(request) == SPEC_WITNESS_REQUEST


def test_request_round_trip_through_the_witness() -> None:
    raw = format_add_checkpoint(
        AddCheckpointRequest(10, tuple(HONEST.consistency_proof(10, 25)), signed(HONEST, 25))
    )
    request = parse_add_checkpoint(raw)
    result = submit(AT_10, request.old_size, list(request.consistency_proof), request.checkpoint)
    assert isinstance(result, Cosigned)
    empty = format_add_checkpoint(AddCheckpointRequest(0, (), signed(HONEST, 3)))
    assert empty.startswith(b"old 0\n\n")


HASH_LINE = base64.b64encode(bytes(32)) + b"\n"


@pytest.mark.parametrize(
    "head",
    [
        b"old 01\n\n",
        b"old -1\n\n",
        b"olds 1\n\n",
        b"old\n\n",
        b"old  1\n\n",
        b"old 1\n" + HASH_LINE[:-3] + b"\n\n",
        b"old 1\n" + HASH_LINE * (MAX_WITNESS_PROOF_LINES + 1) + b"\n",
        b"old 1\n\xff\n\n",
        b"old 1\n",
    ],
)
def test_malformed_requests_are_refused(head: bytes) -> None:
    raw = head + (signed(HONEST, 3) if head.endswith(b"\n\n") else b"")
    with pytest.raises(RemoteError) as exc:
        parse_add_checkpoint(raw)
    assert exc.value.reason == "malformed"


def test_request_size_limit_and_negative_old_size() -> None:
    with pytest.raises(RemoteError) as exc:
        parse_add_checkpoint(b"old 1\n\n" + b"x" * MAX_ADD_CHECKPOINT_BYTES)
    assert exc.value.reason == "too_large"
    result = submit(AT_10, -1, [], signed(HONEST, 3))
    assert isinstance(result, Refused)
    assert result.code == "bad_request"


def test_request_construction_limits() -> None:
    with pytest.raises(LocalError):
        AddCheckpointRequest(-1, (), signed(HONEST, 3))
    with pytest.raises(LocalError):
        AddCheckpointRequest(0, (bytes(32),) * 64, signed(HONEST, 3))


@settings(max_examples=100)
@given(raw=st.binary(max_size=400))
def test_request_parser_only_raises_remote_errors(raw: bytes) -> None:
    with contextlib.suppress(RemoteError):
        parse_add_checkpoint(b"old 1\n\n" + raw)
    with contextlib.suppress(RemoteError):
        parse_add_checkpoint(raw)


@settings(max_examples=100, deadline=None)
@given(
    proof=st.lists(st.binary(min_size=32, max_size=32), max_size=8),
    old=st.integers(0, 40),
    new=st.integers(0, 40),
)
def test_witness_never_cosigns_what_does_not_extend_its_head(
    proof: list[bytes], old: int, new: int
) -> None:
    # Whatever a peer sends, the forked history never gets a cosignature from a witness that
    # cosigned the honest history at size 10 (FORK differs from it within the first 10 leaves).
    result = submit(AT_10, old, proof, signed(FORK, new))
    assert isinstance(result, Refused)


# ------------------------------------------------------------------ the log's side (issue 14 §2)
# A checkpoint of our own log that a witness holds, against our records now: a log truncated or
# rewritten after the witness cosigned it must show, whatever it re-signed since.


@pytest.mark.parametrize(
    ("records", "size", "expected"),
    [
        (HONEST, 10, "consistent"),  # the log grew past what the witness holds
        (log_of(RECORDS[:10]), 10, "consistent"),  # the witness holds our latest
        (log_of(RECORDS[:9]), 10, "truncated"),  # the last record is gone
        (log_of([]), 10, "truncated"),  # every record is gone
        (FORK, 10, "forked"),  # records 6.. rewritten, longer than what the witness holds
        (log_of([*RECORDS[:9], b"{}"]), 10, "forked"),  # same size, last record rewritten
        (log_of([b"{}", *RECORDS[1:]]), 1, "forked"),  # the first record rewritten
        (log_of([b"{}", *RECORDS[1:]]), 8, "forked"),  # old size a power of two
    ],
    ids=[
        "extended",
        "equal",
        "last-record-gone",
        "all-gone",
        "fork-longer",
        "fork-same-size",
        "first-record",
        "power-of-two",
    ],
)
def test_our_records_against_a_checkpoint_a_witness_holds(
    records: MerkleTree, size: int, expected: str
) -> None:
    held = parse_checkpoint(parse_note(signed(HONEST, size)).text)
    assert compare_with_log(records, held) == expected
