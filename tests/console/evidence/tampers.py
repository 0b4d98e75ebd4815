"""The tampered-bundle set: each case is a change to one of the golden bundles (fixtures/,
made by make_fixture.py) and the reason code both verifiers must give for it (``None``: the
bundle still verifies, and both verifiers must report the same about it).

Cases that need a member's private key to make (a member signing what it should not) were
made once by make_fixture.py and live in fixtures/signed/; they are listed in :data:`SIGNED`.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).parent / "fixtures"

Bundle = dict[str, Any]


@dataclass(frozen=True)
class Case:
    name: str
    base: str  # "sent" (politie's bundle: receipts, contradiction, cosigned) or "received"
    change: Callable[[Bundle], Bundle | bytes]
    reason: str | None
    what: str


def golden(base: str) -> Bundle:
    loaded: Bundle = json.loads((FIXTURES / f"{base}.json").read_text("utf-8"))
    return loaded


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64u(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _flip(text: str, at: int) -> str:
    """``text`` with the base64 character at ``at`` replaced by another one that keeps the
    encoding canonical (A <-> Q differ in the high bits only)."""
    return text[:at] + ("Q" if text[at] != "Q" else "A") + text[at + 1 :]


def _jws_part(jws: str, part: int, change: Callable[[str], str]) -> str:
    parts = jws.split(".")
    parts[part] = change(parts[part])
    return ".".join(parts)


def _claims(jws: str, change: Callable[[dict[str, Any]], None]) -> str:
    """The JWS with its claims changed (the signature no longer fits)."""

    def edit(payload: str) -> str:
        claims = json.loads(_unb64u(payload))
        change(claims)
        return _b64u(json.dumps(claims, separators=(",", ":"), ensure_ascii=False).encode())

    return _jws_part(jws, 1, edit)


def _set(path: tuple[Any, ...], value: Any) -> Callable[[Bundle], Bundle]:
    def change(doc: Bundle) -> Bundle:
        target = doc
        for key in path[:-1]:
            target = target[key]
        if value is _DELETE:
            del target[path[-1]]
        else:
            target[path[-1]] = value
        return doc

    return change


_DELETE = object()


def _with(change: Callable[[Bundle], None]) -> Callable[[Bundle], Bundle]:
    def apply(doc: Bundle) -> Bundle:
        change(doc)
        return doc

    return apply


def _text(change: Callable[[str], str]) -> Callable[[Bundle], bytes]:
    """A change to the bundle's JSON text (for what a parsed document cannot hold)."""

    def apply(doc: Bundle) -> bytes:
        return change(json.dumps(doc, ensure_ascii=False)).encode("utf-8")

    return apply


def _checkpoint_lines(change: Callable[[list[str]], list[str]]) -> Callable[[Bundle], Bundle]:
    def apply(doc: Bundle) -> Bundle:
        doc["checkpoint"] = "\n".join(change(doc["checkpoint"].split("\n")))
        return doc

    return apply


def _root_flipped(lines: list[str]) -> list[str]:
    return [lines[0], lines[1], _flip(lines[2], 5), *lines[3:]]


def _without_signature_of(who: str) -> Callable[[list[str]], list[str]]:
    return lambda lines: [line for line in lines if not (line.startswith("—") and who in line)]


def _signature_flipped(who: str) -> Callable[[list[str]], list[str]]:
    def change(lines: list[str]) -> list[str]:
        return [
            _flip(line, len(line) - 10) if line.startswith("—") and who in line else line
            for line in lines
        ]

    return change


def _proof_hash_flipped(doc: Bundle) -> None:
    lines = doc["records"][0]["tlog_proof"].split("\n")
    lines[2] = _flip(lines[2], 3)
    doc["records"][0]["tlog_proof"] = "\n".join(lines)


def _proofs_swapped(doc: Bundle) -> None:
    a, b = doc["records"][0], doc["records"][1]
    a["tlog_proof"], b["tlog_proof"] = b["tlog_proof"], a["tlog_proof"]


def _record_of_an_older_checkpoint(doc: Bundle) -> None:
    """A record of the ZVH's log proved in an older checkpoint of that log (the one its receipt
    to politie carried): a genuine proof, but not in the bundle's checkpoint."""
    sent = golden("sent")
    payload = json.loads(_unb64u(sent["receipts"][0]["inner_jws"].split(".")[1]))
    proof: str = payload["body"]["proof"]
    lines = proof.split("\n")
    extra = base64.b64decode(lines[1].removeprefix("extra "))
    index = int(lines[2].removeprefix("index "))
    doc["records"].append(
        {
            "index": index,
            "view": json.loads(extra),
            "tlog_proof": "\n".join(line for line in lines if not line.startswith("extra ")),
        }
    )


