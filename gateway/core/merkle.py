"""RFC 9162 Merkle tree: hashing, an incremental tree that serves proofs, and proof verifiers.

Rules enforced, with the section of RFC 9162 (which keeps RFC 6962's hashing unchanged):

- §2.1.1 Merkle Tree Hash with SHA-256 and domain separation: ``leaf = SHA-256(0x00 || data)``,
  ``node = SHA-256(0x01 || left || right)``; the tree of ``n > 1`` leaves splits at ``k``, the
  largest power of two smaller than ``n``; the empty tree hashes to ``SHA-256("")``.
- §2.1.3.1 inclusion proofs (audit paths) are produced leaf-sibling first, root-child last.
- §2.1.3.2 inclusion verification: :func:`verify_inclusion`.
- §2.1.4.1 consistency proofs between two sizes of the same tree.
- §2.1.4.2 consistency verification: :func:`verify_consistency` (and :func:`check_consistency`,
  which also tells a garbage proof from a proven fork).

The verifiers are written from the RFC text independently of :class:`MerkleTree`; they share
only :func:`node_hash`. They never raise on hostile input: anything out of bounds (wrong hash
length, index or size out of range, too many proof hashes) is simply "does not verify".

Bounds (named, so a peer cannot make us loop or allocate without limit):

- :data:`MAX_TREE_SIZE` — sizes and indexes are below ``2**63``: they fit a signed 64-bit
  integer in every language a partner may use, and at our volume (well under 10**9 records a
  year) the limit is unreachable.
- :data:`MAX_INCLUSION_PROOF_HASHES` — 63: an audit path has one hash per level, and a tree of
  fewer than ``2**63`` leaves has at most 63 levels.
- :data:`MAX_CONSISTENCY_PROOF_HASHES` — 64: a consistency proof is the root of one subtree of
  the old tree plus that node's path in the new tree, so at most ``ceil(log2(new_size)) + 1``
  hashes (:func:`consistency_proof_length`, checked against real proofs in the tests). C2SP
  tlog-witness caps its request at 63 proof lines, which suffices for trees up to ``2**62``
  leaves; the witness format enforces that cap separately.

This module is pure: it hashes bytes it is given and keeps state only inside a tree object.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Callable, Iterable, Sequence

from gateway.errors import LocalError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "MAX_CONSISTENCY_PROOF_HASHES",
    "MAX_INCLUSION_PROOF_HASHES",
    "MAX_TREE_SIZE",
    "TILE_HEIGHT",
    "ConsistencyCheck",
    "LeafSource",
    "MerkleTree",
    "check_consistency",
    "consistency_proof_length",
    "inclusion_proof_length",
    "leaf_hash",
    "node_hash",
    "root_of",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
"""Bytes in a SHA-256 hash: every leaf hash, node hash, root and proof element."""

MAX_TREE_SIZE = 2**63 - 1
"""Largest tree size (leaves) we accept or produce; indexes are below it (see module doc)."""

MAX_INCLUSION_PROOF_HASHES = 63
"""Most hashes in an inclusion proof for a tree of at most :data:`MAX_TREE_SIZE` leaves."""

MAX_CONSISTENCY_PROOF_HASHES = 64
"""Most hashes in a consistency proof between sizes of at most :data:`MAX_TREE_SIZE` leaves."""

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"

EMPTY_ROOT = hashlib.sha256(b"").digest()
"""Root of the empty tree, ``SHA-256("")`` (RFC 9162 §2.1.1)."""

_sha256 = hashlib.sha256


def leaf_hash(data: bytes) -> bytes:
    """Return the RFC 9162 leaf hash ``SHA-256(0x00 || data)`` of one log entry."""
    return _sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return the RFC 9162 interior node hash ``SHA-256(0x01 || left || right)``."""
    return _sha256(_NODE_PREFIX + left + right).digest()


def _largest_power_of_two_below(n: int) -> int:
    """The ``k`` of RFC 9162 §2.1.1: the largest power of two strictly smaller than ``n > 1``."""
    return 1 << ((n - 1).bit_length() - 1)


def _check_hash(value: bytes, what: str) -> None:
    if not isinstance(value, bytes | bytearray) or len(value) != HASH_SIZE:
        raise LocalError(f"{what} must be {HASH_SIZE} bytes")


