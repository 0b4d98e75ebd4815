"""FHIR R4 adapter (GGZ) against a real FHIR server process (Medplum's FHIR router, in memory),
starting from HL7's own R4 example resources (``fhir_examples/``, package
``hl7.fhir.r4.examples`` 4.0.1, CC0), every resource validated with ``fhir.resources``.

Threats and failure modes: the EHR's patient ids and BSNs must not leave it in clear; a message
must not be acked before the EHR holds it (or, for a handover, before staff accepted it); an
answer or signal must not be sent twice (restart, second poll); what zv-gateway refuses must be
shown to the staff, not lost; resources the adapter did not make must not be sent.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from adapters._runtime import EventLog, NodeSettings, Pseudonymiser
from adapters.errors import MappingError
from adapters.fhir import resources as r
from adapters.fhir.adapter import FhirAdapter, FhirConfig, FhirSettings
from adapters.fhir.server import FhirClient
from schemas.claims import InfoResponse, RiskSignal
from tests.adapters.conftest import ORG
from tests.adapters.nodefake import FakeNode, fresh_copy, load_example
from zvg_client.client import NodeClient, RetryPolicy

EXAMPLES = Path(__file__).resolve().parent / "fhir_examples"
GGZ, GEM = ORG["ggz"].oin, ORG["gemeente"].oin
KEY = b"ggz-veenland-pseudonym-key-0001!"
BSN = "999990019"


def hl7(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLES / f"{name}.json").read_text())
    return data


@pytest.fixture
async def fhir(fhir_url: str) -> AsyncIterator[FhirClient]:
    async with aiohttp.ClientSession() as http, http.post(f"{fhir_url}/$test-reset") as resp:
        assert resp.status == 200
    client = FhirClient(fhir_url)
    yield client
    await client.close()


def make_adapter(node: FakeNode, fhir: FhirClient, tmp_path: Path) -> FhirAdapter:
    config = FhirConfig(
        node=NodeSettings(url=node.url, org=GGZ, token_file=tmp_path / "token"),
        fhir=FhirSettings(
            base_url=fhir.base, pseudonym_key_file=tmp_path / "key", state_dir=tmp_path
        ),
    )
    client = NodeClient(node.url, node.token, retry=RetryPolicy(attempts=1))
    return FhirAdapter(config, client, fhir, EventLog("fhir-test"), Pseudonymiser(KEY), GGZ)


@pytest.fixture
async def adapter(
    ggz_node: FakeNode, fhir: FhirClient, tmp_path: Path
) -> AsyncIterator[FhirAdapter]:
    a = make_adapter(ggz_node, fhir, tmp_path)
    yield a
    await a.node.close()


async def ehr_patient(fhir: FhirClient, *, bsn: str | None = BSN) -> dict[str, Any]:
    """HL7's Patient/example, as GGZ Veenland's EHR holds it (with a BSN when given)."""
    patient = hl7("Patient-example")
    if bsn:
        patient["identifier"] = [*patient["identifier"], {"system": r.BSN_SYSTEM, "value": bsn}]
    return await fhir.update(r.validate(patient))


async def ehr_practitioner_role(fhir: FhirClient) -> dict[str, Any]:
    """HL7's PractitionerRole/example, re-dressed as the FACT-team psychiatrist."""
    role = hl7("PractitionerRole-example")
    role["id"] = "fact-kuipers"
    role["practitioner"] = {"display": "A. Kuipers"}
    role["code"] = [{"text": "psychiater, FACT-team Veenstad"}]
    role["organization"] = {"display": "FACT Veenstad"}
    role["telecom"] = [
        {"system": "phone", "value": "+31 592 111 222"},
        {"system": "email", "value": "fact.veenstad@ggz-veenland.example"},
    ]
    return await fhir.update(r.validate(role))


async def find(fhir: FhirClient, rtype: str, **params: str) -> list[dict[str, Any]]:
    return [x async for x in fhir.search(rtype, params)]


