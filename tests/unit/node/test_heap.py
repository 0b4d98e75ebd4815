"""The node process's garbage collector after the start (``gateway.node.heap``, decision 0120).

Freezing changes the collector of the whole interpreter, so each test runs it in a fresh Python
process and reads what that process printed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from gateway.node.heap import YOUNG_THRESHOLD
from gateway.testing.federation import FederationFiles

ROOT = Path(__file__).resolve().parents[3]


def _run(code: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_freezing_the_start_up_heap_freezes_what_is_alive_and_raises_the_young_threshold() -> None:
    got = _run(
        """
        import gc, json
        from gateway.node.heap import freeze_start_up_heap
        import gateway.node.runner  # what a node has loaded by then
        before = (gc.get_freeze_count(), gc.get_threshold())
        frozen = freeze_start_up_heap()
        print(json.dumps({"before": before, "frozen": frozen,
                          "count": gc.get_freeze_count(), "threshold": gc.get_threshold()}))
        """
    )
    assert got["before"] == [0, [700, 10, 10]]
    assert got["count"] == got["frozen"]
    assert isinstance(got["frozen"], int)
    assert got["frozen"] > 10_000
    assert got["threshold"] == [YOUNG_THRESHOLD, 10, 10]


def test_a_directory_trusted_at_start_is_freed_once_replaced_though_it_was_frozen(
    federation: FederationFiles,
) -> None:
    """Frozen objects are never collected again: a start-up object that later became cyclic
    garbage would stay for the life of the process. The directory is the one start-up object the
    node replaces (at every refresh): used as the node uses it, it is freed by reference
    counting alone."""
    got = _run(
        f"""
        import gc, json, weakref
        from datetime import UTC, datetime
        from gateway.core.directory import TrustedDirectory
        from gateway.node.heap import freeze_start_up_heap
        from schemas.catalogue import default_catalogue

        now = datetime.now(UTC)
        raw = open({str(federation.directory)!r}, "rb").read()
        trusted = TrustedDirectory.first(raw, now=now, catalogue=default_catalogue())
        for member in trusted.payload.members:
            trusted.member(member.oin)
            trusted.encryption_key(member.oin, now)
            trusted.audit_log_keys(member.oin, now)
            trusted.audit_origin(member.oin)
            trusted.witness_name(member.oin)
        trusted.names(); trusted.orgs_of_user(); trusted.witness_threshold()
        freeze_start_up_heap()
        gone = weakref.ref(trusted)
        payload = weakref.ref(trusted.payload)
        del trusted
        print(json.dumps({{"freed": gone() is None and payload() is None}}))
        """
    )
    assert got == {"freed": True}
