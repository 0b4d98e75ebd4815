"""Witnessing over the broker: nodes cosign each other's audit-log checkpoints
(docs/architecture.md §7, docs/decisions/0055-witnessing-over-the-broker.md).

Every checkpoint interval a node sends each peer (every other member of the directory) a C2SP
tlog-witness ``add-checkpoint`` request — its latest signed checkpoint with a consistency proof
from the size that peer last cosigned — as a broker message of content type
``text/x.zvg-witness`` routed ``<peer>.<us>`` (the broker ties the routing key to the sender's
login; there is nothing personal in it: sizes, roots, signatures). The peer checks consistency
with the last checkpoint it cosigned for that origin (``gateway.core.witness``), stores the new
head atomically *before* answering, and sends back its cosignature, or a refusal:

    zvg-witness/v1 add-checkpoint\\n<add-checkpoint body>
    zvg-witness/v1 cosigned <size>\\n<cosignature line>
    zvg-witness/v1 refused <code> [<our size>]\\n

A refusal ``conflict`` tells the log which size the witness holds; the log retries from there. A
refusal ``inconsistent`` (or ``bad_proof``) means the log showed two histories: the witness keeps
the evidence, logs an error, counts it in ``zvg.witness{outcome=inconsistent}`` and writes a
``witness.refuse`` audit record — loudly, because a partner's log was rewritten. The log's node
raises its own alarm on such a refusal (``zvg.audit.alarm``, an ERROR line).

A log (the node at start, or ``zvg audit verify --witnesses``) can also ask a witness for the
largest checkpoint of its log the witness cosigned, with a fresh random nonce the answer echoes:

    zvg-witness/v1 get-head <nonce>\n
    zvg-witness/v1 head <nonce>\n<that checkpoint, with the witness's cosignature>
    zvg-witness/v1 head <nonce>\n                  (the witness never cosigned this log)

The answer is verifiable by anyone: our log key signed the checkpoint, the witness's key
cosigned it (the cosignature it gave then, same timestamp). If it covers more records than the
log holds, or the log's records do not extend it (``gateway.core.witness.compare_with_log``),
the log was truncated or rewritten after the witness saw it. Nonces are 32 lowercase hex
digits; the nonce binds an answer to one request, the broker's sender check binds it to the
witness (as for every witnessing message).
"""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.core import note
from gateway.core.broker_topology import WITNESS_CONTENT_TYPE, routing_key
from gateway.core.directory import TrustedDirectory
from gateway.core.witness import (
    AddCheckpointRequest,
    Cosigned,
    LogHead,
    Refused,
    WitnessState,
    add_checkpoint,
    format_add_checkpoint,
    parse_add_checkpoint,
)
from gateway.errors import LocalError, RemoteError, TransientError
from schemas import ids

if TYPE_CHECKING:
    from gateway.node.ports import BrokerPort
    from gateway.node.store import KeepWitnessEvidence, SaveWitnessHead
    from gateway.node.store.engine import CommitState

__all__ = [
    "HEAD_REQUEST",
    "NONCE_BYTES",
    "REQUEST",
    "Answer",
    "HeadAnswer",
    "HeadRequest",
    "cosigner_verifiers",
    "format_request",
    "head_answer",
    "keep_evidence",
    "load_head",
    "new_nonce",
    "open_head",
    "parse_message",
    "publish_head_requests",
    "save_head",
    "witness",
]

REQUEST = b"zvg-witness/v1 add-checkpoint\n"
HEAD_REQUEST = b"zvg-witness/v1 get-head "
_COSIGNED = b"zvg-witness/v1 cosigned "
_REFUSED = b"zvg-witness/v1 refused "
_HEAD = b"zvg-witness/v1 head "
_NONCE = re.compile(rb"[0-9a-f]{32}")
NONCE_BYTES = 16


def format_request(old_size: int, proof: list[bytes], signed_checkpoint: bytes) -> bytes:
    return REQUEST + format_add_checkpoint(
        AddCheckpointRequest(old_size, tuple(proof), signed_checkpoint)
    )


@dataclass(frozen=True)
class Answer:
    """A witness's answer: ``cosignature`` for ``size``, or a refusal ``code``."""

    size: int | None
    cosignature: str | None = None
    code: str | None = None

    def encode(self) -> bytes:
        if self.cosignature is not None:
            return _COSIGNED + f"{self.size}\n{self.cosignature}".encode()
        tail = f" {self.size}" if self.size is not None else ""
        return _REFUSED + f"{self.code}{tail}\n".encode()


