"""Audit records (docs/architecture.md §7): what a node logs of every exchange, and the leaf
each becomes.

A :class:`Record` has the *Logboek Dataverwerkingen* core fields (trace_id, span_id,
parent_span_id, foreign_operation, name, status, start/end time, processing_activity_id,
pseudonymised data-subject ids) plus the exchange fields (message id and type, purpose, legal
basis, sender, recipients, data categories, flags, policy version/rule/decision, payload digest,
key id). Actors (the employee at the partner who asked) go into separate ``access`` records
linked by trace id, as NEN 7513 asks.

Rules enforced here:

- A record never holds payload content, a plaintext identifier (BSN, name, address) or key
  material: it has no field for them, and :func:`new_record` refuses strings that look like a
  BSN. Message bodies never reach this module.
- The **personal** fields — ``case_ref``, ``data_subjects``, the ``actor`` and a ``note`` (an
  adapter's free text about its reject, which may name people) — enter the Merkle leaf only as
  salted commitments (``gateway.core.commit``). :func:`split` returns the leaf view
  (kept for ever, no personal data) and the personal part (deleted with its salt at the end of
  retention); :func:`leaf_of` hashes the leaf view (RFC 8785 canonical JSON, RFC 9162 leaf).
- Records about a message are built from typed values: :class:`MessageFields` (the audit fields
  of one message, taken from its validated claims, never its body) and :func:`message_record`,
  :func:`policy_record`, :func:`access_record`; every builder ends in the checks of
  :func:`new_record`.
- :func:`check_personal` re-derives the commitments from a stored personal part and salt, so
  ``zvg audit verify`` notices a changed case reference or pseudonym as surely as a changed leaf.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

from gateway.core.commit import (
    COMMITMENT_DOMAIN,
    MAX_SAFE_INTEGER,
    SALT_SIZE,
    JsonValue,
    canonical_json,
)
from gateway.core.merkle import leaf_hash
from gateway.core.policy import Allowed, PolicyDecision
from gateway.errors import LocalError
from schemas import ids
from schemas.claims import ClaimsBase

__all__ = [
    "OPERATIONS",
    "Actor",
    "MessageFields",
    "Record",
    "RecordStatus",
    "access_record",
    "check_personal",
    "leaf_of",
    "message_record",
    "new_record",
    "parse_record_time",
    "personal_json",
    "policy_record",
    "record_time",
    "split",
    "stored_parts",
    "view_json",
]

#: Operation names (``name``), one per kind of event the node logs.
OPERATIONS = frozenset(
    {
        "console.acknowledge",  # an officer acknowledged a console alert, with a comment
        "console.review",  # an officer signed off a log review report, with a comment
        "message.send",  # an adapter's message was validated, allowed, sealed and queued
        "message.publish",  # the broker confirmed the envelope for one recipient
        "message.receive",  # an envelope was opened, verified, allowed and stored in the inbox
        "message.refuse",  # a message refused by policy (in or out), or a receipt not sent
        "refusal.summary",  # unauthenticated envelopes one sender had refused in one interval
        "message.deliver",  # the adapter fetched a message from the inbox
        "message.expire",  # a sent message expired before a recipient answered
        "policy.decision",  # a policy decision (allow or deny), at send or at receive
        "adapter.ack",  # the adapter accepted a delivered message
        "adapter.reject",  # the adapter refused a delivered message
        "receipt.send",  # we sealed a receipt (delivered / accepted / rejected)
        "receipt.receive",  # a recipient's receipt arrived and verified
        "receipt.contradiction",  # a recipient's signed receipt contradicts its earlier statement
        "broker.quarantine",  # ops revoked a member's right to publish on the broker
        "broker.release",  # ops restored a quarantined member's right to publish
        "retention.purge",  # payloads deleted at the end of their retention
        "rights.erase",  # one person's payloads and personal parts erased (AVG art. 17)
        "directory.change",  # a new directory version was trusted
        "key.change",  # this node started using another key
        "witness.refuse",  # we refused a peer's checkpoint (conflict, bad proof, fork)
        "access",  # an actor at the partner read or changed something through the API
        "console.access",  # someone looked at or exported records in the officer console
        "console.login",  # a login to the officer console, succeeded or failed
        "ldv.read",  # a call of the LDV read API (POST /v1/processing-activities): who, what, count
        "rights.request",  # the contactpunt started an inzageverzoek (identity check: note)
        "rights.answer",  # this node answered an inzageverzoek (answered or deferred)
        "rights.release",  # an officer released a deferred answer to an inzageverzoek
        "rights.extend",  # the contactpunt extended an inzageverzoek's term (reason: note)
    }
)

RecordStatus = Literal["ok", "denied", "rejected", "error"]


@dataclass(frozen=True)
class Actor:
    """The employee behind an adapter request (pseudonymous ids only)."""

    id: str
    role: str | None = None
    responsible: str | None = None


@dataclass(frozen=True)
class Record:
    """One audit record. Build it with :func:`new_record`."""

    name: str
    status: RecordStatus
    start_time: datetime
    end_time: datetime
    trace_id: str | None = None
    span_id: str | None = None
    parent_span_id: str | None = None
    foreign_operation: Mapping[str, str] | None = None
    processing_activity_id: str | None = None
    message_id: str | None = None
    message_type: str | None = None
    purpose: str | None = None
    legal_basis: tuple[str, ...] = ()
    sender: str | None = None
    recipients: tuple[str, ...] = ()
    data_categories: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()
    policy_version: int | None = None
    policy_rule: str | None = None
    policy_decision: Literal["allow", "deny"] | None = None
    reason: str | None = None
    digest: str | None = None
    key_id: str | None = None
    peer: str | None = None
    detail: Mapping[str, int | str] = field(default_factory=dict)
    # personal: only committed in the leaf
    case_ref: str | None = None
    data_subjects: tuple[str, ...] = ()
    actor: Actor | None = None
    note: str | None = None
    """Free text of the adapter about its reject: personal, never in the view, and so never in
    a receipt's proof (committed only when present, so records without one keep their leaf)."""
    adapter_reason: str | None = None
    """The adapter's reason code for a reject (``unknown_subject``, ``not_responsible``…): it
    says something about a person at this organisation (that it has no file on them), so it is
    kept like the note: in the personal part, committed in the view, never in a receipt's proof;
    the sender sees only ``adapter_rejected``."""


