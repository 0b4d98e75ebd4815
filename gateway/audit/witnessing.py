"""Witnessing over the broker: nodes cosign each other's audit-log checkpoints (DESIGN §7).

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
``witness.refuse`` audit record — loudly, because a partner's log was rewritten.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.core import note
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
from gateway.errors import RemoteError

__all__ = [
    "REQUEST",
    "Answer",
    "cosigner_verifiers",
    "format_request",
    "load_head",
    "parse_message",
    "save_head_job",
    "witness",
]

REQUEST = b"zvg-witness/v1 add-checkpoint\n"
_COSIGNED = b"zvg-witness/v1 cosigned "
_REFUSED = b"zvg-witness/v1 refused "


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


def parse_message(body: bytes) -> AddCheckpointRequest | Answer:
    """A witnessing message. Raises ``RemoteError("malformed")``."""
    if body.startswith(REQUEST):
        return parse_add_checkpoint(body[len(REQUEST) :])
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


def load_head(db: sqlite3.Connection, origin: str) -> LogHead | None:
    row = db.execute(
        "SELECT size, root, checkpoint, cosigned_at FROM witness_heads WHERE origin=?", (origin,)
    ).fetchone()
    return None if row is None else LogHead(int(row[0]), bytes(row[1]), bytes(row[2]), int(row[3]))


def save_head_job(
    origin: str, old: LogHead | None, new: LogHead
) -> Callable[[sqlite3.Connection], bool]:
    """A store job: compare-and-swap the witnessed head (tlog-witness's race)."""

    def job(db: sqlite3.Connection) -> bool:
        current = load_head(db, origin)
        if (current.size if current else None) != (old.size if old else None):
            return False
        db.execute(
            "INSERT OR REPLACE INTO witness_heads (origin, size, root, checkpoint, cosigned_at)"
            " VALUES (?,?,?,?,?)",
            (origin, new.size, new.root, new.checkpoint, new.cosigned_at),
        )
        return True

    return job


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
