"""Coalesced receipts (docs/decisions/0006-coalesced-receipts.md): one signed envelope, several
entries, each with its own inclusion proof against one checkpoint. Building them
(receipt_batch_claims, coalesce) and verify_receipts: an outcome per entry, one bad entry does
not spoil the others, and an envelope that is bad as a whole is refused whole."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from gateway.core import jose, note
from gateway.core.envelope import MAX_CLAIMS_BYTES
from gateway.core.merkle import MerkleTree, leaf_hash
from gateway.core.receipts import (
    RECEIPT_BATCH_BYTES,
    Acknowledgement,
    ContentContradiction,
    SentMessage,
    UnverifiedEntry,
    VerifiedReceipt,
    coalesce,
    receipt_batch_claims,
    verify_receipts,
)
from gateway.errors import LocalError, RemoteError
from schemas import limits
from schemas.bodies import ReceiptBatchBody, ReceiptBody
from schemas.claims import ClaimsBase, claims_to_json, parse_claims
from tests.unit.core.test_receipts import (
    DIRECTORY,
    NOW,
    POL,
    POL_ORG,
    SENDER,
    ZVH,
    ZVH_ORG,
    _directory,
    _info,
    _opened,
    _proof,
    _receipt,
    _view,
)

PURPOSE = "ZVH.AANMELDING"
#: Messages we (POL) sent to the ZVH, with their content digests.
MESSAGES = [f"019cadd4-5620-7d6f-bd7a-8c9a07606e{i:02x}" for i in range(6, 6 + 40)]
DIGESTS = [bytes([i + 1]) * 32 for i in range(40)]


def _sent(i: int, **changes: Any) -> SentMessage:
    return replace(SentMessage(MESSAGES[i], DIGESTS[i], frozenset({ZVH}), PURPOSE), **changes)


def _tree(n: int, size: int | None = None) -> tuple[MerkleTree, bytes, list[bytes]]:
    """A ZVH log whose records 0..n-1 are its ``message.receive`` records of MESSAGES[0..n-1]."""
    views = [
        json.dumps(_view(message_id=MESSAGES[i], digest=jose.b64u_encode(DIGESTS[i]))).encode()
        for i in range(n)
    ]
    leaves = [leaf_hash(v) for v in views] + [leaf_hash(b"x%d" % i) for i in range((size or n) - n)]
    tree = MerkleTree(leaves)
    checkpoint = note.Checkpoint(DIRECTORY.audit_origin(ZVH), len(leaves), tree.root())
    return tree, note.sign_checkpoint(checkpoint, key=ZVH_ORG.audit), views


def _proofs(n: int) -> list[str]:
    tree, signed, views = _tree(n)
    return [
        note.format_tlog_proof(
            note.TlogProof(i, tuple(tree.inclusion_proof(i)), signed, views[i])
        ).decode()
        for i in range(n)
    ]


def _ack(i: int, proof: str, status: str = "delivered", **info: Any) -> Acknowledgement:
    reason = "adapter_rejected" if status == "rejected" else None
    digest = jose.b64u_encode(DIGESTS[i])
    return Acknowledgement(
        MESSAGES[i], status, reason, replace(_info(), digest=digest, **info), proof
    )


def _batch(acks: list[Acknowledgement], directory: Any = DIRECTORY) -> ClaimsBase:
    out = receipt_batch_claims(
        SENDER,
        to=POL,
        entries=acks,
        now=NOW,
        receipt_id="019cadd4-5df0-7bcd-b3e6-9863b7de325b",
        span_id="cc91a8f768444ddf",
        checkpoint=None,
        directory=directory.payload,
    )
    assert out.allowed, out.decision
    return out.claims


def _good(n: int) -> ClaimsBase:
    return _batch([_ack(i, p) for i, p in enumerate(_proofs(n))])


def _check(claims: ClaimsBase, sent: dict[str, SentMessage] | None = None, **kw: Any) -> Any:
    if sent is None:
        sent = {MESSAGES[i]: _sent(i) for i in range(40)}
    return verify_receipts(
        _opened(claims),
        sent=sent,
        directory=kw.pop("directory", DIRECTORY),
        now=NOW,
        checkpoints=kw.pop("checkpoints", note.CheckpointCache()),
    )


def _forged(claims: ClaimsBase, mutate: Any) -> ClaimsBase:
    """``claims`` changed as a forger would, re-validated (the contract still holds)."""
    data = json.loads(claims_to_json(claims))
    mutate(data)
    return parse_claims(json.dumps(data))


# ---------------------------------------------------------------- building


def test_a_batch_is_one_receipt_claims_with_an_entry_per_message() -> None:
    claims = _good(3)
    body = claims.body
    assert isinstance(body, ReceiptBatchBody)
    assert [e.message_id for e in body.entries] == MESSAGES[:3]
    assert [e.inner_jws_sha256 for e in body.entries] == [jose.b64u_encode(d) for d in DIGESTS[:3]]
    # The envelope speaks for its first entry's message, under the shared purpose and basis.
    assert (claims.message_type, claims.in_reply_to) == ("receipt", MESSAGES[0])
    assert (claims.purpose, claims.legal_basis) == (PURPOSE, ("WPG_20", "WGS"))
    assert claims.data_categories == ()
    assert claims.subjects == ()


def test_receipts_of_other_purposes_or_bases_share_no_envelope() -> None:
    a, b = _proofs(2)
    with pytest.raises(LocalError, match="share no envelope"):
        _batch([_ack(0, a), _ack(1, b, purpose="ZVH.INFORMATIE")])
    with pytest.raises(LocalError, match="share no envelope"):
        _batch([_ack(0, a), _ack(1, b, legal_basis=("WGS",))])
    with pytest.raises(LocalError, match="at least two"):
        _batch([_ack(0, a)])


def test_a_batch_the_policy_denies_is_denied_as_a_whole() -> None:
    a, b = _proofs(2)
    out = receipt_batch_claims(
        SENDER,
        to=POL,
        entries=[_ack(0, a), _ack(1, b)],
        now=NOW,
        receipt_id="019cadd4-5df0-7bcd-b3e6-9863b7de325b",
        span_id="cc91a8f768444ddf",
        checkpoint=None,
        directory=_directory(rules=False).payload,
    )
    assert not out.allowed


def test_coalesce_groups_by_key_in_order_and_bounds_each_group() -> None:
    items = [
        ("a", "m1", "delivered", 10),
        ("b", "m2", "delivered", 10),
        ("a", "m3", "delivered", 10),
    ]
    items += [("a", "m1", "accepted", 10), ("a", "m1", "delivered", 10)]  # a repeat: next group

    def group(**kw: Any) -> list[list[str]]:
        return [
            [f"{i[1]}/{i[2]}" for i in g]
            for g in coalesce(
                items,
                key=lambda i: i[0],
                statement=lambda i: (i[1], i[2]),
                size=lambda i: i[3],
                **kw,
            )
        ]

    assert group() == [
        ["m1/delivered", "m3/delivered", "m1/accepted"],
        ["m2/delivered"],
        ["m1/delivered"],
    ]
    assert group(max_entries=2) == [
        ["m1/delivered", "m3/delivered"],
        ["m2/delivered"],
        ["m1/accepted", "m1/delivered"],
    ]
    assert group(max_bytes=25)[0] == ["m1/delivered", "m3/delivered"]
    assert coalesce([], key=str, statement=lambda i: (i, i), size=len) == []


def test_a_full_batch_fits_the_envelope() -> None:
    """MAX_RECEIPT_ENTRIES entries whose proofs fill RECEIPT_BATCH_BYTES (what coalesce lets
    into one envelope) stay inside the claims and envelope limits: it seals and opens."""
    n = limits.MAX_RECEIPT_ENTRIES
    proofs = _proofs(n)
    pad = (RECEIPT_BATCH_BYTES - sum(map(len, proofs))) // n
    assert pad > 0
    claims = _batch([_ack(i, p + "x" * pad) for i, p in enumerate(proofs)])
    assert len(claims_to_json(claims)) < MAX_CLAIMS_BYTES
    opened = _opened(claims)  # sealed and opened under the default envelope limits
    assert isinstance(opened.claims.body, ReceiptBatchBody)
    assert len(opened.claims.body.entries) == n


# ---------------------------------------------------------------- the contract


def _parse_with_body(body: dict[str, Any]) -> ClaimsBase:
    data = json.loads(claims_to_json(_good(2)))
    data["body"] = body
    return parse_claims(json.dumps(data))


def test_the_contract_refuses_duplicate_too_many_or_too_few_entries() -> None:
    entries = json.loads(claims_to_json(_good(2)))["body"]["entries"]
    with pytest.raises(ValidationError, match="same status about the same message"):
        _parse_with_body({"entries": [entries[0], entries[0]]})
    too_many = [entries[0] | {"message_id": m} for m in MESSAGES[: limits.MAX_RECEIPT_ENTRIES + 1]]
    too_many[0] = entries[0]
    with pytest.raises(ValidationError, match="at most 32"):
        _parse_with_body({"entries": too_many})
    with pytest.raises(ValidationError, match="at least 2"):
        _parse_with_body({"entries": entries[:1]})
    with pytest.raises(ValidationError, match="required when"):
        _parse_with_body({"entries": [entries[0], entries[1] | {"status": "rejected"}]})
    with pytest.raises(ValidationError, match=r"entries\[0\]"):
        _forged(_good(2), lambda d: d["body"]["entries"].reverse())  # in_reply_to: the first


def test_one_message_delivered_and_accepted_may_share_an_envelope() -> None:
    (p,) = _proofs(1)
    claims = _batch([_ack(0, p), _ack(0, p, "accepted")])
    outcomes = _check(claims)
    assert [type(o) for o in outcomes] == [VerifiedReceipt, VerifiedReceipt]
    assert [o.body.status for o in outcomes] == ["delivered", "accepted"]


# ---------------------------------------------------------------- verifying


def test_every_entry_of_a_good_batch_verifies_with_one_checkpoint_check() -> None:
    cache = note.CheckpointCache(capacity=4)
    outcomes = _check(_good(5), checkpoints=cache)
    assert all(isinstance(o, VerifiedReceipt) for o in outcomes)
    assert [o.body.message_id for o in outcomes] == MESSAGES[:5]
    assert [o.proof.index for o in outcomes] == [0, 1, 2, 3, 4]
    assert {o.signer for o in outcomes} == {ZVH}
    assert len(cache) == 1


def test_a_single_receipt_is_one_entry() -> None:
    outcomes = verify_receipts(
        _opened(_receipt()),
        sent={"019cadd4-5620-7d6f-bd7a-8c9a07606e06": _sent(0, digest=b"\x07" * 32)},
        directory=DIRECTORY,
        now=NOW,
        checkpoints=note.CheckpointCache(),
    )
    (only,) = outcomes
    assert isinstance(only, VerifiedReceipt)
    assert isinstance(only.message.claims.body, ReceiptBody)


def test_an_entry_about_a_message_sent_to_someone_else_is_ignored_alone() -> None:
    sent = {MESSAGES[i]: _sent(i) for i in range(3)}
    sent[MESSAGES[1]] = _sent(1, recipients=frozenset({"00000001999000003000"}))
    outcomes = _check(_good(3), sent)
    assert isinstance(outcomes[0], VerifiedReceipt)
    assert isinstance(outcomes[2], VerifiedReceipt)
    bad = outcomes[1]
    assert isinstance(bad, UnverifiedEntry)
    assert (bad.error.reason, bad.body.message_id) == ("invalid_claims", MESSAGES[1])
    assert "not a recipient" in bad.error.detail


def test_an_entry_about_a_message_we_never_sent_is_ignored_alone() -> None:
    sent = {MESSAGES[0]: _sent(0)}
    outcomes = _check(_good(2), sent)
    assert isinstance(outcomes[0], VerifiedReceipt)
    assert isinstance(outcomes[1], UnverifiedEntry)
    assert "no such message" in outcomes[1].error.detail


def test_an_entry_with_a_proof_from_another_log_is_ignored_alone() -> None:
    """The second entry's proof is against POL's log key (another log): it does not verify
    under the signer's audit key, and the entries are no longer against one checkpoint, so
    the forger must also put it against ZVH's origin — still another key."""
    proofs = _proofs(2)
    other = _proof(
        _view(message_id=MESSAGES[1], digest=jose.b64u_encode(DIGESTS[1])), key=POL_ORG.audit
    )
    claims = _batch([_ack(0, proofs[0]), _ack(1, other)])
    with pytest.raises(RemoteError, match="different checkpoints") as caught:
        _check(claims)
    assert caught.value.reason == "invalid_claims"
    # Alone in its envelope (or with entries against the same forged checkpoint) it is
    # ignored as a single receipt's would be.
    (alone,) = _check(_receipt_for(1, other))
    assert isinstance(alone, UnverifiedEntry)
    assert alone.error.reason == "bad_signature"