def _message_records_dropped(doc: Bundle) -> None:
    doc["records"] = [r for r in doc["records"] if not r["view"].get("digest")]


def _referral_as_receipt(doc: Bundle) -> None:
    """The receipt's bytes replaced by politie's own signed referral of the same message."""
    referral = golden("received")["messages"][0]
    doc["receipts"][0]["inner_jws"] = referral["inner_jws"]
    doc["receipts"][0]["from"] = referral["sender"]


def _contradiction_swapped(doc: Bundle) -> None:
    doc["contradictions"][0]["inner_jws"] = doc["receipts"][0]["inner_jws"]


def _header(jws: str, header: dict[str, Any]) -> str:
    return _jws_part(
        jws, 0, lambda _h: _b64u(json.dumps(header, separators=(",", ":")).encode("ascii"))
    )


def _alg_swapped(doc: Bundle) -> None:
    msg = doc["messages"][0]
    head = json.loads(_unb64u(msg["inner_jws"].split(".")[0]))
    head["alg"] = "Ed25519" if head["alg"] == "ES256" else "ES256"
    msg["inner_jws"] = _header(msg["inner_jws"], head)


def _header_member_added(doc: Bundle) -> None:
    msg = doc["messages"][0]
    head = json.loads(_unb64u(msg["inner_jws"].split(".")[0]))
    msg["inner_jws"] = _header(msg["inner_jws"], {**head, "crit": ["exp"]})


def _purpose_changed(claims: dict[str, Any]) -> None:
    claims["purpose"] = "ZVH.RISICO"


def _status_changed(claims: dict[str, Any]) -> None:
    claims["body"]["status"] = "rejected"


