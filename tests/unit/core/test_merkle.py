"""RFC 9162 Merkle tree: vectors, every proof for small trees, tampering, and tamper evidence.

Threats: a log operator who changes, deletes or truncates records, or forks the log; a peer who
sends a forged proof. Every proof the tree makes must verify, and every single change to a
leaf, root, proof, index or size must make verification fail.
"""

from __future__ import annotations

import hashlib
from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core.merkle import (
    EMPTY_ROOT,
    MAX_CONSISTENCY_PROOF_HASHES,
    MAX_INCLUSION_PROOF_HASHES,
    MAX_TREE_SIZE,
    ConsistencyCheck,
    MerkleTree,
    check_consistency,
    consistency_proof_length,
    inclusion_proof_length,
    leaf_hash,
    node_hash,
    root_of,
    verify_consistency,
    verify_inclusion,
)
from gateway.errors import LocalError
from tests.unit.core.c2sp_vectors import (
    RFC6962_CONSISTENCY_PROOFS,
    RFC6962_INCLUSION_PROOFS,
    RFC6962_LEAVES,
    RFC6962_ROOTS,
)

MAX_SMALL = 64
LEAVES = [leaf_hash(b"record %d" % i) for i in range(MAX_SMALL)]
TREE = MerkleTree(LEAVES)

# ---------------------------------------------------------------- reference (RFC 9162 §2.1)


@cache
def ref_mth(lo: int, hi: int) -> bytes:
    """MTH(D[lo:hi]) by the recursive definition of RFC 9162 §2.1.1."""
    n = hi - lo
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return LEAVES[lo]
    k = 1 << ((n - 1).bit_length() - 1)
    return node_hash(ref_mth(lo, lo + k), ref_mth(lo + k, hi))


def ref_path(m: int, lo: int, hi: int) -> list[bytes]:
    """PATH(m, D[lo:hi]) of RFC 9162 §2.1.3.1."""
    n = hi - lo
    if n == 1:
        return []
    k = 1 << ((n - 1).bit_length() - 1)
    if m < k:
        return [*ref_path(m, lo, lo + k), ref_mth(lo + k, hi)]
    return [*ref_path(m - k, lo + k, hi), ref_mth(lo, lo + k)]


def ref_subproof(m: int, lo: int, hi: int, complete: bool) -> list[bytes]:
    """SUBPROOF(m, D[lo:hi], b) of RFC 9162 §2.1.4.1."""
    n = hi - lo
    if m == n:
        return [] if complete else [ref_mth(lo, hi)]
    k = 1 << ((n - 1).bit_length() - 1)
    if m <= k:
        return [*ref_subproof(m, lo, lo + k, complete), ref_mth(lo + k, hi)]
    return [*ref_subproof(m - k, lo + k, hi, False), ref_mth(lo, lo + k)]


def ref_shape(m: int, n: int) -> list[bool]:
    """Which side each sibling of PATH(m, D[n]) is on, leaf first (True: right)."""
    if n == 1:
        return []
    k = 1 << ((n - 1).bit_length() - 1)
    return [*ref_shape(m, k), True] if m < k else [*ref_shape(m - k, n - k), False]


def flip(data: bytes, position: int = 0) -> bytes:
    """``data`` with one bit of byte ``position`` flipped."""
    return data[:position] + bytes([data[position] ^ 1]) + data[position + 1 :]


# ---------------------------------------------------------------- vectors


@pytest.mark.parametrize("size", range(len(RFC6962_ROOTS)))
def test_rfc6962_roots_reproduce(size: int) -> None:
    leaves = [leaf_hash(data) for data in RFC6962_LEAVES[:size]]
    assert root_of(leaves) == RFC6962_ROOTS[size]
    assert MerkleTree([leaf_hash(d) for d in RFC6962_LEAVES]).root(size) == RFC6962_ROOTS[size]


def test_empty_tree_root_is_hash_of_nothing() -> None:
    assert MerkleTree().root() == EMPTY_ROOT == hashlib.sha256(b"").digest()


@pytest.mark.parametrize(("index", "size", "proof"), RFC6962_INCLUSION_PROOFS)
def test_rfc6962_inclusion_proofs_reproduce_and_verify(
    index: int, size: int, proof: list[bytes]
) -> None:
    tree = MerkleTree(leaf_hash(d) for d in RFC6962_LEAVES)
    assert tree.inclusion_proof(index, size) == proof
    leaf = leaf_hash(RFC6962_LEAVES[index])
    assert verify_inclusion(index, size, leaf, proof, RFC6962_ROOTS[size])