# ---------------------------------------------------------------- the server and the examples


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.json")), ids=lambda p: p.stem)
async def test_hl7_examples_validate_and_round_trip(fhir: FhirClient, path: Path) -> None:
    example = hl7(path.stem)
    r.validate(example)
    stored = await fhir.update(example)
    read = await fhir.read(example["resourceType"], example["id"])
    assert read == stored
    assert {k: v for k, v in read.items() if k != "meta"} == {
        k: v for k, v in example.items() if k != "meta"
    }


def test_validation_names_the_element_not_the_value() -> None:
    task = hl7("Task-example1")
    task["authoredOn"] = "the day before yesterday"
    with pytest.raises(MappingError, match=r"Task\.authoredOn") as info:
        r.validate(task)
    assert "yesterday" not in str(info.value)


def test_contact_from_hl7_practitioner_role() -> None:
    contact = r.contact_from_role(hl7("PractitionerRole-example"))
    assert contact == {
        "name": "Dr Adam Careful",
        "function": "General medical practice",
        "phone": "(03) 5555 6473",
        "email": "adam.southern@example.org",
    }


# ---------------------------------------------------------------- bekendheidsvraag → Task → answer


async def test_bekendheidsvraag_becomes_a_task_for_the_patient(
    adapter: FhirAdapter, ggz_node: FakeNode, fhir: FhirClient
) -> None:
    patient = await ehr_patient(fhir)
    request = await ggz_node.deliver(fresh_copy(load_example("info.request")))
    assert await adapter.receive_once() == 1
    task = await fhir.read("Task", f"zvg-{request.message_id}")
    assert task is not None
    r.validate(task)
    assert task["status"] == "requested"
    assert task["for"] == {"reference": f"Patient/{patient['id']}"}
    assert task["groupIdentifier"]["value"] == "Veenstad-2026-031"
    assert ggz_node.acked == [request.message_id], "acked once the EHR holds it"


async def test_unknown_person_gets_a_task_about_the_pseudonym(
    adapter: FhirAdapter, ggz_node: FakeNode, fhir: FhirClient
) -> None:
    request = await ggz_node.deliver(fresh_copy(load_example("info.request")))
    await adapter.receive_once()
    task = await fhir.read("Task", f"zvg-{request.message_id}")
    assert task is not None
    assert task["for"] == {"identifier": {"system": r.SUBJECT_REF, "value": "sub-7f3KqZ2mLw9xTa"}}


async def complete(fhir: FhirClient, task_id: str, outputs: list[dict[str, Any]]) -> None:
    task = await fhir.read("Task", task_id)
    assert task is not None
    task["status"] = "completed"
    task["output"] = outputs
    await fhir.update(r.validate(task))


async def test_completed_task_sends_the_known_answer_once(
    adapter: FhirAdapter, ggz_node: FakeNode, fhir: FhirClient, tmp_path: Path
) -> None:
    await ehr_patient(fhir)
    role = await ehr_practitioner_role(fhir)
    request = await ggz_node.deliver(fresh_copy(load_example("info.request")))
    await adapter.receive_once()
    task_id = f"zvg-{request.message_id}"
    await complete(
        fhir,
        task_id,
        [
            r.param("disposition", valueCode="known"),
            r.param("involvement-kind", valueCode="former_care"),
            r.param("involvement-active", valueBoolean=False),
            r.param("involvement-period", valuePeriod={"start": "2024-02-01", "end": "2025-11-15"}),
            r.param("contact", valueReference={"reference": f"PractitionerRole/{role['id']}"}),
        ],
    )
    assert await adapter.answer_requests() == 1
    assert await adapter.answer_requests() == 0, "answered once"
    restarted = make_adapter(ggz_node, fhir, tmp_path)
    assert await restarted.answer_requests() == 0, "the Task records the answer"
    await restarted.node.close()

    [answer] = ggz_node.sent_of_type("info.response")
    assert isinstance(answer, InfoResponse)
    expected = load_example("info.response")
    assert answer.in_reply_to == request.message_id
    assert answer.recipients[0].org == GEM
    assert answer.body.model_dump(mode="json", exclude_defaults=True) == expected["body"]
    assert [s.subject_ref for s in answer.subjects] == ["sub-7f3KqZ2mLw9xTa"]
    task = await fhir.read("Task", task_id)
    assert task is not None
    [out] = r.params_of(task["output"], "answer-message-id")
    assert out["valueIdentifier"]["value"] == f"urn:uuid:{answer.message_id}"