_PERSONAL = ("case_ref", "data_subjects", "actor", "note", "adapter_reason")
_FIELD_NAMES = tuple(f.name for f in fields(Record))
#: Random identifiers and digests (hex, base64): not personal, and random digits in them can
#: look like a BSN, so the BSN guard does not search them.
_OPAQUE_FIELDS = frozenset(
    {"trace_id", "span_id", "parent_span_id", "foreign_operation", "message_id", "digest", "key_id"}
)
_VIEW_FIELDS = tuple(name for name in _FIELD_NAMES if name not in _PERSONAL)
_SEARCHED_FIELDS = tuple(name for name in _FIELD_NAMES if name not in _OPAQUE_FIELDS)
#: ``{*map(type, values)} <= _STR``: every one of ``values`` is exactly a ``str`` (one C call).
_STR = frozenset({str})
_STR_OR_NONE = frozenset({str, type(None)})


def _iso(t: datetime) -> str:
    if t.tzinfo is UTC and type(t) is datetime and t.year >= 1000:
        # Fast path, same text as the strftime below: the C isoformat gives the same zero-padded
        # fields and six microsecond digits, then "+00:00" for UTC. Only for the UTC singleton
        # (its offset is zero: the check below always passes; strftime also asks other tzinfos
        # for dst(), which may raise) and for years from 1000 (strftime does not pad earlier
        # ones to four digits, on glibc).
        return t.isoformat(timespec="microseconds")[:-6] + "Z"
    offset = t.utcoffset()
    if offset is None or offset.total_seconds() != 0:
        raise LocalError("audit record times must be aware UTC datetimes")
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def record_time(t: datetime) -> str:
    """A time as records write it (``2026-03-02T09:15:00.123456Z``; aware UTC only)."""
    return _iso(t)


def parse_record_time(text: str) -> datetime:
    """A time written by :func:`record_time` back as an aware datetime. Raises ``ValueError``."""
    t = datetime.fromisoformat(text)
    if t.utcoffset() is None or not text.endswith("Z"):
        raise ValueError("not a record time")
    return t


