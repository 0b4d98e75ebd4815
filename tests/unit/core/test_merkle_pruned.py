"""A Merkle tree with a leaf source keeps bounded memory and serves the same roots and proofs.

Before: the audit log's tree kept every node of every level, 64 bytes per record for the life of
the log (a node writing 40,000 records a day grows by ~2.5 MiB a day, for ever). Now the levels
below ``TILE_HEIGHT`` are kept only for the last tiles; older nodes are recomputed from the
stored leaves, which must hash to the tile root the tree kept.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core.merkle import TILE_HEIGHT, MerkleTree
from gateway.errors import LocalError

TILE = 1 << TILE_HEIGHT


def _leaves(n: int) -> list[bytes]:
    return [hashlib.sha256(i.to_bytes(8, "big")).digest() for i in range(n)]


class Source:
    """The stored leaves, counting reads."""

    def __init__(self, leaves: list[bytes]) -> None:
        self.leaves = leaves
        self.reads = 0

    def __call__(self, lo: int, hi: int) -> list[bytes]:
        self.reads += 1
        return self.leaves[lo:hi]


def _pair(n: int, keep_tiles: int) -> tuple[MerkleTree, MerkleTree, Source]:
    leaves = _leaves(n)
    source = Source(leaves)
    return MerkleTree(leaves), MerkleTree(leaves, source=source, keep_tiles=keep_tiles), source


@settings(max_examples=40, deadline=None)
@given(
    size=st.integers(min_value=1, max_value=6 * TILE + 7),
    keep_tiles=st.integers(min_value=0, max_value=2),
    data=st.data(),
)
def test_a_pruned_tree_gives_the_full_trees_roots_and_proofs(
    size: int, keep_tiles: int, data: st.DataObject
) -> None:
    full, pruned, _ = _pair(size, keep_tiles)
    for _ in range(8):
        n = data.draw(st.integers(min_value=1, max_value=size))
        i = data.draw(st.integers(min_value=0, max_value=n - 1))
        old = data.draw(st.integers(min_value=0, max_value=n))
        assert pruned.root(n) == full.root(n)
        assert pruned.leaf(i) == full.leaf(i)
        assert pruned.inclusion_proof(i, n) == full.inclusion_proof(i, n)
        assert pruned.consistency_proof(old, n) == full.consistency_proof(old, n)


def test_memory_stays_bounded_as_the_tree_grows() -> None:
    full, pruned, source = _pair(40 * TILE, keep_tiles=2)
    full_bytes = sum(len(level) for level in full._levels)
    pruned_bytes = sum(len(level) for level in pruned._levels)
    assert full_bytes >= 63 * 40 * TILE  # ~64 bytes per leaf
    # the kept tiles' low levels (3 tiles x ~64 bytes x 256 leaves) plus the tile roots' levels
    assert pruned_bytes <= 3 * 64 * TILE + 64 * 40
    assert source.reads == 0  # appending never reads back


def test_recent_proofs_do_not_read_and_one_old_tile_is_read_once() -> None:
    _, pruned, source = _pair(10 * TILE, keep_tiles=2)
    pruned.inclusion_proof(10 * TILE - 1)
    assert source.reads == 0
    pruned.inclusion_proof(3)
    pruned.inclusion_proof(200)
    assert source.reads == 1


def test_altered_stored_leaves_are_refused_not_proved() -> None:
    full, pruned, source = _pair(4 * TILE, keep_tiles=1)
    source.leaves = list(source.leaves)
    source.leaves[5] = bytes(32)
    with pytest.raises(LocalError, match="do not hash to the tree's node"):
        pruned.inclusion_proof(7)
    source.leaves = source.leaves[:100]
    with pytest.raises(LocalError, match="not a tile"):
        pruned.inclusion_proof(TILE + 1)
    assert full.inclusion_proof(7)  # the full tree never reads back
