"""Errors of the partner systems' APIs (``UpstreamError`` and its FHIR and Zaken API kinds):
they say which system, what was asked and the HTTP status, name error codes but never values,
and only no answer, 429, 502, 503 and 504 count as worth retrying."""

from __future__ import annotations

import pytest

from adapters.errors import UpstreamError
from adapters.fhir.server import FhirError
from adapters.zgw.api import ZgwError
from zvg_client.errors import AdapterError


def test_messages_name_the_system_the_request_and_the_codes() -> None:
    assert str(FhirError(422, "update Task")) == "FHIR update Task: HTTP 422"
    assert (
        str(FhirError(422, "update Task", ("invalid", "required")))
        == "FHIR update Task: HTTP 422 (invalid, required)"
    )
    assert str(ZgwError(0, "list zaken: TimeoutError")) == (
        "Zaken API list zaken: TimeoutError: HTTP 0"
    )
    assert str(ZgwError(400, "create rollen", ("zaak", "roltype"))) == (
        "Zaken API create rollen: HTTP 400 (invalid: zaak, roltype)"
    )


def test_each_kind_keeps_its_names_under_its_own_attribute() -> None:
    fhir = FhirError(400, "create Task", ("invalid",))
    zgw = ZgwError(400, "create zaken", ("zaaktype",))
    assert (fhir.status, fhir.codes) == (400, ("invalid",))
    assert (zgw.status, zgw.params) == (400, ("zaaktype",))
    assert isinstance(fhir, UpstreamError)
    assert isinstance(zgw, AdapterError)
    assert not isinstance(fhir, ZgwError), "one system's error is not the other's"


@pytest.mark.parametrize("kind", [FhirError, ZgwError])
@pytest.mark.parametrize(
    ("status", "transient"),
    [(0, True), (429, True), (502, True), (503, True), (504, True)]
    + [(s, False) for s in (200, 400, 401, 403, 404, 409, 422, 500, 501)],
)
def test_only_no_answer_and_overload_are_transient(
    kind: type[UpstreamError], status: int, transient: bool
) -> None:
    assert kind(status, "read").transient is transient