def _complete_record(values: dict[str, Any]) -> Record:
    """``Record(**values)`` for ``values`` naming every field of :class:`Record` in order: the
    same object (a plain frozen dataclass with no ``__post_init__``: its ``__init__`` only sets
    each field, one ``object.__setattr__`` call at a time), made at a fraction of the cost.
    Unchecked, like ``Record(...)``: the builders end in the checks of :func:`new_record`.
    Anything but exactly the fields (a field added to Record and not here) takes ``__init__``."""
    if tuple(values) != _FIELD_NAMES:
        return Record(**values)
    record = object.__new__(Record)
    record.__dict__.update(values)
    return record


def _fields(record: Record) -> list[tuple[str, Any]]:
    return [(name, getattr(record, name)) for name in _FIELD_NAMES]


def new_record(**values: Any) -> Record:
    """A :class:`Record`; refuses an unknown operation and anything that looks like a BSN."""
    return _checked(Record(**values))


def _checked(record: Record) -> Record:
    """``record`` after the checks of :func:`new_record`."""
    if record.name not in OPERATIONS:
        raise LocalError(f"unknown audit operation {record.name!r}")
    # One search over all searched strings at once, joined by a non-digit: a digit run of the
    # joined text is a digit run of one of the strings, so this finds every BSN-shaped value the
    # per-string guard below finds (and more: it does not skip opaque-looking strings). Only
    # when it finds something does the per-string guard run, to decide and to name the field.
    if ids.bsn_runs("\n".join(_searched_strings(record))):
        _refuse_bsn(record)
    return record


@dataclass(frozen=True, slots=True)
class MessageFields:
    """The audit fields of one message (never its body), from its validated claims.

    ``trace_id``/``span_id`` are the operation that logs (our span), ``foreign_operation`` the
    sender's (on receive); ``digest`` and ``key_id`` are added once known (:meth:`with_digest`).
    """

    trace_id: str
    span_id: str
    processing_activity_id: str
    message_id: str
    message_type: str
    purpose: str
    legal_basis: tuple[str, ...]
    sender: str
    recipients: tuple[str, ...]
    data_categories: tuple[str, ...]
    flags: tuple[str, ...]
    case_ref: str
    data_subjects: tuple[str, ...]
    foreign_operation: Mapping[str, str] | None = None
    digest: str | None = None
    key_id: str | None = None
    _bsn_free: bool | None = field(default=None, init=False, repr=False, compare=False)
    """True once :func:`_guarded` found no BSN-shaped digit run in the searched fields above
    (every one but the opaque ``foreign_operation``, ``digest``, ``key_id``): the records of one
    message then search only their own strings (:func:`message_record`). ``None``: not known."""

    @classmethod
    def of(
        cls,
        claims: ClaimsBase,
        *,
        trace_id: str | None = None,
        span_id: str | None = None,
        processing_activity: str | None = None,
    ) -> MessageFields:
        """The fields of ``claims``; the operation is ``trace_id``/``span_id`` (our span) when
        given, else the one the claims carry; ``processing_activity`` the one in our register
        when given (a receiver's), else the one the claims name (the sender's)."""
        _, claims_trace, claims_span, _ = claims.trace.split("-")
        flags = claims.flags
        fields = cls(
            trace_id=trace_id if trace_id is not None else claims_trace,
            span_id=span_id if span_id is not None else claims_span,
            processing_activity_id=processing_activity or claims.processing_activity,
            message_id=claims.message_id,
            message_type=claims.message_type,
            purpose=claims.purpose,
            legal_basis=claims.legal_basis,
            sender=claims.sender.org,
            recipients=claims.recipient_orgs(),
            data_categories=claims.data_categories,
            flags=tuple(name for name in type(flags).model_fields if getattr(flags, name)),
            case_ref=claims.case_ref,
            data_subjects=tuple(s.subject_ref for s in claims.subjects),
        )
        return _guarded(fields)

    def with_digest(self, digest: str, key_id: str | None = None) -> MessageFields:
        """These fields with the content digest (base64url) and the signing key id."""
        return self._keeping_guard(self._replaced(digest=digest, key_id=key_id))

    def with_foreign_operation(self, claims: ClaimsBase) -> MessageFields:
        """These fields naming the sender's operation (its trace and span, its organisation)."""
        _, trace_id, span_id, _ = claims.trace.split("-")
        return self._keeping_guard(
            self._replaced(
                foreign_operation={
                    "trace_id": trace_id,
                    "span_id": span_id,
                    "org": claims.sender.org,
                },
            )
        )

    def _replaced(self, **changes: Any) -> MessageFields:
        """``dataclasses.replace(self, **changes)``: these fields' values but ``changes``, through
        ``__init__`` (without replace's walk of the dataclass's fields on every call)."""
        values = {name: getattr(self, name) for name in _MESSAGE_FIELD_NAMES}
        values.update(changes)
        return MessageFields(**values)

    def _keeping_guard(self, other: MessageFields) -> MessageFields:
        """``other`` (these fields with only opaque ones changed) with this guard result."""
        object.__setattr__(other, "_bsn_free", self._bsn_free)
        return other


