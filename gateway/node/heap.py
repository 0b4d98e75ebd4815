"""The node process's garbage collector, set once the node has started (decision 0120).

CPython finds reference cycles by walking every tracked container. A started node holds about
90,000 of them that live as long as the process (modules, the contract's validators, the
catalogue, keys, the trusted directory), and the default thresholds (700 net allocations per
young collection) had the node walk them all in full collections of 50 to 100 ms under load, and
spend about 300 µs of CPU per message (both nodes) in collections that found almost nothing:
nearly everything a message allocates is freed by reference counting. After the start,
:func:`freeze_start_up_heap` moves what is alive into the permanent generation (no collection
walks it again) and raises the young generation's threshold, so a collection runs when cycles
really pile up (about 20,000 net allocations), not every few messages.
"""

from __future__ import annotations

import gc

__all__ = ["YOUNG_THRESHOLD", "freeze_start_up_heap"]

#: Net allocations of tracked containers between two young-generation collections (CPython's
#: default is 700). The older generations keep CPython's ratios (one per 10 of the younger).
YOUNG_THRESHOLD = 20_000


def freeze_start_up_heap() -> int:
    """Collect once, freeze what is left and raise the young threshold; returns the number of
    objects frozen. Objects alive now and only later cyclic garbage are not collected again: the
    start-up objects live as long as the node (a replaced directory is freed by reference
    counting, ``tests/unit/node/test_heap.py``)."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
    return gc.get_freeze_count()
