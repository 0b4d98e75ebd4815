"""A small client for a FHIR R4 server's REST API (HL7 FHIR R4 §3.1.0 RESTful API).

Only what the adapter needs: ``read``, ``search`` (one page at a time, following ``next`` links),
``update`` (PUT, which also creates with a client-chosen id — the adapter's way of making its
writes idempotent) and ``create``. JSON only (``application/fhir+json``). Every response body is
bounded by :data:`MAX_FHIR_RESPONSE_BYTES`; errors raise :class:`FhirError` with the HTTP status
and the ``OperationOutcome`` issue codes (never the resource content).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from adapters._upstream import request_json
from adapters.errors import UpstreamError
from schemas import strictjson

__all__ = ["MAX_FHIR_RESPONSE_BYTES", "MAX_SEARCH_PAGES", "FhirClient", "FhirError"]

#: Bytes of one FHIR response read into memory (a search page of a few hundred resources).
MAX_FHIR_RESPONSE_BYTES = 16 * 1024 * 1024

#: Pages one search follows. The adapter's searches are narrowed by ``_lastUpdated``; more pages
#: than this means the cursor is wrong, and the next poll continues where this one stopped.
MAX_SEARCH_PAGES = 20

_FHIR_JSON = "application/fhir+json"


class FhirError(UpstreamError):
    """The FHIR server refused a request (``status``; ``codes``, the ``OperationOutcome``
    issue codes) or could not be reached (``status`` 0)."""

    system = "FHIR"

    @property
    def codes(self) -> tuple[str, ...]:
        return self.names


class FhirClient:
    """REST client for one FHIR server base URL (e.g. ``https://ehr.example/fhir/R4``)."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        session: aiohttp.ClientSession | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.base = base_url.rstrip("/")
        self._token = token
        self._session = session
        self._own = session is None
        self._timeout = timeout

    async def close(self) -> None:
        if self._own and self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    async def _call(
        self,
        method: str,
        url: str,
        what: str,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> dict[str, Any] | None:
        headers = {"Accept": _FHIR_JSON}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        status, raw = await request_json(
            self._http(),
            method,
            url,
            what=what,
            error=FhirError,
            headers=headers,
            media_type=_FHIR_JSON,
            body=body,
            params=params,
            timeout_seconds=self._timeout,
            max_bytes=MAX_FHIR_RESPONSE_BYTES,
        )
        doc = _json(raw) if raw.strip() else None
        if status == 404:
            return None
        if not 200 <= status < 300:
            raise FhirError(status, what, _issue_codes(doc))
        return doc

    async def read(self, resource_type: str, logical_id: str) -> dict[str, Any] | None:
        """``GET [base]/[type]/[id]``; None when the server answers 404."""
        _check_segment(resource_type)
        _check_segment(logical_id)
        return await self._call(
            "GET", f"{self.base}/{resource_type}/{logical_id}", f"read {resource_type}"
        )

    async def read_reference(self, reference: str) -> dict[str, Any] | None:
        """Read a relative literal reference ``Type/id`` (other forms: None)."""
        parts = reference.split("/")
        if len(parts) != 2:
            return None
        return await self.read(parts[0], parts[1])

    async def update(self, resource: Mapping[str, Any]) -> dict[str, Any]:
        """``PUT [base]/[type]/[id]``: create-or-update with the resource's own id."""
        rtype, rid = resource["resourceType"], resource["id"]
        _check_segment(rtype)
        _check_segment(rid)
        out = await self._call("PUT", f"{self.base}/{rtype}/{rid}", f"update {rtype}", resource)
        if out is None:
            raise FhirError(404, f"update {rtype}")
        return out

    async def create(self, resource: Mapping[str, Any]) -> dict[str, Any]:
        """``POST [base]/[type]``: the server chooses the id."""
        rtype = resource["resourceType"]
        _check_segment(rtype)
        out = await self._call("POST", f"{self.base}/{rtype}", f"create {rtype}", resource)
        if out is None:
            raise FhirError(404, f"create {rtype}")
        return out

    async def search(
        self, resource_type: str, params: Mapping[str, str]
    ) -> AsyncIterator[dict[str, Any]]:
        """``GET [base]/[type]?params``: the matching resources, page by page (``next`` links
        are followed only on the same server, at most :data:`MAX_SEARCH_PAGES` pages)."""
        _check_segment(resource_type)
        url: str | None = f"{self.base}/{resource_type}"
        query: Mapping[str, str] | None = params
        for _ in range(MAX_SEARCH_PAGES):
            if url is None:
                return
            bundle = await self._call("GET", url, f"search {resource_type}", params=query)
            if bundle is None or bundle.get("resourceType") != "Bundle":
                raise FhirError(200, f"search {resource_type}: answer is not a Bundle")
            for entry in bundle.get("entry", []) or []:
                resource = entry.get("resource") if isinstance(entry, dict) else None
                if (
                    isinstance(resource, dict)
                    and resource.get("resourceType") == resource_type
                    and entry.get("search", {}).get("mode", "match") == "match"
                ):
                    yield resource
            url = _next_link(bundle, self.base)
            query = None


def _next_link(bundle: Mapping[str, Any], base: str) -> str | None:
    for link in bundle.get("link", []) or []:
        if isinstance(link, dict) and link.get("relation") == "next":
            url = link.get("url")
            if isinstance(url, str) and urlsplit(url).netloc == urlsplit(base).netloc:
                return url
    return None


def _json(raw: bytes) -> dict[str, Any] | None:
    try:
        doc = strictjson.loads(raw)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def _issue_codes(doc: Mapping[str, Any] | None) -> tuple[str, ...]:
    if not doc or doc.get("resourceType") != "OperationOutcome":
        return ()
    return tuple(
        str(i.get("code")) for i in doc.get("issue", []) if isinstance(i, dict) and i.get("code")
    )


def _check_segment(value: str) -> None:
    # FHIR ids: [A-Za-z0-9\-\.]{1,64} (R4 §2.24.0.1); types are letters. No path injection.
    if not value or len(value) > 64 or not all(c.isalnum() or c in "-." for c in value):
        raise ValueError("not a FHIR id or resource type")
