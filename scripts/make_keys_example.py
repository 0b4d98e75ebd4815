"""Regenerate keys_example/: the public demo federation (five organisations, three authority keys,
a signed directory with the demo policy) and gateway/node/example_kids.json, the key ids a node
in production mode refuses.

    .venv/bin/python scripts/make_keys_example.py

The keys are PUBLIC: anyone can read them in this repository. They exist so the demo and the
tests have a federation to work with; production mode refuses every one of them.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.core.directory import parse_signed  # noqa: E402 - after the sys.path line above
from gateway.node.preflight import EXAMPLE_KIDS_FILE  # noqa: E402 - after the sys.path line above
from gateway.testing.federation import create_demo_federation  # noqa: E402 - after the sys.path line above
from schemas.catalogue import default_catalogue  # noqa: E402 - after the sys.path line above

OUT = ROOT / "keys_example"
KIDS = EXAMPLE_KIDS_FILE
#: Long enough that CI keeps working for years; production refuses these keys anyway.
LIFETIME = timedelta(days=10 * 365)

README = """# keys_example — PUBLIC demo keys. Never use them for anything real.

Everything in this folder is published in the zv-gateway repository: the private keys of the
five demo organisations of "ZVH Veenstad" (politie, OM, GGZ, gemeente/ZVH, Veilig Thuis), the
keys of its three federation administrators, and a directory signed by two of them with the
demo policy (docs/decisions/0020, gateway/testing/veenstad.py).

They exist for `./scripts/demo --example-keys`, the tests and the guides. A node in
production mode (`node.mode = "production"`, the default) refuses to start with any key or
directory from here, even when the files are copied elsewhere: it compares key ids with
`gateway/node/example_kids.json`.

Layout:
- `authority/<name>.key.pem` — administrator signing keys (zvh-manager, privacy-officer,
  ciso-police); threshold 2 of 3.
- `orgs/<org>/<OIN>.{signing,encryption,audit}.key.pem` and `<OIN>.public.jwks.json`.
- `directory.json` — the signed demo directory (version 2); `directory.v1.json` is version 1.

Regenerate with `.venv/bin/python scripts/make_keys_example.py`.
"""


def main() -> None:
    if OUT.exists():
        shutil.rmtree(OUT)
    now = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    files = create_demo_federation(
        OUT, now=now, lifetime=LIFETIME, catalogue=default_catalogue(), rand=os.urandom
    )
    (OUT / "README.md").write_text(README, encoding="utf-8")
    signed = parse_signed(files.directory.read_bytes(), catalogue=default_catalogue())
    kids = sorted(
        {k.kid for k in signed.payload.authority.keys}
        | {k.kid for m in signed.payload.members for k in m.keys}
    )
    KIDS.write_text(json.dumps({"kids": kids}, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {OUT} and {KIDS} ({len(kids)} example key ids)")


if __name__ == "__main__":
    main()
