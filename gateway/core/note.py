"""C2SP signed notes, checkpoints, cosignatures and offline proofs, with Ed25519.

Formats (C2SP, read from the ``C2SP/C2SP`` repository), and the rules enforced here:

- **signed-note** (c2sp.org/signed-note): a text ending in a newline, a blank line, then one or
  more lines ``— <key name> base64(4-byte key ID || signature)`` (em dash U+2014). The note is
  valid UTF-8 without control characters other than newline; the text is everything before the
  *last* blank line. Key names are non-empty without Unicode spaces or ``+``. Key ID =
  ``SHA-256(name || 0x0A || type || public key)[:4]``. Verifier keys are written
  ``name+hex(key ID)+base64(type || public key)`` (the Go ``sumdb/note`` form). Verifiers ignore
  signatures from unknown keys (name *and* ID must match), verify every signature from a known
  key and reject the whole note if one fails (the spec's SHOULD, taken as a MUST here), and
  reject the note if no known signature verifies. Limits: :data:`MAX_NOTE_BYTES`,
  :data:`MAX_NOTE_SIGNATURES` (the spec requires accepting at least 16).
- Signature types: ``0x01`` Ed25519 over the note text; ``0x04`` timestamped Ed25519
  cosignature (c2sp.org/tlog-cosignature v1): signs ``cosignature/v1\\ntime <unix>\\n`` followed
  by the checkpoint text; the signature is ``u64 big-endian timestamp || 64-byte Ed25519
  signature``; the timestamp is at most ``2**63 - 1``. No other type is accepted as a key.
- **tlog-checkpoint** (c2sp.org/tlog-checkpoint): text lines ``origin``, decimal tree size (no
  leading zeros), base64 RFC 6962 root hash, then optional non-empty extension lines. Our logs
  never write extension lines and our readers reject them unless a caller opts in
  (docs/decisions/0053). A checkpoint counts only with a valid signature by a trusted log key
  whose name equals the origin (the spec's SHOULD, a MUST in this federation).
- **tlog-proof** (c2sp.org/tlog-proof@v1): ``c2sp.org/tlog-proof@v1``, optional ``extra
  <base64>``, ``index <n>``, the inclusion proof one base64 hash per line, a blank line, then the
  checkpoint note verbatim. Verified offline: log signature, optional cosigner quorum, inclusion
  of a given leaf hash.

Every base64 value is decoded strictly and canonically, and every decimal without leading zeros
(``gateway.core._text``).

Errors: malformed input from outside raises :class:`~gateway.errors.RemoteError` with reason
``malformed`` (``too_large`` for limits), a signature problem ``bad_signature``, a proof that
does not prove inclusion ``invalid_claims``; our own misuse (bad key name, text we try to sign)
raises :class:`~gateway.errors.LocalError`. Error details never contain key material or note
text. Pure: keys and timestamps come in as arguments.
"""

from __future__ import annotations

import hashlib
import re
import struct
from collections.abc import Iterable, Sequence
from dataclasses import InitVar, dataclass, field
from datetime import datetime, timedelta

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.core._text import b64decode_strict, b64encode, parse_decimal
from gateway.core.merkle import (
    HASH_SIZE,
    MAX_INCLUSION_PROOF_HASHES,
    MAX_TREE_SIZE,
    verify_inclusion,
)
from gateway.errors import LocalError, RemoteError

__all__ = [
    "COSIGNATURE_V1_HEADER",
    "EM_DASH",
    "MAX_CHECKPOINT_EXTENSION_LINES",
    "MAX_COSIGNATURE_CLOCK_SKEW",
    "MAX_KEY_NAME_BYTES",
    "MAX_NOTE_BYTES",
    "MAX_NOTE_SIGNATURES",
    "MAX_TIMESTAMP",
    "MAX_TLOG_PROOF_BYTES",
    "MAX_TLOG_PROOF_EXTRA_BYTES",
    "SIG_TYPE_COSIGNATURE_V1",
    "SIG_TYPE_ED25519",
    "TLOG_PROOF_HEADER",
    "Checkpoint",
    "CheckpointCache",
    "Note",
    "NoteSignature",
    "NoteVerifier",
    "TlogProof",
    "VerifiedCheckpoint",
    "VerifiedNote",
    "VerifiedSignature",
    "VerifiedTlogProof",
    "add_signatures",
    "audit_log_origin",
    "cosign_checkpoint",
    "cosignature_message",
    "ed25519_verifier",
    "format_tlog_proof",
    "format_vkey",
    "key_id",
    "open_checkpoint",
    "open_note",
    "parse_checkpoint",
    "parse_note",
    "parse_tlog_proof",
    "parse_vkey",
    "sign_checkpoint",
    "sign_note",
    "verify_tlog_proof",
    "witness_key_name",
]

# ---------------------------------------------------------------------- constants and limits

EM_DASH = "\u2014"
"""First character of every signature line (signed-note §Format)."""

SIG_TYPE_ED25519 = 0x01
"""signed-note signature type: Ed25519 over the note text (log signatures)."""