@dataclass(frozen=True)
class HeadRequest:
    """A log asks: which checkpoint of my log did you last cosign? (``nonce``: 32 hex digits)"""

    nonce: str

    def encode(self) -> bytes:
        return HEAD_REQUEST + self.nonce.encode("ascii") + b"\n"


@dataclass(frozen=True)
class HeadAnswer:
    """A witness's answer to :class:`HeadRequest`: the checkpoint it last cosigned (a signed note
    with its cosignature), or ``None`` when it never cosigned that log."""

    nonce: str
    checkpoint: bytes | None

    def encode(self) -> bytes:
        return _HEAD + self.nonce.encode("ascii") + b"\n" + (self.checkpoint or b"")


def new_nonce(rand: Callable[[int], bytes]) -> str:
    """A fresh nonce for a :class:`HeadRequest`."""
    return rand(NONCE_BYTES).hex()


WitnessMessage = AddCheckpointRequest | Answer | HeadRequest | HeadAnswer


def parse_message(body: bytes) -> WitnessMessage:
    """A witnessing message. Raises ``RemoteError("malformed")`` (or ``too_large``)."""
    if body.startswith(REQUEST):
        return parse_add_checkpoint(body[len(REQUEST) :])
    if body.startswith((HEAD_REQUEST, _HEAD)):
        return _parse_head(body)
    answer = _parse_answer(body)
    if answer is None:
        raise RemoteError("malformed", "not a zvg-witness message")
    return answer


def _parse_answer(body: bytes) -> Answer | None:
    first, _, rest = body.partition(b"\n")
    try:
        if body.startswith(_COSIGNED):
            size = int(first[len(_COSIGNED) :])
            line = rest.decode("utf-8")
            ok = line.endswith("\n") and line.count("\n") == 1 and size >= 0
            return Answer(size, cosignature=line) if ok else None
        if body.startswith(_REFUSED) and not rest:
            parts = first[len(_REFUSED) :].decode("ascii").split(" ")
            if len(parts) > 2 or not parts[0].isidentifier():
                return None
            return Answer(int(parts[1]) if len(parts) == 2 else None, code=parts[0])
    except (ValueError, UnicodeDecodeError):
        return None
    return None


def _parse_head(body: bytes) -> HeadRequest | HeadAnswer:
    first, newline, rest = body.partition(b"\n")
    is_request = first.startswith(HEAD_REQUEST)
    nonce = first[len(HEAD_REQUEST if is_request else _HEAD) :]
    if not newline or not _NONCE.fullmatch(nonce):
        raise RemoteError("malformed", "head message: bad nonce line")
    if is_request:
        if rest:
            raise RemoteError("malformed", "head request: unexpected content")
        return HeadRequest(nonce.decode("ascii"))
    if rest:
        note.parse_note(rest)  # shape and size only; the receiver verifies the signatures
    return HeadAnswer(nonce.decode("ascii"), rest or None)


async def publish_head_requests(
    publisher: BrokerPort,
    *,
    directory: TrustedDirectory,
    org: str,
    nonce: str,
    now: datetime,
    expires: datetime,
    rand: Callable[[int], bytes],
) -> list[str]:
    """Ask every other member which checkpoint of ``org``'s log it last cosigned (one
    ``get-head`` each, dropped by the broker at ``expires``). Returns the partners asked (a
    publish that fails is skipped: that partner simply does not answer)."""
    body = HeadRequest(nonce).encode()
    asked = []
    for member in directory.payload.members:
        if member.oin == org:
            continue
        with contextlib.suppress(TransientError, LocalError):
            await publisher.publish(
                routing_key(member.oin, org),
                body,
                message_id=ids.uuid7(int(now.timestamp() * 1000), rand(10)),
                expiration=expires,
                content_type=WITNESS_CONTENT_TYPE,
            )
            asked.append(member.oin)
    return asked


def head_answer(
    request: HeadRequest, head: LogHead | None, *, key: Ed25519PrivateKey, witness_name: str
) -> HeadAnswer:
    """Our answer to a log asking what we cosigned: ``head`` (the checkpoint we last cosigned for
    its origin) with our cosignature as we gave it (same timestamp, so the same line)."""
    if head is None:
        return HeadAnswer(request.nonce, None)
    line = note.cosign_checkpoint(
        note.parse_note(head.checkpoint).text,
        name=witness_name,
        key=key,
        timestamp=head.cosigned_at,
    )
    return HeadAnswer(request.nonce, note.add_signatures(head.checkpoint, [line]))