def _receipt_for(i: int, proof: str) -> ClaimsBase:
    from gateway.core.receipts import receipt_claims

    return receipt_claims(
        SENDER,
        info=replace(_info(), digest=jose.b64u_encode(DIGESTS[i])),
        to=POL,
        message_id=MESSAGES[i],
        status="delivered",
        reason=None,
        now=NOW,
        receipt_id="019cadd4-5df0-7bcd-b3e6-9863b7de325a",
        span_id="cc91a8f768444ddf",
        proof=proof,
        checkpoint=None,
        directory=DIRECTORY.payload,
    ).claims


def test_an_entry_whose_proof_is_for_another_record_is_ignored_alone() -> None:
    proofs = _proofs(3)
    swapped = [_ack(0, proofs[0]), _ack(1, proofs[2]), _ack(2, proofs[2])]
    outcomes = _check(_batch(swapped))
    assert isinstance(outcomes[0], VerifiedReceipt)
    assert isinstance(outcomes[2], VerifiedReceipt)
    assert isinstance(outcomes[1], UnverifiedEntry)
    assert "another message" in outcomes[1].error.detail


def test_a_garbage_proof_spoils_only_its_entry() -> None:
    proofs = _proofs(2)
    outcomes = _check(_batch([_ack(0, proofs[0]), _ack(1, "not a proof")]))
    assert isinstance(outcomes[0], VerifiedReceipt)
    assert isinstance(outcomes[1], UnverifiedEntry)
    assert outcomes[1].error.reason == "bad_signature"


