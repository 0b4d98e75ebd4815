"""Write the golden evidence bundles the tampered-bundle set starts from (run by hand; the
output is committed so the tests need no federation and no clock):

    .venv/bin/python -m tests.console.evidence.make_fixture

Two nodes in this process (tests/node_pair.py, no broker): politie (P-256, ``ES256``) refers a
case to the gemeente's ZVH (Curve25519, ``Ed25519``); the ZVH accepts, then signs a contradicting
``rejected``. Written to ``fixtures/``: ``directory.json`` (the federation directory),
``sent.json`` (politie's bundle: two receipts with the ZVH's inclusion proofs and the kept
contradiction, its checkpoint cosigned by the ZVH as witness), ``received.json`` (the ZVH's
bundle: the signed referral) and ``now.txt`` (the time both verifiers check at).
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from gateway.audit.inspect import export_bundle, open_readonly
from gateway.core import note
from gateway.core.keys import Suite
from gateway.testing.federation import create_demo_federation
from schemas.catalogue import default_catalogue
from tests.node_pair import open_node

FIXTURES = Path(__file__).parent / "fixtures"


async def main() -> None:
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        fed = create_demo_federation(
            root / "federation",
            now=start,
            lifetime=timedelta(days=3650),
            catalogue=default_catalogue(),
            rand=os.urandom,
            suites={"politie": Suite.P256, "gemeente": Suite.CURVE25519},
            orgs=("politie", "gemeente"),
        )
        pol = await open_node(fed, "politie", root / "pol")
        zvh = await open_node(fed, "gemeente", root / "zvh")
        try:
            message_id = await pol.send_example("case.referral")
            await pol.carry_to(zvh)
            await zvh.service.inbox.settle(message_id, accept=True)
            pending = await zvh.pending_receipts()
            await zvh.seal_receipts(pending)
            await zvh.carry_to(pol)
            accepted = pending[-1]
            await zvh.seal_receipts(
                [replace(accepted, status="rejected", reason="adapter_rejected")]
            )
            await zvh.carry_to(pol)
            await pol.service.audit.checkpoint()
            await zvh.service.audit.checkpoint()
            now = datetime.now(UTC).replace(microsecond=0)
            directory = pol.service.directory
            bundles = {}
            for name, node in (("sent", pol), ("received", zvh)):
                with open_readonly(node.config.store_path) as db:
                    bundles[name] = export_bundle(
                        db, directory=directory, org=node.org, message_id=message_id, now=now
                    )
            # The ZVH witnesses politie's log: its cosignature on politie's checkpoint.
            signed = bundles["sent"]["checkpoint"].encode("utf-8")
            line = note.cosign_checkpoint(
                note.parse_note(signed).text,
                name=directory.witness_name(zvh.org),
                key=zvh.service.ctx.keys.audit,
                timestamp=int(now.timestamp()),
            )
            bundles["sent"]["checkpoint"] = note.add_signatures(signed, [line]).decode("utf-8")
            FIXTURES.mkdir(exist_ok=True)
            (FIXTURES / "directory.json").write_bytes(fed.directory.read_bytes())
            for name, bundle in bundles.items():
                text = json.dumps(bundle, indent=1, ensure_ascii=False) + "\n"
                (FIXTURES / f"{name}.json").write_text(text, "utf-8")
            (FIXTURES / "now.txt").write_text((now + timedelta(minutes=1)).isoformat() + "\n")
        finally:
            await pol.close()
            await zvh.close()


if __name__ == "__main__":
    asyncio.run(main())