async def test_rejected_task_is_a_refused_answer(
    adapter: FhirAdapter, ggz_node: FakeNode, fhir: FhirClient
) -> None:
    request = await ggz_node.deliver(fresh_copy(load_example("info.request")))
    await adapter.receive_once()
    task = await fhir.read("Task", f"zvg-{request.message_id}")
    assert task is not None
    task["status"] = "rejected"
    task["output"] = [r.param("reason-code", valueCode="professional_secrecy")]
    await fhir.update(task)
    await adapter.answer_requests()
    [answer] = ggz_node.sent_of_type("info.response")
    assert answer.body.model_dump(exclude_defaults=True) == {
        "disposition": "refused",
        "reason_code": "professional_secrecy",
    }


@pytest.mark.parametrize(
    ("change", "expect"),
    [
        ({"disposition": "maybe"}, "disposition"),
        ({"sender_role": "GEM"}, "federatiebeleid"),  # no rule: a bekendheid answer goes to the ZVH
    ],
    ids=["unknown-disposition", "policy-denied"],
)
async def test_refused_answer_is_shown_to_staff_on_a_failed_task(
    adapter: FhirAdapter,
    ggz_node: FakeNode,
    fhir: FhirClient,
    change: dict[str, str],
    expect: str,
) -> None:
    request = await ggz_node.deliver(fresh_copy(load_example("info.request")))
    await adapter.receive_once()
    task = await fhir.read("Task", f"zvg-{request.message_id}")
    assert task is not None
    if "sender_role" in change:
        for e in r.params_of(task["input"], "sender-role"):
            e["valueCode"] = change["sender_role"]
    task["status"] = "completed"
    task["output"] = [r.param("disposition", valueCode=change.get("disposition", "not_known"))]
    await fhir.update(task)
    assert await adapter.answer_requests() == 0
    assert await adapter.answer_requests() == 0, "reported once, not retried in a loop"
    [failed] = await find(fhir, "Task", status="failed")
    assert failed["focus"] == {"reference": f"Task/{task['id']}"}
    assert expect in failed["statusReason"]["text"]
    assert ggz_node.sent == []


async def test_foreign_tasks_are_not_answered(
    adapter: FhirAdapter, ggz_node: FakeNode, fhir: FhirClient
) -> None:
    for name in ("Task-example1", "Task-example3"):
        await fhir.update(hl7(name))
    assert await adapter.answer_requests() == 0
    assert ggz_node.sent == []


# ---------------------------------------------------------------- risk signal out


async def risk_communication(fhir: FhirClient, patient: dict[str, Any]) -> dict[str, Any]:
    """HL7's Communication/example, as a GGZ crisis worker records an acute risk."""
    role = await ehr_practitioner_role(fhir)
    comm = hl7("Communication-example")
    comm.update(
        {
            "id": "crisis-2026-0321",
            "identifier": [{"system": r.CASE_REF, "value": "Veenstad-2026-031"}],
            "category": [
                {"coding": [r.coding(r.MESSAGE_TYPE, "risk.signal")]},
                {"coding": [r.coding(r.RISK_LEVEL, "acute")]},
                {"coding": [r.coding(r.REQUESTED_ACTION, "crisis_intervention")]},
            ],
            "priority": "stat",
            "subject": {"reference": f"Patient/{patient['id']}"},
            "sent": "2026-03-21T22:50:00Z",
            "recipient": [r.org_reference(GEM, "ZVH"), r.org_reference(GEM, "GEM")],
            "sender": {"reference": f"PractitionerRole/{role['id']}"},
            "reasonCode": [{"coding": [r.coding(r.RISK_KIND, "self_harm")]}],
            "payload": [
                {"contentString": "Acute suicide risk after discharge; crisis team on site."}
            ],
        }
    )
    for key in ("instantiatesUri", "partOf", "encounter", "received", "medium", "text"):
        comm.pop(key, None)
    return await fhir.update(r.validate(comm))


