"""The processes the demo starts (five nodes, three adapters), and stopping every one of them.

Guarantees:

- Each process runs in its own session (``start_new_session``), so a Ctrl-C in the terminal
  reaches only the demo, which then stops its children in order; their output goes to
  ``logs/<name>.log`` in the working folder.
- On Linux each child also asks the kernel for ``SIGTERM`` when the demo process dies
  (``PR_SET_PDEATHSIG``), so not even a ``kill -9`` of the demo leaves nodes running. This runs
  in the child between fork and exec, so it is only armed while the demo has a single thread
  (the demo starts all processes before its event loop makes any).
- :meth:`ProcessGroup.stop_all` sends ``SIGTERM`` to every process still running, waits up to
  the grace period for them to drain, then sends ``SIGKILL`` and reaps them; calling
  :meth:`ProcessGroup.hurry` (a second Ctrl-C) cuts the grace period short. It is idempotent
  and never raises for a process that is already gone.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["STOP_GRACE_S", "Child", "ProcessGroup"]

#: Seconds a process gets to drain after SIGTERM before SIGKILL (a node drains in well under a
#: second when idle; its own in-flight grace is 10 s).
STOP_GRACE_S = 12.0

#: Lines of a process's log quoted when it fails.
_TAIL_LINES = 1

_PR_SET_PDEATHSIG = 1


def _death_signal() -> Callable[[], None] | None:
    """A ``preexec_fn`` arming PR_SET_PDEATHSIG, or None where that is not possible."""
    if not sys.platform.startswith("linux") or threading.active_count() != 1:
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def arm() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM))

    return arm


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log: Path
    #: Stopped before the others (an adapter before the node it talks to: with its node gone, an
    #: adapter's step in progress retries the node for seconds before it sees the stop).
    stop_first: bool = False

    def tail(self) -> str:
        """The last meaningful line of the process's log (for a one-line error)."""
        try:
            lines = self.log.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return ""
        useful = [ln.strip() for ln in lines if ln.strip()]
        return " | ".join(useful[-_TAIL_LINES:])[:300]


@dataclass
class ProcessGroup:
    """The processes of one demo run."""

    logs: Path
    cwd: Path
    children: list[Child] = field(default_factory=list)
    _hurry: bool = False

    def spawn(self, name: str, argv: Sequence[str], *, stop_first: bool = False) -> Child:
        """Start ``argv`` with its output in ``logs/<name>.log``; ``stop_first``: see
        :attr:`Child.stop_first`."""
        log = self.logs / f"{name}.log"
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with log.open("ab") as out:
            process = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                env=env,
                start_new_session=True,
                preexec_fn=_death_signal(),  # noqa: PLW1509 - armed only while single-threaded
            )
        child = Child(name, process, log, stop_first)
        self.children.append(child)
        return child

    def exited(self) -> list[Child]:
        """Children that are no longer running."""
        return [c for c in self.children if c.process.poll() is not None]

    def pids(self) -> list[int]:
        return [c.process.pid for c in self.children]

    def hurry(self) -> None:
        """Stop waiting for a graceful drain (e.g. on a second Ctrl-C)."""
        self._hurry = True

    def stop(self, names: Sequence[str] | None = None, grace: float = STOP_GRACE_S) -> None:
        """SIGTERM the (named) children, wait up to ``grace`` seconds, SIGKILL the rest."""
        chosen = [c for c in self.children if names is None or c.name in names]
        for child in chosen:
            if child.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and not self._hurry:
            if all(c.process.poll() is not None for c in chosen):
                break
            time.sleep(0.05)
        for child in chosen:
            if child.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    child.process.kill()
        for child in chosen:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.process.wait(timeout=10)

    def stop_all(self, grace: float = STOP_GRACE_S) -> None:
        """Stop the ``stop_first`` children, then the rest."""
        self.stop([c.name for c in self.children if c.stop_first], grace)
        self.stop(None, grace)