SIG_TYPE_COSIGNATURE_V1 = 0x04
"""signed-note signature type: timestamped Ed25519 cosignature (tlog-cosignature v1)."""

COSIGNATURE_V1_HEADER = b"cosignature/v1\n"
"""Domain-separating first line of the message a v1 cosignature signs."""

TLOG_PROOF_HEADER = b"c2sp.org/tlog-proof@v1"
"""First line of a tlog-proof."""

MAX_NOTE_SIGNATURES = 100
"""Most signature lines in a note. The spec requires accepting at least 16; Go's reference
implementation stops at 100, and a checkpoint with a log signature plus every partner of a
federation as cosigner stays far below that."""

MAX_NOTE_BYTES = 128 * 1024
"""Largest signed note, in bytes. Room for 16 post-quantum (ML-DSA-44, ≈ 3.3 kB per line)
signatures that we must tolerate and ignore, plus 100 Ed25519 lines (≈ 150 bytes each) and a
checkpoint text of a few hundred bytes; bounds the work an unauthenticated peer can cause."""

MAX_KEY_NAME_BYTES = 255
"""Longest key name / checkpoint origin, in UTF-8 bytes: tlog-cosignature's ML-DSA-44 message
encodes both with a one-byte length, so no interoperable name is longer."""

MAX_CHECKPOINT_EXTENSION_LINES = 16
"""Most checkpoint extension lines a caller that opts in to them will accept."""

MAX_TIMESTAMP = 2**63 - 1
"""Largest cosignature timestamp (tlog-cosignature: "MUST NOT exceed 2^63 - 1")."""

MAX_COSIGNATURE_CLOCK_SKEW = timedelta(minutes=5)
"""A cosignature dated further in the future than this (against the caller's ``now``) does not
count toward a quorum: tlog-cosignature allows rejecting future timestamps, and five minutes is
the clock skew the envelope layer already tolerates (docs/envelope.md §2.6)."""

MAX_TLOG_PROOF_EXTRA_BYTES = 8 * 1024
"""Largest decoded ``extra`` field of a tlog-proof. zv-gateway receipts carry the proved audit
record's leaf view there (≈ 1-2 KiB of canonical JSON, no personal data) so the reader can hash it
and check what it says; never bulk data."""

MAX_TLOG_PROOF_BYTES = MAX_NOTE_BYTES + 8 * 1024
"""Largest tlog-proof: the checkpoint note plus header, ``extra`` (≤ 1,368 base64 characters),
index and at most 63 hash lines of 45 bytes (≈ 4.3 kB, rounded up to 8 KiB)."""

_ED25519_SIGNATURE_SIZE = 64
_ED25519_PUBLIC_KEY_SIZE = 32
_KEY_ID_SIZE = 4
_TIMESTAMP_SIZE = 8
_HEX8 = re.compile(r"[0-9a-f]{8}")
_ACCEPTED_KEY_TYPES = (SIG_TYPE_ED25519, SIG_TYPE_COSIGNATURE_V1)
#: C0 control characters other than the line feed that separates a note's lines.
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")
_NAME_SEGMENT = re.compile(r"[a-z0-9](?:[a-z0-9.-]{0,61}[a-z0-9])?")


# ---------------------------------------------------------------------- small strict helpers


def _malformed(detail: str) -> RemoteError:
    return RemoteError("malformed", detail)


def _has_control(text: str) -> bool:
    return _CONTROL.search(text) is not None


def _utf8_size(text: str) -> int | None:
    """Bytes of ``text`` in UTF-8, None if it cannot be encoded (lone surrogates)."""
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:
        return None


def _valid_key_name(name: str) -> bool:
    """signed-note: non-empty, no Unicode spaces, no ``+``; plus our length and control rules."""
    size = _utf8_size(name)
    return (
        size is not None
        and 0 < size <= MAX_KEY_NAME_BYTES
        and "+" not in name
        and not any(ch.isspace() for ch in name)
        and not _has_control(name)
        and "\n" not in name
    )


def _check_key_name(name: str) -> None:
    if not isinstance(name, str) or not _valid_key_name(name):
        raise LocalError("invalid note key name (empty, too long, or has a space, '+' or control)")