#: The fields ``MessageFields.__init__`` takes (all but the guard's result).
_MESSAGE_FIELD_NAMES = tuple(f.name for f in fields(MessageFields) if f.init)


def _field_strings(fields: MessageFields) -> list[str]:
    """The strings of the fields of ``fields`` a record's BSN guard searches (not the opaque
    ``trace_id``, ``span_id``, ``message_id``, ``foreign_operation``, ``digest``, ``key_id``)."""
    f = fields
    out = [f.processing_activity_id, f.message_type, f.purpose, f.sender, f.case_ref]
    for many in (f.legal_basis, f.recipients, f.data_categories, f.flags, f.data_subjects):
        out.extend(many)
    if {*map(type, out)} <= _STR:  # all(type(s) is str for s in out), in C
        return out
    return _strings(out)  # values of other types, as the record's guard takes them


def _guarded(fields: MessageFields) -> MessageFields:
    """``fields`` with the result of the BSN pre-check of its searched strings kept (the same
    one-pass search as :func:`_checked`), so each record about the message need not repeat it."""
    object.__setattr__(fields, "_bsn_free", not ids.bsn_runs("\n".join(_field_strings(fields))))
    return fields


def message_record(
    name: str,
    fields: MessageFields,
    *,
    at: datetime,
    status: RecordStatus = "ok",
    start_time: datetime | None = None,
    reason: str | None = None,
    detail: Mapping[str, int | str] | None = None,
    policy: tuple[int, str | None, Literal["allow", "deny"]] | None = None,
    note: str | None = None,
    adapter_reason: str | None = None,
) -> Record:
    """A record about one message: ``fields`` plus what happened (``name``, ``status``,
    ``reason``, ``detail``; ``policy`` is (directory version, rule, decision) for a policy
    decision; ``note`` and ``adapter_reason`` the adapter's words and code about a reject,
    personal), from ``start_time`` (default ``at``) to ``at``."""
    version, rule, decision = policy if policy is not None else (None, None, None)
    record = _complete_record(
        {
            "name": name,
            "status": status,
            "start_time": start_time or at,
            "end_time": at,
            "trace_id": fields.trace_id,
            "span_id": fields.span_id,
            "parent_span_id": None,
            "foreign_operation": fields.foreign_operation,
            "processing_activity_id": fields.processing_activity_id,
            "message_id": fields.message_id,
            "message_type": fields.message_type,
            "purpose": fields.purpose,
            "legal_basis": fields.legal_basis,
            "sender": fields.sender,
            "recipients": fields.recipients,
            "data_categories": fields.data_categories,
            "flags": fields.flags,
            "policy_version": version,
            "policy_rule": rule,
            "policy_decision": decision,
            "reason": reason,
            "digest": fields.digest,
            "key_id": fields.key_id,
            "peer": None,
            "detail": detail if detail is not None else {},
            "case_ref": fields.case_ref,
            "data_subjects": fields.data_subjects,
            "actor": None,
            "note": note,
            "adapter_reason": adapter_reason,
        }
    )
    if fields._bsn_free is not True or name not in OPERATIONS:
        return _checked(record)
    # The fields' strings are known clear (``MessageFields._bsn_free``): search only the
    # record's own. A digit run of the joined strings is a run of one string, so this refuses
    # exactly what _checked refuses (tests/unit/core/test_audit_record.py proves it).
    own = [name, status, rule, decision, reason, note, adapter_reason]
    if ids.bsn_runs("\n".join([*(s for s in own if s is not None), *_strings(record.detail)])):
        return _checked(record)
    return record