LeafSource = Callable[[int, int], Sequence[bytes]]
"""Where a tree with pruned low levels reads leaf hashes back: ``source(lo, hi)`` returns the
leaf hashes ``lo .. hi - 1`` in order (the audit log reads them from its stored records)."""

TILE_HEIGHT = 8
"""Levels below this are pruned for old leaves when a tree has a :data:`LeafSource`: a tile is an
aligned run of ``2**TILE_HEIGHT`` leaves, and its root (a level-``TILE_HEIGHT`` node) stays."""


class MerkleTree:
    """An append-only RFC 9162 Merkle tree over leaf hashes, serving roots and proofs.

    The tree keeps every *complete* subtree hash: level 0 holds the leaf hashes, level ``h``
    the hash of each aligned run of ``2**h`` leaves. Appending costs one leaf store plus, on
    average, one node hash; memory is about ``2 * size * 32`` bytes in flat byte arrays. Any
    earlier size stays addressable, so :meth:`root`, :meth:`inclusion_proof` and
    :meth:`consistency_proof` work for every ``size <= self.size`` in ``O(log**2 size)``
    hashes at worst (only the right edge of a past tree is ever incomplete).

    The tree holds leaf *hashes* only, never record content: the caller hashes each entry with
    :func:`leaf_hash` (or keeps stored leaf hashes) and appends the result.

    Misuse (a hash of the wrong length, a size or index out of range) raises
    :class:`~gateway.errors.LocalError`; the tree is unchanged when a call raises.

    **Bounded memory.** Given a ``source`` (:data:`LeafSource`), the tree keeps the levels below
    :data:`TILE_HEIGHT` only for the last ``keep_tiles`` complete tiles and the current one;
    older tiles keep only their root, so memory is ``64 / 2**TILE_HEIGHT`` bytes per leaf (a
    quarter of a byte) plus about ``keep_tiles * 16`` KiB, instead of 64 bytes per leaf. A proof
    that needs a node inside an old tile reads the tile's leaves from ``source``, checks that they
    hash to the tile's kept root (anything else raises :class:`LocalError`: the stored leaves
    were altered) and keeps that one tile at hand for the next proof. Appends never read.
    """

    __slots__ = ("_base", "_keep", "_levels", "_size", "_source", "_tile")

    def __init__(
        self,
        leaf_hashes: Iterable[bytes] = (),
        *,
        source: LeafSource | None = None,
        keep_tiles: int = 64,
    ) -> None:
        """Create a tree, optionally filled with ``leaf_hashes`` in order; ``source``: prune the
        low levels of old leaves and read them back from it (class docstring)."""
        self._levels: list[bytearray] = [bytearray()]
        self._size = 0
        self._source = source
        self._keep = keep_tiles
        #: The first leaf whose low-level nodes are kept (a multiple of the tile width).
        self._base = 0
        #: The last tile read back from the source: (its first leaf, its levels below the root).
        self._tile: tuple[int, list[bytes]] | None = None
        self.extend(leaf_hashes)

    @property
    def size(self) -> int:
        """Number of leaves appended so far."""
        return self._size

    def append(self, leaf: bytes) -> int:
        """Append one 32-byte leaf hash; return its index (the tree size before the append)."""
        _check_hash(leaf, "leaf hash")
        if self._size >= MAX_TREE_SIZE:
            raise LocalError("Merkle tree is full (MAX_TREE_SIZE leaves)")
        index = self._size
        levels = self._levels
        levels[0] += leaf
        self._size = index + 1
        # Every trailing 1-bit of the new size closes a complete subtree one level up.
        level = 0
        n = index + 1
        node = bytes(leaf)
        while n & 1 == 0:
            row = levels[level]
            left = bytes(row[-2 * HASH_SIZE : -HASH_SIZE])
            node = _sha256(_NODE_PREFIX + left + node).digest()
            level += 1
            if level == len(levels):
                levels.append(bytearray())
            levels[level] += node
            n >>= 1
        if self._source is not None and self._size - self._base >= (self._keep + 1) << TILE_HEIGHT:
            self._prune_oldest_tile()
        return index

    def _prune_oldest_tile(self) -> None:
        """Forget the low levels of the oldest tile kept (its root stays at level TILE_HEIGHT)."""
        for height in range(TILE_HEIGHT):
            del self._levels[height][: (1 << (TILE_HEIGHT - height)) * HASH_SIZE]
        self._base += 1 << TILE_HEIGHT

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        """Append each 32-byte leaf hash in order (same contract as :meth:`append`)."""
        for leaf in leaf_hashes:
            self.append(leaf)

    def leaf(self, index: int) -> bytes:
        """Return the leaf hash at ``index`` (``0 <= index < size``)."""
        self._check_index(index, self._size)
        return self._node(0, index)

    def root(self, size: int | None = None) -> bytes:
        """Return the RFC 9162 Merkle Tree Hash of the first ``size`` leaves (default: all)."""
        size = self._size if size is None else size
        self._check_size(size)
        if size == 0:
            return EMPTY_ROOT
        return self._range_hash(0, size)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """Return the RFC 9162 §2.1.3.1 inclusion proof of leaf ``index`` in the tree of ``size``.

        The list runs from the leaf's sibling up to the root's child; it is empty for a tree of
        one leaf. Raises :class:`LocalError` unless ``0 <= index < size <= self.size``.
        """
        size = self._size if size is None else size
        self._check_size(size)
        self._check_index(index, size)
        top_down: list[bytes] = []
        lo, hi = 0, size
        while hi - lo > 1:
            k = _largest_power_of_two_below(hi - lo)
            if index < lo + k:
                top_down.append(self._range_hash(lo + k, hi))
                hi = lo + k
            else:
                top_down.append(self._range_hash(lo, lo + k))
                lo += k
        top_down.reverse()
        return top_down

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """Return the RFC 9162 §2.1.4.1 consistency proof from ``old_size`` to ``new_size``.

        Empty when ``old_size`` is 0 or equals ``new_size`` (nothing to prove beyond comparing
        roots). Raises :class:`LocalError` unless ``0 <= old_size <= new_size <= self.size``.
        """
        new_size = self._size if new_size is None else new_size
        self._check_size(new_size)
        if not 0 <= old_size <= new_size:
            raise LocalError("consistency proof needs 0 <= old_size <= new_size")
        if old_size in (0, new_size):
            return []
        # SUBPROOF(m, D[lo:hi], b), unrolled: m is relative to lo.
        top_down: list[bytes] = []
        lo, hi, m, complete = 0, new_size, old_size, True
        while m != hi - lo:
            k = _largest_power_of_two_below(hi - lo)
            if m <= k:
                top_down.append(self._range_hash(lo + k, hi))
                hi = lo + k
            else:
                top_down.append(self._range_hash(lo, lo + k))
                lo, m, complete = lo + k, m - k, False
        if not complete:
            top_down.append(self._range_hash(lo, hi))
        top_down.reverse()
        return top_down

    # ------------------------------------------------------------------ internals

    def _range_hash(self, lo: int, hi: int) -> bytes:
        """MTH(D[lo:hi]) for ``lo < hi <= size`` where ``lo`` is aligned as RFC 9162 splits are.

        Decomposes the range into aligned complete subtrees (largest first), which are stored,
        and folds them from the right, exactly as the recursive definition does.
        """
        parts: list[bytes] = []
        while lo < hi:
            width = hi - lo
            height = width.bit_length() - 1
            if lo:
                height = min(height, (lo & -lo).bit_length() - 1)
            parts.append(self._node(height, lo >> height))
            lo += 1 << height
        node = parts[-1]
        for left in reversed(parts[:-1]):
            node = _sha256(_NODE_PREFIX + left + node).digest()
        return node

    def _node(self, height: int, position: int) -> bytes:
        """The complete subtree hash at ``height`` covering leaves from ``position << height``."""
        if height >= TILE_HEIGHT or position << height >= self._base:
            start = (position - (self._base >> height if height < TILE_HEIGHT else 0)) * HASH_SIZE
            return bytes(self._levels[height][start : start + HASH_SIZE])
        first = (position << height) >> TILE_HEIGHT << TILE_HEIGHT
        nodes = self._read_tile(first)
        # The tile's nodes below its root, level by level: level h starts at sum of the widths
        # of the levels below it.
        offset = sum(1 << (TILE_HEIGHT - h) for h in range(height))
        return nodes[offset + (((position << height) - first) >> height)]

    def _read_tile(self, first: int) -> list[bytes]:
        """The nodes below the root of the old tile from leaf ``first``, read back from the
        source and checked against the kept root (class docstring)."""
        if self._tile is not None and self._tile[0] == first:
            return self._tile[1]
        source = self._source
        if source is None:  # only a tree with a source prunes: unreachable
            raise LocalError("no leaf source to read a pruned tile from")
        width = 1 << TILE_HEIGHT
        leaves = [bytes(leaf) for leaf in source(first, first + width)]
        if len(leaves) != width or any(len(leaf) != HASH_SIZE for leaf in leaves):
            raise LocalError(f"the stored leaves from {first} are not a tile of {width} hashes")
        nodes, row = list(leaves), leaves
        while len(row) > 2:
            row = [node_hash(row[i], row[i + 1]) for i in range(0, len(row), 2)]
            nodes.extend(row)
        root = node_hash(row[0], row[1])
        kept = self._node(TILE_HEIGHT, first >> TILE_HEIGHT)
        if root != kept:
            raise LocalError(f"the stored leaves from {first} do not hash to the tree's node")
        self._tile = (first, nodes)
        return nodes

    def _check_size(self, size: int) -> None:
        if not isinstance(size, int) or not 0 <= size <= self._size:
            raise LocalError(f"tree size must be between 0 and {self._size}")

    @staticmethod
    def _check_index(index: int, size: int) -> None:
        if not isinstance(index, int) or not 0 <= index < size:
            raise LocalError("leaf index out of range")


