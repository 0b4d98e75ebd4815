"""What security officers run against a node's audit log (``zvg audit``): verify, query, export
an evidence bundle, and verify a bundle offline with only the public directory.

All of it reads the node's SQLite file read-only (the node may keep running). Verification
recomputes everything from the stored records — it trusts no stored hash it can recompute:

1. records are contiguous from index 0 (a deleted record leaves a gap);
2. each record's leaf hash is recomputed from its stored leaf view (a changed byte shows);
3. where the personal part and salt still exist, they reproduce the view's commitments;
4. where they are gone, the record's retention period has ended: its signed time is older than
   the retention period (the node's setting), or a later ``retention.purge`` record says the
   node shredded records up to that time, or a later ``rights.erase`` record lists the record
   (an erasure of one person, decision 0107); any other erasure inside the retention period
   fails here;
5. the Merkle tree rebuilt from the recomputed leaves reproduces every stored checkpoint's root,
   each checkpoint is signed by this node's audit-log key from the directory, and every
   cosignature on it verifies under the cosigning partner's key (a truncated log, or a rewritten
   one whose leaves were recomputed to match, fails here);
6. consecutive checkpoints are consistent (RFC 9162 §2.1.4.2);
7. signed bytes kept as evidence (a partner's contradicting receipt) hash to the digest their
   record names, and none is missing while the record's personal part still exists.

The first failure names the record index (or the checkpoint size) and stops the command with a
non-zero exit.

Passing these checks proves the log is consistent with *its own* checkpoints — which whoever
holds the node's disk and audit key could have re-signed. What they cannot make is a partner's
cosignature, so the report also says which records are **witnessed**: covered by checkpoints
cosigned by the federation's witness threshold of partners (each partner attests the prefix up
to the largest checkpoint it cosigned; the records up to the threshold-th largest of those are
witnessed). Deleted checkpoints, stripped cosignatures or a fork re-signed with the node's own
key all leave records unwitnessed. With the partners' own answers
(:func:`add_witness_heads`, ``zvg audit verify --witnesses``), a log truncated below what a
partner cosigned, or rewritten after it, fails too.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from gateway.audit import witnessing
from gateway.audit.erasure import ERASE_OPERATION, parse_indexes
from gateway.core import note
from gateway.core.audit import check_personal, leaf_of, parse_record_time
from gateway.core.directory import TrustedDirectory
from gateway.core.envelope import verify_signed_claims
from gateway.core.merkle import MerkleTree, leaf_hash, verify_consistency
from gateway.core.witness import compare_with_log
from gateway.errors import LocalError, RemoteError
from schemas import strictjson
from schemas.bodies import ReceiptBatchBody, ReceiptBody, ReceiptEntry
from schemas.claims import ClaimsBase

__all__ = [
    "BUNDLE_FORMAT",
    "BundleReport",
    "VerifyReport",
    "add_witness_heads",
    "export_bundle",
    "open_readonly",
    "peer_heads",
    "query",
    "record_written",
    "verify_bundle",
    "verify_log",
]

BUNDLE_FORMAT = "zvg-evidence/v1"


class VerificationFailed(RemoteError):  # noqa: N818 - a refusal, named for what failed
    """The audit log or a bundle did not verify; ``index`` names the first bad record.

    ``code`` is the bundle reason code (:data:`gateway.audit.evidence.REASONS`, the same codes
    the browser's JavaScript verifier reports; docs/evidence-bundle.md); ``None`` for a log."""

    def __init__(self, detail: str, index: int | None = None, *, code: str | None = None) -> None:
        super().__init__("bad_signature", detail)
        self.index = index
        self.code = code


@contextmanager
def open_readonly(path: Path) -> Iterator[sqlite3.Connection]:
    """The node's store, opened read-only (safe while the node runs)."""
    if not path.exists():
        raise LocalError(f"{path}: no store here (is data_dir right?)")
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        yield db
    finally:
        db.close()


@dataclass
class VerifyReport:
    """What :func:`verify_log` established (it raises on any failure)."""

    records: int = 0
    personal_checked: int = 0
    shredded: int = 0
    checkpoints: int = 0
    cosignatures: dict[int, list[str]] = field(default_factory=dict)
    root: bytes = b""
    evidence: int = 0
    threshold: int = 0
    """Partners whose cosignatures make records witnessed (the directory's witness threshold)."""
    partners: dict[str, str] = field(default_factory=dict)
    """Every partner that can witness this log: OIN -> name."""
    attested: dict[str, int] = field(default_factory=dict)
    """Partner OIN -> size of the largest checkpoint it cosigned that the records reproduce."""
    answered: dict[str, int] = field(default_factory=dict)
    """With the partners' answers: OIN -> size it says it cosigned (0: none)."""
    unverified: list[str] = field(default_factory=list)
    """With the partners' answers: OINs whose answer did not verify (not counted)."""
    checkpoint_sizes: set[int] = field(default_factory=set, repr=False)
    tree: MerkleTree = field(default_factory=MerkleTree, repr=False)

    @property
    def witnessed(self) -> int:
        """Records ``0 .. witnessed - 1`` are covered by checkpoints that :attr:`threshold`
        partners cosigned (all of them when nobody can witness: a federation of one)."""
        if self.threshold == 0:
            return self.records
        sizes = sorted(self.attested.values(), reverse=True)
        return sizes[self.threshold - 1] if len(sizes) >= self.threshold else 0


def _verifiers(
    directory: TrustedDirectory, org: str, at: datetime
) -> tuple[list[note.NoteVerifier], list[note.NoteVerifier], dict[str, str]]:
    origin = directory.audit_origin(org)
    log_keys = [note.ed25519_verifier(origin, k) for k in directory.audit_keys(org, at)]
    cosigners = []
    names: dict[str, str] = {}
    for member in directory.payload.members:
        if member.oin == org:
            continue
        wname = directory.witness_name(member.oin)
        names[wname] = member.name
        cosigners += [
            note.ed25519_verifier(wname, k, sig_type=note.SIG_TYPE_COSIGNATURE_V1)
            for k in directory.audit_keys(member.oin, at)
        ]
    return log_keys, cosigners, names


def _shredded_early(
    shredded: list[tuple[int, datetime]],
    purges: list[tuple[int, datetime]],
    retention: timedelta,
    now: datetime,
) -> list[tuple[int, datetime]]:
    """The shredded records whose retention period had not ended (index, deadline): neither
    older than ``retention`` now, nor covered by a later ``retention.purge`` record's cut-off."""
    early = []
    best: datetime | None = None  # the latest cut-off of the purge records after this record
    purge_at = len(purges)
    for index, written in reversed(shredded):
        while purge_at and purges[purge_at - 1][0] > index:
            purge_at -= 1
            cutoff = purges[purge_at][1]
            best = cutoff if best is None else max(best, cutoff)
        deadline = written + retention
        if deadline > now and (best is None or written > best):
            early.append((index, deadline))
    early.reverse()
    return early


def _purge_cutoff(view: Mapping[str, Any], retention: timedelta) -> datetime | None:
    """The time up to which a ``retention.purge`` record says personal parts were shredded."""
    detail = view.get("detail") or {}
    if not detail.get("audit_personal_parts"):
        return None
    stated = detail.get("audit_personal_before")
    if isinstance(stated, str):
        return parse_record_time(stated)
    # Written before the cut-off was recorded: the node then shredded by each record's deadline
    # at writing, which the setting now approximates.
    return parse_record_time(str(view["end_time"])) - retention


def _erased_by(view: Mapping[str, Any], idx: int) -> set[int]:
    """The earlier records a ``rights.erase`` record (at ``idx``) says it shredded."""
    detail = view.get("detail") or {}
    text = detail.get("erased_records")
    if not isinstance(text, str):
        raise ValueError("a rights.erase record without erased_records")  # noqa: TRY004 - malformed view, reported as such
    indexes = parse_indexes(text)
    if indexes and max(indexes) >= idx:
        raise ValueError("a rights.erase record lists a later record")
    return indexes


def verify_log(
    db: sqlite3.Connection,
    *,
    directory: TrustedDirectory,
    org: str,
    now: datetime,
    personal_retention: timedelta,
) -> VerifyReport:
    """Recompute and check the whole log (module docstring). ``personal_retention`` is the
    node's ``retention.audit_personal_days``. Raises :class:`VerificationFailed`."""
    report = VerifyReport()
    tree = report.tree
    shredded: list[tuple[int, datetime]] = []
    purges: list[tuple[int, datetime]] = []
    erased: set[int] = set()  # indexes a later rights.erase record lists (decision 0107)
    #: index -> (digest of kept evidence the record names, whether its personal part exists)
    named: dict[int, tuple[str, bool]] = {}
    rows = db.execute("SELECT idx, leaf, view, personal, salt FROM audit_records ORDER BY idx")
    for idx, stored_leaf, view_text, personal_text, salt in rows:
        if idx != tree.size:
            raise VerificationFailed(
                f"record {tree.size} is missing (the next stored is {idx})", tree.size
            )
        try:
            view = strictjson.loads(view_text)
        except ValueError:
            raise VerificationFailed(
                f"record {idx}: its stored view is not valid JSON", idx
            ) from None
        leaf = leaf_of(view)
        if leaf != bytes(stored_leaf):
            raise VerificationFailed(f"record {idx}: its content does not match its leaf hash", idx)
        try:
            if personal_text is not None and salt is not None:
                if not check_personal(view, json.loads(personal_text), bytes(salt)):
                    raise VerificationFailed(
                        f"record {idx}: its personal fields do not match their commitments", idx
                    )
                report.personal_checked += 1
            else:
                report.shredded += 1
                shredded.append((idx, parse_record_time(str(view["end_time"]))))
            detail = view.get("detail") if isinstance(view, dict) else None
            if isinstance(detail, dict) and isinstance(detail.get("evidence_sha256"), str):
                named[idx] = (detail["evidence_sha256"], personal_text is not None)
            if view.get("name") == ERASE_OPERATION:
                erased.update(_erased_by(view, idx))
            if view.get("name") == "retention.purge":
                cutoff = _purge_cutoff(view, personal_retention)
                if cutoff is not None:
                    purges.append((idx, cutoff))
        except (ValueError, KeyError, AttributeError):
            raise VerificationFailed(f"record {idx}: its stored view is malformed", idx) from None
        tree.append(leaf)
    report.records = tree.size
    report.evidence = _verify_evidence(db, named)
    early = _shredded_early(
        [s for s in shredded if s[0] not in erased], purges, personal_retention, now
    )
    if early:
        index, deadline = early[0]
        raise VerificationFailed(
            f"record {index}: its personal part was erased before its retention period ended "
            f"(on {deadline:%Y-%m-%d}); {len(early)} record{'s' if len(early) != 1 else ''} "
            "in all",
            index,
        )
    log_keys, cosigners, names = _verifiers(directory, org, now)
    oins = {directory.witness_name(m.oin): m.oin for m in directory.payload.members}
    report.threshold = directory.witness_threshold()
    report.partners = {m.oin: m.name for m in directory.payload.members if m.oin != org}
    previous: tuple[int, bytes] | None = None
    for size, root, signed in db.execute(
        "SELECT size, root, note FROM audit_checkpoints ORDER BY size"
    ):
        if size > tree.size:
            raise VerificationFailed(
                f"the log is truncated: checkpoint {size} covers {size} records, "
                f"only {tree.size} exist",
                tree.size,
            )
        try:
            verified = note.open_checkpoint(
                bytes(signed), log_keys=log_keys, cosigners=cosigners, now=now
            )
        except RemoteError as exc:
            raise VerificationFailed(f"checkpoint {size}: {exc.detail}") from None
        if verified.checkpoint.size != size or verified.checkpoint.root != bytes(root):
            raise VerificationFailed(
                f"checkpoint {size}: the stored size or root differs from the signed one"
            )
        if tree.root(size) != bytes(root):
            raise VerificationFailed(
                f"checkpoint {size}: the records do not reproduce its root (a record at or below "
                f"index {size - 1} was altered)",
                size - 1,
            )
        if previous is not None and not verify_consistency(
            previous[0], size, previous[1], bytes(root), tree.consistency_proof(previous[0], size)
        ):
            raise VerificationFailed(f"checkpoints {previous[0]} and {size} are not consistent")
        report.cosignatures[size] = sorted(
            names.get(c.verifier.name, c.verifier.name) for c in verified.cosignatures
        )
        for c in verified.cosignatures:
            partner = oins[c.verifier.name]
            report.attested[partner] = max(report.attested.get(partner, 0), size)
        report.checkpoint_sizes.add(size)
        report.checkpoints += 1
        previous = (size, bytes(root))
    report.root = tree.root() if tree.size else b""
    return report


def add_witness_heads(
    report: VerifyReport,
    heads: Mapping[str, bytes | None],
    *,
    directory: TrustedDirectory,
    org: str,
    now: datetime,
) -> None:
    """Check the log of a verified ``report`` against what the partners say they cosigned
    (``heads``: partner OIN -> that checkpoint with its cosignature, ``None`` for none; partners
    that did not answer are absent) and count what they attest as witnessed.

    Raises :class:`VerificationFailed` when a partner cosigned a checkpoint the records no longer
    reach (truncated) or no longer extend (rewritten), or one the store no longer holds
    (checkpoints deleted). An answer that does not verify is listed in ``report.unverified``."""
    for partner, signed in sorted(heads.items()):
        name = report.partners.get(partner)
        if name is None:
            continue
        if signed is None:
            report.answered[partner] = 0
            continue
        try:
            verified = witnessing.open_head(
                signed, directory=directory, log_org=org, witness_org=partner, now=now
            )
        except RemoteError:
            report.unverified.append(partner)
            continue
        size = verified.checkpoint.size
        agreement = compare_with_log(report.tree, verified.checkpoint)
        if agreement == "truncated":
            raise VerificationFailed(
                f"the log is truncated: {name} cosigned checkpoint {size} of this log, only "
                f"{report.records} records exist",
                report.records,
            )
        if agreement == "forked":
            raise VerificationFailed(
                f"the log was rewritten: its records differ from checkpoint {size}, which {name} "
                "cosigned"
            )
        if size not in report.checkpoint_sizes:
            raise VerificationFailed(
                f"checkpoint {size}, which {name} cosigned, is missing from the store "
                "(checkpoints were deleted)"
            )
        report.answered[partner] = size
        report.attested[partner] = max(report.attested.get(partner, 0), size)


def peer_heads(db: sqlite3.Connection, nonce: str) -> dict[str, bytes | None]:
    """The partners' answers to one ``get-head`` request, as the node stored them."""
    return {
        str(peer): None if signed is None else bytes(signed)
        for peer, signed in db.execute(
            "SELECT peer, checkpoint FROM peer_heads WHERE nonce = ?", (nonce,)
        )
    }


def record_written(db: sqlite3.Connection, index: int) -> datetime:
    """When record ``index`` was written (its signed end time)."""
    row = db.execute("SELECT view FROM audit_records WHERE idx = ?", (index,)).fetchone()
    return parse_record_time(str(strictjson.loads(row[0])["end_time"]))


def _has_evidence_table(db: sqlite3.Connection) -> bool:
    """Stores written before evidence was kept have no ``audit_evidence`` table."""
    return (
        db.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='audit_evidence'"
        ).fetchone()
        is not None
    )


