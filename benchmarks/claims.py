"""Claims assembly: building the claims of a send and of a receipt from values vs the JSON round
trip the node used before (issue 15, point 1).

    .venv/bin/python -m benchmarks.claims [--rounds N] [--ops N]

Per message type of tests/examples, in interleaved rounds (best round counts; shared machines
only ever slow a round down):

- "round trip" (the baseline, the node's former ``_parse_request`` + ``_assemble``): validate the
  request JSON with ``SendRequest``, build the claims as a dict, ``json.dumps`` it and validate
  the bytes with ``parse_claims``;
- "values": ``parse_send_request`` (the body typed in the same JSON pass) and
  ``gateway.core.outbound.assemble_claims`` (models validated as Python objects).

And for a ``delivered`` receipt: the former dict + ``json.dumps`` + ``parse_claims`` against
``gateway.core.receipts.receipt_claims`` (which also evaluates the policy). Results go to
benchmarks/results/claims.json as µs per operation and the ratio baseline / new.
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks._report import print_table, write_results
from gateway.core.directory import TrustedDirectory
from gateway.core.outbound import SenderContext, assemble_claims
from gateway.core.receipts import ReceiptInfo, receipt_claims
from schemas.api import SendRequest, parse_send_request
from schemas.catalogue import default_catalogue
from schemas.claims import LogAnchor, parse_claims
from schemas.directory import PartySelector, PolicyRule
from tests.directories import member, signed_directory

EXAMPLES = Path(__file__).resolve().parents[1] / "tests" / "examples"
FILLS = ("spec", "message_id", "created_at", "expires_at", "sender", "trace", "log_anchor")
CATALOGUE = default_catalogue()


def _wire_time(t: datetime) -> str:
    return t.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def _round_trip(raw: bytes, claims: dict[str, Any]) -> Any:
    """The former node path (baseline)."""
    req = SendRequest.model_validate_json(raw, context={"catalogue": CATALOGUE})
    created = datetime.fromisoformat(claims["created_at"])
    doc: dict[str, Any] = {
        "spec": "zvg/1",
        "message_id": claims["message_id"],
        "message_type": req.message_type,
        "created_at": _wire_time(created),
        "expires_at": claims["expires_at"],
        "sender": claims["sender"],
        "recipients": [r.model_dump() for r in req.recipients],
        "case_ref": req.case_ref,
        "purpose": req.purpose,
        "legal_basis": list(req.legal_basis or ()),
        "processing_activity": req.processing_activity,
        "data_categories": list(req.data_categories),
        "flags": req.flags.model_dump(),
        "subjects": [s.model_dump() for s in req.subjects],
        "trace": claims["trace"],
        "body": req.body,
    }
    for name in ("programme", "in_reply_to", "correlation_id"):
        if getattr(req, name) is not None:
            doc[name] = getattr(req, name)
    if "log_anchor" in claims:
        doc["log_anchor"] = claims["log_anchor"]
    return parse_claims(json.dumps(doc, ensure_ascii=False).encode(), catalogue=CATALOGUE)


def _values(raw: bytes, claims: dict[str, Any]) -> Any:
    request = parse_send_request(raw, catalogue=CATALOGUE)
    created = datetime.fromisoformat(claims["created_at"])
    expires = datetime.fromisoformat(claims["expires_at"])
    sender = SenderContext(
        org=claims["sender"]["org"],
        node_id=claims["sender"]["node"],
        roles=(claims["sender"]["role"],),
        purpose_defaults={},
        default_ttl_seconds=int((expires - created).total_seconds()),
        catalogue=CATALOGUE,
    )
    anchor = claims.get("log_anchor")
    return assemble_claims(
        request,
        sender,
        now=created,
        message_id=claims["message_id"],
        trace=claims["trace"],
        log_anchor=None if anchor is None else LogAnchor(**anchor),
    )


def _receipt_round_trip(info: ReceiptInfo, now: datetime, proof: str) -> Any:
    """The former ``_receipt_claims`` (baseline)."""
    doc = {
        "spec": "zvg/1",
        "message_id": "019cadd4-5df0-7bcd-b3e6-9863b7de325a",
        "message_type": "receipt",
        "created_at": _wire_time(now),
        "expires_at": _wire_time(now + timedelta(days=3)),
        "sender": {"org": "00000001999000001000", "node": "zvh-1", "role": info.our_role},
        "recipients": [{"org": "00000001999000002000", "role": info.sender_role}],
        "case_ref": info.case_ref,
        "in_reply_to": "019cadd4-5620-7d6f-bd7a-8c9a07606e06",
        "correlation_id": info.correlation_id,
        "purpose": info.purpose,
        "legal_basis": list(info.legal_basis),
        "processing_activity": "urn:zvg:receipt",
        "data_categories": [],
        "flags": {},
        "subjects": [],
        "trace": f"00-{info.trace_id}-cc91a8f768444ddf-01",
        "body": {
            "status": "delivered",
            "message_id": "019cadd4-5620-7d6f-bd7a-8c9a07606e06",
            "inner_jws_sha256": info.digest,
            "at": _wire_time(now),
            "proof": proof,
        },
    }
    return parse_claims(json.dumps(doc).encode(), catalogue=CATALOGUE)


def _receipt_values(
    info: ReceiptInfo, now: datetime, proof: str, directory: TrustedDirectory
) -> Any:
    sender = SenderContext(
        org="00000001999000001000",
        node_id="zvh-1",
        roles=("ZVH",),
        purpose_defaults={},
        default_ttl_seconds=3 * 86400,
        catalogue=CATALOGUE,
    )
    return receipt_claims(
        sender,
        info=info,
        to="00000001999000002000",
        message_id="019cadd4-5620-7d6f-bd7a-8c9a07606e06",
        status="delivered",
        reason=None,
        now=now,
        receipt_id="019cadd4-5df0-7bcd-b3e6-9863b7de325a",
        span_id="cc91a8f768444ddf",
        proof=proof,
        checkpoint=None,
        directory=directory.payload,
    ).claims


def _best_us(fn: Callable[[], Any], ops: int) -> float:
    start = time.perf_counter()
    for _ in range(ops):
        fn()
    return (time.perf_counter() - start) / ops * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--ops", type=int, default=200)
    args = parser.parse_args()

    cases: dict[str, tuple[Callable[[], Any], Callable[[], Any]]] = {}
    for path in sorted(EXAMPLES.glob("*.json")):
        if path.stem == "receipt":
            continue
        claims = json.loads(path.read_text("utf-8"))
        request = {k: v for k, v in claims.items() if k not in FILLS}
        request["sender_role"] = claims["sender"]["role"]
        raw = json.dumps(request).encode()
        assert _round_trip(raw, claims) == _values(raw, claims), path.stem
        cases[path.stem] = (
            functools.partial(_round_trip, raw, claims),
            functools.partial(_values, raw, claims),
        )

    example = json.loads((EXAMPLES / "receipt.json").read_text("utf-8"))
    now = datetime.fromisoformat(example["created_at"])
    info = ReceiptInfo(
        purpose=example["purpose"],
        legal_basis=tuple(example["legal_basis"]),
        case_ref=example["case_ref"],
        sender_role="POL",
        our_role="ZVH",
        correlation_id=example["in_reply_to"],
        trace_id=example["trace"].split("-")[1],
        digest=example["body"]["inner_jws_sha256"],
    )
    proof = example["body"]["proof"]
    rule = PolicyRule(
        id="any",
        description="receipts need a rule to exist",
        purpose=example["purpose"],
        sender=PartySelector(roles=("POL",)),
        recipient=PartySelector(roles=("ZVH",)),
        message_types=("case.referral",),
        data_categories=(),
    )
    directory = TrustedDirectory.first(
        signed_directory(
            members=[
                member("00000001999000001000", "u-zvh", roles=("ZVH",)),
                member("00000001999000002000", "u-pol", roles=("POL",)),
            ],
            rules=[rule],
            issued_at=now - timedelta(days=1),
        ),
        now=now,
        catalogue=CATALOGUE,
    )
    cases["receipt (build)"] = (
        lambda: _receipt_round_trip(info, now, proof),
        lambda: _receipt_values(info, now, proof, directory),
    )

    best: dict[str, list[float]] = {name: [float("inf"), float("inf")] for name in cases}
    for _ in range(args.rounds):
        for name, fns in cases.items():
            for i, fn in enumerate(fns):
                best[name][i] = min(best[name][i], _best_us(fn, args.ops))

    rows = [(name, old, new, old / new) for name, (old, new) in best.items()]
    print_table(["message", "round trip µs", "values µs", "ratio"], rows)
    write_results(
        "claims",
        {
            "rounds": args.rounds,
            "ops": args.ops,
            "results": {
                name: {"round_trip_us": old, "values_us": new, "ratio": old / new}
                for name, old, new, _ in rows
            },
        },
    )


if __name__ == "__main__":
    main()
