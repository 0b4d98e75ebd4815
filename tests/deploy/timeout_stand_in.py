"""A stand-in for coreutils' ``timeout`` in the walk-through of docs/ops.md (test_ops_guide.py).

The guide runs the node in the foreground with ``timeout --preserve-status -s TERM 10 zvg node
run ...``: a reader watches it for ten seconds. The test needs no fixed wait: this sends the
signal as soon as the node logs that it listens (the start-up the block shows), or at the
duration as the real one does, and exits with the node's status. Anything else goes to the
real ``timeout``."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading

READY = " listening on "
"""In the node's start-up log line (gateway/node/runner.py): the API is up; the broker is next."""


def main(args: list[str]) -> int:
    if len(args) < 5 or args[:3] != ["--preserve-status", "-s", "TERM"]:
        real = shutil.which("timeout", path=os.defpath)
        assert real is not None
        return subprocess.run([real, *args], check=False).returncode
    duration, command = float(args[3]), args[4:]
    child = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    timer = threading.Timer(duration, child.send_signal, (signal.SIGTERM,))
    timer.start()
    assert child.stderr is not None
    signalled = False
    for line in child.stderr:
        sys.stderr.write(line)
        if READY in line and not signalled:
            child.send_signal(signal.SIGTERM)
            signalled = True
    code = child.wait()
    timer.cancel()
    return 128 - code if code < 0 else code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
