"""The ZGW Zaken API adapter loop (gemeente / ZVH). See :mod:`adapters.zgw` for the flows."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError

from adapters._runtime import (
    AdapterConfig,
    EventLog,
    Health,
    Pseudonymiser,
    Settings,
    StateFile,
    fetch_inbox,
    load_config,
    load_toml,
    node_client,
    read_secret,
    serving,
    sleep_or_stop,
)
from adapters.errors import ConfigError, MappingError
from adapters.mapping import build_request
from adapters.zgw.api import ZakenClient, ZgwError
from schemas import ids
from schemas.api import InboxItem, SendRequest
from zvg_client.client import NodeClient
from zvg_client.errors import InvalidMessage, NodeError, PolicyDenied, Unavailable

__all__ = ["ZgwAdapter", "ZgwConfig", "ZgwMapping", "ZgwSettings", "load", "run"]

#: The ``bron`` of the zaak kenmerk that carries the zv-gateway case reference.
KENMERK_BRON = "zv-gateway"

#: Zaken, messages and statuses remembered in the state file (oldest dropped first).
MAX_REMEMBERED = 20_000

_STATUS_PURPOSE = {
    "received": "ZVH.AANMELDING",
    "accepted": "ZVH.AANMELDING",
    "rejected": "ZVH.AANMELDING",
    "redirected": "ZVH.AANMELDING",
    "in_progress": "ZVH.PLAN",
    "monitoring": "ZVH.PLAN",
    "escalated": "ZVH.RISICO",
    "de_escalated": "ZVH.OVERDRACHT",
    "closed": "ZVH.AFSLUITING",
}


class Party(Settings):
    org: str = Field(pattern=r"^[0-9]{20}$")
    role: str


class OutboundReferral(Settings):
    """A new zaak of ``zaaktype`` becomes a ``case.referral``."""

    zaaktype: str
    sender_role: str = "GEM"
    recipients: list[Party]
    since: date
    """Only zaken started on or after this date (the adapter's first run does not send history)."""
    legal_basis: tuple[str, ...] = ("WGS",)
    body: dict[str, Any]
    """Body defaults: urgency, criteria, betrokkene_informed, referrer; ``reason`` is taken from
    the zaak's toelichting (or omschrijving)."""


class Inbound(Settings):
    """Received messages of ``message_type`` become a zaak of ``zaaktype``."""

    message_type: Literal["case.handover", "case.referral"]
    zaaktype: str
    roltype: str
    """ROLTYPE for the betrokkene (a natuurlijk persoon)."""
    statustype: str | None = None
    """Initial STATUSTYPE set on the new zaak."""
    vertrouwelijkheidaanduiding: str = "vertrouwelijk"


class StatusMapping(Settings):
    """Statuses set on zaken of ``zaaktypen`` become ``case.status`` messages."""

    zaaktypen: list[str]
    sender_role: str = "ZVH"
    recipients: tuple[Party, ...] = ()
    """Besides the organisation a zaak came from (for zaken made from a received referral)."""
    map: dict[str, str]
    """STATUSTYPE URL → case.status status code (accepted, rejected, escalated, …)."""
    legal_basis: tuple[str, ...] = ("WGS",)


class ZgwMapping(Settings):
    outbound_referral: OutboundReferral | None = None
    inbound: tuple[Inbound, ...] = ()
    status: StatusMapping | None = None
    unhandled: Literal["leave", "reject"] = "leave"
    """Inbox items of other types: leave them for another consumer, or reject them."""


class ZgwSettings(Settings):
    base_url: str = Field(pattern=r"^https?://[^\s]+$")
    client_id: str | None = None
    secret_file: Path | None = None
    token_file: Path | None = None
    rsin: str = Field(pattern=r"^[0-9]{9}$")
    """The municipality's RSIN: bronorganisatie and verantwoordelijkeOrganisatie of new zaken."""
    mapping: Path
    pseudonym_key_file: Path
    state_dir: Path
    poll_seconds: float = Field(default=10.0, gt=0, le=3600)


class ZgwConfig(AdapterConfig):
    zgw: ZgwSettings


def load(path: Path) -> tuple[ZgwConfig, ZgwMapping]:
    config = load_config(path, ZgwConfig)
    if config.node.org is None:
        raise ConfigError(f"{path}: node.org: the ZGW adapter needs this organisation's OIN")
    return config, load_mapping(config.zgw.mapping)


def load_mapping(path: Path) -> ZgwMapping:
    try:
        return ZgwMapping.model_validate(load_toml(path))
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(f"{path}: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None


def _url_key(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()[:32]


def _today() -> str:
    return datetime.now(UTC).date().isoformat()


class ZgwAdapter:
    """Flows as steps (``receive_once``, ``refer_new_zaken``, ``report_statuses``); :meth:`run`
    loops them until stopped."""

    def __init__(
        self,
        config: ZgwConfig,
        mapping: ZgwMapping,
        node: NodeClient,
        zaken: ZakenClient,
        log: EventLog,
        pseudonyms: Pseudonymiser,
    ) -> None:
        self.config = config
        self.mapping = mapping
        self.node = node
        self.zaken = zaken
        self.log = log
        self.pseudonyms = pseudonyms
        self.state = StateFile.open(
            config.zgw.state_dir / "zgw-state.json", ("zaken", "referred", "received")
        )
        self.health = Health("zgw", ("node", "zaken"))

    def _remember(self, kind: str, key: str, value: Any) -> None:
        self.state.remember(kind, key, value, MAX_REMEMBERED)

    # ------------------------------------------------------------------ pure mappings

    def case_ref_of(self, zaak: dict[str, Any]) -> str:
        """The zaak's ``zv-gateway`` kenmerk, else a stable meaningless pseudonym of its URL."""
        for k in zaak.get("kenmerken", []) or []:
            if isinstance(k, dict) and k.get("bron") == KENMERK_BRON and k.get("kenmerk"):
                return str(k["kenmerk"])
        return self.pseudonyms.case_ref("zaak", str(zaak["url"]))

    def subject_of(self, rol: dict[str, Any] | None, zaak: dict[str, Any]) -> str:
        """Pseudonym of the betrokkene: from the BSN when the rol has one (so the organisation's
        adapters agree), else from the rol (or, without one, the zaak) URL."""
        ident = (rol or {}).get("betrokkeneIdentificatie") or {}
        bsn = ident.get("inpBsn")
        if isinstance(bsn, str) and ids.is_bsn(bsn):
            return self.pseudonyms.subject_ref("bsn", bsn)
        return self.pseudonyms.subject_ref("zaak-rol", str((rol or zaak).get("url")))

    def referral_request(self, zaak: dict[str, Any], rol: dict[str, Any] | None) -> SendRequest:
        spec = self.mapping.outbound_referral
        if spec is None:
            raise ConfigError("the mapping has no [outbound_referral]")
        body = dict(spec.body)
        reason = zaak.get("toelichting") or zaak.get("omschrijving")
        if not reason:
            raise MappingError("zaak.toelichting", "a referral needs a reason")
        body["reason"] = str(reason)[:2000]
        categories = ["ID_PSEUDO", "CONTACT_PROF", "VRIJE_TEKST"]
        if "leefgebieden" in body:
            categories.append("LEEFGEBIEDEN")
        data = {
            "message_type": "case.referral",
            "purpose": "ZVH.AANMELDING",
            "sender_role": spec.sender_role,
            "recipients": [p.model_dump() for p in spec.recipients],
            "case_ref": self.case_ref_of(zaak),
            "legal_basis": spec.legal_basis,
            "data_categories": categories,
            "subjects": [
                {"subject_ref": self.subject_of(rol, zaak), "role": "betrokkene", "minor": False}
            ],
            "body": body,
        }
        return build_request(data)

    def status_request(
        self, code: str, status: dict[str, Any], zaak_state: dict[str, Any]
    ) -> SendRequest:
        spec = self.mapping.status
        if spec is None:
            raise ConfigError("the mapping has no [status]")
        recipients = [
            *zaak_state.get("counterparts", []),
            *(p.model_dump() for p in spec.recipients),
        ]
        unique = [dict(t) for t in dict.fromkeys(tuple(sorted(r.items())) for r in recipients)]
        body: dict[str, Any] = {
            "status": code,
            "effective_at": str(status["datumStatusGezet"]),
        }
        if code in ("rejected", "redirected"):
            body["reason_code"] = "other"
        if status.get("statustoelichting"):
            body["note"] = str(status["statustoelichting"])[:2000]
        data = {
            "message_type": "case.status",
            "purpose": _STATUS_PURPOSE.get(code, "ZVH.PLAN"),
            "sender_role": spec.sender_role,
            "recipients": unique,
            "case_ref": zaak_state["case_ref"],
            "legal_basis": spec.legal_basis,
            "data_categories": ["VRIJE_TEKST"] if "note" in body else [],
            "body": body,
        }
        return build_request(data)

    def zaak_for(self, claims: dict[str, Any], spec: Inbound) -> dict[str, Any]:
        """The ZAAK a received message becomes (Zaken API ``POST /zaken`` body)."""
        body = claims["body"]
        mid = claims["message_id"]
        if claims["message_type"] == "case.handover":
            omschrijving = f"Warme overdracht: {body['receiving_team']}"
            toelichting = body["plan_summary"]
        else:
            omschrijving = "Aanmelding ZVH"
            toelichting = body["reason"]
        return {
            "identificatie": "ZVG-" + mid.replace("-", ""),
            "bronorganisatie": self.config.zgw.rsin,
            "verantwoordelijkeOrganisatie": self.config.zgw.rsin,
            "zaaktype": spec.zaaktype,
            "omschrijving": omschrijving[:80],
            "toelichting": toelichting[:1000],
            "startdatum": _today(),
            "vertrouwelijkheidaanduiding": spec.vertrouwelijkheidaanduiding,
            "kenmerken": [{"kenmerk": claims["case_ref"][:40], "bron": KENMERK_BRON}],
        }

    @staticmethod
    def rol_for(zaak_url: str, claims: dict[str, Any], spec: Inbound) -> dict[str, Any]:
        """The betrokkene's ROL (natuurlijk persoon) from the message's identification."""
        ident = claims["body"].get("identification") or {}
        person: dict[str, Any] = {}
        if ident.get("bsn"):
            person["inpBsn"] = ident["bsn"]
        if ident.get("surname"):
            person["geslachtsnaam"] = ident["surname"][:200]
        if ident.get("surname_prefix"):
            person["voorvoegselGeslachtsnaam"] = ident["surname_prefix"][:80]
        if ident.get("given_names"):
            person["voornamen"] = ident["given_names"][:200]
        if ident.get("birth_date"):
            person["geboortedatum"] = ident["birth_date"]
        return {
            "zaak": zaak_url,
            "betrokkeneType": "natuurlijk_persoon",
            "roltype": spec.roltype,
            "roltoelichting": "Betrokkene (via zv-gateway)",
            "betrokkeneIdentificatie": person,
        }

    # ------------------------------------------------------------------ inbound

    async def receive_once(self, wait: float = 0) -> int:
        """Turn configured inbox items into zaken (then ack); returns how many."""
        page = await fetch_inbox(self.node, self.health, wait=wait, limit=50)
        if page is None:
            return 0
        made = 0
        by_type: dict[str, Inbound] = {i.message_type: i for i in self.mapping.inbound}
        for item in page.items:
            spec = by_type.get(str(item.claims.get("message_type")))
            if spec is None:
                if self.mapping.unhandled == "reject":
                    await self.node.reject(item.message_id, "not_responsible")
                continue
            try:
                await self._make_zaak(item, spec)
            except ZgwError as exc:
                self.health.failed("zaken", f"http_{exc.status}")
                self.log.warning("zaak_not_made", message_id=item.message_id, status=exc.status)
                if not exc.transient and exc.status in (400, 422):
                    await self.node.reject(item.message_id, "invalid_content", "Zaken API: 400")
                continue
            await self.node.ack(item.message_id)
            made += 1
        return made

    async def _make_zaak(self, item: InboxItem, spec: Inbound) -> None:
        claims = item.claims
        known = self.state.data["received"].get(item.message_id)
        if known is None:
            zaak = await self._existing(claims) or await self.zaken.create(
                "zaken", self.zaak_for(claims, spec)
            )
            zaak_url = str(zaak["url"])
            if claims["body"].get("identification"):
                await self.zaken.create("rollen", self.rol_for(zaak_url, claims, spec))
            if spec.statustype:
                await self.zaken.create(
                    "statussen",
                    {
                        "zaak": zaak_url,
                        "statustype": spec.statustype,
                        "datumStatusGezet": datetime.now(UTC).isoformat(timespec="seconds"),
                        "statustoelichting": f"Ontvangen via zv-gateway ({claims['message_type']})",
                    },
                )
            self._remember("received", item.message_id, zaak_url)
            counterpart = {"org": claims["sender"]["org"], "role": claims["sender"]["role"]}
            self._remember(
                "zaken",
                _url_key(zaak_url),
                {"url": zaak_url, "case_ref": claims["case_ref"], "counterparts": [counterpart]},
            )
        self.health.ok("zaken")
        self.log.info("zaak_made", message_id=item.message_id, type=claims["message_type"])

    async def _existing(self, claims: dict[str, Any]) -> dict[str, Any] | None:
        """A zaak made from this message before (e.g. before a crash, without the state)."""
        ident = "ZVG-" + claims["message_id"].replace("-", "")
        async for zaak in self.zaken.zaken(identificatie=ident):
            if zaak.get("identificatie") == ident:
                return zaak
        return None

    # ------------------------------------------------------------------ outbound: referrals

    async def refer_new_zaken(self) -> int:
        spec = self.mapping.outbound_referral
        if spec is None:
            return 0
        sent = 0
        referred: dict[str, Any] = self.state.data["referred"]
        async for zaak in self.zaken.zaken(
            zaaktype=spec.zaaktype, startdatum__gte=spec.since.isoformat()
        ):
            url = str(zaak.get("url"))
            if _url_key(url) in referred:
                continue
            rol = None
            async for candidate in self.zaken.rollen(url, "natuurlijk_persoon"):
                rol = candidate
                break
            try:
                request = self.referral_request(zaak, rol)
                accepted = await self.node.send(
                    request, idempotency_key=f"zgw-zaak-{_url_key(url)}-referral"
                )
            except Unavailable:
                return sent
            except (MappingError, InvalidMessage, PolicyDenied) as exc:
                self.log.warning("referral_refused", zaak=_url_key(url), why=type(exc).__name__)
                self._remember("referred", _url_key(url), None)
                continue
            self._remember("referred", _url_key(url), accepted.message_id)
            self.log.info("referred", zaak=_url_key(url), message_id=accepted.message_id)
            sent += 1
        self.health.ok("zaken")
        return sent

    # ------------------------------------------------------------------ outbound: statuses

    async def report_statuses(self) -> int:
        spec = self.mapping.status
        if spec is None:
            return 0
        sent = 0
        for key, zaak_state in list(self.state.data["zaken"].items()):
            latest = None
            async for status in self.zaken.statussen(zaak_state["url"]):
                if latest is None or str(status.get("datumStatusGezet")) > str(
                    latest.get("datumStatusGezet")
                ):
                    latest = status
            if latest is None or latest.get("url") == zaak_state.get("last_status"):
                continue
            code = spec.map.get(str(latest.get("statustype")))
            if code is None:
                zaak_state["last_status"] = latest.get("url")
                self._remember("zaken", key, zaak_state)
                continue  # a status the partners need not hear about
            try:
                request = self.status_request(code, latest, zaak_state)
                accepted = await self.node.send(
                    request, idempotency_key=f"zgw-status-{_url_key(str(latest['url']))}"
                )
            except Unavailable:
                return sent
            except (MappingError, InvalidMessage, PolicyDenied) as exc:
                self.log.warning("status_refused", zaak=key, why=type(exc).__name__)
                accepted = None
            zaak_state["last_status"] = latest.get("url")
            self._remember("zaken", key, zaak_state)
            if accepted is not None:
                self.log.info("status_sent", zaak=key, status=code, message_id=accepted.message_id)
                sent += 1
        return sent

    def follow(self, zaak_url: str, case_ref: str, counterparts: list[dict[str, str]]) -> None:
        """Report the statuses of a zaak that did not come through the adapter."""
        self._remember(
            "zaken",
            _url_key(zaak_url),
            {"url": zaak_url, "case_ref": case_ref, "counterparts": counterparts},
        )

    # ------------------------------------------------------------------ loop

    async def step(self) -> None:
        for name, flow in (
            ("receive", self.receive_once),
            ("refer", self.refer_new_zaken),
            ("status", self.report_statuses),
        ):
            try:
                await flow()
            except ZgwError as exc:
                self.health.failed("zaken", f"http_{exc.status}")
                self.log.warning("zaken_api_failed", flow=name, status=exc.status)
            except (Unavailable, NodeError) as exc:
                self.health.failed("node", type(exc).__name__)
                self.log.warning("node_failed", flow=name, status=exc.status)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.step()
            if await sleep_or_stop(stop, self.config.zgw.poll_seconds):
                break


async def run(config_path: Path, stop: asyncio.Event) -> None:
    """Entry point of ``zvg adapter zgw --config FILE``."""
    config, mapping = load(config_path)
    z = config.zgw
    log = EventLog("zgw", level=config.log.level)
    async with node_client(config.node) as node:
        zaken = ZakenClient(
            z.base_url,
            client_id=z.client_id,
            secret=read_secret(z.secret_file) if z.secret_file else None,
            token=read_secret(z.token_file).decode() if z.token_file else None,
        )
        adapter = ZgwAdapter(
            config, mapping, node, zaken, log, Pseudonymiser(read_secret(z.pseudonym_key_file))
        )
        async with serving(adapter.health, config.health, log):
            log.info("started", zaken=z.base_url)
            try:
                await adapter.run(stop)
            finally:
                await zaken.close()