def policy_record(decision: PolicyDecision, fields: MessageFields, *, at: datetime) -> Record:
    """The ``policy.decision`` record of a decision about one message: the directory version,
    the rule(s), allow or deny, and for a denial the reason and what was at fault."""
    version = decision.directory_version
    if isinstance(decision, Allowed):
        rules = ",".join(decision.rule_ids())
        return message_record("policy.decision", fields, at=at, policy=(version, rules, "allow"))
    detail = {
        k: v
        for k, v in (
            ("category", decision.category),
            ("flag", decision.flag),
            ("recipient", decision.recipient[0] if decision.recipient else None),
        )
        if v
    }
    return message_record(
        "policy.decision",
        fields,
        at=at,
        status="denied",
        reason=decision.reason,
        detail=detail,
        policy=(version, decision.rule_id, "deny"),
    )


def access_record(actor: Actor, *, at: datetime, fields: MessageFields | None = None) -> Record:
    """The ``access`` record of an actor's request about one message (NEN 7513: who, which
    message and case, in which operation), or about none."""
    if fields is None:
        return _checked(Record(name="access", status="ok", start_time=at, end_time=at, actor=actor))
    return _checked(
        Record(
            name="access",
            status="ok",
            start_time=at,
            end_time=at,
            trace_id=fields.trace_id,
            span_id=fields.span_id,
            message_id=fields.message_id,
            case_ref=fields.case_ref,
            actor=actor,
        )
    )


def _refuse_bsn(record: Record) -> None:
    """Raise :class:`LocalError` naming the first field with a BSN-shaped value, if any."""
    for key, value in _fields(record):
        if key in _OPAQUE_FIELDS:
            continue
        for text in _strings(value):
            if ids.find_bsn(text):
                raise LocalError(f"audit record field {key} holds a BSN-shaped value")


def _searched_strings(record: Record) -> list[str]:
    """The strings of every field the BSN guard searches (``_strings`` of each, with the common
    shapes — a string, nothing, a tuple of strings — handled inline)."""
    out: list[str] = []
    for name in _SEARCHED_FIELDS:
        value = getattr(record, name)
        if type(value) is str:
            out.append(value)
        elif value is None:
            continue
        elif type(value) is tuple and {*map(type, value)} <= _STR:  # only exact strs
            out.extend(value)
        else:
            out.extend(_strings(value))
    return out


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, Actor):
        return [s for s in (value.id, value.role, value.responsible) if s is not None]
    if isinstance(value, dict):  # a detail: values under an opaque name are random, as above
        return [s for k, v in value.items() if k not in _OPAQUE_FIELDS for s in _strings(v)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _strings(v)]
    return []


def _personal_values(record: Record) -> dict[str, JsonValue]:
    actor = record.actor
    personal: dict[str, JsonValue] = {
        "case_ref": record.case_ref,
        "data_subjects": list(record.data_subjects),
        "actor": None
        if actor is None
        else {"id": actor.id, "role": actor.role, "responsible": actor.responsible},
    }
    # Absent, not null: records without a note or reason code keep their leaf.
    if record.note is not None:
        personal["note"] = record.note
    if record.adapter_reason is not None:
        personal["adapter_reason"] = record.adapter_reason
    return personal


#: The message prefix of ``gateway.core.commit.commitment`` for each personal field name.
_COMMIT_PREFIX = {
    name: COMMITMENT_DOMAIN + b"\x00" + name.encode("ascii") + b"\x00"
    for name in ("case_ref", "data_subject", "actor", "note", "adapter_reason")
}
#: HMAC's inner and outer pads (RFC 2104) as translation tables: key byte -> byte ^ pad.
_IPAD = bytes(b ^ 0x36 for b in range(256))
_OPAD = bytes(b ^ 0x5C for b in range(256))


