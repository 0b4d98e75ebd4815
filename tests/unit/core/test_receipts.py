"""Receipts as values (gateway/core/receipts.py): building one, and verify_receipt returning the
verified receipt, a content contradiction, or raising for every other failure."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gateway.core import jose, note
from gateway.core.directory import TrustedDirectory
from gateway.core.envelope import VerifiedMessage, open_envelope, seal
from gateway.core.inbound import decide_inbound
from gateway.core.keys import KeyRing, Suite
from gateway.core.merkle import MerkleTree, leaf_hash
from gateway.core.outbound import ContractError, SenderContext
from gateway.core.receipts import (
    RECEIPT_ACTIVITY,
    ContentContradiction,
    ReceiptInfo,
    SentMessage,
    VerifiedReceipt,
    receipt_claims,
    verify_receipt,
)
from gateway.errors import LocalError, RemoteError
from gateway.federation import key_entries
from gateway.keyfiles import PublicKeys
from schemas.bodies import ReceiptBody
from schemas.catalogue import default_catalogue
from schemas.claims import ClaimsBase
from schemas.directory import PartySelector, PolicyRule
from tests.directories import member, signed_directory
from tests.envelope_forge import SeededRand, decryption_key, example_claims, signing_key

CATALOGUE = default_catalogue()
NOW = datetime(2026, 3, 2, 9, 15, 30, tzinfo=UTC)
ZVH = "00000001999000001000"  # the recipient of our message; it signs the receipt
POL = "00000001999000002000"  # us: we sent the message
SENT_DIGEST = b"\x07" * 32
ORIGINAL = "019cadd4-5620-7d6f-bd7a-8c9a07606e06"


@dataclass
class Org:
    oin: str
    role: str
    seed: str

    def __post_init__(self) -> None:
        self.signer = signing_key(Suite.P256, self.seed)
        self.decryption = decryption_key(Suite.P256, self.seed)
        self.audit = Ed25519PrivateKey.from_private_bytes(SeededRand(f"audit/{self.seed}")(32))

    def entry(self) -> Any:
        public = PublicKeys(
            signing=[self.signer.public],
            encryption=[self.decryption.public],
            org=self.oin,
            audit=[self.audit.public_key()],
        )
        keys = key_entries(
            public, not_before=NOW - timedelta(days=30), not_after=NOW + timedelta(days=300)
        )
        return member(self.oin, f"user-{self.seed}", roles=(self.role,), keys=keys)


ZVH_ORG, POL_ORG = Org(ZVH, "ZVH", "zvh"), Org(POL, "POL", "pol")


def _directory(rules: bool = True) -> TrustedDirectory:
    rule = PolicyRule(
        id="pol-to-zvh",
        description="referrals",
        purpose="ZVH.AANMELDING",
        sender=PartySelector(roles=("POL",)),
        recipient=PartySelector(roles=("ZVH",)),
        message_types=("case.referral",),
        data_categories=example_claims("case.referral").data_categories,
        flags=("minors",),
    )
    raw = signed_directory(
        members=[ZVH_ORG.entry(), POL_ORG.entry()],
        rules=[rule] if rules else [],
        issued_at=NOW - timedelta(days=1),
    )
    return TrustedDirectory.first(raw, now=NOW, catalogue=CATALOGUE)


DIRECTORY = _directory()


SENDER = SenderContext(
    org=ZVH,
    node_id="zvh-veenstad-1",
    roles=("ZVH",),
    purpose_defaults={},
    default_ttl_seconds=3 * 86400,
    catalogue=CATALOGUE,
)


def _info() -> ReceiptInfo:
    return ReceiptInfo(
        purpose="ZVH.AANMELDING",
        legal_basis=("WPG_20", "WGS"),
        case_ref="Veenstad-2026-031",
        sender_role="POL",
        our_role="ZVH",
        correlation_id=ORIGINAL,
        trace_id="6bcd73e69863b7de325ae6b5cce972a1",
        digest=jose.b64u_encode(SENT_DIGEST),
    )


def _proof(
    view: dict[str, Any],
    *,
    key: Ed25519PrivateKey = ZVH_ORG.audit,
    origin: str | None = None,
    size: int = 5,
    index: int = 3,
    tamper: Callable[[list[bytes]], list[bytes]] = lambda p: p,
) -> str:
    """A tlog-proof of ``view`` as record ``index`` of a ``size``-record log of ZVH."""
    extra = json.dumps(view, sort_keys=True).encode()
    leaves = [leaf_hash(b"other %d" % i) for i in range(size)]
    leaves[index] = leaf_hash(extra)
    tree = MerkleTree(leaves)
    checkpoint = note.Checkpoint(origin or DIRECTORY.audit_origin(ZVH), size, tree.root())
    signed = note.sign_checkpoint(checkpoint, key=key)
    proof = note.TlogProof(index, tuple(tamper(tree.inclusion_proof(index))), signed, extra)
    return note.format_tlog_proof(proof).decode()


def _view(**changes: Any) -> dict[str, Any]:
    return {
        "name": "message.receive",
        "message_id": ORIGINAL,
        "digest": jose.b64u_encode(SENT_DIGEST),
        **changes,
    }


def _receipt(
    *,
    status: str = "delivered",
    reason: str | None = None,
    proof: str | None = None,
    info: ReceiptInfo | None = None,
    directory: TrustedDirectory = DIRECTORY,
) -> ClaimsBase:
    outbound = receipt_claims(
        SENDER,
        info=info or _info(),
        to=POL,
        message_id=ORIGINAL,
        status=status,
        reason=reason,
        now=NOW,
        receipt_id="019cadd4-5df0-7bcd-b3e6-9863b7de325a",
        span_id="cc91a8f768444ddf",
        proof=proof if proof is not None else _proof(_view()),
        checkpoint=None,
        directory=directory.payload,
    )
    assert outbound.allowed, outbound.decision
    return outbound.claims


def _opened(claims: ClaimsBase, sender: Org = ZVH_ORG, to: Org | None = None) -> VerifiedMessage:
    """``claims`` sealed by ``sender`` to ``to`` (POL) and opened by it."""
    to = to or POL_ORG
    envelope = seal(
        claims, signing_key=sender.signer, recipients=[to.decryption.public], rand=SeededRand("r")
    )
    return open_envelope(
        envelope.raw,
        keyring=KeyRing([to.decryption]),
        sender_keys=DIRECTORY.signing_key,
        now=max(NOW, claims.created_at + timedelta(seconds=5)),
        is_replay=lambda _s, _m: False,
    )


SENT = SentMessage(ORIGINAL, SENT_DIGEST, frozenset({ZVH}), "ZVH.AANMELDING")


def _verify(verified: VerifiedMessage, **changes: Any) -> VerifiedReceipt | ContentContradiction:
    kwargs: dict[str, Any] = {
        "sent": SENT,
        "directory": DIRECTORY,
        "now": NOW,
        "checkpoints": note.CheckpointCache(),
    }
    kwargs.update(changes)
    return verify_receipt(verified, **kwargs)


# ---------------------------------------------------------------- building


def test_receipt_claims_equal_the_contract_example_shape() -> None:
    claims = _receipt()
    example = example_claims("receipt")
    for name in ("message_type", "sender", "recipients", "case_ref", "in_reply_to", "purpose"):
        assert getattr(claims, name) == getattr(example, name), name
    assert claims.legal_basis == example.legal_basis
    assert claims.trace == example.trace
    assert claims.processing_activity == RECEIPT_ACTIVITY
    assert claims.expires_at - claims.created_at == timedelta(days=3)
    assert isinstance(claims.body, ReceiptBody)
    assert claims.body.at == claims.created_at == NOW.replace(microsecond=0)


def test_a_rejected_receipt_carries_its_reason() -> None:
    body = _receipt(status="rejected", reason="policy_denied").body
    assert isinstance(body, ReceiptBody)
    assert (body.status, body.reason) == ("rejected", "policy_denied")


def test_receipt_info_round_trips_through_its_stored_form() -> None:
    info = _info()
    stored = json.loads(json.dumps(info.to_json()))
    assert ReceiptInfo.from_json(stored) == info
    assert list(stored) == [
        "purpose",
        "legal_basis",
        "case_ref",
        "sender_role",
        "our_role",
        "correlation_id",
        "trace_id",
        "digest",
    ]
    del stored["digest"]
    with pytest.raises(LocalError, match="digest"):
        ReceiptInfo.from_json(stored)


def test_the_policy_decides_about_the_receipts_we_send() -> None:
    with pytest.raises(AssertionError, match="no_rule"):
        _receipt(directory=_directory(rules=False))  # no rules: everything denied


# ---------------------------------------------------------------- verifying


def test_a_good_receipt_verifies_and_says_what_was_proved() -> None:
    result = _verify(_opened(_receipt()))
    assert isinstance(result, VerifiedReceipt)
    assert result.signer == ZVH
    assert result.body.status == "delivered"
    assert result.proof.index == 3
    assert result.proof.checkpoint.checkpoint.size == 5


def test_receipts_of_one_batch_share_one_checkpoint_verification() -> None:
    cache = note.CheckpointCache(capacity=2)
    proof = _proof(_view())
    _verify(_opened(_receipt(proof=proof)), checkpoints=cache)
    _verify(_opened(_receipt(status="accepted", proof=proof)), checkpoints=cache)
    assert len(cache) == 1


def test_other_content_is_a_contradiction_not_an_error() -> None:
    result = _verify(
        _opened(_receipt()),
        sent=SentMessage(ORIGINAL, b"\x08" * 32, frozenset({ZVH}), "ZVH.AANMELDING"),
    )
    assert isinstance(result, ContentContradiction)
    assert result.sent_digest == b"\x08" * 32
    assert result.signer == ZVH


def _refused(verified: VerifiedMessage, reason: str, detail: str, **changes: Any) -> None:
    with pytest.raises(RemoteError, match=detail) as caught:
        _verify(verified, **changes)
    assert caught.value.reason == reason


def test_a_receipt_about_a_message_we_did_not_send_is_refused() -> None:
    _refused(_opened(_receipt()), "invalid_claims", "no such message", sent=None)
    other = SentMessage(
        "019cadd4-5620-7d6f-bd7a-8c9a07606e07", SENT_DIGEST, frozenset({ZVH}), "ZVH.AANMELDING"
    )
    _refused(_opened(_receipt()), "invalid_claims", "no such message", sent=other)


def test_a_receipt_from_an_organisation_we_did_not_send_to_is_refused() -> None:
    sent = SentMessage(ORIGINAL, SENT_DIGEST, frozenset({"00000001999000003000"}), "ZVH.AANMELDING")
    _refused(_opened(_receipt()), "invalid_claims", "was not a recipient", sent=sent)


def test_a_receipt_the_policy_denies_is_refused() -> None:
    _refused(_opened(_receipt()), "policy_denied", "denies", directory=_directory(rules=False))


@pytest.mark.parametrize(
    ("proof", "reason", "detail"),
    [
        ("not a proof", "bad_signature", "does not verify"),
        (_proof(_view(), key=POL_ORG.audit), "bad_signature", "does not verify"),
        (
            _proof(_view(), origin="veenstad.zvg/other/audit-log"),
            "bad_signature",
            "does not verify",
        ),
        (_proof(_view(), tamper=lambda p: [bytes(32), *p[1:]]), "bad_signature", "does not verify"),
        (
            _proof(_view(message_id="019cadd4-5620-7d6f-bd7a-8c9a07606e07")),
            "invalid_claims",
            "another",
        ),
        (_proof(_view(digest=jose.b64u_encode(b"\x09" * 32))), "invalid_claims", "another"),
        (_proof(["a", "list"]), "invalid_claims", "another"),  # type: ignore[arg-type]  # a record that is no map, on purpose
    ],
    ids=[
        "garbage",
        "wrong-key",
        "wrong-origin",
        "bad-inclusion",
        "other-message",
        "other-digest",
        "not-a-record",
    ],
)
def test_a_receipt_whose_proof_fails_is_refused(proof: str, reason: str, detail: str) -> None:
    _refused(_opened(_receipt(proof=proof)), reason, detail)


def test_a_receipt_whose_proof_names_no_record_is_refused() -> None:
    parsed = note.parse_tlog_proof(_proof(_view()).encode())
    no_extra = note.format_tlog_proof(
        note.TlogProof(parsed.index, parsed.inclusion_proof, parsed.checkpoint)
    ).decode()
    _refused(_opened(_receipt(proof=no_extra)), "invalid_claims", "no record")


def test_only_the_verifiers_make_verified_values() -> None:
    verified = _opened(_receipt())
    body = verified.claims.body
    assert isinstance(body, ReceiptBody)
    good = _verify(verified)
    assert isinstance(good, VerifiedReceipt)
    with pytest.raises(LocalError, match="verify_receipt"):
        VerifiedReceipt(message=verified, body=body, proof=good.proof)
    with pytest.raises(LocalError, match="verify_receipt"):
        ContentContradiction(message=verified, body=body, sent_digest=SENT_DIGEST)
    with pytest.raises(LocalError, match="verify_tlog_proof"):
        note.VerifiedTlogProof(3, b"", good.proof.checkpoint, None)
    c = good.proof.checkpoint
    with pytest.raises(LocalError, match="open_checkpoint"):
        note.VerifiedCheckpoint(c.checkpoint, c.note, c.log_signature, c.cosignatures)
    with pytest.raises(LocalError, match="first"):
        TrustedDirectory(DIRECTORY.signed, DIRECTORY.raw)


# ---------------------------------------------------------------- inbound decisions


def test_decide_inbound_polices_and_names_the_receipt() -> None:
    verified = _opened(example_claims("case.referral"), POL_ORG, ZVH_ORG)
    allowed = decide_inbound(verified, org=ZVH, directory=DIRECTORY.payload)
    denied = decide_inbound(verified, org=ZVH, directory=_directory(rules=False).payload)
    assert (allowed.state, allowed.receipt_status, allowed.reason) == (
        "delivered",
        "delivered",
        None,
    )
    assert (denied.state, denied.receipt_status, denied.reason) == (
        "refused",
        "rejected",
        "policy_denied",
    )
    assert allowed.roles == ("ZVH",)
    assert allowed.receipt_info.digest == jose.b64u_encode(verified.digest)
    with pytest.raises(RemoteError) as caught:
        decide_inbound(verified, org=POL, directory=DIRECTORY.payload)
    assert caught.value.reason == "not_for_us"


@settings(max_examples=40, deadline=None)
@given(
    st.one_of(
        st.text(max_size=300),
        st.builds(
            lambda good, cut, junk: good[:cut] + junk + good[cut:],
            st.just(_proof(_view())),
            st.integers(min_value=0, max_value=600),
            st.text(max_size=8),
        ),
    )
)
def test_any_proof_text_verifies_or_raises_remote_error(proof: str) -> None:
    """Whatever a partner puts in ``proof``, the verifier answers with a verified receipt or a
    RemoteError, never another exception."""
    try:
        claims = _receipt(proof=proof)
    except ContractError:  # an empty proof: the contract refuses it (decision 0005)
        assume(False)
    try:
        result = _verify(_opened(claims))
    except RemoteError:
        return
    assert isinstance(result, VerifiedReceipt)


def test_the_directory_gives_the_signers_log_keys_valid_at_the_time() -> None:
    origin = DIRECTORY.audit_origin(ZVH)
    keys = DIRECTORY.audit_log_keys(ZVH, NOW)
    assert keys == [note.ed25519_verifier(origin, ZVH_ORG.audit)]
    assert DIRECTORY.audit_log_keys(ZVH, NOW + timedelta(days=400)) == []  # past not_after
    assert DIRECTORY.audit_log_keys("00000001999000009000", NOW) == []  # not a member