def test_an_entry_naming_other_content_is_a_contradiction_the_others_apply() -> None:
    sent = {MESSAGES[i]: _sent(i) for i in range(3)}
    sent[MESSAGES[2]] = _sent(2, digest=b"\xee" * 32)
    outcomes = _check(_good(3), sent)
    assert [type(o) for o in outcomes] == [VerifiedReceipt, VerifiedReceipt, ContentContradiction]
    assert outcomes[2].sent_digest == b"\xee" * 32


def test_a_batch_answering_a_message_of_another_purpose_is_not_applied_to_it() -> None:
    """Doelbinding: an envelope carries one purpose, so an entry about a message we sent under
    another purpose is not a statement under that message's purpose: ignored. The same rule
    holds for a single receipt."""
    sent = {MESSAGES[i]: _sent(i) for i in range(2)}
    sent[MESSAGES[1]] = _sent(1, purpose="ZVH.INFORMATIE")
    outcomes = _check(_good(2), sent)
    assert isinstance(outcomes[0], VerifiedReceipt)
    assert isinstance(outcomes[1], UnverifiedEntry)
    assert "another purpose" in outcomes[1].error.detail
    (single,) = _check(_receipt_for(1, _proofs(2)[1]), sent)
    assert isinstance(single, UnverifiedEntry)