def _commitments(personal: Mapping[str, JsonValue], salt: bytes) -> dict[str, JsonValue]:
    if type(salt) is not bytes or len(salt) != SALT_SIZE:
        raise LocalError(f"commitment salt must be exactly {SALT_SIZE} bytes")
    # commitment(salt, value, field=name) for each value: HMAC-SHA-256 (RFC 2104) keyed with the
    # salt, its two keyed SHA-256 states made once per record and copied per value (the same
    # bytes; the HMAC functions set up OpenSSL afresh on every call, at several times the cost).
    block = salt + bytes(64 - SALT_SIZE)
    inner, outer = hashlib.sha256(block.translate(_IPAD)), hashlib.sha256(block.translate(_OPAD))

    def c(value: str, name: str) -> str:
        i = inner.copy()
        i.update(_COMMIT_PREFIX[name] + value.encode("utf-8"))
        o = outer.copy()
        o.update(i.digest())
        return o.hexdigest()

    out: dict[str, JsonValue] = {}
    case_ref = personal.get("case_ref")
    out["case_ref"] = None if case_ref is None else c(str(case_ref), "case_ref")
    subjects = personal.get("data_subjects")
    hashed: list[JsonValue] = []
    prefix = _COMMIT_PREFIX["data_subject"]
    for s in subjects if isinstance(subjects, list) else ():  # c(str(s), "data_subject"), inline
        i = inner.copy()
        i.update(prefix + str(s).encode("utf-8"))
        o = outer.copy()
        o.update(i.digest())
        hashed.append(o.hexdigest())
    out["data_subjects"] = hashed
    actor = personal.get("actor")
    out["actor"] = None if actor is None else c(canonical_json(actor).decode("utf-8"), "actor")
    for name in ("note", "adapter_reason"):
        value = personal.get(name)
        if value is not None:
            out[name] = c(str(value), name)
    return out


def split(record: Record, salt: bytes) -> tuple[dict[str, JsonValue], dict[str, JsonValue]]:
    """(leaf view, personal part). The leaf view holds commitments where the record holds
    personal values; it is what the Merkle leaf hashes, and it is kept for ever."""
    view, personal, _ = _split(record, salt)
    return view, personal


