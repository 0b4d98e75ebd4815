"""Write the golden evidence bundles the tampered-bundle set starts from (run by hand; the
output is committed so the tests need no federation and no clock):

    .venv/bin/python -m tests.console.evidence.make_fixture

Two nodes in this process (tests/node_pair.py, no broker): politie (P-256, ``ES256``) refers a
case to the gemeente's ZVH (Curve25519, ``Ed25519``); the ZVH accepts, then signs a contradicting
``rejected``. Written to ``fixtures/``: ``directory.json`` (the federation directory),
``sent.json`` (politie's bundle: two receipts with the ZVH's inclusion proofs and the kept
contradiction, its checkpoint cosigned by the ZVH as witness), ``received.json`` (the ZVH's
bundle: the signed referral), ``now.txt`` (the time both verifiers check at), and in
``signed/`` the tampered bundles that need a signer's private key to make (a member signing
what it should not), which the tests cannot make without keys (tests/console/evidence/tampers.py
lists what each one must fail with).
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import tempfile
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from gateway.audit.inspect import export_bundle, open_readonly
from gateway.core import jose, note
from gateway.core.keys import SigningKey, Suite
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
            signed_tampers(
                bundles,
                zvh_signing=zvh.service.ctx.keys.signing,
                pol_signing=pol.service.ctx.keys.signing,
                zvh_audit=zvh.service.ctx.keys.audit,
                witness=directory.witness_name(zvh.org),
                now=int(now.timestamp()),
            )
            FIXTURES.mkdir(exist_ok=True)
            (FIXTURES / "directory.json").write_bytes(fed.directory.read_bytes())
            for name, bundle in bundles.items():
                text = json.dumps(bundle, indent=1, ensure_ascii=False) + "\n"
                (FIXTURES / f"{name}.json").write_text(text, "utf-8")
            (FIXTURES / "now.txt").write_text((now + timedelta(minutes=1)).isoformat() + "\n")
        finally:
            await pol.close()
            await zvh.close()


def _resign(jws: str, key: SigningKey, change: Any) -> str:
    """``jws`` with its claims changed by ``change(claims)`` and signed again by ``key``."""
    _header, payload, _sig = jws.split(".")
    claims = json.loads(jose.b64u_decode(payload))
    change(claims)
    head = jose.b64u_encode(
        jose.json_dumps({"alg": key.suite.signature_alg, "kid": key.kid, "typ": "zvg-message+jws"})
    )
    signing_input = head + "." + jose.b64u_encode(jose.json_dumps(claims))
    return signing_input + "." + jose.b64u_encode(key.sign(signing_input.encode("ascii")))


def _unchanged(claims: dict[str, Any]) -> None:
    del claims


def _bad_hash(proof: str) -> str:
    """The tlog-proof with its first inclusion hash replaced by another valid hash."""
    lines = proof.split("\n")
    at = next(i for i, line in enumerate(lines) if line.startswith("index ")) + 1
    lines[at] = jose.b64u_encode(bytes(32)).replace("-", "+").replace("_", "/") + "="
    return "\n".join(lines)


def signed_tampers(
    bundles: dict[str, Any],
    *,
    zvh_signing: SigningKey,
    pol_signing: SigningKey,
    zvh_audit: Any,
    witness: str,
    now: int,
) -> None:
    out = FIXTURES / "signed"
    out.mkdir(parents=True, exist_ok=True)
    sent, received = bundles["sent"], bundles["received"]

    def write(name: str, bundle: dict[str, Any]) -> None:
        (out / f"{name}.json").write_text(json.dumps(bundle, ensure_ascii=False) + "\n", "utf-8")

    # The ZVH signs a receipt whose proof of its own record is wrong.
    doc = copy.deepcopy(sent)
    rc = doc["receipts"][0]
    rc["inner_jws"] = _resign(
        rc["inner_jws"],
        zvh_signing,
        lambda c: c["body"].update(proof=_bad_hash(c["body"]["proof"])),
    )
    write("receipt_proof_bad_hash", doc)

    # ... or a proof that carries no record (no extra line).
    def no_extra(c: dict[str, Any]) -> None:
        lines = c["body"]["proof"].split("\n")
        c["body"]["proof"] = "\n".join(line for line in lines if not line.startswith("extra "))

    doc = copy.deepcopy(sent)
    rc = doc["receipts"][0]
    rc["inner_jws"] = _resign(rc["inner_jws"], zvh_signing, no_extra)
    write("receipt_proof_without_record", doc)

    # Politie's referral signed by a key the directory does not hold for politie.
    doc = copy.deepcopy(received)
    stranger = SigningKey.derive(Suite.P256, os.urandom)
    doc["messages"][0]["inner_jws"] = _resign(doc["messages"][0]["inner_jws"], stranger, _unchanged)
    write("message_signed_by_stranger", doc)

    # The ZVH signs its receipt with its key but a message sender's kid (politie's key id).
    doc = copy.deepcopy(sent)
    jws = _resign(doc["receipts"][0]["inner_jws"], zvh_signing, _unchanged)
    head = jose.b64u_encode(
        jose.json_dumps({"alg": "Ed25519", "kid": pol_signing.kid, "typ": "zvg-message+jws"})
    )
    doc["receipts"][0]["inner_jws"] = head + "." + ".".join(jws.split(".")[1:])
    write("receipt_kid_of_another_member", doc)

    # A cosignature dated an hour ahead: it does not count (the bundle verifies, unwitnessed).
    doc = copy.deepcopy(sent)
    plain = note.parse_note(doc["checkpoint"].encode("utf-8"))
    own = [s for s in plain.signatures if s.name != witness]
    text = plain.text + b"\n" + "".join(s.line for s in own).encode("utf-8")
    line = note.cosign_checkpoint(plain.text, name=witness, key=zvh_audit, timestamp=now + 7200)
    doc["checkpoint"] = note.add_signatures(text, [line]).decode("utf-8")
    write("cosignature_from_the_future", doc)


if __name__ == "__main__":
    asyncio.run(main())