CASES: tuple[Case, ...] = (
    # --- the document
    Case(
        "not_json",
        "sent",
        lambda _d: b'{"format": "zvg-evidence/v1",',
        "bundle_malformed",
        "the file is cut off",
    ),
    Case(
        "byte_order_mark",
        "sent",
        lambda d: b"\xef\xbb\xbf" + json.dumps(d).encode(),
        "bundle_malformed",
        "a UTF-8 byte-order mark before the JSON",
    ),
    Case(
        "not_utf8",
        "sent",
        lambda d: json.dumps(d).encode().replace(b'"zvg-evidence', b'"\xff'),
        "bundle_malformed",
        "a byte that is not UTF-8",
    ),
    Case(
        "duplicate_member",
        "sent",
        _text(lambda t: t.replace('"org": ', '"org": "00000001999000001000", "org": ', 1)),
        "bundle_malformed",
        "org twice: readers disagree on which counts",
    ),
    Case(
        "lone_surrogate",
        "sent",
        _text(lambda t: t.replace('"exported_at": "', '"exported_at": "\\ud800', 1)),
        "bundle_malformed",
        "a string that is no Unicode text",
    ),
    Case(
        "top_level_array",
        "sent",
        lambda d: json.dumps([d]).encode(),
        "bundle_malformed",
        "an array around the bundle",
    ),
    Case(
        "format_v2",
        "sent",
        _set(("format",), "zvg-evidence/v2"),
        "bundle_format",
        "another format version",
    ),
    Case("org_missing", "sent", _set(("org",), _DELETE), "bundle_malformed", "no org"),
    Case(
        "records_not_a_list",
        "sent",
        _set(("records",), {}),
        "bundle_malformed",
        "records is an object",
    ),
    Case(
        "receipts_missing",
        "sent",
        _set(("receipts",), _DELETE),
        "bundle_malformed",
        "no receipts member",
    ),
    Case(
        "record_index_fraction",
        "sent",
        _text(lambda t: t.replace('"index": 0,', '"index": 0.0,', 1)),
        "bundle_malformed",
        "an index written as a fraction",
    ),
    Case(
        "record_index_beyond_2_53",
        "sent",
        _set(("records", 0, "index"), 2**53),
        "bundle_malformed",
        "an index no browser reads exactly",
    ),
    Case(
        "record_index_negative",
        "sent",
        _set(("records", 0, "index"), -1),
        "bundle_malformed",
        "a negative index",
    ),
    Case(
        "view_holds_a_fraction",
        "sent",
        _set(("records", 0, "view", "detail"), {"x": 1.5}),
        "bundle_malformed",
        "a number the canonical form has no spelling for",
    ),
    Case(
        "jws_not_ascii",
        "sent",
        _with(lambda d: d["receipts"][0].update(inner_jws="é." + d["receipts"][0]["inner_jws"])),
        "bundle_malformed",
        "a JWS with a non-ASCII character",
    ),
    # --- who exported it, and its checkpoint
    Case(
        "org_not_a_member",
        "sent",
        _set(("org",), "00000001999000009999"),
        "org_unknown",
        "an organisation the directory does not know",
    ),
    Case(
        "org_of_the_partner",
        "sent",
        _set(("org",), "00000001999000001000"),
        "checkpoint_invalid",
        "the partner's name on politie's checkpoint",
    ),
    Case(
        "checkpoint_root_changed",
        "sent",
        _checkpoint_lines(_root_flipped),
        "checkpoint_invalid",
        "one character of the root hash",
    ),
    Case(
        "checkpoint_log_signature_removed",
        "sent",
        _checkpoint_lines(_without_signature_of("/audit-log ")),
        "checkpoint_invalid",
        "only the witness's cosignature left",
    ),
    Case(
        "checkpoint_log_signature_changed",
        "sent",
        _checkpoint_lines(_signature_flipped("/audit-log ")),
        "checkpoint_invalid",
        "one character of the log's signature",
    ),
    Case(
        "cosignature_changed",
        "sent",
        _checkpoint_lines(_signature_flipped("/witness ")),
        "checkpoint_invalid",
        "a known cosignature that does not verify",
    ),
    Case(
        "cosignature_removed",
        "sent",
        _checkpoint_lines(_without_signature_of("/witness ")),
        None,
        "still verifies, but no partner witnessed it (both report no cosigner)",
    ),
    Case(
        "checkpoint_not_a_note",
        "sent",
        _set(("checkpoint",), "hello\n"),
        "checkpoint_invalid",
        "text without signatures",
    ),
    # --- records
    Case(
        "record_view_changed",
        "sent",
        _set(("records", 0, "view", "purpose"), "ZVH.RISICO"),
        "record_proof_invalid",
        "one field of a record",
    ),
    Case(
        "record_view_member_added",
        "sent",
        _set(("records", 1, "view", "note"), "x"),
        "record_proof_invalid",
        "a member added to a record",
    ),
    Case(
        "record_proof_hash_changed",
        "sent",
        _with(_proof_hash_flipped),
        "record_proof_invalid",
        "one hash of an inclusion proof",
    ),
    Case(
        "record_proofs_swapped",
        "sent",
        _with(_proofs_swapped),
        "record_proof_invalid",
        "two records' proofs exchanged",
    ),
    Case(
        "record_proof_cut",
        "sent",
        _with(lambda d: d["records"][0].update(tlog_proof="c2sp.org/tlog-proof@v1\n")),
        "record_proof_invalid",
        "a proof cut off after its header",
    ),
    Case(
        "record_proof_long_line",
        "sent",
        _with(
            lambda d: d["records"][0].update(
                tlog_proof="c2sp.org/tlog-proof@v1\nindex 0\n" + "A" * 120_000 + "\n\n"
            )
        ),
        "record_proof_invalid",
        "a proof line of 120,000 characters",
    ),
    Case(
        "record_index_moved",
        "sent",
        _set(("records", 0, "index"), 1),
        "record_checkpoint_mismatch",
        "a record claimed at another index",
    ),
    Case(
        "record_from_an_older_checkpoint",
        "received",
        _with(_record_of_an_older_checkpoint),
        "record_checkpoint_mismatch",
        "a genuine proof in another checkpoint of the log",
    ),
    Case(
        "record_removed",
        "sent",
        _with(lambda d: d["records"].pop(0)),
        None,
        "a bundle may hold fewer records: both still verify (and count the same)",
    ),
    # --- signed messages
    Case(
        "message_claims_changed",
        "received",
        _with(
            lambda d: d["messages"][0].update(
                inner_jws=_claims(d["messages"][0]["inner_jws"], _purpose_changed)
            )
        ),
        "message_signature_invalid",
        "the purpose in a signed referral",
    ),
    Case(
        "message_signature_changed",
        "received",
        _with(
            lambda d: d["messages"][0].update(
                inner_jws=_jws_part(d["messages"][0]["inner_jws"], 2, lambda s: _flip(s, 8))
            )
        ),
        "message_signature_invalid",
        "one character of an ES256 signature",
    ),
    Case(
        "message_alg_swapped",
        "received",
        _with(_alg_swapped),
        "message_signature_invalid",
        "ES256 relabelled Ed25519",
    ),
    Case(
        "message_header_member_added",
        "received",
        _with(_header_member_added),
        "message_signature_invalid",
        "a header member outside the profile",
    ),
    Case(
        "message_not_compact",
        "received",
        _with(lambda d: d["messages"][0].update(inner_jws="a.b")),
        "message_signature_invalid",
        "two parts instead of three",
    ),
    Case(
        "message_id_changed",
        "received",
        _set(("messages", 0, "message_id"), "01a2508a-0000-7000-8000-000000000000"),
        "message_unproved",
        "the message named by another id",
    ),
    Case(
        "message_records_dropped",
        "received",
        _with(_message_records_dropped),
        "message_unproved",
        "the records that name the message left out",
    ),
    # --- receipts
    Case(
        "receipt_claims_changed",
        "sent",
        _with(
            lambda d: d["receipts"][0].update(
                inner_jws=_claims(d["receipts"][0]["inner_jws"], _status_changed)
            )
        ),
        "receipt_signature_invalid",
        "accepted turned into rejected",
    ),
    Case(
        "receipt_signature_changed",
        "sent",
        _with(
            lambda d: d["receipts"][0].update(
                inner_jws=_jws_part(d["receipts"][0]["inner_jws"], 2, lambda s: _flip(s, 8))
            )
        ),
        "receipt_signature_invalid",
        "one character of an Ed25519 signature",
    ),
    Case(
        "receipt_from_changed",
        "sent",
        _set(("receipts", 0, "from"), "00000001999000002000"),
        "receipt_mismatch",
        "the receipt said to come from politie itself",
    ),
    Case(
        "receipt_message_changed",
        "sent",
        _set(("receipts", 0, "message_id"), "01a2508a-0000-7000-8000-000000000000"),
        "receipt_mismatch",
        "the receipt said to be about another message",
    ),
    Case(
        "receipt_is_a_referral",
        "sent",
        _with(_referral_as_receipt),
        "receipt_mismatch",
        "a signed referral where a receipt belongs",
    ),
    # --- kept contradictions
    Case(
        "contradiction_swapped",
        "sent",
        _with(_contradiction_swapped),
        "contradiction_unproved",
        "the contradicting receipt swapped for the honest one",
    ),
    Case(
        "contradiction_index_moved",
        "sent",
        _set(("contradictions", 0, "index"), 0),
        "contradiction_unproved",
        "the kept bytes tied to another record",
    ),
    Case(
        "contradiction_index_unproved",
        "sent",
        _set(("contradictions", 0, "index"), 999),
        "contradiction_unproved",
        "the kept bytes tied to a record the bundle does not prove",
    ),
    Case(
        "contradictions_removed",
        "sent",
        _set(("contradictions",), _DELETE),
        None,
        "contradictions is optional: both still verify",
    ),
)

