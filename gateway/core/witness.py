"""Peer witnessing: the pure decision logic of C2SP tlog-witness, adapted to federation peers.

Every node witnesses its peers' audit logs. A peer sends its latest signed checkpoint with a
consistency proof from the size this node last cosigned; this node checks it and either returns
a cosignature or refuses with a code that mirrors tlog-witness's HTTP statuses. Two validly
signed checkpoints that cannot both be true (a *fork*: the log showed two histories) are never
cosigned and come back as evidence that anyone can check with :func:`verify_fork_evidence`.

Rules enforced (c2sp.org/tlog-witness §add-checkpoint, with the status it maps to):

1. The request parses: ``old <size>`` line, at most :data:`MAX_WITNESS_PROOF_LINES` base64
   hashes, a blank line, a checkpoint note (``bad_request``, 400; :func:`parse_add_checkpoint`).
2. The checkpoint origin is a log we witness: some trusted log key is named after it
   (``unknown_origin``, 404).
3. A trusted key for that origin signed it, and every known signature verifies
   (``bad_signature``, 403).
4. ``old size <= checkpoint size`` (``bad_request``, 400).
5. ``old size`` equals the size we last cosigned for that origin, 0 if none (``conflict``, 409,
   with our size so the peer can retry with the right proof).
6. The consistency proof is empty when ``old size`` is 0, and otherwise proves (RFC 9162
   §2.1.4.2) that our last cosigned ``(size, root)`` is a prefix of the new checkpoint
   (``bad_proof``, 422: the proof proves nothing; evidence kept because it may be misbehaviour).
7. A proof that rebuilds the new root but not our old root, or a checkpoint of our size with a
   different root, proves a fork (``inconsistent``, 409 when the sizes are equal, else 422),
   with :class:`ForkEvidence` holding both signed checkpoints.
8. Otherwise: cosign (tlog-cosignature v1, timestamp = ``now``) and move the state forward. The
   state never moves backwards: every accepted checkpoint extends the last one.

The log's side of the same relation, :func:`compare_with_log`: a checkpoint of our own log that
a witness holds (it cosigned it) is either extended by our records now (``consistent``), or
covers more records than we hold (``truncated``: records were lost or deleted), or is not a
prefix of our records (``forked``: our log was rewritten); checked with an RFC 9162 §2.1.4.2
consistency proof from its size to ours.

Pure: the state is a value passed in and returned; the shell persists it, and must do the
"compare old size, store new checkpoint" step atomically (tlog-witness warns of the race) —
e.g. a compare-and-swap on the stored size per origin — and must store the new state *before*
sending the cosignature.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.core._text import b64decode_strict, b64encode, parse_decimal
from gateway.core.merkle import (
    HASH_SIZE,
    MAX_TREE_SIZE,
    ConsistencyCheck,
    MerkleTree,
    check_consistency,
)
from gateway.core.note import (
    MAX_NOTE_BYTES,
    SIG_TYPE_ED25519,
    Checkpoint,
    NoteVerifier,
    cosign_checkpoint,
    open_note,
    parse_checkpoint,
    parse_note,
)
from gateway.errors import GatewayError, LocalError, RemoteError

__all__ = [
    "MAX_ADD_CHECKPOINT_BYTES",
    "MAX_WITNESS_PROOF_LINES",
    "REFUSAL_HTTP_STATUS",
    "AddCheckpointRequest",
    "Cosigned",
    "ForkEvidence",
    "HeadAgreement",
    "LogHead",
    "RefusalCode",
    "Refused",
    "WitnessResult",
    "WitnessState",
    "add_checkpoint",
    "compare_with_log",
    "format_add_checkpoint",
    "parse_add_checkpoint",
    "verify_fork_evidence",
]

MAX_WITNESS_PROOF_LINES = 63
"""Most consistency-proof lines in a request (tlog-witness: "MUST NOT send more than 63")."""

MAX_ADD_CHECKPOINT_BYTES = MAX_NOTE_BYTES + 4 * 1024
"""Largest add-checkpoint request: the checkpoint note plus the ``old`` line and at most 63
proof lines of 45 bytes (≈ 2.9 kB, rounded up to 4 KiB)."""

RefusalCode = Literal[
    "bad_request",  # 400: unparseable request, old size > checkpoint size, proof where none fits
    "unknown_origin",  # 404: we do not witness this origin
    "bad_signature",  # 403: no valid signature from a trusted key for the origin
    "conflict",  # 409: old size is not the size we last cosigned (see Refused.our_size)
    "bad_proof",  # 422: the consistency proof does not verify (proves nothing either way)
    "inconsistent",  # 409/422: proven fork, two signed checkpoints that cannot both be true
]

REFUSAL_HTTP_STATUS: Mapping[str, int] = MappingProxyType(
    {
        "bad_request": 400,
        "unknown_origin": 404,
        "bad_signature": 403,
        "conflict": 409,
        "bad_proof": 422,
        "inconsistent": 422,
    }
)
"""The tlog-witness HTTP status of each refusal (``inconsistent`` at equal sizes is 409, as
tlog-witness answers a same-size, different-root checkpoint)."""


# ---------------------------------------------------------------------- state


@dataclass(frozen=True)
class LogHead:
    """What a witness remembers of one log: the last checkpoint it cosigned.

    ``checkpoint`` is that signed note verbatim (evidence if the log later forks);
    ``cosigned_at`` the POSIX timestamp of our cosignature.
    """

    size: int
    root: bytes
    checkpoint: bytes
    cosigned_at: int


@dataclass(frozen=True)
class WitnessState:
    """Immutable map from origin to the :class:`LogHead` last cosigned; empty to start."""

    heads: Mapping[str, LogHead] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "heads", MappingProxyType(dict(self.heads)))

    def head(self, origin: str) -> LogHead | None:
        """The last cosigned head of ``origin``, or None if we never cosigned it."""
        return self.heads.get(origin)

    def with_head(self, origin: str, head: LogHead) -> WitnessState:
        """A new state with ``origin``'s head replaced (this one is unchanged)."""
        return WitnessState({**self.heads, origin: head})


