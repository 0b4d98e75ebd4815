"""The FHIR R4 adapter loop (GGZ): the node's inbox into the EHR, the EHR's answers and signals
out. See :mod:`adapters.fhir` for the flows and ``docs/adapters/fhir.md`` for the setup."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field

from adapters._runtime import (
    AdapterConfig,
    EventLog,
    Health,
    Pseudonymiser,
    Settings,
    StateFile,
    fetch_inbox,
    load_config,
    node_client,
    read_secret,
    serving,
    sleep_or_stop,
)
from adapters.errors import ConfigError, MappingError
from adapters.fhir import resources as r
from adapters.fhir.server import FhirClient, FhirError
from adapters.mapping import build_request
from schemas.api import InboxItem, SendRequest
from zvg_client.client import NodeClient
from zvg_client.errors import InvalidMessage, NodeError, PolicyDenied, Unavailable

__all__ = ["FhirAdapter", "FhirConfig", "FhirSettings", "RiskSignalSettings", "load", "run"]

#: Source records (Tasks, Communications) remembered as handled, per kind. Older entries are
#: dropped first; the Idempotency-Key still stops a resend while the node remembers the key.
MAX_REMEMBERED = 20_000

#: Inbox items per page; handovers waiting for a decision stay in the inbox, so the page must
#: be larger than the number of open handovers (a GGZ has a handful at a time).
INBOX_PAGE = 100

_ACCEPTED = frozenset({"accepted", "in-progress", "completed"})
_REFUSED = frozenset({"rejected", "cancelled"})
_REJECT_REASONS = frozenset(
    {"unknown_subject", "not_responsible", "duplicate", "invalid_content", "other"}
)
_ANSWER_REASONS = frozenset(
    {"not_necessary", "no_legal_basis", "professional_secrecy", "no_consent", "disproportionate"}
)


class RiskSignalSettings(Settings):
    legal_basis: tuple[str, ...] = ("WGS", "WVGGZ")
    programme: str | None = None
    include_identification: bool = True
    """Send BSN, name and birth date (ID_DIRECT) so the crisis service can act."""
    professional_secrecy: bool = True


class FhirSettings(Settings):
    base_url: str = Field(pattern=r"^https?://[^\s]+$")
    token_file: Path | None = None
    pseudonym_key_file: Path
    state_dir: Path
    poll_seconds: float = Field(default=5.0, gt=0, le=3600)
    legal_basis: tuple[str, ...] = ("WGS",)
    """Legal basis of answers to bekendheidsvragen."""
    processing_activity: str | None = None
    answer_professional_secrecy: bool = False
    risk_signal: RiskSignalSettings = RiskSignalSettings()


class FhirConfig(AdapterConfig):
    fhir: FhirSettings


def load(path: Path) -> FhirConfig:
    config = load_config(path, FhirConfig)
    if config.node.org is None:
        raise ConfigError(f"{path}: node.org: the FHIR adapter needs this organisation's OIN")
    return config


class FhirAdapter:
    """One step per flow (``receive_once``, ``settle_handovers``, ``answer_requests``,
    ``send_risk_signals``) so tests can drive them; :meth:`run` loops them until stopped."""

    def __init__(
        self,
        config: FhirConfig,
        node: NodeClient,
        fhir: FhirClient,
        log: EventLog,
        pseudonyms: Pseudonymiser,
        own_org: str,
    ) -> None:
        self.config = config
        self.node = node
        self.fhir = fhir
        self.log = log
        self.pseudonyms = pseudonyms
        self.own_org = own_org
        self.state = StateFile.open(
            config.fhir.state_dir / "fhir-state.json", ("pending", "answered", "signalled")
        )
        self.health = Health("fhir", ("node", "fhir"))

    # ------------------------------------------------------------------ helpers

    def _remember(self, kind: str, key: str, value: Any) -> None:
        self.state.remember(kind, key, value, MAX_REMEMBERED)

    async def _patient_by_bsn(self, bsn: str | None) -> dict[str, Any] | None:
        if not bsn:
            return None
        async for patient in self.fhir.search("Patient", {"identifier": f"{r.BSN_SYSTEM}|{bsn}"}):
            return r.validate(patient)
        return None

    def subject_ref(self, patient: Mapping[str, Any]) -> str:
        """The organisation's pseudonym of a patient: from the BSN when the EHR has one (so every
        adapter of the organisation agrees), else from the server and logical id."""
        bsn = r.bsn_of(patient)
        if bsn:
            return self.pseudonyms.subject_ref("bsn", bsn)
        return self.pseudonyms.subject_ref(
            "fhir-patient", f"{self.fhir.base}/Patient/{patient['id']}"
        )

    # ------------------------------------------------------------------ inbound

    async def receive_once(self, wait: float = 0) -> int:
        """Write new inbox items into the EHR; ack what the EHR holds (handovers wait for the
        staff's decision). Returns how many items were written."""
        page = await fetch_inbox(self.node, self.health, wait=wait, limit=INBOX_PAGE)
        if page is None:
            return 0
        written = 0
        for item in page.items:
            if item.message_id in self.state.data["pending"]:
                continue
            try:
                await self._receive(item)
                written += 1
            except MappingError as exc:
                self.log.warning("item_refused", message_id=item.message_id, field=exc.field)
                await self.node.reject(item.message_id, "invalid_content", exc.field[:200])
            except FhirError as exc:
                self.health.failed("fhir", f"http_{exc.status}")
                self.log.warning("fhir_write_failed", message_id=item.message_id, status=exc.status)
        return written

    async def _receive(self, item: InboxItem) -> None:
        claims = item.claims
        mtype = claims["message_type"]
        identification = claims["body"].get("identification") or {}
        patient = await self._patient_by_bsn(identification.get("bsn"))
        if mtype == "info.request":
            await self.fhir.update(r.info_request_task(claims, self.own_org, patient))
            await self.node.ack(item.message_id)
        elif mtype == "case.handover":
            if patient is None:
                if not identification:
                    raise MappingError("body.identification", "a handover needs the person")
                patient = await self.fhir.update(
                    r.patient_from_identification(identification, r.resource_id(item.message_id))
                )
            request, task = r.handover_resources(claims, self.own_org, patient)
            await self.fhir.update(request)
            await self.fhir.update(task)
            self._remember("pending", item.message_id, task["id"])
        else:
            await self.fhir.update(r.communication_for_item(claims, self.own_org, patient))
            await self.node.ack(item.message_id)
        self.health.ok("fhir")
        self.log.info("received", message_id=item.message_id, type=mtype, sender=item.sender)

    async def settle_handovers(self) -> int:
        """Ack or reject handovers whose Task the staff accepted or rejected."""
        pending: dict[str, str] = self.state.data["pending"]
        settled = 0
        for mid, task_id in list(pending.items()):
            task = await self.fhir.read("Task", task_id)
            if task is None:
                continue
            status = task.get("status")
            if status in _ACCEPTED:
                await self.node.ack(mid)
                self.log.info("handover_accepted", message_id=mid, task=task_id)
            elif status in _REFUSED:
                reasons = r.codes([task.get("statusReason", {})], r.REJECT_REASON)
                reason = reasons[0] if reasons and reasons[0] in _REJECT_REASONS else "other"
                await self.node.reject(mid, reason)  # type: ignore[arg-type]
                self.log.info("handover_rejected", message_id=mid, task=task_id, reason=reason)
            else:
                continue
            del pending[mid]
            self.state.save()
            settled += 1
        return settled

    # ------------------------------------------------------------------ outbound: answers

    async def answer_requests(self) -> int:
        """Send an ``info.response`` for each bekendheidsvraag Task the staff completed (or
        rejected: a ``refused`` answer). Returns how many were sent."""
        sent = 0
        answered: dict[str, Any] = self.state.data["answered"]
        params = {"code": f"{r.MESSAGE_TYPE}|info.request", "status": "completed,rejected"}
        async for found in self.fhir.search("Task", params):
            if found["id"] in answered or r.params_of(found.get("output"), "answer-message-id"):
                continue
            task = r.validate(found)
            try:
                request = await self._answer(task)
                accepted = await self.node.send(
                    request, idempotency_key=f"fhir-task-{task['id']}-answer"
                )
            except Unavailable:
                return sent
            except (MappingError, InvalidMessage, PolicyDenied) as exc:
                await self._mark_refused(task, exc)
                self._remember("answered", task["id"], None)
                continue
            task.setdefault("output", []).append(
                r.param(
                    "answer-message-id", valueIdentifier=r.message_identifier(accepted.message_id)
                )
            )
            task["businessStatus"] = {"text": "Antwoord verzonden via zv-gateway"}
            await self.fhir.update(r.validate(task))
            self._remember("answered", task["id"], accepted.message_id)
            self.log.info("answered", task=task["id"], message_id=accepted.message_id)
            sent += 1
        self.health.ok("fhir")
        return sent

    async def _answer(self, task: Mapping[str, Any]) -> SendRequest:
        request_id = r.message_id_of(task)
        if request_id is None:
            raise MappingError("Task.identifier", "the request's message id is missing")
        inputs = task.get("input")
        purpose = _first(r.params_of(inputs, "purpose"), "valueCode") or "ZVH.BEKENDHEID"
        sender_role = _first(r.params_of(inputs, "sender-role"), "valueCode") or "ZVH"
        subject_ident = _first(r.params_of(inputs, "subject-ref"), "valueIdentifier")
        correlation = _first(r.params_of(inputs, "correlation-id"), "valueIdentifier")
        requester = task.get("requester", {}).get("identifier", {}).get("value")
        outputs = task.get("output")
        if task["status"] == "rejected":
            disposition = "refused"
        else:
            disposition = _first(r.params_of(outputs, "disposition"), "valueCode")
        if disposition not in ("known", "not_known", "refused"):
            raise MappingError("Task.output.disposition", "give known, not_known or refused")
        body: dict[str, Any] = {"disposition": disposition}
        categories = ["ID_PSEUDO"] if subject_ident else []
        if disposition == "refused":
            reason = _first(r.params_of(outputs, "reason-code"), "valueCode")
            body["reason_code"] = reason if reason in _ANSWER_REASONS else "other"
        if disposition == "known":
            kind = _first(r.params_of(outputs, "involvement-kind"), "valueCode")
            if kind:
                involvement: dict[str, Any] = {
                    "kind": kind,
                    "active": bool(
                        _first(r.params_of(outputs, "involvement-active"), "valueBoolean")
                    ),
                }
                period = _first(r.params_of(outputs, "involvement-period"), "valuePeriod") or {}
                if period.get("start"):
                    involvement["since"] = str(period["start"])[:10]
                if period.get("end"):
                    involvement["until"] = str(period["end"])[:10]
                body["involvement"] = [involvement]
                categories.append("BETROKKENHEID")
            contact_ref = _first(r.params_of(outputs, "contact"), "valueReference") or {}
            role = await self.fhir.read_reference(str(contact_ref.get("reference", "")))
            if role is None:
                raise MappingError("Task.output.contact", "reference a PractitionerRole")
            body["contact"] = r.contact_from_role(r.validate(role))
            categories.append("CONTACT_PROF")
        data: dict[str, Any] = {
            "message_type": "info.response",
            "purpose": purpose,
            "recipients": [{"org": requester, "role": sender_role}],
            "case_ref": task.get("groupIdentifier", {}).get("value"),
            "in_reply_to": request_id,
            "legal_basis": list(self.config.fhir.legal_basis),
            "data_categories": categories,
            "flags": {"professional_secrecy": self.config.fhir.answer_professional_secrecy},
            "body": body,
        }
        if subject_ident:
            data["subjects"] = [
                {"subject_ref": subject_ident["value"], "role": "betrokkene", "minor": False}
            ]
        if correlation:
            data["correlation_id"] = str(correlation["value"]).removeprefix("urn:uuid:")
        if self.config.fhir.processing_activity:
            data["processing_activity"] = self.config.fhir.processing_activity
        return build_request(data)

    async def _mark_refused(self, resource: Mapping[str, Any], exc: Exception) -> None:
        """Tell the EHR's staff, on a ``Task`` (status failed), why zv-gateway did not send."""
        reason = _why(exc)
        task = {
            "resourceType": "Task",
            "id": f"zvg-refused-{resource['resourceType'].lower()}-{resource['id']}"[:64],
            "status": "failed",
            "intent": "order",
            "code": {"coding": [r.coding(r.PARAM, "send-refused", "Verzenden geweigerd")]},
            "focus": {"reference": f"{resource['resourceType']}/{resource['id']}"},
            "statusReason": {"text": reason[:1000]},
            "description": "zv-gateway heeft dit niet verzonden; pas het aan en probeer opnieuw.",
        }
        await self.fhir.update(r.validate(task))
        self.log.warning(
            "send_refused",
            source=f"{resource['resourceType']}/{resource['id']}",
            why=type(exc).__name__,
        )

    # ------------------------------------------------------------------ outbound: risk signals

    async def send_risk_signals(self) -> int:
        """Send a ``risk.signal`` for each new outgoing risk Communication in the EHR."""
        sent = 0
        signalled: dict[str, Any] = self.state.data["signalled"]
        params = {"category": f"{r.MESSAGE_TYPE}|risk.signal", "status": "completed"}
        async for found in self.fhir.search("Communication", params):
            if found["id"] in signalled or r.message_id_of(found) is not None:
                continue  # handled, or a received signal (it carries the message id)
            comm = r.validate(found)
            try:
                request = await self._risk_signal(comm)
                accepted = await self.node.send(request, idempotency_key=f"fhir-comm-{comm['id']}")
            except Unavailable:
                return sent
            except (MappingError, InvalidMessage, PolicyDenied) as exc:
                await self._mark_refused(comm, exc)
                self._remember("signalled", comm["id"], None)
                continue
            self._remember("signalled", comm["id"], accepted.message_id)
            self.log.info(
                "risk_signalled", communication=comm["id"], message_id=accepted.message_id
            )
            sent += 1
        self.health.ok("fhir")
        return sent

    async def _risk_signal(self, comm: Mapping[str, Any]) -> SendRequest:
        settings = self.config.fhir.risk_signal
        recipients = r.recipients_of(comm.get("recipient"))
        if not recipients:
            raise MappingError("Communication.recipient", "needs an OIN identifier with a role")
        case_ref = next(
            (i.get("value") for i in comm.get("identifier", []) if i.get("system") == r.CASE_REF),
            None,
        )
        if not case_ref:
            raise MappingError("Communication.identifier", "needs the case reference (case-ref)")
        patient = await self.fhir.read_reference(comm.get("subject", {}).get("reference", ""))
        if patient is None:
            raise MappingError("Communication.subject", "reference a Patient")
        patient = r.validate(patient)
        categories = r.codes(comm.get("category"), r.RISK_LEVEL)
        actions = r.codes(comm.get("category"), r.REQUESTED_ACTION)
        situation = next(
            (p["contentString"] for p in comm.get("payload", []) if "contentString" in p), None
        )
        sender = await self.fhir.read_reference(comm.get("sender", {}).get("reference", ""))
        if sender is None or sender.get("resourceType") != "PractitionerRole":
            raise MappingError("Communication.sender", "reference a PractitionerRole")
        body: dict[str, Any] = {
            "level": categories[0] if categories else "high",
            "kinds": r.codes(comm.get("reasonCode"), r.RISK_KIND),
            "observed_at": comm.get("sent"),
            "requested_action": actions[0] if actions else "assess",
            "situation": situation,
            "contact": r.contact_from_role(r.validate(sender)),
        }
        data_categories = ["ID_PSEUDO", "CONTACT_PROF", "RISICO"]
        if settings.include_identification:
            ident = r.identification_of(patient)
            if ident:
                body["identification"] = ident
                data_categories.append("ID_DIRECT")
        data: dict[str, Any] = {
            "message_type": "risk.signal",
            "purpose": "ZVH.RISICO",
            "recipients": recipients,
            "case_ref": case_ref,
            "legal_basis": list(settings.legal_basis),
            "data_categories": data_categories,
            "flags": {
                "emergency": comm.get("priority") in ("stat", "asap"),
                "professional_secrecy": settings.professional_secrecy,
            },
            "subjects": [
                {"subject_ref": self.subject_ref(patient), "role": "betrokkene", "minor": False}
            ],
            "body": body,
        }
        if settings.programme:
            data["programme"] = settings.programme
        if self.config.fhir.processing_activity:
            data["processing_activity"] = self.config.fhir.processing_activity
        return build_request(data)

    # ------------------------------------------------------------------ loop

    async def step(self) -> None:
        for name, flow in (
            ("receive", self.receive_once),
            ("settle", self.settle_handovers),
            ("answer", self.answer_requests),
            ("signal", self.send_risk_signals),
        ):
            try:
                await flow()
            except FhirError as exc:
                self.health.failed("fhir", f"http_{exc.status}")
                self.log.warning("fhir_unavailable", flow=name, status=exc.status)
            except Unavailable as exc:
                self.health.failed("node", type(exc).__name__)
                self.log.warning("node_unavailable", flow=name, status=exc.status)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.step()
            if await sleep_or_stop(stop, self.config.fhir.poll_seconds):
                break


def _first(elements: list[dict[str, Any]], key: str) -> Any:
    for e in elements:
        if key in e:
            return e[key]
    return None


def _why(exc: Exception) -> str:
    if isinstance(exc, PolicyDenied):
        detail = exc.problem.detail if exc.problem else str(exc)
        return f"Niet toegestaan door het federatiebeleid: {detail}"
    if isinstance(exc, InvalidMessage):
        fields = "; ".join(f"{e.field}: {e.message}" for e in exc.errors)
        return f"Ongeldig bericht: {fields or exc}"
    if isinstance(exc, MappingError):
        return f"Niet te vertalen: {exc.field}: {exc.rule}"
    if isinstance(exc, NodeError):
        return str(exc)
    return type(exc).__name__


async def run(config_path: Path, stop: asyncio.Event) -> None:
    """Entry point of ``zvg adapter fhir --config FILE``."""
    config = load(config_path)
    log = EventLog("fhir", level=config.log.level)
    f = config.fhir
    async with node_client(config.node) as node:
        fhir_token = read_secret(f.token_file).decode() if f.token_file else None
        pseudonyms = Pseudonymiser(read_secret(f.pseudonym_key_file))
        fhir = FhirClient(f.base_url, token=fhir_token)
        adapter = FhirAdapter(config, node, fhir, log, pseudonyms, config.node.org or "")
        async with serving(adapter.health, config.health, log):
            log.info("started", fhir=f.base_url)
            try:
                await adapter.run(stop)
            finally:
                await fhir.close()