def root_of(leaf_hashes: Iterable[bytes]) -> bytes:
    """Return the RFC 9162 Merkle Tree Hash of ``leaf_hashes`` (``EMPTY_ROOT`` when empty)."""
    return MerkleTree(leaf_hashes).root()


# ---------------------------------------------------------------------- proof sizes


def inclusion_proof_length(index: int, size: int) -> int:
    """Number of hashes in a correct inclusion proof of ``index`` in a tree of ``size``."""
    if not 0 <= index < size <= MAX_TREE_SIZE:
        raise LocalError("inclusion proof needs 0 <= index < size <= MAX_TREE_SIZE")
    # Levels where the path has a sibling: below the point where index and the last leaf
    # diverge every level counts; above it only levels where the index is a right child.
    inner = (index ^ (size - 1)).bit_length()
    border = bin(index >> inner).count("1")
    return inner + border


def consistency_proof_length(old_size: int, new_size: int) -> int:
    """Number of hashes in a correct consistency proof from ``old_size`` to ``new_size``."""
    if not 0 <= old_size <= new_size <= MAX_TREE_SIZE:
        raise LocalError("consistency proof needs 0 <= old_size <= new_size <= MAX_TREE_SIZE")
    if old_size in (0, new_size):
        return 0
    # The proof is the root of the largest complete subtree ending at old_size (the "seed",
    # left out when old_size is a power of two: it is then the old root itself), followed by
    # that node's inclusion path in the new tree, one level of subtrees up.
    level = (old_size & -old_size).bit_length() - 1
    index = (old_size - 1) >> level
    inner = (index ^ ((new_size - 1) >> level)).bit_length()
    border = bin(index >> inner).count("1")
    return (1 if index else 0) + inner + border