# ---------------------------------------------------------------------- results


@dataclass(frozen=True)
class ForkEvidence:
    """Two checkpoints of one origin and the proof offered between them.

    ``cosigned_checkpoint`` is the signed note we cosigned before, ``offered_checkpoint`` the one
    refused. ``proven`` is True when they cannot both be true (check it independently with
    :func:`verify_fork_evidence`); False when the proof merely failed to verify, which may be a
    broken peer rather than a lying one.
    """

    origin: str
    cosigned_checkpoint: bytes
    offered_checkpoint: bytes
    consistency_proof: tuple[bytes, ...]
    proven: bool


@dataclass(frozen=True)
class Cosigned:
    """The checkpoint was consistent: send ``cosignature_line``; persist ``state`` first."""

    state: WitnessState
    checkpoint: Checkpoint
    cosignature_line: str


@dataclass(frozen=True)
class Refused:
    """The checkpoint was not cosigned; the state is unchanged.

    ``detail`` is for our own logs. ``our_size`` is set for ``conflict`` (the body of the 409
    answer). ``evidence`` is set for ``bad_proof`` and ``inconsistent``: record it (audit
    record, metric, loud log line) — an ``inconsistent`` one proves the peer's log forked.
    """

    code: RefusalCode
    detail: str
    http_status: int
    our_size: int | None = None
    evidence: ForkEvidence | None = None


WitnessResult = Cosigned | Refused


# ---------------------------------------------------------------------- request format


@dataclass(frozen=True)
class AddCheckpointRequest:
    """A tlog-witness add-checkpoint request: old size, consistency proof, signed checkpoint."""

    old_size: int
    consistency_proof: tuple[bytes, ...]
    checkpoint: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.old_size, int) or not 0 <= self.old_size <= MAX_TREE_SIZE:
            raise LocalError("add-checkpoint old size out of range")
        if len(self.consistency_proof) > MAX_WITNESS_PROOF_LINES or not all(
            isinstance(h, bytes) and len(h) == HASH_SIZE for h in self.consistency_proof
        ):
            raise LocalError("add-checkpoint proof must be at most 63 hashes of 32 bytes")


def format_add_checkpoint(request: AddCheckpointRequest) -> bytes:
    """Write ``request`` as a tlog-witness add-checkpoint body."""
    lines = [f"old {request.old_size}", *(b64encode(h) for h in request.consistency_proof)]
    return ("\n".join(lines) + "\n\n").encode("ascii") + request.checkpoint


