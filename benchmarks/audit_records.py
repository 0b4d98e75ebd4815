"""The audit records of one message, built as the node builds them, against their hashing floor
(issue 15, point 7: audit records are the largest part of a node's CPU per message that is not
JOSE, AMQP or SQLite).

    .venv/bin/python -m benchmarks.audit_records [--rounds N] [--ops N]
    valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        .venv/bin/python -m benchmarks.audit_records --loop N

Per message (a ``case.referral`` of tests/examples): ``MessageFields.of`` the claims, a
``policy.decision`` and a ``message.send`` record (``message_record``, BSN guard included), and
for each the row ``AuditLog.append`` stores: ``stored_parts`` (``split`` with its salted
commitments, the view's canonical JSON and the personal part's JSON) and the leaf hash. The floor,
in the same rounds: SHA-256 of the two views' bytes and one HMAC-SHA-256 per personal value (what no
implementation of these records can skip). Best round counts (shared machines only ever slow a
round down). Results go to benchmarks/results/audit_records.json.

``--loop N`` only runs the message's work N times and prints nothing: under callgrind the
difference between two loop counts is the instructions per message, a figure a loaded machine does
not disturb (wall-clock rounds on a shared 2-core machine vary by ±20 %).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks._report import print_table, write_results
from gateway.core import audit
from gateway.core.merkle import leaf_hash
from schemas.catalogue import default_catalogue
from schemas.claims import parse_claims

EXAMPLE = Path(__file__).resolve().parents[1] / "tests" / "examples" / "case.referral.json"
SALT = bytes(range(32))
NOW = datetime(2026, 3, 2, 9, 15, tzinfo=UTC)


def _records_of_one_message(claims: Any) -> Callable[[], None]:
    def work() -> None:
        fields = audit.MessageFields.of(claims, trace_id="a" * 32, span_id="b" * 16).with_digest(
            "x" * 43, "kid"
        )
        records = (
            audit.message_record("policy.decision", fields, at=NOW, policy=(3, "r1", "allow")),
            audit.message_record("message.send", fields, at=NOW),
        )
        for record in records:  # as AuditLog.append builds each row
            view_bytes, _ = audit.stored_parts(record, SALT)
            leaf_hash(view_bytes)

    return work


def _floor(claims: Any) -> Callable[[], None]:
    fields = audit.MessageFields.of(claims, trace_id="a" * 32, span_id="b" * 16)
    views = [
        audit.view_json(audit.split(audit.message_record(name, fields, at=NOW), SALT)[0])
        for name in ("policy.decision", "message.send")
    ]
    values = [v.encode() for v in (claims.case_ref, *fields.data_subjects)]

    def work() -> None:
        for view in views:
            hashlib.sha256(view).digest()
            for value in values:
                hmac.new(SALT, value, "sha256").digest()

    return work


def _best_us(fn: Callable[[], None], ops: int) -> float:
    start = time.perf_counter()
    for _ in range(ops):
        fn()
    return (time.perf_counter() - start) / ops * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--ops", type=int, default=2000, help="messages per round")
    parser.add_argument("--loop", type=int, help="only run the work N times (for callgrind)")
    args = parser.parse_args()
    claims = parse_claims(EXAMPLE.read_bytes(), catalogue=default_catalogue())
    records, floor = _records_of_one_message(claims), _floor(claims)
    if args.loop is not None:
        for _ in range(args.loop):
            records()
        return
    rounds = [
        {"records_us": _best_us(records, args.ops), "floor_us": _best_us(floor, args.ops)}
        for _ in range(args.rounds)
    ]
    best = {k: min(r[k] for r in rounds) for k in rounds[0]}
    best["ratio"] = best["records_us"] / best["floor_us"]
    print_table(
        ["per message", "records µs", "floor µs", "records / floor"],
        [("best round", best["records_us"], best["floor_us"], best["ratio"])],
    )
    write_results("audit_records", {"rounds": rounds, "best": best})


if __name__ == "__main__":
    main()