@pytest.mark.parametrize(("old", "new", "proof"), RFC6962_CONSISTENCY_PROOFS)
def test_rfc6962_consistency_proofs_reproduce_and_verify(
    old: int, new: int, proof: list[bytes]
) -> None:
    tree = MerkleTree(leaf_hash(d) for d in RFC6962_LEAVES)
    assert tree.consistency_proof(old, new) == proof
    assert verify_consistency(old, new, RFC6962_ROOTS[old], RFC6962_ROOTS[new], proof)


def test_hashing_is_domain_separated() -> None:
    # A leaf can never be confused with an interior node (second-preimage defence, RFC 9162 §2.1.1).
    left, right = leaf_hash(b"a"), leaf_hash(b"b")
    assert leaf_hash(left + right) != node_hash(left, right)
    assert leaf_hash(b"") == hashlib.sha256(b"\x00").digest()


# ---------------------------------------------------------------- every proof, sizes 1-64


@pytest.mark.parametrize("size", range(1, MAX_SMALL + 1))
def test_every_inclusion_proof_matches_rfc_and_verifies(size: int) -> None:
    root = TREE.root(size)
    assert root == ref_mth(0, size)
    for index in range(size):
        proof = TREE.inclusion_proof(index, size)
        assert proof == ref_path(index, 0, size)
        assert len(proof) == inclusion_proof_length(index, size)
        assert verify_inclusion(index, size, LEAVES[index], proof, root)


@pytest.mark.parametrize("new", range(1, MAX_SMALL + 1))
def test_every_consistency_proof_matches_rfc_and_verifies(new: int) -> None:
    for old in range(new + 1):
        proof = TREE.consistency_proof(old, new)
        if 0 < old < new:
            assert proof == ref_subproof(old, 0, new, True)
        assert len(proof) == consistency_proof_length(old, new)
        assert verify_consistency(old, new, TREE.root(old), TREE.root(new), proof)


@pytest.mark.parametrize("size", range(1, MAX_SMALL + 1))
def test_tampered_inclusion_inputs_fail(size: int) -> None:
    root = TREE.root(size)
    for index in range(size):
        proof = TREE.inclusion_proof(index, size)
        leaf = LEAVES[index]
        assert not verify_inclusion(index, size, flip(leaf), proof, root), "leaf"
        assert not verify_inclusion(index, size, leaf, proof, flip(root, 31)), "root"
        for i in range(len(proof)):
            bad = [*proof[:i], flip(proof[i], i % 32), *proof[i + 1 :]]
            assert not verify_inclusion(index, size, leaf, bad, root), "proof element"
        for other in (index - 1, index + 1):
            if 0 <= other < size:
                assert not verify_inclusion(other, size, leaf, proof, root), "index"
        for other_size in (size - 1, size + 1):
            # The proof binds the size only through the path's shape; where two sizes give the
            # same shape, the signed checkpoint binds it (test_note: a changed size line fails).
            same_shape = index < other_size and ref_shape(index, other_size) == ref_shape(
                index, size
            )
            assert verify_inclusion(index, other_size, leaf, proof, root) is same_shape, "size"
        if proof:
            assert not verify_inclusion(index, size, leaf, proof[:-1], root), "truncated"
        assert not verify_inclusion(index, size, leaf, [*proof, root], root), "extended"


@pytest.mark.parametrize("new", range(2, MAX_SMALL + 1))
def test_tampered_consistency_inputs_fail(new: int) -> None:
    new_root = TREE.root(new)
    for old in range(1, new):
        proof = TREE.consistency_proof(old, new)
        old_root = TREE.root(old)
        assert not verify_consistency(old, new, flip(old_root), new_root, proof), "old root"
        assert not verify_consistency(old, new, old_root, flip(new_root), proof), "new root"
        for i in range(len(proof)):
            bad = [*proof[:i], flip(proof[i], i % 32), *proof[i + 1 :]]
            assert not verify_consistency(old, new, old_root, new_root, bad), "proof element"
        # As for inclusion, a size is bound by the proof only where the proof's length changes;
        # otherwise by the checkpoint signature over (size, root).
        for other in (old - 1, old + 1):
            if other >= 1 and consistency_proof_length(other, new) != len(proof):
                assert not verify_consistency(other, new, old_root, new_root, proof), "old size"
        for other in (new - 1, new + 1):
            if other > old and consistency_proof_length(old, other) != len(proof):
                assert not verify_consistency(old, other, old_root, new_root, proof), "new size"
        assert not verify_consistency(old, new, old_root, new_root, proof[:-1]), "truncated"
        assert not verify_consistency(old, new, old_root, new_root, [*proof, new_root])