def parse_add_checkpoint(raw: bytes) -> AddCheckpointRequest:
    """Parse a tlog-witness add-checkpoint body strictly (signatures are not verified here).

    Raises :class:`RemoteError` (``too_large`` over :data:`MAX_ADD_CHECKPOINT_BYTES`;
    ``malformed`` for a bad ``old`` line, a proof line that is not canonical base64 of 32 bytes,
    more than 63 proof lines, or a checkpoint part that is not a signed note).
    """
    if not isinstance(raw, bytes):
        raise RemoteError("malformed", "add-checkpoint: not bytes")
    if len(raw) > MAX_ADD_CHECKPOINT_BYTES:
        raise RemoteError("too_large", "add-checkpoint: request too large")
    split = raw.find(b"\n\n")
    if split < 0:
        raise RemoteError("malformed", "add-checkpoint: no blank line before the checkpoint")
    try:
        head = raw[:split].decode("ascii").split("\n")
    except UnicodeDecodeError:
        raise RemoteError("malformed", "add-checkpoint: non-ASCII header") from None
    old = (
        parse_decimal(head[0][len("old ") :], MAX_TREE_SIZE) if head[0].startswith("old ") else None
    )
    if old is None:
        raise RemoteError("malformed", "add-checkpoint: bad old size line")
    if len(head) - 1 > MAX_WITNESS_PROOF_LINES:
        raise RemoteError("malformed", "add-checkpoint: more than 63 proof lines")
    proof: list[bytes] = []
    for line in head[1:]:
        digest = b64decode_strict(line)
        if digest is None or len(digest) != HASH_SIZE:
            raise RemoteError("malformed", "add-checkpoint: proof line is not a base64 hash")
        proof.append(digest)
    checkpoint = raw[split + 2 :]
    parse_note(checkpoint)
    return AddCheckpointRequest(old, tuple(proof), checkpoint)


# ---------------------------------------------------------------------- the decision


def _refuse(
    code: RefusalCode,
    detail: str,
    *,
    our_size: int | None = None,
    evidence: ForkEvidence | None = None,
    status: int | None = None,
) -> Refused:
    http = REFUSAL_HTTP_STATUS[code] if status is None else status
    return Refused(code, detail, http, our_size, evidence)


def add_checkpoint(
    state: WitnessState,
    *,
    log_keys: Sequence[NoteVerifier],
    old_size: int,
    consistency_proof: Sequence[bytes],
    signed_checkpoint: bytes,
    witness_key: Ed25519PrivateKey,
    witness_name: str,
    now: datetime,
) -> WitnessResult:
    """Decide on one add-checkpoint request (rules 1 to 8 of the module docstring).

    ``log_keys`` are the log keys we trust (type 0x01, from the directory; several per origin
    during a rotation); an origin is known when a key is named after it. ``witness_key`` and
    ``witness_name`` are our cosigner identity (key ID type 0x04). ``now`` (timezone-aware) is
    the cosignature time. Returns :class:`Cosigned` or :class:`Refused`; never raises for
    anything the peer sent. Raises :class:`LocalError` for our own misconfiguration (a naive
    ``now``, a log key of the wrong type, an invalid witness name).
    """
    if now.utcoffset() is None:
        raise LocalError("now must be timezone-aware")
    if any(k.sig_type != SIG_TYPE_ED25519 for k in log_keys):
        raise LocalError("witnessed log keys must be Ed25519 note keys (type 0x01)")
    proof = tuple(consistency_proof)
    if not isinstance(old_size, int) or not 0 <= old_size <= MAX_TREE_SIZE:
        return _refuse("bad_request", "old size out of range")
    if len(proof) > MAX_WITNESS_PROOF_LINES or not all(
        isinstance(h, bytes) and len(h) == HASH_SIZE for h in proof
    ):
        return _refuse("bad_request", "consistency proof has too many or malformed hashes")

    # Rules 1 and 2: parse (unverified) only to learn the origin; nothing is trusted yet.
    try:
        checkpoint = parse_checkpoint(parse_note(signed_checkpoint).text)
    except RemoteError as exc:
        return _refuse("bad_request", exc.detail)
    origin_keys = [k for k in log_keys if k.name == checkpoint.origin]
    if not origin_keys:
        return _refuse("unknown_origin", "no trusted log key for this origin")

    # Rule 3: a trusted key for this origin signed it; any known bad signature refuses it.
    try:
        open_note(signed_checkpoint, origin_keys)  # the text is the checkpoint parsed above
    except RemoteError as exc:
        return _refuse("bad_signature", exc.detail)

    # Rules 4 and 5: sizes.
    if old_size > checkpoint.size:
        return _refuse("bad_request", "old size is larger than the checkpoint size")
    head = state.head(checkpoint.origin)
    our_size = 0 if head is None else head.size
    if old_size != our_size:
        return _refuse("conflict", "old size is not the size we last cosigned", our_size=our_size)

    # Rules 6 and 7: consistency with what we cosigned before.
    if head is None:
        if proof:
            return _refuse("bad_request", "a proof from size 0 must be empty")
    else:
        outcome = check_consistency(head.size, checkpoint.size, head.root, checkpoint.root, proof)
        if head.size == checkpoint.size and head.root != checkpoint.root:
            outcome = ConsistencyCheck.OLD_ROOT_MISMATCH
        if outcome is not ConsistencyCheck.CONSISTENT:
            proven = outcome is ConsistencyCheck.OLD_ROOT_MISMATCH
            evidence = ForkEvidence(
                checkpoint.origin, head.checkpoint, signed_checkpoint, proof, proven
            )
            if proven:
                return _refuse(
                    "inconsistent",
                    f"fork: checkpoint of size {checkpoint.size} contradicts the cosigned "
                    f"checkpoint of size {head.size}",
                    evidence=evidence,
                    status=409 if head.size == checkpoint.size else 422,
                )
            return _refuse("bad_proof", f"consistency proof {outcome.value}", evidence=evidence)

    # Rule 8: cosign and move forward.
    timestamp = int(now.timestamp())
    line = cosign_checkpoint(
        checkpoint.text, name=witness_name, key=witness_key, timestamp=timestamp
    )
    new_head = LogHead(checkpoint.size, checkpoint.root, signed_checkpoint, timestamp)
    return Cosigned(state.with_head(checkpoint.origin, new_head), checkpoint, line)


