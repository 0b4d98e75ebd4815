#!/usr/bin/env python3
"""zvg-healthcheck [PATH]: exit 0 if the node's local API answers PATH with 200, else 1.

PATH is ``/healthz`` (the process serves: liveness; the default) or ``/readyz`` (broker
connected, directory valid, store writable: readiness). The address is ``api.listen`` from
``$ZVG_CONFIG`` (default ``/etc/zvg/node.toml``); a wildcard listen address is asked on
loopback. Standard library only, so it starts fast and needs no curl in the image. Used by the
image's ``HEALTHCHECK`` and the compose file; prints one line either way.
"""

from __future__ import annotations

import os
import sys
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

TIMEOUT_S = 4.0
"""Seconds to wait for the answer (below the image's HEALTHCHECK --timeout of 5 s)."""
DEFAULT_LISTEN = "127.0.0.1:8400"
"""``api.listen``'s default in ``gateway/node/config.py``."""
PATHS = ("/healthz", "/readyz")
_WILDCARDS = {"0.0.0.0": "127.0.0.1", "[::]": "[::1]", "::": "[::1]"}  # noqa: S104 (mapped to loopback)


def url_for(config: Path, path: str) -> str:
    """The URL of ``path`` on the API that ``config`` describes."""
    with config.open("rb") as f:
        listen = str(tomllib.load(f).get("api", {}).get("listen", DEFAULT_LISTEN))
    host, _, port = listen.rpartition(":")
    host = _WILDCARDS.get(host, host)
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}{path}"


def main(argv: list[str]) -> int:
    path = argv[1] if len(argv) > 1 else "/healthz"
    if path not in PATHS:
        print(f"zvg-healthcheck: PATH is one of {', '.join(PATHS)}", file=sys.stderr)
        return 2
    try:
        url = url_for(Path(os.environ.get("ZVG_CONFIG", "/etc/zvg/node.toml")), path)
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:  # noqa: S310 (http to our own API)
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (OSError, ValueError, tomllib.TOMLDecodeError) as exc:
        print(f"zvg-healthcheck: {path}: {exc}")
        return 1
    print(f"zvg-healthcheck: {path}: HTTP {status}")
    return 0 if status == 200 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