def _public_bytes(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes_raw()


# ---------------------------------------------------------------------- keys


def key_id(name: str, sig_type: int, public_key: bytes) -> bytes:
    """Return the 4-byte key ID ``SHA-256(name || 0x0A || sig_type || public_key)[:4]``."""
    _check_key_name(name)
    if not 0 <= sig_type <= 0xFF:
        raise LocalError("signature type must be one byte")
    material = name.encode("utf-8") + b"\n" + bytes([sig_type]) + public_key
    return hashlib.sha256(material).digest()[:_KEY_ID_SIZE]


@dataclass(frozen=True)
class NoteVerifier:
    """A trusted public key for notes: name, signature type and 32-byte Ed25519 public key.

    Build it from the directory with :func:`parse_vkey` or :func:`ed25519_verifier`. Only
    types ``0x01`` (log signatures) and ``0x04`` (cosignatures) exist. Construction raises
    :class:`LocalError` for anything else.
    """

    name: str
    sig_type: int
    public_key: bytes
    key_id: bytes = field(init=False)

    def __post_init__(self) -> None:
        _check_key_name(self.name)
        if self.sig_type not in _ACCEPTED_KEY_TYPES:
            raise LocalError("unsupported note signature type (only 0x01 and 0x04)")
        if not isinstance(self.public_key, bytes) or len(self.public_key) != 32:
            raise LocalError("Ed25519 public key must be 32 bytes")
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key)
        except ValueError:
            raise LocalError("not an Ed25519 public key") from None
        object.__setattr__(self, "key_id", key_id(self.name, self.sig_type, self.public_key))

    @property
    def vkey(self) -> str:
        """The verifier key string ``name+hex(key ID)+base64(type || public key)``."""
        return format_vkey(self.name, self.sig_type, self.public_key)

    def _verify(self, text: bytes, signature: bytes) -> tuple[bool, int | None]:
        """(valid?, cosignature timestamp or None). Never raises on hostile input."""
        public = Ed25519PublicKey.from_public_bytes(self.public_key)
        timestamp: int | None = None
        if self.sig_type == SIG_TYPE_COSIGNATURE_V1:
            if len(signature) != _TIMESTAMP_SIZE + _ED25519_SIGNATURE_SIZE:
                return False, None
            (timestamp,) = struct.unpack(">Q", signature[:_TIMESTAMP_SIZE])
            if timestamp > MAX_TIMESTAMP:
                return False, None
            message = cosignature_message(text, timestamp)
            signature = signature[_TIMESTAMP_SIZE:]
        else:
            if len(signature) != _ED25519_SIGNATURE_SIZE:
                return False, None
            message = text
        try:
            public.verify(signature, message)
        except InvalidSignature:
            return False, None
        return True, timestamp


def ed25519_verifier(
    name: str,
    public_key: Ed25519PublicKey | Ed25519PrivateKey | bytes,
    *,
    sig_type: int = SIG_TYPE_ED25519,
) -> NoteVerifier:
    """Return the :class:`NoteVerifier` for an Ed25519 key under ``name`` and ``sig_type``.

    Pass ``sig_type=SIG_TYPE_COSIGNATURE_V1`` for a witness (cosigner) key. A private key is
    accepted for convenience (its public half is used).
    """
    raw = public_key if isinstance(public_key, bytes) else _public_bytes(public_key)
    return NoteVerifier(name, sig_type, raw)


def format_vkey(name: str, sig_type: int, public_key: bytes) -> str:
    """Return the verifier key string ``name+hex(key ID)+base64(type || public key)``."""
    kid = key_id(name, sig_type, public_key)
    return f"{name}+{kid.hex()}+{b64encode(bytes([sig_type]) + public_key)}"


def parse_vkey(vkey: str) -> NoteVerifier:
    """Parse a verifier key string (as listed in the directory) into a :class:`NoteVerifier`.

    Strict: exactly ``name+8 lowercase hex digits+canonical base64``, a supported type (0x01 or
    0x04) with a 32-byte key, and the key ID must match the one computed from name, type and
    key. Raises :class:`LocalError` otherwise (verifier keys are configuration).
    """
    parts = vkey.split("+", 2) if isinstance(vkey, str) else []
    if len(parts) != 3:
        raise LocalError("malformed verifier key: want name+keyid+key")
    name, hex_id, b64 = parts
    if not _valid_key_name(name) or not _HEX8.fullmatch(hex_id):
        raise LocalError("malformed verifier key: bad name or key id")
    material = b64decode_strict(b64)
    if material is None or len(material) != 1 + _ED25519_PUBLIC_KEY_SIZE:
        raise LocalError("malformed verifier key: bad key encoding")
    verifier = NoteVerifier(name, material[0], material[1:])
    if verifier.key_id.hex() != hex_id:
        raise LocalError("malformed verifier key: key id does not match the key")
    return verifier


def _verifier_index(
    verifiers: Iterable[NoteVerifier],
) -> dict[tuple[str, bytes], NoteVerifier]:
    index: dict[tuple[str, bytes], NoteVerifier] = {}
    for verifier in verifiers:
        slot = (verifier.name, verifier.key_id)
        known = index.get(slot)
        if known is not None and known != verifier:
            raise LocalError(
                f"ambiguous note verifiers for {verifier.name}+{verifier.key_id.hex()}"
            )
        index[slot] = verifier
    return index


# ---------------------------------------------------------------------- notes


@dataclass(frozen=True)
class NoteSignature:
    """One parsed signature line: key name, 4-byte key ID and the signature bytes after it."""

    name: str
    key_id: bytes
    signature: bytes

    @property
    def line(self) -> str:
        """The signature line, newline included: ``— name base64(key ID || signature)``."""
        return f"{EM_DASH} {self.name} {b64encode(self.key_id + self.signature)}\n"

    @property
    def timestamp(self) -> int | None:
        """The u64 timestamp a v1 cosignature starts with (None if too short to be one).

        Unauthenticated unless the signature was verified (:class:`VerifiedSignature`).
        """
        if len(self.signature) != _TIMESTAMP_SIZE + _ED25519_SIGNATURE_SIZE:
            return None
        return int(struct.unpack(">Q", self.signature[:_TIMESTAMP_SIZE])[0])