def test_a_batch_the_policy_denies_or_not_a_receipt_is_refused_whole() -> None:
    with pytest.raises(RemoteError) as caught:
        _check(_good(2), directory=_directory(rules=False))
    assert caught.value.reason == "policy_denied"
    from tests.envelope_forge import example_claims

    referral = _opened(example_claims("case.referral"), POL_ORG, ZVH_ORG)
    with pytest.raises(RemoteError, match="not a receipt"):
        verify_receipts(
            referral, sent={}, directory=DIRECTORY, now=NOW, checkpoints=note.CheckpointCache()
        )


def test_verify_receipt_leaves_coalesced_receipts_to_verify_receipts() -> None:
    from gateway.core.receipts import verify_receipt

    with pytest.raises(RemoteError, match="verify_receipts"):
        verify_receipt(
            _opened(_good(2)),
            sent=_sent(0),
            directory=DIRECTORY,
            now=NOW,
            checkpoints=note.CheckpointCache(),
        )


def test_the_example_batch_verifies_entry_by_entry() -> None:
    """tests/examples/receipt-batch.json: two entries, proved against one checkpoint of a log
    whose key is derived from the example's seed."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from tests.envelope_forge import SeededRand, example_claims

    claims = example_claims("receipt-batch")
    body = claims.body
    assert isinstance(body, ReceiptBatchBody)
    key = Ed25519PrivateKey.from_private_bytes(SeededRand("example/receipt-batch/audit")(32))
    verifier = note.ed25519_verifier(
        "veenstad.zvg/00000001999000001000/audit-log", key.public_key()
    )
    checkpoints = {note.parse_tlog_proof(e.proof.encode()).checkpoint for e in body.entries}
    assert len(checkpoints) == 1
    for entry in body.entries:
        parsed = note.parse_tlog_proof(entry.proof.encode())
        assert parsed.extra is not None
        note.verify_tlog_proof(parsed, leaf_hash=leaf_hash(parsed.extra), log_keys=[verifier])
        assert json.loads(parsed.extra)["message_id"] == entry.message_id
    assert claims.in_reply_to == body.entries[0].message_id
    assert claims.created_at + timedelta(days=3) == claims.expires_at