def verify_fork_evidence(evidence: ForkEvidence, log_keys: Sequence[NoteVerifier]) -> bool:
    """Return True iff ``evidence`` proves the log signed two inconsistent checkpoints.

    Independent of the witness that collected it: both notes must carry valid signatures from
    ``log_keys`` for ``evidence.origin``, and either have the same size and different roots, or
    the proof must rebuild the larger checkpoint's root while contradicting the smaller one's
    (RFC 9162 §2.1.4.2, :class:`ConsistencyCheck.OLD_ROOT_MISMATCH`). Never raises for
    malformed evidence; returns False.
    """
    keys = [k for k in log_keys if k.name == evidence.origin]
    if not keys:
        return False
    try:
        first = parse_checkpoint(open_note(evidence.cosigned_checkpoint, keys).text)
        second = parse_checkpoint(open_note(evidence.offered_checkpoint, keys).text)
    except GatewayError:
        return False
    if first.origin != evidence.origin or second.origin != evidence.origin:
        return False
    if first.size == second.size:
        return first.root != second.root
    old, new = (first, second) if first.size < second.size else (second, first)
    outcome = check_consistency(old.size, new.size, old.root, new.root, evidence.consistency_proof)
    return outcome is ConsistencyCheck.OLD_ROOT_MISMATCH


HeadAgreement = Literal["consistent", "truncated", "forked"]
"""How a checkpoint of our log that a witness cosigned relates to our records now."""


def compare_with_log(tree: MerkleTree, checkpoint: Checkpoint) -> HeadAgreement:
    """Compare a checkpoint of our own log that a witness holds with our records (``tree``).

    ``truncated`` when it covers more records than ``tree`` holds; ``forked`` when the
    consistency proof from its size to ours, built from our records, does not verify against its
    root (RFC 9162 §2.1.4.2: our first ``checkpoint.size`` records are not the ones it covered);
    else ``consistent``. The caller verifies the checkpoint's signatures first (it must be one
    our log key signed and the witness cosigned, or it proves nothing).
    """
    if checkpoint.size > tree.size:
        return "truncated"
    proof = tree.consistency_proof(checkpoint.size)
    outcome = check_consistency(checkpoint.size, tree.size, checkpoint.root, tree.root(), proof)
    return "consistent" if outcome is ConsistencyCheck.CONSISTENT else "forked"