@dataclass(frozen=True)
class Note:
    """A syntactically valid signed note, signatures *not* verified (see :func:`open_note`)."""

    raw: bytes
    text: bytes
    signatures: tuple[NoteSignature, ...]


#: Module-private proof that a ``Verified*`` value is being built by its verifier here.
_WITNESS = object()


def _require_witness(witness: object, verifier: str, what: str) -> None:
    """Refuse to build a ``Verified*`` value outside its verifier (``LocalError``)."""
    if witness is not _WITNESS:
        raise LocalError(f"only {verifier}() creates a {what}")


@dataclass(frozen=True)
class VerifiedSignature:
    """A signature that verified against ``verifier``; ``timestamp`` for cosignatures.

    Only :func:`open_note` builds one (a module-private witness guards the constructor)."""

    verifier: NoteVerifier
    signature: NoteSignature
    timestamp: int | None
    witness: InitVar[object] = None

    def __post_init__(self, witness: object) -> None:
        _require_witness(witness, "open_note", "VerifiedSignature")


@dataclass(frozen=True)
class VerifiedNote:
    """A note with at least one verified signature from a trusted key.

    Only :func:`open_note` builds one. ``raw`` is the exact bytes received; ``text`` the signed
    text. ``verified`` holds one entry per signature line from a known key (identical
    duplicate lines count once); ``unverified`` the lines from unknown keys, kept, never
    trusted.
    """

    raw: bytes
    text: bytes
    verified: tuple[VerifiedSignature, ...]
    unverified: tuple[NoteSignature, ...]
    witness: InitVar[object] = None

    def __post_init__(self, witness: object) -> None:
        _require_witness(witness, "open_note", "VerifiedNote")


def _parse_signature_line(line: str) -> NoteSignature:
    prefix = EM_DASH + " "
    if not line.startswith(prefix):
        raise _malformed("note: signature line does not start with an em dash and a space")
    parts = line[len(prefix) :].split(" ")
    if len(parts) != 2 or not _valid_key_name(parts[0]):
        raise _malformed("note: signature line needs a valid key name and one signature")
    blob = b64decode_strict(parts[1])
    if blob is None or len(blob) <= _KEY_ID_SIZE:
        raise _malformed("note: signature is not canonical base64 of key id and signature")
    return NoteSignature(parts[0], blob[:_KEY_ID_SIZE], blob[_KEY_ID_SIZE:])


def parse_note(raw: bytes) -> Note:
    """Parse a signed note strictly, without verifying any signature.

    Raises :class:`RemoteError` (``too_large`` over :data:`MAX_NOTE_BYTES` or
    :data:`MAX_NOTE_SIGNATURES`; ``malformed`` for invalid UTF-8, control characters, no blank
    line before the signatures, a missing final newline, or a malformed signature line).
    Identical duplicate signature lines are dropped.
    """
    if not isinstance(raw, bytes):
        raise _malformed("note: not bytes")
    if len(raw) > MAX_NOTE_BYTES:
        raise RemoteError("too_large", f"note: larger than {MAX_NOTE_BYTES} bytes")
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _malformed("note: not valid UTF-8") from None
    if _has_control(decoded):
        raise _malformed("note: contains a control character")
    split = raw.rfind(b"\n\n")
    if split < 0:
        raise _malformed("note: no blank line before the signatures")
    text, block = raw[: split + 1], raw[split + 2 :]
    if not block or not block.endswith(b"\n"):
        raise _malformed("note: signature block missing or not newline-terminated")
    lines = block[:-1].decode("utf-8").split("\n")
    if len(lines) > MAX_NOTE_SIGNATURES:
        raise RemoteError("too_large", f"note: more than {MAX_NOTE_SIGNATURES} signatures")
    signatures: list[NoteSignature] = []
    for line in lines:
        signature = _parse_signature_line(line)
        if signature not in signatures:
            signatures.append(signature)
    return Note(raw, text, tuple(signatures))


def open_note(raw: bytes, verifiers: Iterable[NoteVerifier]) -> VerifiedNote:
    """Parse ``raw`` and verify its signatures against ``verifiers``; return the verified note.

    Signatures whose (name, key ID) matches no verifier are ignored (kept as ``unverified``).
    Every signature from a known key must verify, else the whole note is refused; at least one
    must verify. Raises :class:`RemoteError` (``malformed``/``too_large`` as
    :func:`parse_note`; ``bad_signature`` when a known signature fails or none is known), and
    :class:`LocalError` when two different verifiers share a name and key ID.
    """
    index = _verifier_index(verifiers)
    note = parse_note(raw)
    verified: list[VerifiedSignature] = []
    unverified: list[NoteSignature] = []
    for signature in note.signatures:
        verifier = index.get((signature.name, signature.key_id))
        if verifier is None:
            unverified.append(signature)
            continue
        ok, timestamp = verifier._verify(note.text, signature.signature)
        if not ok:
            raise RemoteError(
                "bad_signature",
                f"note: invalid signature for key {signature.name}+{signature.key_id.hex()}",
            )
        verified.append(VerifiedSignature(verifier, signature, timestamp, witness=_WITNESS))
    if not verified:
        raise RemoteError("bad_signature", "note: no signature from a trusted key")
    return VerifiedNote(raw, note.text, tuple(verified), tuple(unverified), witness=_WITNESS)


