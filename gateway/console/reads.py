"""What the console's basic pages read: the log's health, one message's story, the console's
own access records.

Plain functions of a read-only SQLite connection (:func:`gateway.audit.inspect.open_readonly`;
the app runs them in a thread) and plain values, returning frozen dataclasses; no HTTP. The
search (by subject, typed BSN too, case, partner, legal basis ...), the case timeline, charts,
policy, alerts and review read through ``gateway/console/data/`` and the audit side tables.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gateway.audit.inspect import query
from gateway.core import jose, note
from gateway.core.directory import TrustedDirectory
from gateway.core.envelope import verify_signed_claims
from gateway.core.merkle import leaf_hash
from gateway.errors import RemoteError
from schemas import strictjson
from schemas.bodies import ReceiptBody

__all__ = [
    "EvidenceRow",
    "Health",
    "MessageStory",
    "PeerRow",
    "ReceiptCheck",
    "RecordRow",
    "WaitingRow",
    "WitnessedRow",
    "access_rows",
    "health",
    "message_story",
    "policy_sentence",
]


@dataclass(frozen=True)
class PeerRow:
    """A partner witnessing our log: the largest size it cosigned."""

    org: str
    name: str
    size: int
    lag: int
    updated_at: datetime


@dataclass(frozen=True)
class WitnessedRow:
    """A partner's log this node witnesses: the last size we cosigned."""

    org: str
    name: str
    size: int
    cosigned_at: datetime


@dataclass(frozen=True)
class EvidenceRow:
    """Why we refused a partner's checkpoint (a fork, a conflict, a bad proof)."""

    org: str
    name: str
    code: str
    created_at: datetime


@dataclass(frozen=True)
class WaitingRow:
    """A message a partner has stored (``delivered``) but not yet accepted or rejected."""

    message_id: str
    org: str
    name: str
    since: datetime


@dataclass(frozen=True)
class Health:
    records: int
    checkpoint_size: int | None
    checkpoint_at: datetime | None
    cosigners: tuple[str, ...]
    peers: tuple[PeerRow, ...]
    witnessed: tuple[WitnessedRow, ...]
    evidence: tuple[EvidenceRow, ...]
    waiting: tuple[WaitingRow, ...] = ()
    """Receipts still ``delivered`` but not ``accepted`` after the configured time (oldest
    first, at most 50)."""


