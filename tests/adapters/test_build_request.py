"""``adapters.mapping.build_request``: what an adapter built from a partner record either is a
valid send request or a ``MappingError`` naming the field and rule — never the value, which may
be personal data."""

from __future__ import annotations

import pytest

from adapters.errors import MappingError
from adapters.mapping import build_request
from tests.adapters.test_folder import referral_request


def test_a_valid_record_becomes_a_send_request() -> None:
    request = build_request(referral_request())
    assert request.message_type == "case.referral"
    assert request.case_ref == referral_request()["case_ref"]


def test_an_invalid_field_is_named_without_its_value() -> None:
    data = referral_request()
    data["case_ref"] = "999990019 has no place here"
    with pytest.raises(MappingError) as caught:
        build_request(data)
    assert caught.value.field == "case_ref"
    assert caught.value.rule
    assert "999990019" not in str(caught.value)


def test_a_missing_field_is_named() -> None:
    data = referral_request()
    del data["purpose"]
    with pytest.raises(MappingError) as caught:
        build_request(data)
    assert caught.value.field == "purpose"