def open_head(
    signed: bytes, *, directory: TrustedDirectory, log_org: str, witness_org: str, now: datetime
) -> note.VerifiedCheckpoint:
    """Verify a checkpoint ``witness_org`` says it cosigned of ``log_org``'s log: signed by a
    log key of ``log_org`` under its origin and cosigned by ``witness_org``. Returns it with that
    cosignature; raises ``RemoteError`` (``bad_signature``, ``malformed``) otherwise."""
    origin = directory.audit_origin(log_org)
    cosigners = cosigner_verifiers(directory, [witness_org], now)
    if not cosigners:
        raise RemoteError("bad_signature", "head: the witness has no valid audit key")
    return note.open_checkpoint(
        signed,
        log_keys=[note.ed25519_verifier(origin, k) for k in directory.audit_keys(log_org, now)],
        cosigners=cosigners,
        quorum=1,
        now=now,
    )


def load_head(db: sqlite3.Connection, origin: str) -> LogHead | None:
    row = db.execute(
        "SELECT size, root, checkpoint, cosigned_at FROM witness_heads WHERE origin=?", (origin,)
    ).fetchone()
    return None if row is None else LogHead(int(row[0]), bytes(row[1]), bytes(row[2]), int(row[3]))


def save_head(db: sqlite3.Connection, command: SaveWitnessHead, _state: CommitState) -> bool:
    """Apply :class:`SaveWitnessHead`: compare-and-swap the witnessed head (tlog-witness's
    race); False when another round moved it first."""
    current = load_head(db, command.origin)
    if (current.size if current else None) != (command.old.size if command.old else None):
        return False
    new = command.new
    db.execute(
        "INSERT OR REPLACE INTO witness_heads (origin, size, root, checkpoint, cosigned_at)"
        " VALUES (?,?,?,?,?)",
        (command.origin, new.size, new.root, new.checkpoint, new.cosigned_at),
    )
    return True


def keep_evidence(
    db: sqlite3.Connection, command: KeepWitnessEvidence, _state: CommitState
) -> bool:
    """Apply :class:`KeepWitnessEvidence`."""
    db.execute(
        "INSERT INTO witness_evidence (origin, code, evidence, created_at) VALUES (?,?,?,?)",
        (command.origin, command.code, command.evidence, command.now.timestamp()),
    )
    return True


def witness(
    request: AddCheckpointRequest,
    *,
    peer: str,
    directory: TrustedDirectory,
    head: LogHead | None,
    key: Ed25519PrivateKey,
    our_org: str,
    now: datetime,
) -> Cosigned | Refused:
    """Decide on a peer's checkpoint with the pure core (keys and names from the directory)."""
    origin = directory.audit_origin(peer)
    state = WitnessState({origin: head} if head is not None else {})
    log_keys = [note.ed25519_verifier(origin, k) for k in directory.audit_keys(peer, now)]
    return add_checkpoint(
        state,
        log_keys=log_keys,
        old_size=request.old_size,
        consistency_proof=request.consistency_proof,
        signed_checkpoint=request.checkpoint,
        witness_key=key,
        witness_name=directory.witness_name(our_org),
        now=now,
    )


def cosigner_verifiers(
    directory: TrustedDirectory, orgs: list[str], now: datetime
) -> list[note.NoteVerifier]:
    """Verifiers of the peers' cosignatures (type 0x04 under their witness names)."""
    return [
        note.ed25519_verifier(directory.witness_name(org), k, sig_type=note.SIG_TYPE_COSIGNATURE_V1)
        for org in orgs
        for k in directory.audit_keys(org, now)
    ]


def evidence_json(refused: Refused) -> str:
    ev = refused.evidence
    if ev is None:
        return "{}"
    return json.dumps(
        {
            "origin": ev.origin,
            "cosigned_checkpoint": ev.cosigned_checkpoint.decode("utf-8", "replace"),
            "offered_checkpoint": ev.offered_checkpoint.decode("utf-8", "replace"),
            "consistency_proof": [p.hex() for p in ev.consistency_proof],
            "proven": ev.proven,
        }
    )
