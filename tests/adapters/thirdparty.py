"""Third-party servers the adapter tests run as real processes (not fakes):

- a FHIR R4 server: Medplum's ``FhirRouter`` over its ``MemoryRepository`` (npm
  ``@medplum/fhir-router`` 4.5.2, Apache-2.0), started by ``servers/fhir-server.mjs``;
- a Zaken API server: Stoplight Prism (npm ``@stoplight/prism-cli`` 5.14.2, Apache-2.0) serving
  the VNG Zaken API OpenAPI document in ``tests/adapters/zgw/``.

Both come from the npm registry, pinned by ``servers/package-lock.json`` and installed with
``npm ci`` on first use into a folder of the user's cache named after the lock file's hash
(``$XDG_CACHE_HOME`` or ``~/.cache``, ``zvg-test-servers/<hash>/``; 190 MB, ≈ 20 s of CPU and
40 s here), which ``servers/node_modules`` links to: every checkout of the same lock file —
a fresh clone in CI, another worktree — reuses it. Node.js 20.19 or newer is needed; without it
the tests fail with a message saying so.
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
    """Install the pinned npm packages once per lock file (``npm ci``, module docstring) and
    link ``servers/node_modules`` to them; returns ``servers/node_modules``."""
    npm = shutil.which("npm")
    node = shutil.which("node")
    if npm is None or node is None:
        pytest.fail(
            "the FHIR and ZGW adapter tests run third-party servers on Node.js: install "
            "nodejs (>= 20.19) and npm (Debian: apt-get install nodejs npm)"
        )
    want = hashlib.sha256((SERVERS / "package-lock.json").read_bytes()).hexdigest()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    installed = cache / "zvg-test-servers" / want[:32]
    installed.mkdir(parents=True, exist_ok=True)
    with (installed / ".install.lock").open("w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)  # parallel test runs and checkouts install once
        stamp = installed / ".installed"
        if not stamp.exists() or stamp.read_text() != want:
            for name in ("package.json", "package-lock.json"):
                shutil.copyfile(SERVERS / name, installed / name)
            done = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=installed,
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            if done.returncode != 0:
                pytest.fail(f"npm ci in {installed} failed:\n{done.stderr[-2000:]}")
            stamp.write_text(want)
    link, target = SERVERS / "node_modules", installed / "node_modules"
    with (SERVERS / ".install.lock").open("w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        if link.is_symlink() and link.readlink() == target:
            return link  # a server may be running from it: leave it in place
        if link.is_symlink() or link.is_file():
            link.unlink()
        elif link.is_dir():
            shutil.rmtree(link)  # a checkout's own install, from before the shared one
        link.symlink_to(target, target_is_directory=True)
    return link


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