# ---------------------------------------------------------------------- verifiers


def _is_hash(value: object) -> bool:
    return isinstance(value, bytes) and len(value) == HASH_SIZE


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> bool:
    """Return True iff ``proof`` shows leaf hash ``leaf`` at ``index`` in the tree ``root``.

    RFC 9162 §2.1.3.2, step by step. False (never an exception) for any out-of-bounds input:
    ``index >= size``, ``size > MAX_TREE_SIZE``, more than :data:`MAX_INCLUSION_PROOF_HASHES`
    hashes, or any hash not exactly 32 bytes.
    """
    if not 0 <= index < size:
        return False
    if size > MAX_TREE_SIZE or len(proof) > MAX_INCLUSION_PROOF_HASHES:
        return False
    if not (_is_hash(leaf) and _is_hash(root) and all(_is_hash(p) for p in proof)):
        return False
    # 2. fn = leaf_index, sn = tree_size - 1, r = hash.
    fn, sn, r = index, size - 1, leaf
    # 3. For each value p in the inclusion_path array:
    for p in proof:
        # a. If sn is 0, then stop the iteration and fail the proof verification.
        if sn == 0:
            return False
        # b. If LSB(fn) is set, or if fn is equal to sn, then:
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            # If LSB(fn) is not set, right-shift both until LSB(fn) is set or fn is 0.
            if not fn & 1:
                while not (fn & 1 or fn == 0):
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        # c. Finally, right-shift both fn and sn one time.
        fn >>= 1
        sn >>= 1
    # 4. Compare r against the root; sn must have reached 0 (the proof was not too short).
    return sn == 0 and r == root


