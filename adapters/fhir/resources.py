"""Mapping between zv-gateway messages and FHIR R4 resources (pure: dicts in, dicts out).

Every resource built here or read from the EHR passes :func:`validate` (``fhir.resources``,
R4B models: for ``Patient``, ``Task``, ``ServiceRequest``, ``Communication`` and
``PractitionerRole`` R4B is R4 with no change to the elements used here).

Identifiers and codes the adapter uses (the ``https://zv-gateway.example/fhir/…`` systems are
defined by zv-gateway; the others are the national and HL7 ones):

- message ids: ``urn:ietf:rfc:3986`` / ``urn:uuid:<message id>`` (HL7's system for URIs);
- case refs: :data:`CASE_REF` (Task.groupIdentifier, Communication.identifier);
- pseudonymous subject refs: :data:`SUBJECT_REF` — the EHR's own Patient ids and BSNs never
  leave it: a subject is sent as ``HMAC-SHA-256(org key, "bsn" ‖ BSN)`` or, without a BSN,
  ``HMAC(org key, "fhir-patient" ‖ server ‖ id)``;
- organisations: :data:`OIN_SYSTEM`, the role as ``identifier.type`` in :data:`ROLE_SYSTEM`;
- BSN: ``http://fhir.nl/fhir/NamingSystem/bsn`` (Nictiz);
- message types, task parameters, risk kinds and levels, requested actions: code systems below.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from adapters.errors import MappingError

__all__ = [
    "BSN_SYSTEM",
    "CASE_REF",
    "MESSAGE_TYPE",
    "OIN_SYSTEM",
    "PARAM",
    "ROLE_SYSTEM",
    "SUBJECT_REF",
    "URI",
    "communication_for_item",
    "handover_resources",
    "info_request_task",
    "param",
    "validate",
]

BASE = "https://zv-gateway.example/fhir"
URI = "urn:ietf:rfc:3986"
CASE_REF = f"{BASE}/NamingSystem/case-ref"
SUBJECT_REF = f"{BASE}/NamingSystem/subject-ref"
OIN_SYSTEM = f"{BASE}/NamingSystem/oin"
ROLE_SYSTEM = f"{BASE}/CodeSystem/role"
MESSAGE_TYPE = f"{BASE}/CodeSystem/message-type"
PARAM = f"{BASE}/CodeSystem/task-parameter"
RISK_KIND = f"{BASE}/CodeSystem/risk-kind"
RISK_LEVEL = f"{BASE}/CodeSystem/risk-level"
REQUESTED_ACTION = f"{BASE}/CodeSystem/requested-action"
REJECT_REASON = f"{BASE}/CodeSystem/reject-reason"
BSN_SYSTEM = "http://fhir.nl/fhir/NamingSystem/bsn"

_DISPLAY = {
    "info.request": "Informatieverzoek (ZVH)",
    "case.handover": "Warme overdracht (ZVH)",
    "risk.signal": "Risicosignaal",
    "case.status": "Status casus (ZVH)",
    "meeting.invitation": "Uitnodiging casusoverleg",
    "plan.task": "Taak plan van aanpak",
    "case.closure": "Afsluiting casus",
    "info.response": "Antwoord informatieverzoek",
    "case.referral": "Aanmelding (ZVH)",
    "rights.notice": "Rectificatie, wissing of beperking (AVG art. 19)",
}


def validate(resource: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a resource with ``fhir.resources`` (R4B); returns it unchanged.

    Raises :class:`MappingError` naming the resource type and the first failing element.
    """
    from fhir.resources.R4B import get_fhir_model_class  # the FHIR extra; imported lazily

    rtype = resource.get("resourceType")
    if not isinstance(rtype, str):
        raise MappingError("resourceType", "missing")
    try:
        model = get_fhir_model_class(rtype)
    except KeyError:
        raise MappingError("resourceType", f"'{rtype}' is not an R4 resource type") from None
    try:
        model.model_validate(resource)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise MappingError(f"{rtype}.{where}", first["msg"]) from None
    return dict(resource)


