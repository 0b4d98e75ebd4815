"""``request_fingerprint``: what an ``Idempotency-Key`` is bound to is the parsed request, so a
client's formatting (indentation, key order, a default spelled out) does not make it another
request, and any change of a value does."""

from __future__ import annotations

import json

from schemas.api import parse_send_request, request_fingerprint
from tests.e2e.harness import request_from_example


def _fingerprint(raw: str) -> bytes:
    return request_fingerprint(parse_send_request(raw))


def test_formatting_key_order_and_spelled_out_defaults_are_the_same_request() -> None:
    request = request_from_example("case.referral")
    compact = _fingerprint(json.dumps(request, separators=(",", ":")))
    assert _fingerprint(json.dumps(request, indent=4)) == compact
    reordered = {k: request[k] for k in sorted(request, reverse=True)}
    reordered["body"] = dict(reversed(list(request["body"].items())))
    assert _fingerprint(json.dumps(reordered)) == compact
    assert _fingerprint(json.dumps({**request, "traceparent": None})) == compact


def test_another_value_is_another_request() -> None:
    request = request_from_example("case.referral")
    base = _fingerprint(json.dumps(request))
    assert _fingerprint(json.dumps({**request, "case_ref": "Veenstad-2026-999"})) != base
    body = {
        **request["body"],
        "urgency": "urgent" if request["body"].get("urgency") != "urgent" else "regular",
    }
    assert _fingerprint(json.dumps({**request, "body": body})) != base