def _check_text(text: bytes) -> None:
    """Our own note text must be a well-formed note text (else the note would not parse)."""
    if not isinstance(text, bytes) or not text.endswith(b"\n") or len(text) > MAX_NOTE_BYTES:
        raise LocalError("note text must be bytes ending in a newline, within MAX_NOTE_BYTES")
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError:
        raise LocalError("note text must be UTF-8") from None
    if _has_control(decoded):
        raise LocalError("note text must not contain control characters")
    if text.startswith(COSIGNATURE_V1_HEADER):
        # Our audit key signs checkpoints (0x01) and cosignatures (0x04); a 0x01 signature over
        # a text that starts like a cosigned message could be passed off as a cosignature.
        raise LocalError("refusing to sign a note text that looks like a cosigned message")


def _signature_line(name: str, kid: bytes, signature: bytes) -> str:
    return NoteSignature(name, kid, signature).line


def sign_note(text: bytes, *, name: str, key: Ed25519PrivateKey) -> bytes:
    """Return the signed note ``text || "\\n" || signature line`` (type 0x01, Ed25519).

    Ed25519 is deterministic, so the same text, name and key give the same bytes. Raises
    :class:`LocalError` for an invalid name or text (not newline-terminated, control
    characters, too large, or starting with ``cosignature/v1``).
    """
    _check_key_name(name)
    _check_text(text)
    kid = key_id(name, SIG_TYPE_ED25519, _public_bytes(key))
    return text + b"\n" + _signature_line(name, kid, key.sign(text)).encode("utf-8")


def cosignature_message(text: bytes, timestamp: int) -> bytes:
    """The message a v1 cosignature signs: ``cosignature/v1\\ntime <timestamp>\\n`` + ``text``."""
    return COSIGNATURE_V1_HEADER + b"time %d\n" % timestamp + text


def add_signatures(raw: bytes, lines: Iterable[str]) -> bytes:
    """Return the note ``raw`` with signature ``lines`` appended (duplicates dropped).

    Use it to attach cosignatures a witness returned; it does not verify them (open the result
    with the cosigners' verifiers). Raises :class:`RemoteError` when ``raw`` or a line is
    malformed or the result exceeds the note limits.
    """
    note = parse_note(raw)
    signatures = list(note.signatures)
    for line in lines:
        if not line.endswith("\n"):
            raise _malformed("note: signature line must end in a newline")
        signature = _parse_signature_line(line[:-1])
        if signature not in signatures:
            signatures.append(signature)
    combined = note.text + b"\n" + "".join(s.line for s in signatures).encode("utf-8")
    return parse_note(combined).raw


# ---------------------------------------------------------------------- checkpoints


@dataclass(frozen=True)
class Checkpoint:
    """A tlog-checkpoint body: origin, tree size, RFC 6962 root hash, extension lines.

    Construction checks the fields (:class:`LocalError`): non-empty origin without newline or
    control characters and at most :data:`MAX_KEY_NAME_BYTES`, ``0 <= size <= MAX_TREE_SIZE``,
    a 32-byte root, non-empty single-line extensions.
    """

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        origin = self.origin
        size = _utf8_size(origin) if isinstance(origin, str) else None
        if size is None or not 0 < size <= MAX_KEY_NAME_BYTES or _has_control(origin):
            raise LocalError("checkpoint origin must be one non-empty line of at most 255 bytes")
        if "\n" in origin:
            raise LocalError("checkpoint origin must be a single line")
        if not isinstance(self.size, int) or not 0 <= self.size <= MAX_TREE_SIZE:
            raise LocalError("checkpoint size out of range")
        if not isinstance(self.root, bytes) or len(self.root) != HASH_SIZE:
            raise LocalError("checkpoint root must be 32 bytes")
        for line in self.extensions:
            if not line or "\n" in line or _has_control(line) or _utf8_size(line) is None:
                raise LocalError("checkpoint extension lines must be non-empty single lines")

    @property
    def text(self) -> bytes:
        """The note text: origin, size, base64 root, extension lines, each ending in newline."""
        lines = [self.origin, str(self.size), b64encode(self.root), *self.extensions]
        return ("\n".join(lines) + "\n").encode("utf-8")


