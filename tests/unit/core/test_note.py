"""C2SP signed notes, checkpoints, cosignatures and tlog-proofs.

Threats: a forged or altered checkpoint, a note signed by an unknown or wrong key, a signature
that is malleated, a cosigner quorum that is not really met, a parser tricked by lax base64 or
decimals, oversized input, and proofs that do not prove what they claim. Interoperability is
shown with the published vectors of the Go reference implementation and the C2SP specs.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import struct
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core.merkle import MAX_TREE_SIZE, MerkleTree, leaf_hash
from gateway.core.note import (
    MAX_NOTE_BYTES,
    MAX_NOTE_SIGNATURES,
    MAX_TLOG_PROOF_BYTES,
    MAX_TLOG_PROOF_EXTRA_BYTES,
    SIG_TYPE_COSIGNATURE_V1,
    SIG_TYPE_ED25519,
    Checkpoint,
    NoteSignature,
    NoteVerifier,
    TlogProof,
    VerifiedCheckpoint,
    VerifiedNote,
    VerifiedSignature,
    VerifiedTlogProof,
    add_signatures,
    audit_log_origin,
    cosign_checkpoint,
    cosignature_message,
    ed25519_verifier,
    format_tlog_proof,
    format_vkey,
    key_id,
    open_checkpoint,
    open_note,
    parse_checkpoint,
    parse_note,
    parse_tlog_proof,
    parse_vkey,
    sign_checkpoint,
    sign_note,
    verify_tlog_proof,
    witness_key_name,
)
from gateway.errors import GatewayError, LocalError, RemoteError
from tests.unit.core.c2sp_vectors import (
    GO_BAD_NOTES,
    GO_ENOCH_SIG,
    GO_ENOCH_VKEY,
    GO_NOTE,
    GO_PETER_SIG,
    GO_PETER_VKEY,
    GO_TEXT,
    SPEC_CHECKPOINT_TEXT,
    SPEC_COSIG_TIMESTAMP,
    SPEC_COSIGNED_CHECKPOINT,
    SPEC_SIGNED_NOTE,
    SPEC_TLOG_PROOF_HEAD,
    TD_COSIG_SIGNATURE_B64,
    TD_COSIG_TIMESTAMP,
    TD_COSIG_VKEY,
    TD_ED25519_VKEY,
    go_peter_private_key,
)

FEDERATION = "zvh-veenstad.example"
POLITIE = "00000001003214345000"  # fictional OIN of Politie basisteam Veenstad
GGZ = "00000003273645710000"  # fictional OIN of GGZ Veenland
GEMEENTE = "00000001001234567000"  # fictional OIN of Gemeente Veenstad
ORIGIN = audit_log_origin(FEDERATION, POLITIE)
NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


def fixed_key(label: str) -> Ed25519PrivateKey:
    """A deterministic test key (tests need no randomness to be meaningful)."""
    return Ed25519PrivateKey.from_private_bytes(leaf_hash(label.encode()))


LOG_KEY = fixed_key("politie audit log")
LOG = ed25519_verifier(ORIGIN, LOG_KEY)
WITNESSES = {
    org: (fixed_key(f"witness {org}"), witness_key_name(FEDERATION, org))
    for org in (GGZ, GEMEENTE, "00000001009876543000")
}
COSIGNERS = [
    ed25519_verifier(name, key, sig_type=SIG_TYPE_COSIGNATURE_V1)
    for key, name in WITNESSES.values()
]
TIME = int(NOW.timestamp())


def tree_of(size: int) -> MerkleTree:
    return MerkleTree(leaf_hash(b"record %d" % i) for i in range(size))


def checkpoint_of(tree: MerkleTree, size: int | None = None) -> Checkpoint:
    size = tree.size if size is None else size
    return Checkpoint(ORIGIN, size, tree.root(size))


def cosigned(note: bytes, orgs: list[str], timestamp: int = TIME) -> bytes:
    text = parse_note(note).text
    lines = []
    for org in orgs:
        key, name = WITNESSES[org]
        lines.append(cosign_checkpoint(text, name=name, key=key, timestamp=timestamp))
    return add_signatures(note, lines)


def reason(exc: pytest.ExceptionInfo[RemoteError]) -> str:
    return exc.value.reason


# ---------------------------------------------------------------- keys and verifier keys


def test_key_ids_match_published_vectors() -> None:
    peter = parse_vkey(GO_PETER_VKEY)
    assert peter.key_id.hex() == "c74f20a3"
    assert key_id("PeterNeumann", SIG_TYPE_ED25519, peter.public_key).hex() == "c74f20a3"
    cosigner = parse_vkey(TD_COSIG_VKEY)
    assert cosigner.sig_type == SIG_TYPE_COSIGNATURE_V1
    assert cosigner.key_id.hex() == "da77ade7"
    assert parse_vkey(TD_ED25519_VKEY).key_id.hex() == "7997405c"


@pytest.mark.parametrize("vkey", [GO_PETER_VKEY, GO_ENOCH_VKEY, TD_COSIG_VKEY, TD_ED25519_VKEY])
def test_vkey_round_trips(vkey: str) -> None:
    verifier = parse_vkey(vkey)
    assert verifier.vkey == vkey
    assert format_vkey(verifier.name, verifier.sig_type, verifier.public_key) == vkey


def test_go_private_key_gives_the_published_verifier_key() -> None:
    assert ed25519_verifier("PeterNeumann", go_peter_private_key()).vkey == GO_PETER_VKEY


def test_vkey_manglings_are_refused() -> None:
    # note_test.go TestNewVerifier: every proper substring and every single-byte increment.
    raw = GO_PETER_VKEY.encode()
    for i in range(len(raw) + 1):
        for j in range(i + 1, len(raw) + 1):
            if (i, j) != (0, len(raw)):
                with pytest.raises(LocalError):
                    parse_vkey(raw[i:j].decode())
    for i in range(len(raw)):
        mangled = raw[:i] + bytes([raw[i] + 1]) + raw[i + 1 :]
        with pytest.raises(LocalError):
            parse_vkey(mangled.decode())


@pytest.mark.parametrize(
    "vkey",
    [
        # note_test.go: wrong key length and unknown algorithm, each with an adjusted key hash.
        "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
        "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        # Ours: uppercase key id, ECDSA type, wrong key id, no key, bad name.
        "PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "rekor.sigstore.dev+00000000+AjBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABNhtmPtrWm3U1eQXBogSMdGvXwBcK",
        "PeterNeumann+00000000+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a3",
        "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    ],
)
def test_bad_vkeys_are_refused(vkey: str) -> None:
    with pytest.raises(LocalError):
        parse_vkey(vkey)


def test_verifier_refuses_unsupported_types_and_keys() -> None:
    with pytest.raises(LocalError):
        NoteVerifier("x.example/log", 0x02, bytes(32))
    with pytest.raises(LocalError):
        NoteVerifier("x.example/log", SIG_TYPE_ED25519, bytes(31))
    with pytest.raises(LocalError):
        NoteVerifier("has+plus", SIG_TYPE_ED25519, LOG.public_key)
    with pytest.raises(LocalError):
        NoteVerifier("a" * 256, SIG_TYPE_ED25519, LOG.public_key)


# ---------------------------------------------------------------- signed notes (Go vectors)


def test_sign_reproduces_the_go_note_byte_for_byte() -> None:
    assert sign_note(GO_TEXT, name="PeterNeumann", key=go_peter_private_key()) == GO_NOTE


def test_open_verifies_known_and_keeps_unknown_signatures() -> None:
    peter, enoch = parse_vkey(GO_PETER_VKEY), parse_vkey(GO_ENOCH_VKEY)
    note = open_note(GO_NOTE + GO_ENOCH_SIG, [peter])
    assert note.text == GO_TEXT
    assert [v.verifier for v in note.verified] == [peter]
    assert [s.name for s in note.unverified] == ["EnochRoot"]
    both = open_note(GO_NOTE + GO_ENOCH_SIG, [peter, enoch])
    assert [v.verifier for v in both.verified] == [peter, enoch]
    assert both.unverified == ()
    assert both.raw == GO_NOTE + GO_ENOCH_SIG


def test_open_refuses_a_note_without_a_known_signature() -> None:
    with pytest.raises(RemoteError) as exc:
        open_note(GO_NOTE + GO_ENOCH_SIG, [])
    assert reason(exc) == "bad_signature"
    with pytest.raises(RemoteError) as exc:
        open_note(GO_NOTE, [parse_vkey(GO_ENOCH_VKEY)])
    assert reason(exc) == "bad_signature"


def test_open_refuses_an_invalid_signature_from_a_known_key() -> None:
    mangled = GO_PETER_SIG[:60] + b"ABCD" + GO_PETER_SIG[60:]
    with pytest.raises(RemoteError) as exc:
        open_note(GO_TEXT + b"\n" + mangled, [parse_vkey(GO_PETER_VKEY)])
    assert reason(exc) == "bad_signature"
    # Even next to a valid one: a known key that fails refuses the whole note.
    with pytest.raises(RemoteError):
        open_note(GO_NOTE + mangled, [parse_vkey(GO_PETER_VKEY)])


def test_open_refuses_a_changed_text() -> None:
    altered = GO_NOTE.replace(b"cryptography", b"cryptographY")
    with pytest.raises(RemoteError) as exc:
        open_note(altered, [parse_vkey(GO_PETER_VKEY)])
    assert reason(exc) == "bad_signature"


def test_open_ignores_a_signature_matching_name_or_id_but_not_both() -> None:
    peter = parse_vkey(GO_PETER_VKEY)
    renamed = GO_TEXT + b"\n" + GO_PETER_SIG.replace(b"PeterNeumann", b"PeterNeuman")
    with pytest.raises(RemoteError):  # unknown, hence no known signature at all
        open_note(renamed, [peter])
    note = open_note(GO_NOTE + GO_PETER_SIG.replace(b"PeterNeumann", b"PeterNeuman"), [peter])
    assert [s.name for s in note.unverified] == ["PeterNeuman"]


def test_duplicate_signature_lines_count_once() -> None:
    enoch_abcd = GO_ENOCH_SIG[:60] + b"ABCD" + GO_ENOCH_SIG[60:]
    raw = GO_NOTE + GO_PETER_SIG + GO_ENOCH_SIG + GO_ENOCH_SIG + enoch_abcd
    note = open_note(raw, [parse_vkey(GO_PETER_VKEY)])
    assert len(note.verified) == 1
    assert len(note.unverified) == 2


def test_ambiguous_verifiers_are_a_configuration_error() -> None:
    peter = parse_vkey(GO_PETER_VKEY)
    impostor = ed25519_verifier("PeterNeumann", fixed_key("impostor"))
    object.__setattr__(impostor, "key_id", peter.key_id)  # a forged key-id collision
    with pytest.raises(LocalError):
        open_note(GO_NOTE, [peter, impostor])
    assert open_note(GO_NOTE, [peter, peter]).verified  # identical duplicates are harmless


@pytest.mark.parametrize("raw", GO_BAD_NOTES)
def test_go_malformed_notes_are_refused(raw: bytes) -> None:
    with pytest.raises(RemoteError) as exc:
        open_note(raw, [parse_vkey(GO_PETER_VKEY)])
    assert reason(exc) == "malformed"


def test_signature_count_limit() -> None:
    peter = parse_vkey(GO_PETER_VKEY)
    junk = [
        f"\u2014 junk{i}.example {base64.b64encode(bytes(68)).decode()}\n".encode()
        for i in range(MAX_NOTE_SIGNATURES)
    ]
    assert open_note(GO_NOTE + b"".join(junk[:-1]), [peter]).verified
    with pytest.raises(RemoteError) as exc:
        open_note(GO_NOTE + b"".join(junk), [peter])
    assert reason(exc) == "too_large"


def test_wrong_length_signature_from_a_known_key_is_refused() -> None:
    peter = parse_vkey(GO_PETER_VKEY)
    short = NoteSignature("PeterNeumann", peter.key_id, bytes(10)).line.encode()
    with pytest.raises(RemoteError) as exc:
        open_note(GO_TEXT + b"\n" + short, [peter])
    assert reason(exc) == "bad_signature"


def test_tlog_proof_size_limit() -> None:
    with pytest.raises(RemoteError) as exc:
        parse_tlog_proof(b"c2sp.org/tlog-proof@v1\n" + b"x" * MAX_TLOG_PROOF_BYTES)
    assert reason(exc) == "too_large"


def test_note_size_limit() -> None:
    big = b"x" * MAX_NOTE_BYTES + b"\n\n" + GO_PETER_SIG
    with pytest.raises(RemoteError) as exc:
        parse_note(big)
    assert reason(exc) == "too_large"


def test_non_canonical_base64_signature_is_refused() -> None:
    blob = GO_PETER_SIG.split(b" ")[2].rstrip(b"\n")
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = blob.rstrip(b"=")[-1]
    loose = blob.rstrip(b"=")[:-1] + bytes([alphabet[alphabet.index(last) + 1]]) + b"="
    assert base64.b64decode(loose) == base64.b64decode(blob), "same bytes, other encoding"
    with pytest.raises(RemoteError) as exc:
        parse_note(GO_TEXT + b"\n" + GO_PETER_SIG.replace(blob, loose))
    assert reason(exc) == "malformed"


@pytest.mark.parametrize(
    "line",
    [
        "- PeterNeumann AAAAAAA=",  # hyphen, not em dash
        "\u2014PeterNeumann AAAAAAA=",  # no space
        "\u2014 PeterNeumann",  # no signature
        "\u2014 PeterNeumann AAAA",  # 3 bytes: shorter than a key ID plus a signature
        "\u2014 PeterNeumann AAAAAAA= extra",
        "\u2014 Peter+Neumann AAAAAAA=",
        "\u2014  AAAAAAA=",
        "\u2014 PeterNeumann AAAAAAA*",
    ],
)
def test_malformed_signature_lines_are_refused(line: str) -> None:
    with pytest.raises(RemoteError) as exc:
        parse_note(GO_TEXT + b"\n" + line.encode() + b"\n")
    assert reason(exc) == "malformed"


def test_spec_example_note_splits_at_the_last_blank_line() -> None:
    note = parse_note(SPEC_SIGNED_NOTE)
    assert note.text.endswith("\n\ned è subito sera.\n".encode())
    assert [s.name for s in note.signatures] == ["quasimodo.example/salvatore"]
    assert len(note.signatures[0].signature) == 64
    # The spec does not publish the poet's key: with only other keys known, the note fails.
    with pytest.raises(RemoteError) as exc:
        open_note(SPEC_SIGNED_NOTE, [parse_vkey(GO_PETER_VKEY)])
    assert reason(exc) == "bad_signature"


@pytest.mark.parametrize(
    "text",
    [b"no newline", b"ctrl\x07char\n", b"\xff\xfe\n", b"", b"x" * MAX_NOTE_BYTES + b"\n"],
)
def test_sign_note_refuses_bad_text(text: bytes) -> None:
    with pytest.raises(LocalError):
        sign_note(text, name="PeterNeumann", key=go_peter_private_key())


@pytest.mark.parametrize("name", ["", "two words", "a+b", "tab\tname", "line\nname", "a" * 256])
def test_sign_note_refuses_bad_names(name: str) -> None:
    with pytest.raises(LocalError):
        sign_note(GO_TEXT, name=name, key=go_peter_private_key())


def test_log_key_never_signs_text_shaped_like_a_cosigned_message() -> None:
    text = cosignature_message(SPEC_CHECKPOINT_TEXT, 1)
    with pytest.raises(LocalError):
        sign_note(text, name=ORIGIN, key=LOG_KEY)


def test_add_signatures_merges_and_dedupes() -> None:
    merged = add_signatures(GO_NOTE, [GO_ENOCH_SIG.decode(), GO_PETER_SIG.decode()])
    assert merged == GO_NOTE + GO_ENOCH_SIG
    with pytest.raises(RemoteError):
        add_signatures(GO_NOTE, [GO_ENOCH_SIG.decode().rstrip("\n")])
    with pytest.raises(RemoteError):
        add_signatures(GO_NOTE, ["\u2014 bad line\n"])


# ---------------------------------------------------------------- checkpoints


def test_spec_checkpoint_example_parses() -> None:
    note = parse_note(SPEC_COSIGNED_CHECKPOINT)
    checkpoint = parse_checkpoint(note.text)
    assert checkpoint.origin == "example.com/behind-the-sofa"
    assert checkpoint.size == 20852163
    assert base64.b64encode(checkpoint.root) == b"CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I="
    assert checkpoint.text == SPEC_CHECKPOINT_TEXT


@settings(max_examples=100)
@given(
    origin=st.text(
        st.characters(min_codepoint=0x20, exclude_categories=["Cs"]), min_size=1, max_size=60
    ),
    size=st.integers(0, MAX_TREE_SIZE),
    root=st.binary(min_size=32, max_size=32),
)
def test_checkpoint_text_round_trips(origin: str, size: int, root: bytes) -> None:
    checkpoint = Checkpoint(origin, size, root)
    assert parse_checkpoint(checkpoint.text) == checkpoint


ROOT_B64 = base64.b64encode(bytes(range(32))).decode()


@pytest.mark.parametrize(
    "text",
    [
        f"{ORIGIN}\n01\n{ROOT_B64}\n",  # leading zero
        f"{ORIGIN}\n-1\n{ROOT_B64}\n",
        f"{ORIGIN}\n+1\n{ROOT_B64}\n",
        f"{ORIGIN}\n 1\n{ROOT_B64}\n",
        f"{ORIGIN}\n\uff11\n{ROOT_B64}\n",  # fullwidth digit one: isdigit() would accept it
        f"{ORIGIN}\n{2**63}\n{ROOT_B64}\n",  # above MAX_TREE_SIZE
        f"{ORIGIN}\n{'9' * 40}\n{ROOT_B64}\n",
        f"{ORIGIN}\n1\n{ROOT_B64[:-4]}\n",  # 30 bytes
        f"{ORIGIN}\n1\n{ROOT_B64.replace('=', '')}\n",  # missing padding
        f"{ORIGIN}\n1\n{ROOT_B64[:-2]}9=\n",  # non-canonical trailing bits
        f"{ORIGIN}\n1\n",  # two lines
        f"\n1\n{ROOT_B64}\n",  # empty origin
        f"{'o' * 256}\n1\n{ROOT_B64}\n",  # origin too long
        f"{ORIGIN}\n1\n{ROOT_B64}",  # no final newline
        f"{ORIGIN}\n1\n{ROOT_B64}\nextension\n",  # extension lines not accepted by default
        f"{ORIGIN}\n1\n{ROOT_B64}\n\n",  # empty extension line
    ],
)
def test_malformed_checkpoints_are_refused(text: str) -> None:
    with pytest.raises(RemoteError) as exc:
        parse_checkpoint(text.encode())
    assert reason(exc) == "malformed"


def test_extension_lines_only_when_asked_and_bounded() -> None:
    text = f"{ORIGIN}\n1\n{ROOT_B64}\nrekor.sigstore.dev - 2605736670972794746\n".encode()
    assert parse_checkpoint(text, allow_extensions=True).extensions == (
        "rekor.sigstore.dev - 2605736670972794746",
    )
    many = f"{ORIGIN}\n1\n{ROOT_B64}\n" + "x\n" * 17
    with pytest.raises(RemoteError):
        parse_checkpoint(many.encode(), allow_extensions=True)


@pytest.mark.parametrize(
    ("origin", "size", "root", "extensions"),
    [
        ("", 1, bytes(32), ()),
        ("two\nlines", 1, bytes(32), ()),
        (ORIGIN, -1, bytes(32), ()),
        (ORIGIN, MAX_TREE_SIZE + 1, bytes(32), ()),
        (ORIGIN, 1, bytes(31), ()),
        (ORIGIN, 1, bytes(32), ("",)),
        ("\ud800", 1, bytes(32), ()),  # lone surrogate: not encodable
    ],
)
def test_checkpoint_construction_refuses_bad_values(
    origin: str, size: int, root: bytes, extensions: tuple[str, ...]
) -> None:
    with pytest.raises(LocalError):
        Checkpoint(origin, size, root, extensions)


def test_signed_checkpoint_opens_with_the_log_key() -> None:
    tree = tree_of(13)
    raw = sign_checkpoint(checkpoint_of(tree), key=LOG_KEY)
    assert raw.startswith(f"{ORIGIN}\n13\n".encode())
    verified = open_checkpoint(raw, log_keys=[LOG])
    assert verified.checkpoint == checkpoint_of(tree)
    assert verified.log_signature.verifier == LOG
    assert verified.note.raw == raw
    assert verified.cosignatures == ()


def test_checkpoint_with_changed_size_or_root_fails() -> None:
    raw = sign_checkpoint(checkpoint_of(tree_of(13)), key=LOG_KEY)
    for altered in (
        raw.replace(b"\n13\n", b"\n14\n", 1),
        raw.replace(base64.b64encode(tree_of(13).root()), base64.b64encode(tree_of(12).root())),
    ):
        assert altered != raw
        with pytest.raises(RemoteError) as exc:
            open_checkpoint(altered, log_keys=[LOG])
        assert reason(exc) == "bad_signature"


def test_checkpoint_signed_by_another_key_or_for_another_origin_fails() -> None:
    attacker = fixed_key("attacker")
    forged = sign_checkpoint(checkpoint_of(tree_of(5)), key=attacker)
    with pytest.raises(RemoteError) as exc:
        open_checkpoint(forged, log_keys=[LOG])
    assert reason(exc) == "bad_signature"
    # A real log key signing a checkpoint that claims another log's origin does not count.
    other = Checkpoint(audit_log_origin(FEDERATION, GGZ), 5, tree_of(5).root())
    wrong_origin = sign_note(other.text, name=ORIGIN, key=LOG_KEY)
    with pytest.raises(RemoteError) as exc:
        open_checkpoint(wrong_origin, log_keys=[LOG])
    assert reason(exc) == "bad_signature"


def test_checkpoint_during_log_key_rotation() -> None:
    new_key = fixed_key("politie audit log 2027")
    new_log = ed25519_verifier(ORIGIN, new_key)
    raw = sign_checkpoint(checkpoint_of(tree_of(3)), key=new_key)
    assert open_checkpoint(raw, log_keys=[LOG, new_log]).log_signature.verifier == new_log
    with pytest.raises(RemoteError):
        open_checkpoint(raw, log_keys=[LOG])


def test_checkpoint_config_errors_are_local() -> None:
    raw = sign_checkpoint(checkpoint_of(tree_of(3)), key=LOG_KEY)
    with pytest.raises(LocalError):
        open_checkpoint(raw, log_keys=[COSIGNERS[0]])
    with pytest.raises(LocalError):
        open_checkpoint(raw, log_keys=[LOG], cosigners=[LOG])
    with pytest.raises(LocalError):
        open_checkpoint(raw, log_keys=[LOG], cosigners=COSIGNERS[:1], quorum=2)
    with pytest.raises(LocalError):
        open_checkpoint(raw, log_keys=[LOG], now=datetime(2026, 1, 1))  # noqa: DTZ001 - naive on purpose


# ---------------------------------------------------------------- cosignatures


def test_cosignature_message_is_the_spec_format() -> None:
    assert cosignature_message(SPEC_CHECKPOINT_TEXT, SPEC_COSIG_TIMESTAMP) == (
        b"cosignature/v1\ntime 1679315147\n" + SPEC_CHECKPOINT_TEXT
    )


def test_spec_and_go_cosignature_timestamps_decode() -> None:
    spec_sig = parse_note(SPEC_COSIGNED_CHECKPOINT).signatures[1]
    assert spec_sig.name == "witness.example.com/w1"
    assert spec_sig.timestamp == SPEC_COSIG_TIMESTAMP
    blob = base64.b64decode(TD_COSIG_SIGNATURE_B64)
    assert NoteSignature("w", blob[:4], blob[4:]).timestamp == TD_COSIG_TIMESTAMP
    assert parse_note(SPEC_COSIGNED_CHECKPOINT).signatures[0].timestamp is None


def test_cosignature_verifies_and_carries_its_time() -> None:
    raw = cosigned(sign_checkpoint(checkpoint_of(tree_of(9)), key=LOG_KEY), [GGZ, GEMEENTE])
    verified = open_checkpoint(raw, log_keys=[LOG], cosigners=COSIGNERS, quorum=2)
    assert [c.verifier.name for c in verified.cosignatures] == [
        witness_key_name(FEDERATION, GGZ),
        witness_key_name(FEDERATION, GEMEENTE),
    ]
    assert {c.timestamp for c in verified.cosignatures} == {TIME}


def test_cosignature_line_is_deterministic_and_pinned() -> None:
    # Regression vector (ours; Ed25519 is deterministic): the Go example key as a cosigner of
    # the spec's checkpoint at the spec's timestamp. Key ID = SHA-256(name\n 0x04 key)[:4].
    line = cosign_checkpoint(
        SPEC_CHECKPOINT_TEXT,
        name="PeterNeumann",
        key=go_peter_private_key(),
        timestamp=SPEC_COSIG_TIMESTAMP,
    )
    public = go_peter_private_key().public_key()
    blob = base64.b64decode(line.split(" ")[2])
    # Recomputed here by hand from the spec text, not with the module's helpers.
    expected_id = hashlib.sha256(b"PeterNeumann\n\x04" + public.public_bytes_raw()).digest()[:4]
    assert blob[:4] == expected_id != parse_vkey(GO_PETER_VKEY).key_id
    assert struct.unpack(">Q", blob[4:12])[0] == SPEC_COSIG_TIMESTAMP
    public.verify(blob[12:], b"cosignature/v1\ntime 1679315147\n" + SPEC_CHECKPOINT_TEXT)
    assert line == PINNED_COSIGNATURE_LINE


PINNED_COSIGNATURE_LINE = (
    "\u2014 PeterNeumann GLl4CwAAAABkGFDLJeR//pqzhnEKVvEm2wWbh2RJ6oru5+cUUfm5X9NnlaGr8aSH9QE5RVZD"
    "4QGlxl2F5UpVIIi94p178KLfqPPsAA==\n"
)


def test_a_log_signature_key_does_not_verify_cosignatures() -> None:
    # Same Ed25519 key, type 0x01 verifier: the 0x04 cosignature line is unknown to it.
    text = SPEC_CHECKPOINT_TEXT
    line = cosign_checkpoint(text, name="PeterNeumann", key=go_peter_private_key(), timestamp=5)
    with pytest.raises(RemoteError):
        open_note(text + b"\n" + line.encode(), [parse_vkey(GO_PETER_VKEY)])


def test_cosignature_covers_extension_lines_and_timestamp() -> None:
    key, name = WITNESSES[GGZ]
    text = f"{ORIGIN}\n1\n{ROOT_B64}\nExtendo\n".encode()
    line = cosign_checkpoint(text, name=name, key=key, timestamp=TIME).encode()
    cosigner = COSIGNERS[0]
    assert open_note(text + b"\n" + line, [cosigner]).verified[0].timestamp == TIME
    with pytest.raises(RemoteError):
        open_note(text.replace(b"Extendo", b"Extende") + b"\n" + line, [cosigner])
    blob = base64.b64decode(line.split(b" ")[2])
    moved = blob[:4] + struct.pack(">Q", TIME + 1) + blob[12:]
    relined = line.replace(line.split(b" ")[2], base64.b64encode(moved) + b"\n")
    with pytest.raises(RemoteError):
        open_note(text + b"\n" + relined, [cosigner])


def test_cosign_refuses_bad_timestamps() -> None:
    key, name = WITNESSES[GGZ]
    for timestamp in (-1, 2**63):
        with pytest.raises(LocalError):
            cosign_checkpoint(SPEC_CHECKPOINT_TEXT, name=name, key=key, timestamp=timestamp)


def test_cosignature_timestamp_above_2_63_is_refused_when_verifying() -> None:
    key, name = WITNESSES[GGZ]
    signature = key.sign(cosignature_message(SPEC_CHECKPOINT_TEXT, 2**63))
    bad = NoteSignature(name, COSIGNERS[0].key_id, struct.pack(">Q", 2**63) + signature)
    with pytest.raises(RemoteError):
        open_note(SPEC_CHECKPOINT_TEXT + b"\n" + bad.line.encode(), [COSIGNERS[0]])


def test_quorum_counts_distinct_valid_cosigners() -> None:
    base = sign_checkpoint(checkpoint_of(tree_of(9)), key=LOG_KEY)
    one = cosigned(base, [GGZ])
    assert len(open_checkpoint(one, log_keys=[LOG], cosigners=COSIGNERS, quorum=1).cosignatures)
    with pytest.raises(RemoteError) as exc:
        open_checkpoint(one, log_keys=[LOG], cosigners=COSIGNERS, quorum=2)
    assert reason(exc) == "bad_signature"
    # The same witness twice (two timestamps) is still one witness.
    twice = cosigned(one, [GGZ], timestamp=TIME + 60)
    with pytest.raises(RemoteError):
        open_checkpoint(twice, log_keys=[LOG], cosigners=COSIGNERS, quorum=2)
    # Unknown cosigners do not count, and do not hurt.
    stranger = fixed_key("stranger")
    extra = cosign_checkpoint(
        parse_note(one).text, name="stranger.example/w", key=stranger, timestamp=TIME
    )
    assert open_checkpoint(
        add_signatures(one, [extra]), log_keys=[LOG], cosigners=COSIGNERS, quorum=1
    )


def test_a_forged_cosignature_from_a_known_witness_refuses_the_checkpoint() -> None:
    base = sign_checkpoint(checkpoint_of(tree_of(9)), key=LOG_KEY)
    key, name = WITNESSES[GGZ]
    other_text = checkpoint_of(tree_of(9), 8).text
    line = cosign_checkpoint(other_text, name=name, key=key, timestamp=TIME)  # for another head
    with pytest.raises(RemoteError) as exc:
        open_checkpoint(add_signatures(base, [line]), log_keys=[LOG], cosigners=COSIGNERS)
    assert reason(exc) == "bad_signature"


def test_future_cosignatures_do_not_count_toward_quorum() -> None:
    base = sign_checkpoint(checkpoint_of(tree_of(9)), key=LOG_KEY)
    future = cosigned(base, [GGZ], timestamp=TIME + 3600)
    assert open_checkpoint(future, log_keys=[LOG], cosigners=COSIGNERS, quorum=1)
    with pytest.raises(RemoteError):
        open_checkpoint(future, log_keys=[LOG], cosigners=COSIGNERS, quorum=1, now=NOW)
    slightly = cosigned(base, [GGZ], timestamp=TIME + 60)
    assert open_checkpoint(slightly, log_keys=[LOG], cosigners=COSIGNERS, quorum=1, now=NOW)


# ---------------------------------------------------------------- tlog-proof


def make_proof(tree: MerkleTree, index: int, note: bytes, extra: bytes | None = None) -> bytes:
    size = parse_checkpoint(parse_note(note).text).size
    proof = TlogProof(index, tuple(tree.inclusion_proof(index, size)), note, extra)
    return format_tlog_proof(proof)


def test_tlog_proof_round_trips_and_verifies_for_every_leaf() -> None:
    tree = tree_of(13)
    note = cosigned(sign_checkpoint(checkpoint_of(tree), key=LOG_KEY), [GGZ, GEMEENTE])
    for index in range(13):
        raw = make_proof(
            tree, index, note, extra=b"receipt for message 0190a1b2" if index else None
        )
        parsed = parse_tlog_proof(raw)
        assert format_tlog_proof(parsed) == raw
        verified = verify_tlog_proof(
            raw, leaf_hash=tree.leaf(index), log_keys=[LOG], cosigners=COSIGNERS, quorum=2
        )
        assert verified.index == index
        assert verified.checkpoint.checkpoint.size == 13


def test_tlog_proof_for_a_single_leaf_tree_has_no_hashes() -> None:
    tree = tree_of(1)
    raw = make_proof(tree, 0, sign_checkpoint(checkpoint_of(tree), key=LOG_KEY))
    assert raw.startswith(b"c2sp.org/tlog-proof@v1\nindex 0\n\n")
    assert verify_tlog_proof(raw, leaf_hash=tree.leaf(0), log_keys=[LOG]).index == 0


def test_tlog_proof_spec_example_head_parses() -> None:
    note = sign_checkpoint(checkpoint_of(tree_of(3)), key=LOG_KEY)
    parsed = parse_tlog_proof(SPEC_TLOG_PROOF_HEAD + note)
    assert parsed.index == 73894
    assert len(parsed.inclusion_proof) == 5
    assert parsed.extra is not None
    assert format_tlog_proof(parsed) == SPEC_TLOG_PROOF_HEAD + note


def test_tlog_proof_for_another_leaf_or_index_is_refused() -> None:
    tree = tree_of(13)
    raw = make_proof(tree, 4, sign_checkpoint(checkpoint_of(tree), key=LOG_KEY))
    for leaf in (tree.leaf(5), leaf_hash(b"forged record")):
        with pytest.raises(RemoteError) as exc:
            verify_tlog_proof(raw, leaf_hash=leaf, log_keys=[LOG])
        assert reason(exc) == "invalid_claims"
    moved = raw.replace(b"index 4\n", b"index 5\n")
    with pytest.raises(RemoteError) as exc:
        verify_tlog_proof(moved, leaf_hash=tree.leaf(4), log_keys=[LOG])
    assert reason(exc) == "invalid_claims"


def test_tlog_proof_needs_a_valid_checkpoint_and_quorum() -> None:
    tree = tree_of(13)
    note = sign_checkpoint(checkpoint_of(tree), key=LOG_KEY)
    raw = make_proof(tree, 4, note)
    with pytest.raises(RemoteError) as exc:
        verify_tlog_proof(
            raw, leaf_hash=tree.leaf(4), log_keys=[LOG], cosigners=COSIGNERS, quorum=1
        )
    assert reason(exc) == "bad_signature"
    forged = make_proof(tree, 4, sign_checkpoint(checkpoint_of(tree), key=fixed_key("attacker")))
    with pytest.raises(RemoteError) as exc:
        verify_tlog_proof(forged, leaf_hash=tree.leaf(4), log_keys=[LOG])
    assert reason(exc) == "bad_signature"


GOOD_HASH = base64.b64encode(bytes(32)).decode()
TOO_MUCH_EXTRA = base64.b64encode(bytes(MAX_TLOG_PROOF_EXTRA_BYTES + 1)).decode()


@pytest.mark.parametrize(
    "head",
    [
        "c2sp.org/tlog-proof@v2\nindex 0\n\n",
        "c2sp.org/tlog-proof@v1\nindex 01\n\n",
        "c2sp.org/tlog-proof@v1\nindex -1\n\n",
        f"c2sp.org/tlog-proof@v1\nindex {2**63 - 1}\n\n",
        "c2sp.org/tlog-proof@v1\nindx 0\n\n",
        "c2sp.org/tlog-proof@v1\nextra \nindex 0\n\n",
        "c2sp.org/tlog-proof@v1\nextra !!!!\nindex 0\n\n",
        "c2sp.org/tlog-proof@v1\nindex 0\nextra AAAA\n\n",
        f"c2sp.org/tlog-proof@v1\nindex 0\n{GOOD_HASH[:-4]}\n\n",
        f"c2sp.org/tlog-proof@v1\nindex 0\n{(GOOD_HASH + chr(10)) * 64}\n",
        f"c2sp.org/tlog-proof@v1\nextra {TOO_MUCH_EXTRA}\nindex 0\n\n",
        "c2sp.org/tlog-proof@v1\nindex 0\n",
        "c2sp.org/tlog-proof@v1\u2014\nindex 0\n\n",
    ],
)
def test_malformed_tlog_proofs_are_refused(head: str) -> None:
    note = sign_checkpoint(checkpoint_of(tree_of(3)), key=LOG_KEY)
    raw = head.encode() + (note if head.endswith("\n\n") else b"")
    with pytest.raises(RemoteError) as exc:
        parse_tlog_proof(raw)
    assert reason(exc) == "malformed"


def test_tlog_proof_with_a_broken_checkpoint_is_refused() -> None:
    with pytest.raises(RemoteError):
        parse_tlog_proof(b"c2sp.org/tlog-proof@v1\nindex 0\n\nnot a note\n")


def test_tlog_proof_construction_limits() -> None:
    note = sign_checkpoint(checkpoint_of(tree_of(3)), key=LOG_KEY)
    with pytest.raises(LocalError):
        TlogProof(0, (), note, extra=b"")
    with pytest.raises(LocalError):
        TlogProof(0, (bytes(32),) * 64, note)
    with pytest.raises(LocalError):
        TlogProof(-1, (), note)


# ---------------------------------------------------------------- naming


def test_federation_names() -> None:
    assert ORIGIN == "zvh-veenstad.example/00000001003214345000/audit-log"
    assert witness_key_name(FEDERATION, GGZ) == "zvh-veenstad.example/00000003273645710000/witness"
    for federation, org in (
        ("veenstad", POLITIE),
        ("ZVH.example", POLITIE),
        ("zvh.example", "a/b"),
        ("zvh.example", ""),
        ("zvh..example", POLITIE),
        ("zvh.example", "org+1"),
    ):
        with pytest.raises(LocalError):
            audit_log_origin(federation, org)


# ---------------------------------------------------------------- hostile input: our errors only


@settings(max_examples=100)
@given(raw=st.binary(max_size=600))
def test_parsers_only_raise_gateway_errors(raw: bytes) -> None:
    for parse in (parse_note, parse_checkpoint, parse_tlog_proof):
        with contextlib.suppress(GatewayError):
            parse(raw)
    with contextlib.suppress(GatewayError):
        parse_vkey(raw.decode("utf-8", "replace"))


@settings(max_examples=100)
@given(data=st.data())
def test_mutated_notes_never_verify_with_other_content(data: st.DataObject) -> None:
    raw = sign_checkpoint(checkpoint_of(tree_of(7)), key=LOG_KEY)
    position = data.draw(st.integers(0, len(raw) - 1))
    value = data.draw(st.integers(0, 255).filter(lambda v: v != raw[position]))
    mutated = raw[:position] + bytes([value]) + raw[position + 1 :]
    try:
        verified = open_checkpoint(mutated, log_keys=[LOG])
    except GatewayError:
        return
    # Only encodings of the very same signed text can survive (none exist for strict parsing).
    assert verified.note.text == parse_note(raw).text


def test_dataclass_values_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        LOG.name = "other"  # type: ignore[misc]


# ------------------------------------------------------------------ Verified* values are earned


@pytest.mark.parametrize("witness", [None, object()], ids=["no-witness", "guessed-witness"])
def test_verified_values_cannot_be_built_outside_their_verifiers(witness: object) -> None:
    """Copying every field of a genuinely verified value is still refused: only the verifier
    holds the witness, so holding a Verified* value means its checks ran."""
    tree = tree_of(13)
    raw = make_proof(tree, 4, sign_checkpoint(checkpoint_of(tree), key=LOG_KEY))
    proof = verify_tlog_proof(raw, leaf_hash=tree.leaf(4), log_keys=[LOG])
    checkpoint = proof.checkpoint
    for genuine in (proof, checkpoint, checkpoint.note, checkpoint.log_signature):
        kind = type(genuine)
        with pytest.raises(LocalError, match=f"creates a {kind.__name__}"):
            kind(**vars(genuine), witness=witness)
        with pytest.raises(LocalError):
            dataclasses.replace(genuine)
    assert {type(v) for v in (proof, checkpoint, checkpoint.note, checkpoint.log_signature)} == {
        VerifiedTlogProof,
        VerifiedCheckpoint,
        VerifiedNote,
        VerifiedSignature,
    }