async def test_risk_communication_becomes_one_pseudonymous_risk_signal(
    adapter: FhirAdapter, ggz_node: FakeNode, fhir: FhirClient, tmp_path: Path
) -> None:
    await fhir.update(hl7("Communication-example"))  # HL7's own alert: not a zv-gateway signal
    patient = await ehr_patient(fhir)
    await risk_communication(fhir, patient)
    assert await adapter.send_risk_signals() == 1
    assert await adapter.send_risk_signals() == 0
    restarted = make_adapter(ggz_node, fhir, tmp_path)
    await restarted.send_risk_signals()
    await restarted.node.close()

    [signal] = ggz_node.sent_of_type("risk.signal")
    assert len(ggz_node.sent) == 1
    assert isinstance(signal, RiskSignal)
    assert signal.flags.emergency
    assert [(x.org, x.role) for x in signal.recipients] == [(GEM, "ZVH"), (GEM, "GEM")]
    assert signal.body.level == "acute"
    assert signal.body.contact.name == "A. Kuipers"
    ref = signal.subjects[0].subject_ref
    assert ref == Pseudonymiser(KEY).subject_ref("bsn", BSN)
    outside_body = signal.model_dump_json(exclude={"body"})
    assert BSN not in outside_body
    assert f"Patient/{patient['id']}" not in outside_body, "the EHR's patient id stays in it"
    assert isinstance(signal, RiskSignal)
    assert signal.body.identification is not None
    assert signal.body.identification.bsn == BSN, "ID_DIRECT inside the encrypted body only"


async def test_patient_without_bsn_is_pseudonymised_from_its_fhir_id(
    adapter: FhirAdapter, ggz_node: FakeNode, fhir: FhirClient
) -> None:
    patient = await ehr_patient(fhir, bsn=None)
    await risk_communication(fhir, patient)
    await adapter.send_risk_signals()
    [signal] = ggz_node.sent_of_type("risk.signal")
    assert isinstance(signal, RiskSignal)
    assert signal.subjects[0].subject_ref == Pseudonymiser(KEY).subject_ref(
        "fhir-patient", f"{fhir.base}/Patient/{patient['id']}"
    )
    assert signal.body.identification is not None
    assert signal.body.identification.surname == "Chalmers"


async def test_received_signals_are_not_sent_back(
    adapter: FhirAdapter, ggz_node: FakeNode, fhir: FhirClient
) -> None:
    police = fresh_copy(load_example("risk.signal"))
    await ggz_node.deliver(police)
    await adapter.receive_once()
    [comm] = await find(fhir, "Communication", category=f"{r.MESSAGE_TYPE}|risk.signal")
    assert comm["payload"][0]["contentString"].startswith("Barricaded")
    assert ggz_node.acked == [police["message_id"]]
    assert await adapter.send_risk_signals() == 0
    assert ggz_node.sent == []


# ---------------------------------------------------------------- warm handover


def handover_to_ggz() -> dict[str, Any]:
    return fresh_copy(load_example("case.handover"), recipients=[{"org": GGZ, "role": "GGZ"}])


async def decide(fhir: FhirClient, task_id: str, status: str, reason: str | None = None) -> None:
    task = await fhir.read("Task", task_id)
    assert task is not None
    task["status"] = status
    if reason:
        task["statusReason"] = {"coding": [r.coding(r.REJECT_REASON, reason)]}
    await fhir.update(r.validate(task))