def parse_checkpoint(text: bytes, *, allow_extensions: bool = False) -> Checkpoint:
    """Parse a checkpoint note *text* (not the signed note; see :func:`open_checkpoint`).

    Raises :class:`RemoteError` ``malformed`` unless: valid UTF-8 without control characters,
    newline-terminated, at least three lines, a non-empty origin of at most
    :data:`MAX_KEY_NAME_BYTES`, a decimal size without leading zeros up to ``MAX_TREE_SIZE``,
    a canonical base64 32-byte root, and no extension lines unless ``allow_extensions`` (then
    at most :data:`MAX_CHECKPOINT_EXTENSION_LINES`, each non-empty).
    """
    try:
        decoded = text.decode("utf-8")
    except (UnicodeDecodeError, AttributeError):
        raise _malformed("checkpoint: not UTF-8 bytes") from None
    if _has_control(decoded) or not decoded.endswith("\n"):
        raise _malformed("checkpoint: control character or missing final newline")
    lines = decoded[:-1].split("\n")
    if len(lines) < 3:
        raise _malformed("checkpoint: fewer than three lines")
    origin, size_text, root_text, *extensions = lines
    if not origin or len(origin.encode("utf-8")) > MAX_KEY_NAME_BYTES:
        raise _malformed("checkpoint: origin empty or too long")
    size = parse_decimal(size_text, MAX_TREE_SIZE)
    if size is None:
        raise _malformed("checkpoint: tree size is not a decimal in range")
    root = b64decode_strict(root_text)
    if root is None or len(root) != HASH_SIZE:
        raise _malformed("checkpoint: root is not canonical base64 of 32 bytes")
    if extensions and not allow_extensions:
        raise _malformed("checkpoint: extension lines are not accepted")
    if len(extensions) > MAX_CHECKPOINT_EXTENSION_LINES or not all(extensions):
        raise _malformed("checkpoint: too many or empty extension lines")
    return Checkpoint(origin, size, root, tuple(extensions))


def sign_checkpoint(checkpoint: Checkpoint, *, key: Ed25519PrivateKey) -> bytes:
    """Return the checkpoint as a signed note, signed (0x01) under the name ``checkpoint.origin``.

    The caller must never sign two inconsistent checkpoints (tlog-checkpoint §Signatures): sign
    only roots of the one append-only tree.
    """
    return sign_note(checkpoint.text, name=checkpoint.origin, key=key)


def cosign_checkpoint(
    checkpoint_text: bytes, *, name: str, key: Ed25519PrivateKey, timestamp: int
) -> str:
    """Return a tlog-cosignature v1 signature line (type 0x04) over ``checkpoint_text``.

    ``timestamp`` is POSIX seconds (``0 <= timestamp <= MAX_TIMESTAMP``). Only call it after
    checking consistency (a cosignature states the checkpoint is the largest consistent tree
    head observed). Raises :class:`LocalError` for a bad name, text or timestamp.
    """
    _check_key_name(name)
    _check_text(checkpoint_text)
    if not isinstance(timestamp, int) or not 0 <= timestamp <= MAX_TIMESTAMP:
        raise LocalError("cosignature timestamp out of range")
    kid = key_id(name, SIG_TYPE_COSIGNATURE_V1, _public_bytes(key))
    signature = key.sign(cosignature_message(checkpoint_text, timestamp))
    return _signature_line(name, kid, struct.pack(">Q", timestamp) + signature)


@dataclass(frozen=True)
class VerifiedCheckpoint:
    """A checkpoint signed by a trusted log key, with the cosignatures that counted.

    Only :func:`open_checkpoint` builds one. ``note.raw`` is the exact signed note received.
    """

    checkpoint: Checkpoint
    note: VerifiedNote
    log_signature: VerifiedSignature
    cosignatures: tuple[VerifiedSignature, ...]
    witness: InitVar[object] = None

    def __post_init__(self, witness: object) -> None:
        _require_witness(witness, "open_checkpoint", "VerifiedCheckpoint")


def open_checkpoint(
    raw: bytes,
    *,
    log_keys: Sequence[NoteVerifier],
    cosigners: Sequence[NoteVerifier] = (),
    quorum: int = 0,
    now: datetime | None = None,
    allow_extensions: bool = False,
) -> VerifiedCheckpoint:
    """Verify a signed checkpoint: log signature, then an optional cosigner quorum.

    ``log_keys`` are the trusted log keys (type 0x01; several during a rotation); one whose name
    equals the checkpoint's origin must have signed. ``cosigners`` are trusted witness keys
    (type 0x04); at least ``quorum`` distinct ones must have cosigned. With ``now`` (aware
    UTC), cosignatures dated more than :data:`MAX_COSIGNATURE_CLOCK_SKEW` ahead do not count.

    Raises :class:`RemoteError` (``malformed``/``too_large`` for the note or checkpoint text;
    ``bad_signature`` when no trusted log key for this origin signed, a known signature is
    invalid, or the quorum is not met) and :class:`LocalError` when the configuration cannot
    work (wrong key types, a quorum larger than the cosigner set, a naive ``now``).
    """
    if any(k.sig_type != SIG_TYPE_ED25519 for k in log_keys):
        raise LocalError("log keys must be Ed25519 note keys (type 0x01)")
    if any(k.sig_type != SIG_TYPE_COSIGNATURE_V1 for k in cosigners):
        raise LocalError("cosigner keys must be cosignature keys (type 0x04)")
    if not 0 <= quorum <= len({k.public_key for k in cosigners}):
        raise LocalError("cosigner quorum must be between 0 and the number of cosigners")
    if now is not None and now.utcoffset() is None:
        raise LocalError("now must be timezone-aware")
    note = open_note(raw, [*log_keys, *cosigners])
    checkpoint = parse_checkpoint(note.text, allow_extensions=allow_extensions)
    log_signature = next(
        (
            v
            for v in note.verified
            if v.verifier.sig_type == SIG_TYPE_ED25519 and v.verifier.name == checkpoint.origin
        ),
        None,
    )
    if log_signature is None:
        raise RemoteError("bad_signature", "checkpoint: not signed by a log key for its origin")
    latest = None if now is None else int((now + MAX_COSIGNATURE_CLOCK_SKEW).timestamp())
    counted: list[VerifiedSignature] = []
    seen: set[bytes] = set()
    for v in note.verified:
        if v.verifier.sig_type != SIG_TYPE_COSIGNATURE_V1 or v.verifier.public_key in seen:
            continue
        if latest is not None and v.timestamp is not None and v.timestamp > latest:
            continue
        seen.add(v.verifier.public_key)
        counted.append(v)
    if len(counted) < quorum:
        raise RemoteError(
            "bad_signature", f"checkpoint: {len(counted)} of {quorum} required cosignatures"
        )
    return VerifiedCheckpoint(checkpoint, note, log_signature, tuple(counted), witness=_WITNESS)