def coding(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    c: dict[str, Any] = {"system": system, "code": code}
    if display:
        c["display"] = display
    return c


def org_reference(org: str, role: str, display: str | None = None) -> dict[str, Any]:
    ref: dict[str, Any] = {
        "identifier": {
            "type": {"coding": [coding(ROLE_SYSTEM, role)]},
            "system": OIN_SYSTEM,
            "value": org,
        }
    }
    if display:
        ref["display"] = display
    return ref


def param(code: str, **value: Any) -> dict[str, Any]:
    """A Task.input/output element of type ``code`` (``valueString=…``, ``valueCode=…``)."""
    return {"type": {"coding": [coding(PARAM, code)]}, **value}


def params_of(elements: Any, code: str) -> list[dict[str, Any]]:
    """The Task.input/output elements of type ``code``."""
    out = []
    for e in elements or []:
        codings = e.get("type", {}).get("coding", []) if isinstance(e, dict) else []
        if any(c.get("system") == PARAM and c.get("code") == code for c in codings):
            out.append(e)
    return out


def message_identifier(message_id: str) -> dict[str, Any]:
    return {"system": URI, "value": f"urn:uuid:{message_id}"}


def message_id_of(resource: Mapping[str, Any]) -> str | None:
    for ident in resource.get("identifier", []) or []:
        value = ident.get("value", "")
        if ident.get("system") == URI and value.startswith("urn:uuid:"):
            return str(value.removeprefix("urn:uuid:"))
    return None


def resource_id(message_id: str) -> str:
    """The FHIR logical id of what a message becomes (``zvg-`` + message id: 40 characters)."""
    return f"zvg-{message_id}"


def patient_reference(patient: Mapping[str, Any] | None, subject_ref: str | None) -> dict[str, Any]:
    if patient is not None:
        return {"reference": f"Patient/{patient['id']}"}
    return {"identifier": {"system": SUBJECT_REF, "value": subject_ref or "unknown"}}


def _when(value: Any) -> str:
    return value.isoformat().replace("+00:00", "Z") if isinstance(value, datetime) else str(value)


# ---------------------------------------------------------------- inbound: info.request → Task


def info_request_task(
    claims: Mapping[str, Any], own_org: str, patient: Mapping[str, Any] | None
) -> dict[str, Any]:
    """A ``Task`` (status ``requested``) asking the EHR's staff to answer a bekendheidsvraag.

    ``claims`` are the message claims (JSON-shaped). Staff complete the Task with outputs
    ``disposition`` (``known``/``not_known``/``refused``), optionally ``reason-code``,
    ``involvement-kind``/``involvement-active``/``involvement-period`` and ``contact`` (a
    reference to a PractitionerRole); the adapter sends the answer from them.
    """
    body = claims["body"]
    subject = claims["subjects"][0]["subject_ref"] if claims.get("subjects") else None
    inputs = [
        param("purpose", valueCode=claims["purpose"]),
        param("mode", valueCode=body["mode"]),
        param("sender-role", valueCode=claims["sender"]["role"]),
        *[param("requested-category", valueCode=c) for c in body["requested_categories"]],
    ]
    if subject:
        inputs.append(
            param("subject-ref", valueIdentifier={"system": SUBJECT_REF, "value": subject})
        )
    if claims.get("correlation_id"):
        inputs.append(
            param("correlation-id", valueIdentifier=message_identifier(claims["correlation_id"]))
        )
    inputs.extend(
        param("question", valueString=f"[{q['category']}] {q['text']}")
        for q in body.get("questions", []) or []
    )
    task: dict[str, Any] = {
        "resourceType": "Task",
        "id": resource_id(claims["message_id"]),
        "identifier": [message_identifier(claims["message_id"])],
        "groupIdentifier": {"system": CASE_REF, "value": claims["case_ref"]},
        "status": "requested",
        "intent": "order",
        "priority": "urgent" if body["mode"] == "bekendheid" else "routine",
        "code": {"coding": [coding(MESSAGE_TYPE, "info.request", _DISPLAY["info.request"])]},
        "description": (
            "Bekendheidsvraag: is deze persoon bij ons bekend, en wie is de contactpersoon?"
            if body["mode"] == "bekendheid"
            else "Informatieverzoek: beantwoord de vragen voor zover de doelbinding het toestaat."
        ),
        "for": patient_reference(patient, subject),
        "authoredOn": claims["created_at"],
        "requester": org_reference(claims["sender"]["org"], claims["sender"]["role"]),
        "owner": org_reference(own_org, _own_role(claims, own_org)),
        "restriction": {"period": {"end": body["respond_before"]}},
        "input": inputs,
    }
    if body.get("context"):
        task["note"] = [{"text": body["context"]}]
    return validate(task)


def _own_role(claims: Mapping[str, Any], own_org: str) -> str:
    for r in claims["recipients"]:
        if r["org"] == own_org:
            return str(r["role"])
    return "OTHER"


# ---------------------------------------------------------------- inbound: case.handover


def handover_resources(
    claims: Mapping[str, Any], own_org: str, patient: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A ``ServiceRequest`` (the warm handover: plan, risk, contacts, open tasks) and a ``Task``
    (status ``requested``) for the EHR's staff to accept or reject it. Accepting the Task acks
    the message (the ZVH gets ``accepted``); rejecting it rejects the message."""
    body = claims["body"]
    mid = claims["message_id"]
    notes = [{"text": f"Plan: {body['plan_summary']}"}]
    notes.extend({"text": f"Open taak: {t['title']}"} for t in body.get("open_tasks", []) or [])
    if body.get("risk"):
        risk = body["risk"]
        kinds = ", ".join(risk["kinds"])
        summary = f" — {risk['summary']}" if risk.get("summary") else ""
        notes.append({"text": f"Risico {risk['level']} ({kinds}){summary}"})
    for c in body.get("contacts", []) or []:
        parts = [c["name"], c["function"], c.get("unit"), c.get("phone"), c.get("email")]
        notes.append({"text": "Contact: " + ", ".join(p for p in parts if p)})
    notes.extend(
        {"text": f"Leefgebied {lg['domain']}: {lg['severity']}"}
        for lg in body.get("leefgebieden", []) or []
    )
    request: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "id": resource_id(mid),
        "identifier": [message_identifier(mid)],
        "requisition": {"system": CASE_REF, "value": claims["case_ref"]},
        "status": "active",
        "intent": "order",
        "category": [
            {"coding": [coding(MESSAGE_TYPE, "case.handover", _DISPLAY["case.handover"])]}
        ],
        "code": {"text": f"Warme overdracht: {body['receiving_team']}"},
        "subject": {"reference": f"Patient/{patient['id']}"},
        "authoredOn": claims["created_at"],
        "requester": org_reference(claims["sender"]["org"], claims["sender"]["role"]),
        "performer": [org_reference(own_org, _own_role(claims, own_org))],
        "reasonCode": [{"text": body["reason"]}],
        "note": notes,
    }
    if body.get("handover_meeting_at"):
        request["occurrenceDateTime"] = body["handover_meeting_at"]
    task: dict[str, Any] = {
        "resourceType": "Task",
        "id": resource_id(mid),
        "identifier": [message_identifier(mid)],
        "groupIdentifier": {"system": CASE_REF, "value": claims["case_ref"]},
        "status": "requested",
        "intent": "order",
        "priority": "asap",
        "code": {"coding": [coding(MESSAGE_TYPE, "case.handover", _DISPLAY["case.handover"])]},
        "description": "Accepteer (status accepted) of weiger (status rejected) de overdracht.",
        "focus": {"reference": f"ServiceRequest/{request['id']}"},
        "for": {"reference": f"Patient/{patient['id']}"},
        "authoredOn": claims["created_at"],
        "requester": org_reference(claims["sender"]["org"], claims["sender"]["role"]),
        "owner": org_reference(own_org, _own_role(claims, own_org)),
    }
    if body.get("accept_before"):
        task["restriction"] = {"period": {"end": body["accept_before"]}}
    return validate(request), validate(task)


def patient_from_identification(
    identification: Mapping[str, Any], patient_id: str
) -> dict[str, Any]:
    """A Patient for a person handed over who is not yet in the EHR (ID_DIRECT of the message)."""
    patient: dict[str, Any] = {"resourceType": "Patient", "id": patient_id}
    if identification.get("bsn"):
        patient["identifier"] = [{"system": BSN_SYSTEM, "value": identification["bsn"]}]
    name: dict[str, Any] = {}
    if identification.get("surname"):
        name["family"] = " ".join(
            p for p in (identification.get("surname_prefix"), identification["surname"]) if p
        )
    if identification.get("given_names"):
        name["given"] = identification["given_names"].split()
    if name:
        patient["name"] = [name]
    if identification.get("birth_date"):
        patient["birthDate"] = identification["birth_date"]
    address = identification.get("address")
    if address:
        line = f"{address['street']} {address['house_number']}"
        if address.get("house_number_addition"):
            line += address["house_number_addition"]
        patient["address"] = [
            {"line": [line], "postalCode": address["postcode"], "city": address["city"]}
        ]
    return validate(patient)


# ---------------------------------------------------------------- inbound: everything else


def communication_for_item(
    claims: Mapping[str, Any], own_org: str, patient: Mapping[str, Any] | None
) -> dict[str, Any]:
    """A received ``Communication`` holding the message (its body as a JSON attachment), for
    types the EHR has no workflow for (status, invitation, task, closure, risk signal)."""
    mtype = claims["message_type"]
    subject = claims["subjects"][0]["subject_ref"] if claims.get("subjects") else None
    body_json = json.dumps(claims["body"], ensure_ascii=False, sort_keys=True).encode("utf-8")
    comm: dict[str, Any] = {
        "resourceType": "Communication",
        "id": resource_id(claims["message_id"]),
        "identifier": [
            message_identifier(claims["message_id"]),
            {"system": CASE_REF, "value": claims["case_ref"]},
        ],
        "status": "completed",
        "category": [{"coding": [coding(MESSAGE_TYPE, mtype, _DISPLAY.get(mtype))]}],
        "priority": "stat" if claims.get("flags", {}).get("emergency") else "routine",
        "subject": patient_reference(patient, subject),
        "sent": claims["created_at"],
        "sender": org_reference(claims["sender"]["org"], claims["sender"]["role"]),
        "recipient": [org_reference(own_org, _own_role(claims, own_org))],
        "payload": [
            {
                "contentAttachment": {
                    "contentType": "application/json",
                    "data": base64.b64encode(body_json).decode(),
                    "title": f"{mtype} {claims['purpose']}",
                }
            }
        ],
    }
    if mtype == "risk.signal":
        comm["payload"].insert(0, {"contentString": claims["body"]["situation"]})
    return validate(comm)


# ---------------------------------------------------------------- outbound helpers


def contact_from_role(role: Mapping[str, Any]) -> dict[str, Any]:
    """A ``ProfessionalContact`` (CONTACT_PROF) from a PractitionerRole."""
    name = role.get("practitioner", {}).get("display")
    function = _concept_text(role.get("code")) or _concept_text(role.get("specialty"))
    if not name or not function:
        raise MappingError(
            "PractitionerRole", "needs practitioner.display and a code or specialty with a text"
        )
    contact: dict[str, Any] = {"name": name, "function": function}
    unit = role.get("organization", {}).get("display")
    if unit:
        contact["unit"] = unit
    for t in role.get("telecom", []) or []:
        if t.get("system") == "phone" and "phone" not in contact:
            contact["phone"] = t.get("value")
        if t.get("system") == "email" and "email" not in contact:
            contact["email"] = t.get("value")
    return contact


def _concept_text(concepts: Any) -> str | None:
    """The first human text of a list of CodeableConcepts: ``text``, else a ``display``."""
    for concept in concepts or []:
        if concept.get("text"):
            return str(concept["text"])
        for c in concept.get("coding", []) or []:
            if c.get("display"):
                return str(c["display"])
    return None


def codes(concepts: Any, system: str) -> list[str]:
    return [
        str(c["code"])
        for concept in concepts or []
        for c in concept.get("coding", []) or []
        if c.get("system") == system and c.get("code")
    ]


def recipients_of(references: Any) -> list[dict[str, str]]:
    """``{org, role}`` of references with an OIN identifier and a role type."""
    out = []
    for ref in references or []:
        ident = ref.get("identifier", {}) if isinstance(ref, dict) else {}
        roles = codes([ident.get("type", {})], ROLE_SYSTEM)
        if ident.get("system") == OIN_SYSTEM and ident.get("value") and roles:
            out.append({"org": str(ident["value"]), "role": roles[0]})
    return out


def bsn_of(patient: Mapping[str, Any]) -> str | None:
    for ident in patient.get("identifier", []) or []:
        if ident.get("system") == BSN_SYSTEM and ident.get("value"):
            return str(ident["value"])
    return None


def identification_of(patient: Mapping[str, Any]) -> dict[str, Any] | None:
    """``PersonIdentification`` (ID_DIRECT) from a Patient: BSN, names, birth date."""
    ident: dict[str, Any] = {}
    bsn = bsn_of(patient)
    if bsn:
        ident["bsn"] = bsn
    names = patient.get("name") or []
    if names:
        if names[0].get("family"):
            ident["surname"] = names[0]["family"]
        if names[0].get("given"):
            ident["given_names"] = " ".join(names[0]["given"])
    if patient.get("birthDate"):
        ident["birth_date"] = patient["birthDate"]
    if "bsn" not in ident and not ("surname" in ident and "birth_date" in ident):
        return None
    return ident


def when(value: Any) -> str:
    return _when(value)
