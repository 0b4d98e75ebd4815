"""A small client for a Zaken API (VNG Realisatie ZGW standard, ``/api/v1``).

Only what the adapter needs: list zaken (by zaaktype, start date, identificatie), read a zaak,
list and create statussen and rollen, create a zaak. Authentication is the ZGW way — a JWT
signed with HS256 under the client's secret, with ``client_id`` in the claims (the "JWT-Claims"
security scheme of the standard) — or a fixed bearer token. ``next`` links are followed only on
the same host (a list answer cannot send the adapter elsewhere); responses are bounded.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from adapters._upstream import request_json
from adapters.errors import UpstreamError
from schemas import strictjson

__all__ = ["MAX_ZGW_PAGES", "MAX_ZGW_RESPONSE_BYTES", "ZakenClient", "ZgwError", "zgw_jwt"]

#: Bytes of one Zaken API answer (a page of 100 zaken is ~300 KiB).
MAX_ZGW_RESPONSE_BYTES = 8 * 1024 * 1024

#: Pages one listing follows; the adapter narrows its listings, more means a wrong filter.
MAX_ZGW_PAGES = 20


class ZgwError(UpstreamError):
    """The Zaken API refused a request (``status``; ``params``, the ValidatieFout's
    ``invalidParams`` names) or could not be reached (``status`` 0)."""

    system = "Zaken API"
    names_label = "invalid: "

    @property
    def params(self) -> tuple[str, ...]:
        return self.names


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def zgw_jwt(client_id: str, secret: bytes, now: int, user_id: str = "zv-gateway") -> str:
    """The ZGW authorisation JWT (HS256): ``iss`` and ``client_id`` the client, ``iat`` now."""
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    claims = {
        "iss": client_id,
        "client_id": client_id,
        "iat": now,
        "user_id": user_id,
        "user_representation": "zv-gateway adapter",
    }
    payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{header}.{payload}".encode()
    signature = _b64(hmac.new(secret, signing_input, hashlib.sha256).digest())
    return f"{header}.{payload}.{signature}"


class ZakenClient:
    """REST client for one Zaken API root (e.g. ``https://zaken.veenstad.example/api/v1``)."""

    def __init__(
        self,
        base_url: str,
        *,
        client_id: str | None = None,
        secret: bytes | None = None,
        token: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.base = base_url.rstrip("/")
        self._client_id = client_id
        self._secret = secret
        self._token = token
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _auth(self) -> str:
        if self._client_id and self._secret:
            return "Bearer " + zgw_jwt(self._client_id, self._secret, int(time.time()))
        return f"Bearer {self._token or ''}"

    async def _call(
        self,
        method: str,
        url: str,
        what: str,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        crs: bool = False,
    ) -> dict[str, Any] | None:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        headers = {"Authorization": self._auth(), "Accept": "application/json"}
        if crs:  # the standard requires these on operations that carry zaakgeometrie
            headers["Accept-Crs"] = "EPSG:4326"
            headers["Content-Crs"] = "EPSG:4326"
        status, raw = await request_json(
            self._session,
            method,
            url,
            what=what,
            error=ZgwError,
            headers=headers,
            media_type="application/json",
            body=body,
            params=params,
            timeout_seconds=self._timeout,
            max_bytes=MAX_ZGW_RESPONSE_BYTES,
        )
        try:
            doc = strictjson.loads(raw) if raw.strip() else None
        except ValueError:
            raise ZgwError(status, f"{what}: answer is not JSON") from None
        if status == 404:
            return None
        if not 200 <= status < 300:
            names: tuple[str, ...] = ()
            if isinstance(doc, dict) and isinstance(doc.get("invalidParams"), list):
                names = tuple(
                    str(p.get("name")) for p in doc["invalidParams"] if isinstance(p, dict)
                )
            raise ZgwError(status, what, names)
        if not isinstance(doc, dict):
            raise ZgwError(status, f"{what}: answer is not a JSON object")
        return doc

    async def _list(
        self, resource: str, params: Mapping[str, str], crs: bool = False
    ) -> AsyncIterator[dict[str, Any]]:
        url: str | None = f"{self.base}/{resource}"
        query: Mapping[str, str] | None = params
        for _ in range(MAX_ZGW_PAGES):
            if url is None:
                return
            page = await self._call("GET", url, f"list {resource}", params=query, crs=crs)
            if page is None:
                return
            for item in page.get("results", []) or []:
                if isinstance(item, dict):
                    yield item
            nxt = page.get("next")
            same_host = isinstance(nxt, str) and urlsplit(nxt).netloc == urlsplit(self.base).netloc
            url = nxt if same_host else None
            query = None

    def zaken(self, **params: str) -> AsyncIterator[dict[str, Any]]:
        """``GET /zaken`` with filters (``zaaktype``, ``startdatum__gte``, ``identificatie``)."""
        return self._list("zaken", params, crs=True)

    def statussen(self, zaak: str) -> AsyncIterator[dict[str, Any]]:
        return self._list("statussen", {"zaak": zaak})

    def rollen(
        self, zaak: str, betrokkene_type: str | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        params = {"zaak": zaak}
        if betrokkene_type:
            params["betrokkeneType"] = betrokkene_type
        return self._list("rollen", params)

    async def create(self, resource: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """``POST /<resource>`` (zaken, rollen, statussen); the created object."""
        out = await self._call(
            "POST", f"{self.base}/{resource}", f"create {resource}", body, crs=resource == "zaken"
        )
        if out is None:
            raise ZgwError(404, f"create {resource}")
        return out