# ---------------------------------------------------------------------- tlog-proof


@dataclass(frozen=True)
class TlogProof:
    """A c2sp.org/tlog-proof@v1: leaf index, inclusion proof, checkpoint note, optional extra.

    ``checkpoint`` is the signed (and usually cosigned) checkpoint note, verbatim. ``extra`` is
    unauthenticated context; None when absent (an empty ``extra`` is not representable).
    Construction raises :class:`LocalError` for values that could not be written.
    """

    index: int
    inclusion_proof: tuple[bytes, ...]
    checkpoint: bytes
    extra: bytes | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.index, int) or not 0 <= self.index < MAX_TREE_SIZE:
            raise LocalError("tlog-proof index out of range")
        if len(self.inclusion_proof) > MAX_INCLUSION_PROOF_HASHES or not all(
            isinstance(h, bytes) and len(h) == HASH_SIZE for h in self.inclusion_proof
        ):
            raise LocalError("tlog-proof inclusion proof must be at most 63 hashes of 32 bytes")
        if self.extra is not None and not 0 < len(self.extra) <= MAX_TLOG_PROOF_EXTRA_BYTES:
            raise LocalError("tlog-proof extra must be 1 to MAX_TLOG_PROOF_EXTRA_BYTES bytes")


def format_tlog_proof(proof: TlogProof) -> bytes:
    """Write ``proof`` in the c2sp.org/tlog-proof@v1 text format."""
    lines = [TLOG_PROOF_HEADER]
    if proof.extra is not None:
        lines.append(b"extra " + b64encode(proof.extra).encode("ascii"))
    lines.append(b"index %d" % proof.index)
    lines.extend(b64encode(h).encode("ascii") for h in proof.inclusion_proof)
    return b"\n".join(lines) + b"\n\n" + proof.checkpoint


def parse_tlog_proof(raw: bytes) -> TlogProof:
    """Parse a c2sp.org/tlog-proof@v1 strictly; signatures and inclusion are *not* verified.

    Raises :class:`RemoteError` (``too_large`` over :data:`MAX_TLOG_PROOF_BYTES`; ``malformed``
    for a wrong header, a bad ``extra`` or ``index`` line, a hash line that is not canonical
    base64 of 32 bytes, more than 63 hashes, or a checkpoint part that is not a signed note).
    """
    if not isinstance(raw, bytes):
        raise _malformed("tlog-proof: not bytes")
    if len(raw) > MAX_TLOG_PROOF_BYTES:
        raise RemoteError("too_large", f"tlog-proof: larger than {MAX_TLOG_PROOF_BYTES} bytes")
    pos = 0

    def next_line() -> str:
        nonlocal pos
        end = raw.find(b"\n", pos)
        if end < 0:
            raise _malformed("tlog-proof: truncated")
        try:
            line = raw[pos:end].decode("ascii")
        except UnicodeDecodeError:
            raise _malformed("tlog-proof: non-ASCII header line") from None
        pos = end + 1
        return line

    if next_line() != TLOG_PROOF_HEADER.decode("ascii"):
        raise _malformed("tlog-proof: wrong header line")
    line = next_line()
    extra: bytes | None = None
    if line.startswith("extra "):
        extra = b64decode_strict(line[len("extra ") :])
        if not extra or len(extra) > MAX_TLOG_PROOF_EXTRA_BYTES:
            raise _malformed("tlog-proof: extra is not canonical base64 of 1 to 1024 bytes")
        line = next_line()
    if not line.startswith("index "):
        raise _malformed("tlog-proof: missing index line")
    index = parse_decimal(line[len("index ") :], MAX_TREE_SIZE - 1)
    if index is None:
        raise _malformed("tlog-proof: index is not a decimal in range")
    hashes: list[bytes] = []
    while (line := next_line()) != "":
        digest = b64decode_strict(line)
        if digest is None or len(digest) != HASH_SIZE:
            raise _malformed("tlog-proof: proof line is not canonical base64 of 32 bytes")
        if len(hashes) == MAX_INCLUSION_PROOF_HASHES:
            raise _malformed("tlog-proof: more than 63 proof hashes")
        hashes.append(digest)
    checkpoint = raw[pos:]
    parse_note(checkpoint)
    return TlogProof(index, tuple(hashes), checkpoint, extra)