async def test_handover_is_acked_only_when_staff_accept(
    adapter: FhirAdapter, ggz_node: FakeNode, fhir: FhirClient
) -> None:
    patient = await ehr_patient(fhir)
    item = await ggz_node.deliver(handover_to_ggz())
    assert await adapter.receive_once() == 1
    assert await adapter.receive_once() == 0, "waiting for the decision: not written twice"
    request = await fhir.read("ServiceRequest", f"zvg-{item.message_id}")
    assert request is not None
    assert request["subject"] == {"reference": f"Patient/{patient['id']}"}
    assert any(n["text"].startswith("Plan: Stable after crisis") for n in request["note"])
    assert await adapter.settle_handovers() == 0
    assert ggz_node.acked == []
    await decide(fhir, f"zvg-{item.message_id}", "accepted")
    assert await adapter.settle_handovers() == 1
    assert ggz_node.acked == [item.message_id]


async def test_declined_handover_is_rejected_with_the_reason(
    adapter: FhirAdapter, ggz_node: FakeNode, fhir: FhirClient
) -> None:
    item = await ggz_node.deliver(handover_to_ggz())
    await adapter.receive_once()
    [created] = await find(fhir, "Patient", identifier=f"{r.BSN_SYSTEM}|{BSN}")
    assert created["name"] == [{"family": "Vermeer"}], "a new client, from the identification"
    await decide(fhir, f"zvg-{item.message_id}", "rejected", "not_responsible")
    await adapter.settle_handovers()
    [(mid, why)] = ggz_node.rejected
    assert mid == item.message_id
    assert why.reason == "not_responsible"


async def test_handover_without_a_person_is_refused(
    adapter: FhirAdapter, ggz_node: FakeNode
) -> None:
    claims = handover_to_ggz()
    del claims["body"]["identification"]
    claims["data_categories"].remove("ID_DIRECT")
    item = await ggz_node.deliver(claims)
    await adapter.receive_once()
    assert [(m, w.reason) for m, w in ggz_node.rejected] == [(item.message_id, "invalid_content")]


# ---------------------------------------------------------------- everything else


async def test_other_messages_become_communications_with_the_body(
    adapter: FhirAdapter, ggz_node: FakeNode, fhir: FhirClient
) -> None:
    invitation = fresh_copy(load_example("meeting.invitation"))
    await ggz_node.deliver(invitation)
    await adapter.receive_once()
    comm = await fhir.read("Communication", f"zvg-{invitation['message_id']}")
    assert comm is not None
    r.validate(comm)
    attached = json.loads(base64.b64decode(comm["payload"][0]["contentAttachment"]["data"]))
    assert attached == invitation["body"]
    assert ggz_node.acked == [invitation["message_id"]]


async def test_fhir_server_down_leaves_items_unacked(ggz_node: FakeNode, tmp_path: Path) -> None:
    down = FhirClient("http://127.0.0.1:9")
    adapter = make_adapter(ggz_node, down, tmp_path)
    await ggz_node.deliver(fresh_copy(load_example("info.request")))
    await adapter.step()
    await adapter.node.close()
    await down.close()
    assert ggz_node.acked == []
    assert not adapter.health.ready()


async def test_a_rights_notice_becomes_a_communication_about_the_patient(
    adapter: FhirAdapter, ggz_node: FakeNode, fhir: FhirClient
) -> None:
    notice = fresh_copy(load_example("rights.notice"))
    await ggz_node.deliver(notice, recipient_roles=("GGZ",))
    await adapter.receive_once()
    comm = await fhir.read("Communication", f"zvg-{notice['message_id']}")
    assert comm is not None
    r.validate(comm)
    [category] = comm["category"][0]["coding"]
    assert (category["code"], category["display"]) == (
        "rights.notice",
        "Rectificatie, wissing of beperking (AVG art. 19)",
    )
    attached = json.loads(base64.b64decode(comm["payload"][0]["contentAttachment"]["data"]))
    assert attached["kind"] == "erase"
    assert attached["concerns"] == notice["body"]["concerns"]
    assert ggz_node.acked == [notice["message_id"]], "acked: the sender sees 'accepted'"