def stored_parts(record: Record, salt: bytes) -> tuple[bytes, str]:
    """``view_json(view)`` and ``personal_json(personal)`` of ``split(record, salt)``: the same
    bytes and text, the same refusals, in one pass (the walk that builds the view also tells
    whether :func:`view_json`'s fast path applies, so the view is not walked again)."""
    view, personal, plain = _split(record, salt)
    if plain:  # _flat_plain(view) holds: view_json's fast path, as there
        try:
            view_bytes = orjson.dumps(view, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError:
            view_bytes = canonical_json(view)
    else:
        view_bytes = view_json(view)
    return view_bytes, personal_json(personal)


#: ``json.dumps(value, separators=(",", ":"))`` without building an encoder per call (that is
#: all json.dumps does with keyword arguments): how the personal part is stored.
_COMPACT = json.JSONEncoder(separators=(",", ":"))


def personal_json(personal: Mapping[str, JsonValue]) -> str:
    """A personal part as stored: ``json.dumps(personal, separators=(",", ":"))`` (ASCII: json
    escapes every character outside ``" "``..``"~"``). For the shapes :func:`_personal_values`
    makes (strings, ``None``, lists of strings, a map of strings and ``None``; exact types),
    orjson writes the same text, faster, when it writes no byte outside that range: both escape
    ``"``, ``\\`` and the control characters alike (``\\b \\f \\n \\r \\t``, the others
    as lower-case ``\\u00xx``), keep key order and write no spaces; orjson writes DEL and
    non-ASCII characters as they are, json escapes them, so those take json (and so does a lone
    surrogate, which orjson refuses, or any other type)."""
    if type(personal) is dict and _personal_plain(personal):
        try:
            out = orjson.dumps(personal)
        except orjson.JSONEncodeError:
            return _COMPACT.encode(personal)
        if out.isascii() and b"\x7f" not in out:
            return out.decode("ascii")
    return _COMPACT.encode(personal)


def _personal_plain(personal: dict[str, Any]) -> bool:
    """Every key a ``str``, every value ``None``, a ``str``, a list of ``str`` or a map of
    ``str`` keys to ``str`` or ``None`` (exact types)."""
    for key, value in personal.items():
        if type(key) is not str:
            return False
        kind = type(value)
        if value is None or kind is str:
            continue
        if kind is list:
            if not {*map(type, value)} <= _STR:
                return False
        elif kind is dict:
            if not {*map(type, value)} <= _STR:
                return False
            if not {*map(type, value.values())} <= _STR_OR_NONE:
                return False
        else:
            return False
    return True


def _split(record: Record, salt: bytes) -> tuple[dict[str, JsonValue], dict[str, JsonValue], bool]:
    """:func:`split`, and whether :func:`_flat_plain` holds for the view (``False`` when not
    sure), found while building it."""
    if len(salt) != SALT_SIZE:
        raise LocalError(f"audit salt must be {SALT_SIZE} bytes")
    view: dict[str, JsonValue] = {}
    plain = True  # the view's keys are field names (ASCII); its commitments are always plain
    values = record.__dict__  # a plain (not slotted) dataclass: every field is in it
    last_time: datetime | None = None  # start and end are often the same object: format once
    last_text = ""
    for key in _VIEW_FIELDS:
        value = values[key]
        kind = type(value)
        # Exact types first (the common cases, each as its isinstance branch below).
        if kind is str or value is None:
            view[key] = value
        elif kind is tuple:
            view[key] = list(value)
            if plain and not {*map(type, value)} <= _STR:
                plain = False
        elif isinstance(value, datetime):
            if value is not last_time:
                last_time, last_text = value, _iso(value)
            view[key] = last_text
        elif isinstance(value, tuple):
            view[key] = list(value)
            if plain and not {*map(type, value)} <= _STR:
                plain = False
        elif isinstance(value, dict):
            view[key] = copy = dict(value)
            if plain and not _plain_map(copy):
                plain = False
        else:
            view[key] = value
            if plain and not _plain_leaf(value):
                plain = False
    personal = _personal_values(record)
    view["commitments"] = _commitments(personal, salt)
    return view, personal, plain


def leaf_of(view: Mapping[str, JsonValue]) -> bytes:
    """The RFC 9162 leaf hash of a leaf view (canonical JSON, RFC 8785)."""
    return leaf_hash(view_json(view))


def view_json(view: Mapping[str, JsonValue]) -> bytes:
    """``canonical_json(view)`` — the same bytes, the same refusals — for a leaf view, faster:
    one flat pass over the shapes :func:`split` makes (strings, ``None``, booleans, safe
    integers, lists of strings, maps of those) instead of the general walk, and orjson, whose
    UTF-8 check stands in for the per-string one (a string that is not valid Unicode makes it
    raise, and ``canonical_json`` then refuses it). Anything else takes ``canonical_json``."""
    if type(view) is dict and _flat_plain(view):
        try:
            return orjson.dumps(view, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError:
            pass
    return canonical_json(view)


def _flat_plain(view: dict[str, Any]) -> bool:
    """True when every key of ``view`` and of its maps is an ASCII ``str`` and every value is a
    string, ``None``, a boolean, a safe integer, a list of strings, or (at the top) a map of
    those: then ``canonical_json``'s fast path applies, less its check of each string's Unicode
    (exact types only, as there)."""
    for key, value in view.items():
        if type(key) is not str or not key.isascii():
            return False
        if type(value) is dict:
            if not _plain_map(value):
                return False
        elif not _plain_leaf(value):
            return False
    return True


def _plain_map(value: dict[str, Any]) -> bool:
    """:func:`_flat_plain` of a map inside a view: ASCII ``str`` keys, :func:`_plain_leaf`
    values."""
    for k, v in value.items():
        if type(k) is not str or not k.isascii() or not _plain_leaf(v):
            return False
    return True


def _plain_leaf(value: Any) -> bool:
    """A string, ``None``, a boolean, a safe integer or a list of strings (exact types)."""
    kind = type(value)
    if kind is str or value is None or kind is bool:
        return True
    if kind is int:
        return bool(-MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER)
    if kind is list:
        return {*map(type, value)} <= _STR
    return False


def check_personal(
    view: Mapping[str, JsonValue], personal: Mapping[str, JsonValue], salt: bytes
) -> bool:
    """True when the stored personal part and salt produce the leaf view's commitments."""
    if len(salt) != SALT_SIZE:
        return False
    return view.get("commitments") == _commitments(personal, salt)