def _blob(value: object) -> bytes:
    """A stored BLOB as bytes (an edited row may hold TEXT instead)."""
    return value if isinstance(value, bytes) else str(value).encode("utf-8")


def _b64u_sha256(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _verify_evidence(db: sqlite3.Connection, named: dict[int, tuple[str, bool]]) -> int:
    """Check kept evidence against the digests the records name; returns how much was kept."""
    kept: dict[int, bytes] = {}
    if _has_evidence_table(db):
        kept = {
            int(i): _blob(e)
            for i, e in db.execute("SELECT idx, evidence FROM audit_evidence ORDER BY idx")
        }
    for idx, evidence in kept.items():
        if idx not in named or _b64u_sha256(evidence) != named[idx][0]:
            raise VerificationFailed(f"record {idx}: its kept evidence does not match", idx)
    for idx, (_digest, personal) in named.items():
        if personal and idx not in kept:
            raise VerificationFailed(f"record {idx}: its kept evidence is missing", idx)
    return len(kept)


# ---------------------------------------------------------------------------- query

QUERY_COLUMNS = (
    "index",
    "time",
    "operation",
    "status",
    "type",
    "purpose",
    "sender",
    "recipients",
    "case",
    "categories",
    "policy",
    "reason",
)


def query(
    db: sqlite3.Connection,
    *,
    case_ref: str | None = None,
    purpose: str | None = None,
    partner: str | None = None,
    subject: str | None = None,
    message_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    operation: str | None = None,
    trace_id: str | None = None,
    status: str | None = None,
    before: int | None = None,
    newest_first: bool = False,
    limit: int = 10_000,
) -> list[dict[str, Any]]:
    """Records matching every given filter, oldest first (``newest_first``: newest first; with
    ``before``, only records with a smaller index: the next page) (views plus what personal data
    is still held: case reference and subject pseudonyms; and, for a record that keeps a
    partner's signed bytes as evidence, those bytes as ``evidence``)."""
    where: list[str] = ["1=1"]
    params: list[Any] = []
    if trace_id is not None:
        where.append("trace_id = ?")
        params.append(trace_id)
    if status is not None:
        where.append("json_extract(view, '$.status') = ?")
        params.append(status)
    if before is not None:
        where.append("idx < ?")
        params.append(before)
    if case_ref is not None:
        where.append("case_ref = ?")
        params.append(case_ref)
    if message_id is not None:
        where.append("message_id = ?")
        params.append(message_id)
    if since is not None:
        where.append("time >= ?")
        params.append(since.timestamp())
    if until is not None:
        where.append("time < ?")
        params.append(until.timestamp())
    if operation is not None:
        where.append("name = ?")
        params.append(operation)
    if purpose is not None:
        where.append("json_extract(view, '$.purpose') = ?")
        params.append(purpose)
    if partner is not None:
        where.append(
            "(json_extract(view, '$.sender') = ? OR json_extract(view, '$.peer') = ?"
            " OR EXISTS (SELECT 1 FROM json_each(view, '$.recipients') WHERE value = ?))"
        )
        params += [partner, partner, partner]
    if subject is not None:
        where.append(
            "EXISTS (SELECT 1 FROM json_each(personal, '$.data_subjects') WHERE value = ?)"
        )
        params.append(subject)
    sql = (
        "SELECT idx, view, personal FROM audit_records WHERE "  # noqa: S608 - fixed clauses, bound values
        + " AND ".join(where)
        + (" ORDER BY idx DESC LIMIT ?" if newest_first else " ORDER BY idx LIMIT ?")
    )
    out = []
    for idx, view_text, personal_text in db.execute(sql, (*params, limit)):
        view = json.loads(view_text)
        personal = json.loads(personal_text) if personal_text else None
        out.append({"index": idx, "view": view, "personal": personal})
    hits = {h["index"]: h for h in out if "evidence_sha256" in (h["view"].get("detail") or {})}
    if hits and _has_evidence_table(db):
        marks = ",".join("?" * len(hits))
        for idx, evidence in db.execute(
            f"SELECT idx, evidence FROM audit_evidence WHERE idx IN ({marks})",  # noqa: S608 - only ?s
            tuple(hits),
        ):
            hits[idx]["evidence"] = _blob(evidence).decode("ascii", errors="replace")
    return out


def _reason(view: dict[str, Any]) -> str:
    """The reason column: the coarse reason, or what a contradiction contradicts."""
    detail = view.get("detail") or {}
    if view["name"] == "receipt.contradiction":
        if detail.get("kind") == "content":
            return f"{detail.get('status')} about other content"
        return f"{detail.get('status')} after {detail.get('earlier_status')}"
    return str(view.get("reason") or "")


def as_row(hit: dict[str, Any]) -> list[str]:
    """A query hit as the columns of :data:`QUERY_COLUMNS`."""
    v, personal = hit["view"], hit["personal"] or {}
    policy = ""
    if v.get("policy_decision"):
        rule = v.get("policy_rule") or ""
        policy = f"{v['policy_decision']} {rule} v{v.get('policy_version')}".replace("  ", " ")
    return [
        str(hit["index"]),
        v["end_time"][:19].replace("T", " "),
        v["name"],
        v["status"],
        v.get("message_type") or "",
        v.get("purpose") or "",
        v.get("sender") or v.get("peer") or "",
        ",".join(v.get("recipients") or []),
        personal.get("case_ref") or ("(shredded)" if hit["personal"] is None else ""),
        ",".join(v.get("data_categories") or []),
        policy,
        _reason(v),
    ]


# ---------------------------------------------------------------------------- evidence bundles


def export_bundle(
    db: sqlite3.Connection,
    *,
    directory: TrustedDirectory,
    org: str,
    message_id: str | None = None,
    case_ref: str | None = None,
    now: datetime,
) -> dict[str, Any]:
    """An evidence bundle for one message or one case: the records with inclusion proofs to the
    latest checkpoint (with its cosignatures), the signed messages we received (inner JWS), the
    signed receipts we received, and the signed receipts kept as evidence of a contradiction.
    Verifiable offline with :func:`verify_bundle`."""
    if (message_id is None) == (case_ref is None):
        raise LocalError("export needs exactly one of --message or --case")
    hits = query(db, message_id=message_id, case_ref=case_ref)
    if not hits:
        raise LocalError("no audit records match")
    message_ids = sorted({h["view"]["message_id"] for h in hits if h["view"].get("message_id")})
    row = db.execute(
        "SELECT size, note FROM audit_checkpoints ORDER BY size DESC LIMIT 1"
    ).fetchone()
    if row is None or row[0] <= max(h["index"] for h in hits):
        raise LocalError(
            "the records are not covered by a checkpoint yet; wait one checkpoint interval"
        )
    size, checkpoint = int(row[0]), bytes(row[1])
    leaves = [
        bytes(r[0])
        for r in db.execute("SELECT leaf FROM audit_records WHERE idx < ? ORDER BY idx", (size,))
    ]
    tree = MerkleTree(leaves)
    records = []
    for hit in hits:
        view_bytes = json.dumps(hit["view"], separators=(",", ":"), ensure_ascii=False).encode()
        proof = note.format_tlog_proof(
            note.TlogProof(
                hit["index"], tuple(tree.inclusion_proof(hit["index"], size)), checkpoint
            )
        )
        records.append(
            {
                "index": hit["index"],
                "view": hit["view"],
                "tlog_proof": proof.decode("utf-8"),
                "view_bytes": len(view_bytes),
            }
        )
    messages = []
    receipts = []
    for mid in message_ids:
        for sender, jws in db.execute(
            "SELECT sender, inner_jws FROM inbox WHERE message_id=? AND inner_jws IS NOT NULL",
            (mid,),
        ):
            messages.append(
                {"message_id": mid, "sender": sender, "inner_jws": bytes(jws).decode("ascii")}
            )
        for rorg, status, jws in db.execute(
            "SELECT i.org, i.status, coalesce(e.inner_jws, i.inner_jws) FROM receipts_in i"
            " LEFT JOIN receipt_evidence e ON e.ref = i.inner_jws WHERE i.message_id=?",
            (mid,),
        ):
            receipts.append(
                {
                    "message_id": mid,
                    "from": rorg,
                    "status": status,
                    "inner_jws": bytes(jws).decode("ascii"),
                }
            )
    contradictions = [
        {"index": h["index"], "inner_jws": h["evidence"]} for h in hits if "evidence" in h
    ]
    return {
        "format": BUNDLE_FORMAT,
        "org": org,
        "origin": directory.audit_origin(org),
        "exported_at": now.isoformat(),
        "query": {"message_id": message_id, "case_ref": case_ref},
        "directory_version": directory.version,
        "checkpoint": checkpoint.decode("utf-8"),
        "records": records,
        "messages": messages,
        "receipts": receipts,
        "contradictions": contradictions,
    }


@dataclass
class BundleReport:
    records: int = 0
    messages: int = 0
    receipts: int = 0
    contradictions: int = 0
    cosigners: list[str] = field(default_factory=list)
    checkpoint_size: int = 0
    lines: list[str] = field(default_factory=list)
    origin: str = ""
    """The verified checkpoint's origin: the exporter's log."""


def _fail(code: str, detail: str, index: int | None = None) -> VerificationFailed:
    return VerificationFailed(detail, index, code=code)


#: Largest index a bundle may name: the largest integer every JSON reader holds exactly (I-JSON,
#: RFC 7493 §2.2), so that a browser reads the same index.
MAX_BUNDLE_INDEX = 2**53 - 1


def _is_index(value: object) -> bool:
    return type(value) is int and 0 <= value <= MAX_BUNDLE_INDEX


def _check_shape(bundle: object) -> None:
    """The members and types docs/evidence-bundle.md §2 requires (``bundle_malformed``), after
    the format (``bundle_format``). Nothing is verified yet."""
    if not isinstance(bundle, dict):
        raise _fail("bundle_malformed", "the bundle is not a JSON object")
    if bundle.get("format") != BUNDLE_FORMAT:
        raise _fail("bundle_format", f"not a {BUNDLE_FORMAT} bundle")
    if not isinstance(bundle.get("org"), str) or not isinstance(bundle.get("checkpoint"), str):
        raise _fail("bundle_malformed", "the bundle lacks org or checkpoint")
    lists = ("records", "messages", "receipts", "contradictions")
    if not all(isinstance(bundle.get(k, []), list) for k in lists) or not all(
        k in bundle for k in lists[:3]
    ):
        raise _fail("bundle_malformed", "records, messages, receipts must be lists")
    wanted: dict[str, tuple[tuple[str, type], ...]] = {
        "records": (("index", int), ("view", dict), ("tlog_proof", str)),
        "messages": (("message_id", str), ("inner_jws", str)),
        "receipts": (("message_id", str), ("from", str), ("inner_jws", str)),
        "contradictions": (("index", int), ("inner_jws", str)),
    }
    for key, members in wanted.items():
        for item in bundle.get(key, []):
            if not isinstance(item, dict) or not all(type(item.get(m)) is t for m, t in members):
                raise _fail("bundle_malformed", f"an entry of {key} lacks a member or its type")
            if "index" in item and not _is_index(item["index"]):
                raise _fail("bundle_malformed", f"an entry of {key} has an index out of range")
            if "inner_jws" in item and not item["inner_jws"].isascii():
                raise _fail("bundle_malformed", f"an entry of {key} has a non-ASCII JWS")


def _signed_claims(jws: bytes, directory: TrustedDirectory, code: str, what: str) -> ClaimsBase:
    try:
        return verify_signed_claims(jws, sender_keys=directory.signing_key)
    except RemoteError as exc:
        raise _fail(code, f"{what}: {exc.detail}") from None


def verify_bundle(
    bundle: dict[str, Any], *, directory: TrustedDirectory, now: datetime
) -> BundleReport:
    """Check a bundle with only the (threshold-verified) directory, in the order of
    docs/evidence-bundle.md §4. Raises :class:`VerificationFailed` with its ``code`` at the
    first problem."""
    _check_shape(bundle)
    org = str(bundle["org"])
    if directory.member(org) is None:
        raise _fail("org_unknown", f"{org} is not a member of directory v{directory.version}")
    log_keys, cosigners, names = _verifiers(directory, org, now)
    checkpoint_raw = str(bundle["checkpoint"]).encode("utf-8")
    try:
        checkpoint = note.open_checkpoint(
            checkpoint_raw, log_keys=log_keys, cosigners=cosigners, now=now
        )
    except RemoteError as exc:
        raise _fail("checkpoint_invalid", f"checkpoint: {exc.detail}") from None
    report = BundleReport(
        checkpoint_size=checkpoint.checkpoint.size, origin=checkpoint.checkpoint.origin
    )
    report.cosigners = sorted(
        names.get(c.verifier.name, c.verifier.name) for c in checkpoint.cosignatures
    )
    by_message: dict[str, list[dict[str, Any]]] = {}
    by_index: dict[int, dict[str, Any]] = {}
    for rec in bundle["records"]:
        view = rec["view"]
        try:
            leaf = leaf_of(view)
        except LocalError:
            raise _fail(
                "bundle_malformed", f"record {rec['index']}: its view is not canonical JSON"
            ) from None
        try:
            proved = note.verify_tlog_proof(
                rec["tlog_proof"].encode("utf-8"), leaf_hash=leaf, log_keys=log_keys
            )
        except RemoteError as exc:
            raise _fail(
                "record_proof_invalid", f"record {rec['index']}: {exc.detail}", rec["index"]
            ) from None
        if (
            proved.index != rec["index"]
            or proved.checkpoint.checkpoint.root != checkpoint.checkpoint.root
        ):
            raise _fail(
                "record_checkpoint_mismatch",
                f"record {rec['index']}: proved against another checkpoint",
                rec["index"],
            )
        if isinstance(view.get("message_id"), str) and view["message_id"]:
            by_message.setdefault(view["message_id"], []).append(view)
        by_index[proved.index] = view
        report.records += 1
    for msg in bundle["messages"]:
        jws = msg["inner_jws"].encode("ascii")
        claims = _signed_claims(
            jws, directory, "message_signature_invalid", f"message {msg['message_id']}"
        )
        digest = _b64u_sha256(jws)
        if claims.message_id != msg["message_id"] or not any(
            v.get("digest") == digest for v in by_message.get(claims.message_id, [])
        ):
            raise _fail(
                "message_unproved",
                f"message {msg['message_id']}: no proved record names this content",
            )
        report.messages += 1
        report.lines.append(
            f"message {claims.message_id}: {claims.message_type} {claims.purpose} "
            f"signed by {claims.sender.org}"
        )
    for rc in bundle["receipts"]:
        report.lines.append(_verify_receipt(rc, directory, now))
        report.receipts += 1
    for kept in bundle.get("contradictions", []):
        report.lines.append(_verify_contradiction(kept, by_index, directory))
        report.contradictions += 1
    return report


def _statement(body: object, message_id: object, status: object) -> ReceiptEntry | None:
    """What a kept receipt says about ``message_id``: the body of a single receipt, or the entry
    of a coalesced one with that message (and ``status``, when given); ``None`` if it says
    nothing about it."""
    entries: tuple[ReceiptEntry, ...] = (
        (body,)
        if isinstance(body, ReceiptBody)
        else body.entries
        if isinstance(body, ReceiptBatchBody)
        else ()
    )
    for entry in entries:
        if entry.message_id == message_id and status in (None, entry.status):
            return entry
    return None


def _verify_receipt(rc: dict[str, Any], directory: TrustedDirectory, now: datetime) -> str:
    """Check one received receipt: signed by the member it names, about the message it names,
    and its own inclusion proof in the receiver's log (a single receipt, or the entry of a
    coalesced one that names the message and status)."""
    what = f"receipt for {rc['message_id']}"
    claims = _signed_claims(
        rc["inner_jws"].encode("ascii"), directory, "receipt_signature_invalid", what
    )
    body = _statement(claims.body, rc["message_id"], rc.get("status"))
    if body is None or claims.sender.org != rc["from"]:
        raise _fail("receipt_mismatch", f"{what}: it says something else")
    receiver_keys, _, _ = _verifiers(directory, claims.sender.org, now)
    try:
        proof = note.parse_tlog_proof(body.proof.encode("utf-8"))
        if proof.extra is None:
            raise _fail("receipt_proof_invalid", f"{what}: its proof carries no record")
        note.verify_tlog_proof(proof, leaf_hash=leaf_hash(proof.extra), log_keys=receiver_keys)
    except RemoteError as exc:
        if isinstance(exc, VerificationFailed):
            raise
        raise _fail("receipt_proof_invalid", f"{what}: {exc.detail}") from None
    return f"receipt {body.status} for {body.message_id} signed by {claims.sender.org}"


def _verify_contradiction(
    kept: dict[str, Any], by_index: dict[int, dict[str, Any]], directory: TrustedDirectory
) -> str:
    """Check one kept contradicting receipt: a proved record names exactly these bytes, and
    they are a receipt signed by the member the record names. Returns a line for the report."""
    index = kept["index"]
    view = by_index.get(index)
    jws = kept["inner_jws"].encode("ascii")
    detail = (view or {}).get("detail")
    detail = detail if isinstance(detail, dict) else {}
    if view is None or detail.get("evidence_sha256") != _b64u_sha256(jws):
        raise _fail(
            "contradiction_unproved", f"contradiction {index}: no proved record names these bytes"
        )
    claims = _signed_claims(
        jws, directory, "contradiction_signature_invalid", f"contradiction {index}"
    )
    body = _statement(claims.body, view.get("message_id"), detail.get("status"))
    if body is None or claims.sender.org != view.get("peer"):
        raise _fail("contradiction_mismatch", f"contradiction {index}: it says something else")
    what = (
        "names other content"
        if detail.get("kind") == "content"
        else f"contradicts its {detail.get('earlier_status')}"
    )
    return (
        f"contradiction: receipt {body.status} for {body.message_id} signed by "
        f"{claims.sender.org} {what} (record {index})"
    )