# ---------------------------------------------------------------- verifier edge cases and bounds


def test_inclusion_rejects_out_of_range_and_malformed_input() -> None:
    proof = TREE.inclusion_proof(3, 8)
    root = TREE.root(8)
    assert verify_inclusion(3, 8, LEAVES[3], proof, root)
    assert not verify_inclusion(8, 8, LEAVES[3], proof, root), "index == size"
    assert not verify_inclusion(-1, 8, LEAVES[3], proof, root), "negative index"
    assert not verify_inclusion(0, 0, LEAVES[0], [], EMPTY_ROOT), "empty tree has no leaves"
    assert not verify_inclusion(3, MAX_TREE_SIZE + 1, LEAVES[3], proof, root), "size bound"
    assert not verify_inclusion(3, 8, LEAVES[3][:31], proof, root), "short leaf"
    assert not verify_inclusion(3, 8, LEAVES[3], proof, root + b"\x00"), "long root"
    assert not verify_inclusion(3, 8, LEAVES[3], [p[:31] for p in proof], root), "short hash"
    too_long = [root] * (MAX_INCLUSION_PROOF_HASHES + 1)
    assert not verify_inclusion(0, MAX_TREE_SIZE, LEAVES[0], too_long, root), "proof bound"


def test_consistency_edge_cases() -> None:
    root5, root8 = TREE.root(5), TREE.root(8)
    assert verify_consistency(0, 8, EMPTY_ROOT, root8, []), "empty tree is a prefix of all"
    assert not verify_consistency(0, 8, root5, root8, []), "size 0 must have the empty root"
    assert not verify_consistency(0, 8, EMPTY_ROOT, root8, [root5]), "size 0 takes no proof"
    assert verify_consistency(8, 8, root8, root8, [])
    assert not verify_consistency(8, 8, root8, root8, [root8]), "equal sizes take no proof"
    assert not verify_consistency(8, 5, root8, root5, []), "old > new"
    assert not verify_consistency(5, 8, root5, root8, []), "RFC 9162 §2.1.4.2 step 1"
    assert not verify_consistency(-1, 8, root5, root8, [])
    assert not verify_consistency(5, MAX_TREE_SIZE + 1, root5, root8, [root5])
    too_long = [root5] * (MAX_CONSISTENCY_PROOF_HASHES + 1)
    assert not verify_consistency(1, MAX_TREE_SIZE, root5, root8, too_long)


def test_sizes_are_bound_by_the_checkpoint_not_by_the_proof() -> None:
    # RFC 9162 proofs authenticate leaf and root; a different size with the same path shape
    # verifies too. That is why a root is only ever trusted together with its signed size.
    proof = TREE.inclusion_proof(0, 3)
    assert ref_shape(0, 3) == ref_shape(0, 4)
    assert verify_inclusion(0, 4, LEAVES[0], proof, TREE.root(3))
    assert not verify_inclusion(0, 5, LEAVES[0], proof, TREE.root(3)), "different shape"


def test_check_consistency_tells_garbage_from_a_proven_fork() -> None:
    ours = MerkleTree(LEAVES[:12])
    forked = MerkleTree([*LEAVES[:5], *(leaf_hash(b"rewritten %d" % i) for i in range(7))])
    honest_proof_of_fork = forked.consistency_proof(7, 12)
    # The fork's own proof rebuilds its new root but not the root we saw at size 7.
    assert (
        check_consistency(7, 12, ours.root(7), forked.root(12), honest_proof_of_fork)
        is ConsistencyCheck.OLD_ROOT_MISMATCH
    )
    garbage = [leaf_hash(b"x")] * len(honest_proof_of_fork)
    assert (
        check_consistency(7, 12, ours.root(7), forked.root(12), garbage)
        is ConsistencyCheck.NEW_ROOT_MISMATCH
    )
    assert (
        check_consistency(7, 12, ours.root(7), forked.root(12), garbage[:1])
        is ConsistencyCheck.MALFORMED
    )
    assert (
        check_consistency(12, 12, ours.root(12), forked.root(12), [])
        is ConsistencyCheck.OLD_ROOT_MISMATCH
    )
    assert (
        check_consistency(7, 12, ours.root(7), ours.root(12), ours.consistency_proof(7, 12))
        is ConsistencyCheck.CONSISTENT
    )