#: Made with a member's key by make_fixture.py (fixtures/signed/<name>.json).
SIGNED: tuple[tuple[str, str | None, str], ...] = (
    (
        "receipt_proof_bad_hash",
        "receipt_proof_invalid",
        "the ZVH signs a receipt whose proof of its record is wrong",
    ),
    (
        "receipt_proof_without_record",
        "receipt_proof_invalid",
        "the ZVH signs a receipt whose proof carries no record",
    ),
    (
        "message_signed_by_stranger",
        "message_signature_invalid",
        "a referral signed by a key the directory does not hold for politie",
    ),
    (
        "receipt_kid_of_another_member",
        "receipt_signature_invalid",
        "the ZVH signs under politie's key id",
    ),
    (
        "cosignature_from_the_future",
        None,
        "a cosignature dated two hours ahead does not count: both report no cosigner",
    ),
)

#: Codes no case here reaches, and why (the test checks this list is exact).
UNREACHED: dict[str, str] = {
    "contradiction_signature_invalid": "needs a log record naming the digest of badly signed "
    "bytes: only a node's own audit key can make one, and the node checks before it keeps",
    "contradiction_mismatch": "needs a log record naming a non-receipt or another peer's "
    "receipt: as above, only a node's own audit key can make one",
}


def build(case: Case) -> bytes:
    changed = case.change(copy.deepcopy(golden(case.base)))
    if isinstance(changed, bytes):
        return changed
    return json.dumps(changed, ensure_ascii=False).encode("utf-8")
