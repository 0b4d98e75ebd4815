"""Third-party servers the adapter tests run as real processes (not fakes):

- a FHIR R4 server: Medplum's ``FhirRouter`` over its ``MemoryRepository`` (npm
  ``@medplum/fhir-router`` 4.5.2, Apache-2.0), started by ``servers/fhir-server.mjs``;
- a Zaken API server: Stoplight Prism (npm ``@stoplight/prism-cli`` 5.14.2, Apache-2.0) serving
  the VNG Zaken API OpenAPI document in ``tests/adapters/zgw/``.

Both come from the npm registry, pinned by ``servers/package-lock.json`` and installed with
``npm ci`` into ``servers/node_modules`` on first use (about 10 s; again only when the lock file
changes). Node.js 20.19 or newer is needed; without it the tests fail with a message saying so.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

SERVERS = Path(__file__).resolve().parent / "servers"

#: Seconds a server may take to print that it listens (Medplum indexes the R4 definitions, ≈3 s
#: here; Prism parses the OpenAPI document, ≈2 s).
START_SECONDS = 60.0


def ensure_node_modules() -> Path:
    """Install the pinned npm packages once (``npm ci``); returns ``servers/node_modules``."""
    npm = shutil.which("npm")
    node = shutil.which("node")
    if npm is None or node is None:
        pytest.fail(
            "the FHIR and ZGW adapter tests run third-party servers on Node.js: install "
            "nodejs (>= 20.19) and npm (Debian: apt-get install nodejs npm)"
        )
    lock = SERVERS / "package-lock.json"
    want = hashlib.sha256(lock.read_bytes()).hexdigest()
    stamp = SERVERS / ".installed"
    with (SERVERS / ".install.lock").open("w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)  # parallel test runs install once
        if not stamp.exists() or stamp.read_text() != want:
            done = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=SERVERS,
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            if done.returncode != 0:
                pytest.fail(f"npm ci in {SERVERS} failed:\n{done.stderr[-2000:]}")
            stamp.write_text(want)
    return SERVERS / "node_modules"


@contextmanager
def server_process(args: list[str], ready: str, cwd: Path = SERVERS) -> Iterator[int]:
    """Run a server until it prints a line matching ``ready`` (whose group 1 is the port);
    yield the port; terminate it afterwards."""
    proc = subprocess.Popen(
        args,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "NO_COLOR": "1", "FORCE_COLOR": "0"},
    )
    assert proc.stdout is not None
    pattern = re.compile(ready)
    deadline = time.monotonic() + START_SECONDS
    port = None
    seen: list[str] = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        match = pattern.search(line)
        if match:
            port = int(match.group(1))
            break
    if port is None:
        proc.kill()
        proc.wait()
        pytest.fail(f"{args[0]} did not start:\n{''.join(seen[-30:])}")
    # Keep draining its output so a chatty server never blocks on a full pipe.
    drain = subprocess.Popen(["cat"], stdin=proc.stdout, stdout=subprocess.DEVNULL)
    try:
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        drain.wait(timeout=10)