def test_proof_length_bounds_are_what_the_constants_say() -> None:
    assert inclusion_proof_length(0, MAX_TREE_SIZE) == MAX_INCLUSION_PROOF_HASHES == 63
    assert consistency_proof_length(1, MAX_TREE_SIZE) == 63, "power-of-two old tree: no seed"
    assert consistency_proof_length(3, MAX_TREE_SIZE) == MAX_CONSISTENCY_PROOF_HASHES == 64
    # tlog-witness sends at most 63 lines: enough for every tree up to 2**62 leaves.
    assert consistency_proof_length(3, 2**62) == 63
    # The length formula is exact for every small pair; the maximum grows as height + 1.
    for height in range(2, 7):
        sizes = range(1, 2**height + 1)
        longest = max(consistency_proof_length(m, n) for n in sizes for m in range(n + 1))
        assert longest == height + 1
        longest_path = max(inclusion_proof_length(m, n) for n in sizes for m in range(n))
        assert longest_path == height


def test_proof_length_rejects_out_of_range() -> None:
    with pytest.raises(LocalError):
        inclusion_proof_length(5, 5)
    with pytest.raises(LocalError):
        consistency_proof_length(6, 5)


# ---------------------------------------------------------------- the tree object


def test_tree_append_returns_index_and_keeps_leaves() -> None:
    tree = MerkleTree()
    assert [tree.append(leaf) for leaf in LEAVES[:5]] == [0, 1, 2, 3, 4]
    assert tree.size == 5
    assert [tree.leaf(i) for i in range(5)] == LEAVES[:5]


def test_tree_refuses_misuse_and_stays_unchanged() -> None:
    tree = MerkleTree(LEAVES[:5])
    before = tree.root()
    with pytest.raises(LocalError):
        tree.append(b"short")
    with pytest.raises(LocalError):
        tree.append("not bytes" * 4)  # type: ignore[arg-type]
    assert tree.size == 5
    assert tree.root() == before
    with pytest.raises(LocalError):
        tree.root(6)
    with pytest.raises(LocalError):
        tree.root(-1)
    with pytest.raises(LocalError):
        tree.leaf(5)
    with pytest.raises(LocalError):
        tree.inclusion_proof(5, 5)
    with pytest.raises(LocalError):
        tree.inclusion_proof(0, 6)
    with pytest.raises(LocalError):
        tree.consistency_proof(4, 3)
    with pytest.raises(LocalError):
        tree.consistency_proof(1, 6)


def test_past_roots_stay_available_as_the_tree_grows() -> None:
    tree = MerkleTree()
    roots = []
    for leaf in LEAVES:
        tree.append(leaf)
        roots.append(tree.root())
    assert [tree.root(n + 1) for n in range(len(LEAVES))] == roots


# ---------------------------------------------------------------- properties


@settings(max_examples=50, deadline=None)
@given(data=st.data(), size=st.integers(min_value=1, max_value=300))
def test_property_tree_proofs_always_verify(data: st.DataObject, size: int) -> None:
    leaves = [leaf_hash(b"p%d" % i) for i in range(size)]
    tree = MerkleTree(leaves)
    index = data.draw(st.integers(0, size - 1))
    sub = data.draw(st.integers(index + 1, size))
    assert verify_inclusion(
        index, sub, leaves[index], tree.inclusion_proof(index, sub), tree.root(sub)
    )
    old = data.draw(st.integers(0, size))
    proof = tree.consistency_proof(old, size)
    assert verify_consistency(old, size, tree.root(old), tree.root(size), proof)