def _time(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


def _origins(directory: TrustedDirectory) -> dict[str, str]:
    """Audit-log origin -> OIN, for every member."""
    return {directory.audit_origin(m.oin): m.oin for m in directory.payload.members}


def health(
    db: sqlite3.Connection,
    directory: TrustedDirectory,
    org: str,
    *,
    waiting_before: datetime | None = None,
) -> Health:
    """The audit log's health (overview page); with ``waiting_before``, the messages a partner
    has held ``delivered`` since before then."""
    names = directory.names()
    records = int(db.execute("SELECT COALESCE(MAX(idx) + 1, 0) FROM audit_records").fetchone()[0])
    row = db.execute(
        "SELECT size, note, created_at FROM audit_checkpoints ORDER BY size DESC LIMIT 1"
    ).fetchone()
    cosigners: list[str] = []
    size = at = None
    if row is not None:
        size, at = int(row[0]), _time(row[2])
        witnesses = {directory.witness_name(m.oin): m.name for m in directory.payload.members}
        try:
            parsed = note.parse_note(bytes(row[1]))
            cosigners = sorted(
                {witnesses[s.name] for s in parsed.signatures if s.name in witnesses}
            )
        except RemoteError:
            cosigners = []
    peers = tuple(
        PeerRow(p, names.get(p, p), int(s), max(0, records - int(s)), _time(u))
        for p, s, u in db.execute("SELECT peer, size, updated_at FROM peer_cosigned ORDER BY peer")
        if p != org
    )
    origins = _origins(directory)
    witnessed = tuple(
        WitnessedRow(origins.get(o, o), names.get(origins.get(o, ""), o), int(s), _time(c))
        for o, s, c in db.execute("SELECT origin, size, cosigned_at FROM witness_heads ORDER BY 1")
    )
    evidence = tuple(
        EvidenceRow(origins.get(o, o), names.get(origins.get(o, ""), o), str(code), _time(c))
        for o, code, c in db.execute(
            "SELECT origin, code, created_at FROM witness_evidence ORDER BY id DESC LIMIT 50"
        )
    )
    waiting: tuple[WaitingRow, ...] = ()
    if waiting_before is not None:
        waiting = tuple(
            WaitingRow(m, o, names.get(o, o), _time(u))
            for m, o, u in db.execute(
                "SELECT message_id, org, updated_at FROM outbox_recipients"
                " WHERE status = 'delivered' AND updated_at < ? ORDER BY updated_at LIMIT 50",
                (waiting_before.timestamp(),),
            )
        )
    return Health(records, size, at, tuple(cosigners), peers, witnessed, evidence, waiting)


# ---------------------------------------------------------------------------- search


@dataclass(frozen=True)
class RecordRow:
    index: int
    time: str
    operation: str
    status: str
    message_id: str | None
    trace_id: str | None
    message_type: str | None
    purpose: str | None
    partner: str | None
    recipients: tuple[str, ...]
    legal_basis: tuple[str, ...]
    policy: str
    reason: str
    receipt: str
    case_ref: str | None
    subjects: tuple[str, ...]
    shredded: bool
    actor: str | None = None
    actor_role: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


def _policy(view: dict[str, Any]) -> str:
    if not view.get("policy_decision"):
        return ""
    rule = view.get("policy_rule") or ""
    return f"{view['policy_decision']} {rule} v{view.get('policy_version')}".replace("  ", " ")


_DENIALS = {
    "unknown_sender": "the sender is not a member of the federation",
    "sender_role": "the sender does not hold the role it sent in",
    "unknown_recipient": "the recipient is not a member of the federation",
    "recipient_role": "the recipient does not hold that role",
    "no_rule": "no rule allows this purpose, type and pair of parties",
    "category_not_allowed": "data category {category} is not allowed (rule {rule})",
    "flag_not_allowed": "flag {flag} is not allowed (rule {rule})",
}


def policy_sentence(view: dict[str, Any], names: dict[str, str]) -> str:
    """The one sentence that explains a ``policy.decision`` record, from its view (codes and
    organisation names only, as :meth:`gateway.core.policy.Denied.explain` words it)."""
    decision = view.get("policy_decision")
    if decision not in ("allow", "deny"):
        return ""

    def who(oin: object) -> str:
        return names.get(str(oin), str(oin))

    version, rule = view.get("policy_version"), view.get("policy_rule") or ""
    head = (
        f"policy (directory v{version}) {'allows' if decision == 'allow' else 'denies'}"
        f" {view.get('message_type')} under"
        f" {view.get('purpose')} from {who(view.get('sender'))}"
    )
    if decision == "allow":
        to = ", ".join(who(r) for r in view.get("recipients") or ())
        return f"{head} to {to} (rule {rule.replace(',', ', ')})"
    detail = view.get("detail") or {}
    to = f" to {who(detail['recipient'])}" if detail.get("recipient") else ""
    why = _DENIALS.get(str(view.get("reason")), str(view.get("reason") or "denied"))
    why = why.format(category=detail.get("category"), flag=detail.get("flag"), rule=rule)
    return f"{head}{to}: {why}"


def _row(hit: dict[str, Any], receipts: dict[str, str]) -> RecordRow:
    view, personal = hit["view"], hit["personal"]
    actor = (personal or {}).get("actor") or {}
    return RecordRow(
        index=int(hit["index"]),
        time=str(view["end_time"])[:19].replace("T", " "),
        operation=str(view["name"]),
        status=str(view["status"]),
        message_id=view.get("message_id"),
        trace_id=view.get("trace_id"),
        message_type=view.get("message_type"),
        purpose=view.get("purpose"),
        partner=view.get("sender") or view.get("peer"),
        recipients=tuple(view.get("recipients") or ()),
        legal_basis=tuple(view.get("legal_basis") or ()),
        policy=_policy(view),
        reason=str(view.get("reason") or ""),
        receipt=receipts.get(view.get("message_id") or "", ""),
        case_ref=(personal or {}).get("case_ref"),
        subjects=tuple((personal or {}).get("data_subjects") or ()),
        shredded=personal is None,
        actor=actor.get("id") if isinstance(actor, dict) else None,
        actor_role=actor.get("role") if isinstance(actor, dict) else None,
        detail=dict(view.get("detail") or {}),
    )


def _receipt_statuses(db: sqlite3.Connection, message_ids: Sequence[str]) -> dict[str, str]:
    """Per message id: the recipients' delivery statuses (ours sent) or the inbox status."""
    out: dict[str, list[str]] = {}
    ids = sorted(set(message_ids))
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        for mid, org, status in db.execute(
            "SELECT message_id, org, status FROM outbox_recipients"  # noqa: S608 - only ?s
            f" WHERE message_id IN ({marks}) ORDER BY org",
            chunk,
        ):
            out.setdefault(mid, []).append(f"{org}: {status}")
        for mid, status in db.execute(
            f"SELECT message_id, status FROM inbox WHERE message_id IN ({marks})",  # noqa: S608 - only ?s
            chunk,
        ):
            out.setdefault(mid, []).append(str(status))
    return {k: ", ".join(v) for k, v in out.items()}


def access_rows(db: sqlite3.Connection, *, before: int | None, limit: int) -> list[RecordRow]:
    """The console's own access and login records, newest first."""
    rows: list[RecordRow] = []
    for name in ("console.access", "console.login"):
        hits = query(db, operation=name, before=before, newest_first=True, limit=limit)
        rows += [_row(h, {}) for h in hits]
    return sorted(rows, key=lambda r: r.index, reverse=True)[:limit]


# ---------------------------------------------------------------------------- message


@dataclass(frozen=True)
class ReceiptCheck:
    """A partner's signed receipt and what checking it found."""

    org: str
    name: str
    status: str
    received_at: datetime
    verified: bool
    reason: str = ""
    checkpoint_size: int | None = None
    cosigners: tuple[str, ...] = ()


@dataclass(frozen=True)
class MessageStory:
    records: tuple[RecordRow, ...]
    receipts: tuple[ReceiptCheck, ...]
    views: tuple[dict[str, Any], ...] = ()
    """The records' leaf views, in the order of ``records``."""


def _witness_keys(
    directory: TrustedDirectory, signer: str, at: datetime
) -> tuple[list[note.NoteVerifier], dict[str, str]]:
    keys: list[note.NoteVerifier] = []
    names: dict[str, str] = {}
    for member in directory.payload.members:
        if member.oin == signer:
            continue
        wname = directory.witness_name(member.oin)
        names[wname] = member.name
        keys += [
            note.ed25519_verifier(wname, k, sig_type=note.SIG_TYPE_COSIGNATURE_V1)
            for k in directory.audit_keys(member.oin, at)
        ]
    return keys, names


def check_receipt(
    jws: bytes,
    *,
    message_id: str,
    org: str,
    status: str,
    sent_digest: bytes | None,
    directory: TrustedDirectory,
    now: datetime,
) -> tuple[bool, str, int | None, tuple[str, ...]]:
    """Check a kept receipt as an officer would: the partner's signature (directory key), that
    it is about this message and our content, and its inclusion proof against the partner's
    signed checkpoint (with the cosignatures on it). Returns (verified, reason, size, cosigners)."""
    try:
        claims = verify_signed_claims(jws, sender_keys=directory.signing_key)
    except RemoteError as exc:
        return False, f"signature: {exc.detail}", None, ()
    body = claims.body
    if not isinstance(body, ReceiptBody) or body.message_id != message_id:
        return False, "the receipt is about another message", None, ()
    if claims.sender.org != org or body.status != status:
        return False, "the receipt says something else than was kept", None, ()
    if sent_digest is not None and body.inner_jws_sha256 != jose.b64u_encode(sent_digest):
        return False, "the receipt names other content than we sent", None, ()
    try:
        parsed = note.parse_tlog_proof(body.proof.encode("utf-8"))
        if parsed.extra is None:
            return False, "the proof carries no record", None, ()
        cosigners, names = _witness_keys(directory, org, now)
        proved = note.verify_tlog_proof(
            parsed,
            leaf_hash=leaf_hash(parsed.extra),
            log_keys=directory.audit_log_keys(org, now),
            cosigners=cosigners,
            now=now,
        )
        view = strictjson.loads(parsed.extra)
    except (RemoteError, ValueError) as exc:
        detail = exc.detail if isinstance(exc, RemoteError) else type(exc).__name__
        return False, f"inclusion proof: {detail}", None, ()
    if not isinstance(view, dict) or view.get("message_id") != message_id:
        return False, "the proved record is about another message", None, ()
    signed_by = tuple(
        sorted(names.get(c.verifier.name, c.verifier.name) for c in proved.checkpoint.cosignatures)
    )
    return True, "", proved.checkpoint.checkpoint.size, signed_by


def message_story(
    db: sqlite3.Connection, message_id: str, directory: TrustedDirectory, now: datetime
) -> MessageStory:
    """This node's records about ``message_id`` and the partners' receipts, checked."""
    hits = query(db, message_id=message_id, limit=1000)
    receipts_status = _receipt_statuses(db, [message_id])
    records = tuple(_row(h, receipts_status) for h in hits)
    digest_row = db.execute(
        "SELECT digest FROM outbox WHERE message_id=?", (message_id,)
    ).fetchone()
    sent_digest = bytes(digest_row[0]) if digest_row else None
    names = directory.names()
    checks = []
    for org, status, received_at, jws in db.execute(
        "SELECT org, status, received_at, inner_jws FROM receipts_in WHERE message_id=?"
        " ORDER BY received_at, org",
        (message_id,),
    ):
        ok, reason, size, cosigners = check_receipt(
            bytes(jws),
            message_id=message_id,
            org=org,
            status=status,
            sent_digest=sent_digest,
            directory=directory,
            now=now,
        )
        checks.append(
            ReceiptCheck(
                org, names.get(org, org), status, _time(received_at), ok, reason, size, cosigners
            )
        )
    return MessageStory(records, tuple(checks), tuple(dict(h["view"]) for h in hits))