@dataclass(frozen=True)
class VerifiedTlogProof:
    """An inclusion of ``leaf_hash`` at ``index`` in a verified checkpoint (see
    :func:`verify_tlog_proof`, the only builder). ``extra`` is still unauthenticated."""

    index: int
    leaf_hash: bytes
    checkpoint: VerifiedCheckpoint
    extra: bytes | None
    witness: InitVar[object] = None

    def __post_init__(self, witness: object) -> None:
        _require_witness(witness, "verify_tlog_proof", "VerifiedTlogProof")


class CheckpointCache:
    """Checkpoints already verified, by their exact bytes and the log keys that verified them
    (bounded; the oldest entry goes first). Receipts of one batch carry the same checkpoint, so
    :func:`verify_tlog_proof` checks its signature once for the batch. Only checkpoints verified
    without cosigners are kept: their verification does not depend on the time."""

    def __init__(self, capacity: int = 64) -> None:
        if capacity < 1:
            raise LocalError("a checkpoint cache holds at least one checkpoint")
        self.capacity = capacity
        self._entries: dict[tuple[bytes, frozenset[NoteVerifier]], VerifiedCheckpoint] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def open(
        self, raw: bytes, *, log_keys: Sequence[NoteVerifier], now: datetime | None = None
    ) -> VerifiedCheckpoint:
        """:func:`open_checkpoint` (no cosigners) unless these bytes were verified with these
        keys before. Raises as :func:`open_checkpoint`; a refused checkpoint is not kept."""
        key = (raw, frozenset(log_keys))
        cached = self._entries.get(key)
        if cached is not None:
            return cached
        opened = open_checkpoint(raw, log_keys=log_keys, now=now)
        if len(self._entries) >= self.capacity:
            self._entries.pop(next(iter(self._entries)))
        self._entries[key] = opened
        return opened


def verify_tlog_proof(
    proof: TlogProof | bytes,
    *,
    leaf_hash: bytes,
    log_keys: Sequence[NoteVerifier],
    cosigners: Sequence[NoteVerifier] = (),
    quorum: int = 0,
    now: datetime | None = None,
    checkpoints: CheckpointCache | None = None,
) -> VerifiedTlogProof:
    """Verify a tlog-proof offline: checkpoint signature and quorum, then leaf inclusion.

    Checks, in order: the proof parses (when given bytes); :func:`open_checkpoint` with the same
    keys and quorum (or, without cosigners, a checkpoint ``checkpoints`` verified with the same
    log keys before); the inclusion proof shows ``leaf_hash`` at ``index`` under the
    checkpoint's root (RFC 9162 §2.1.3.2). Raises :class:`RemoteError` (``invalid_claims`` when
    the inclusion does not verify; otherwise as :func:`parse_tlog_proof` and
    :func:`open_checkpoint`).
    """
    parsed = parse_tlog_proof(proof) if isinstance(proof, bytes) else proof
    if checkpoints is not None and not cosigners and quorum == 0:
        checkpoint = checkpoints.open(parsed.checkpoint, log_keys=log_keys, now=now)
    else:
        checkpoint = open_checkpoint(
            parsed.checkpoint, log_keys=log_keys, cosigners=cosigners, quorum=quorum, now=now
        )
    size, root = checkpoint.checkpoint.size, checkpoint.checkpoint.root
    if not verify_inclusion(parsed.index, size, leaf_hash, parsed.inclusion_proof, root):
        raise RemoteError("invalid_claims", "tlog-proof: inclusion proof does not verify")
    return VerifiedTlogProof(parsed.index, leaf_hash, checkpoint, parsed.extra, witness=_WITNESS)


# ---------------------------------------------------------------------- federation naming


def _check_segments(federation: str, org: str) -> None:
    if not (
        isinstance(federation, str)
        and isinstance(org, str)
        and all(_NAME_SEGMENT.fullmatch(label) for label in federation.split("."))
        and "." in federation
        and _NAME_SEGMENT.fullmatch(org)
    ):
        raise LocalError(
            "federation must be a lowercase DNS-style name and org one lowercase label"
        )


def audit_log_origin(federation: str, org: str) -> str:
    """Checkpoint origin (and log key name) of an org's audit log: ``<federation>/<org>/audit-log``.

    ``federation`` is the federation's DNS-style id (e.g. ``zvh-veenstad.example``), ``org`` the
    member's id in the directory (its OIN). See docs/decisions/0051.
    """
    _check_segments(federation, org)
    return f"{federation}/{org}/audit-log"


def witness_key_name(federation: str, org: str) -> str:
    """Cosigner key name of an org's node acting as witness: ``<federation>/<org>/witness``."""
    _check_segments(federation, org)
    return f"{federation}/{org}/witness"