@settings(max_examples=50, deadline=None)
@given(data=st.data(), size=st.integers(min_value=2, max_value=300))
def test_property_any_single_byte_change_fails(data: st.DataObject, size: int) -> None:
    leaves = [leaf_hash(b"q%d" % i) for i in range(size)]
    tree = MerkleTree(leaves)
    index = data.draw(st.integers(0, size - 1))
    proof = tree.inclusion_proof(index, size)
    root = tree.root(size)
    delta = data.draw(st.integers(1, 255))
    position = data.draw(st.integers(0, 31))

    def change(value: bytes) -> bytes:
        return value[:position] + bytes([value[position] ^ delta]) + value[position + 1 :]

    assert not verify_inclusion(index, size, leaves[index], proof, change(root))
    if proof:
        which = data.draw(st.integers(0, len(proof) - 1))
        bad = [*proof[:which], change(proof[which]), *proof[which + 1 :]]
        assert not verify_inclusion(index, size, leaves[index], bad, root)
    old = data.draw(st.integers(1, size - 1))
    cproof = tree.consistency_proof(old, size)
    assert not verify_consistency(old, size, change(tree.root(old)), root, cproof)
    assert not verify_consistency(old, size, tree.root(old), change(root), cproof)
    which = data.draw(st.integers(0, len(cproof) - 1))
    bad = [*cproof[:which], change(cproof[which]), *cproof[which + 1 :]]
    assert not verify_consistency(old, size, tree.root(old), root, bad)


# ---------------------------------------------------------------- tamper evidence (issue 7 §5)
#
# The node keeps record bodies and signs (size, root) checkpoints. `verify` rebuilds the tree from
# the stored records and compares it with the last checkpoint; a peer holds an older checkpoint
# and asks for a consistency proof. These tests show each tampering is caught by one or the other.

RECORDS = [b'{"record":%d,"name":"send case.referral"}' % i for i in range(20)]


def rebuild(records: list[bytes]) -> MerkleTree:
    return MerkleTree(leaf_hash(r) for r in records)


CHECKPOINT_SIZE = len(RECORDS)
CHECKPOINT_ROOT = rebuild(RECORDS).root()


def test_tamper_changed_byte_is_detected_locally_and_by_proofs() -> None:
    stored = list(RECORDS)
    stored[7] = stored[7].replace(b"referral", b"referrel")
    tree = rebuild(stored)
    assert tree.root(CHECKPOINT_SIZE) != CHECKPOINT_ROOT
    # An inclusion proof served for the changed record no longer matches the signed root.
    proof = tree.inclusion_proof(7, CHECKPOINT_SIZE)
    assert not verify_inclusion(7, CHECKPOINT_SIZE, leaf_hash(stored[7]), proof, CHECKPOINT_ROOT)


def test_tamper_deleted_record_is_detected() -> None:
    stored = RECORDS[:9] + RECORDS[10:]
    tree = rebuild(stored)
    assert tree.size < CHECKPOINT_SIZE, "verify: fewer records than the checkpoint signs"
    # Padding the log back to the signed size does not bring the signed root back.
    tree.append(leaf_hash(b"filler"))
    assert tree.size == CHECKPOINT_SIZE
    assert tree.root() != CHECKPOINT_ROOT


def test_tamper_truncated_log_is_detected_by_a_peer() -> None:
    truncated = rebuild(RECORDS[:12])
    assert truncated.size < CHECKPOINT_SIZE
    # The operator regrows the log past the size the peer saw; the peer's check still fails.
    for i in range(12):
        truncated.append(leaf_hash(b"new %d" % i))
    proof = truncated.consistency_proof(CHECKPOINT_SIZE, truncated.size)
    outcome = check_consistency(
        CHECKPOINT_SIZE, truncated.size, CHECKPOINT_ROOT, truncated.root(), proof
    )
    assert outcome is ConsistencyCheck.OLD_ROOT_MISMATCH


def test_tamper_fork_is_detected_by_consistency() -> None:
    history_a = rebuild([*RECORDS, b"a1", b"a2"])
    history_b = rebuild([*RECORDS[:15], b"b1", b"b2", b"b3", b"b4", b"b5", b"b6", b"b7"])
    # Peer X saw history A at size 22; history B is shown to X at size 22 and later at 22+.
    assert history_a.size == history_b.size == 22
    assert history_a.root() != history_b.root()
    proof = history_b.consistency_proof(CHECKPOINT_SIZE, 22)
    assert not verify_consistency(CHECKPOINT_SIZE, 22, CHECKPOINT_ROOT, history_b.root(), proof)
    assert verify_consistency(
        CHECKPOINT_SIZE, 22, CHECKPOINT_ROOT, history_a.root(), history_a.consistency_proof(20)
    )