class ConsistencyCheck(enum.Enum):
    """Outcome of :func:`check_consistency`.

    ``OLD_ROOT_MISMATCH`` is the interesting failure: the proof rebuilds the *new* root, so (by
    collision resistance of SHA-256) its hashes are the new tree's real nodes, and the first
    ``old_size`` leaves of the new tree do *not* hash to the old root. If both roots come from
    checkpoints the same log signed, the log has forked; the proof is the evidence.
    ``MALFORMED`` (sizes or shape) and ``NEW_ROOT_MISMATCH`` prove nothing about the log.
    """

    CONSISTENT = "consistent"
    MALFORMED = "malformed"
    NEW_ROOT_MISMATCH = "new_root_mismatch"
    OLD_ROOT_MISMATCH = "old_root_mismatch"


def check_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> ConsistencyCheck:
    """Check an RFC 9162 §2.1.4.2 consistency proof and say how it failed, if it did.

    Edge cases the RFC leaves to the caller: ``old_size == 0`` is consistent with anything when
    the proof is empty and ``old_root`` is :data:`EMPTY_ROOT`; ``old_size == new_size`` is
    consistent when the proof is empty and the roots are equal (different roots are
    ``OLD_ROOT_MISMATCH``: two trees of one size with two roots). ``old_size > new_size``,
    sizes above :data:`MAX_TREE_SIZE`, more than :data:`MAX_CONSISTENCY_PROOF_HASHES` hashes
    or any hash not exactly 32 bytes are ``MALFORMED``.
    """
    if not 0 <= old_size <= new_size <= MAX_TREE_SIZE:
        return ConsistencyCheck.MALFORMED
    if len(proof) > MAX_CONSISTENCY_PROOF_HASHES:
        return ConsistencyCheck.MALFORMED
    if not (_is_hash(old_root) and _is_hash(new_root) and all(_is_hash(c) for c in proof)):
        return ConsistencyCheck.MALFORMED
    if old_size == 0:
        if proof:
            return ConsistencyCheck.MALFORMED
        if old_root != EMPTY_ROOT:
            return ConsistencyCheck.OLD_ROOT_MISMATCH
        return ConsistencyCheck.CONSISTENT
    if old_size == new_size:
        if proof:
            return ConsistencyCheck.MALFORMED
        if old_root != new_root:
            return ConsistencyCheck.OLD_ROOT_MISMATCH
        return ConsistencyCheck.CONSISTENT
    # 1. If consistency_path is an empty array, stop and fail the proof verification.
    if not proof:
        return ConsistencyCheck.MALFORMED
    path = list(proof)
    # 2. If first is an exact power of 2, then prepend first_hash to the consistency_path.
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    # 3. Set fn to first - 1 and sn to second - 1.
    fn, sn = old_size - 1, new_size - 1
    # 4. If LSB(fn) is set, then right-shift both fn and sn equally until LSB(fn) is not set.
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # 5. Set both fr and sr to the first value in the consistency_path array.
    fr = sr = path[0]
    # 6. For each subsequent value c in the consistency_path array:
    for c in path[1:]:
        # a. If sn is 0, then stop the iteration and fail the proof verification.
        if sn == 0:
            return ConsistencyCheck.MALFORMED
        # b. If LSB(fn) is set, or if fn is equal to sn, then:
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not (fn & 1 or fn == 0):
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        # c. Finally, right-shift both fn and sn one time.
        fn >>= 1
        sn >>= 1
    # 7. fr must equal first_hash, sr must equal second_hash, and sn must be 0.
    if sn != 0:
        return ConsistencyCheck.MALFORMED
    if sr != new_root:
        return ConsistencyCheck.NEW_ROOT_MISMATCH
    if fr != old_root:
        return ConsistencyCheck.OLD_ROOT_MISMATCH
    return ConsistencyCheck.CONSISTENT


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """Return True iff ``proof`` shows the tree ``(old_size, old_root)`` is a prefix of
    ``(new_size, new_root)`` (RFC 9162 §2.1.4.2; edge cases as in :func:`check_consistency`).
    """
    return check_consistency(old_size, new_size, old_root, new_root, proof) is (
        ConsistencyCheck.CONSISTENT
    )
