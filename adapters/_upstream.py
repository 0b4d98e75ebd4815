"""Requests to a partner system's own JSON API (the EHR's FHIR server, the Zaken API), made one
way by every client of such an API:

- the request body is JSON in UTF-8, of the API's media type;
- redirects are not followed: an answer cannot send the adapter, with its credentials,
  somewhere else;
- every request has a total timeout;
- at most ``max_bytes`` of an answer are read: a larger declared ``Content-Length`` is refused
  before reading, a longer body after reading one byte more than the bound.

Failures are the client's own :class:`~adapters.errors.UpstreamError` subclass: status 0 with
the exception class when no answer came, the answer's status when it was too large. Parsing the
answer is the client's business (APIs differ in what an error document looks like).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import aiohttp

from adapters.errors import UpstreamError

__all__ = ["request_json"]


async def request_json(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    what: str,
    error: type[UpstreamError],
    headers: Mapping[str, str],
    media_type: str,
    body: Mapping[str, Any] | None = None,
    params: Mapping[str, str] | None = None,
    timeout_seconds: float,
    max_bytes: int,
) -> tuple[int, bytes]:
    """Send one request; ``(status, raw answer)`` whatever the status.

    ``what`` names the request in errors (``"update Task"``, never a value); ``headers`` are
    sent as given, with ``Content-Type: media_type`` added when there is a ``body``. Raises
    ``error(0, "<what>: <exception class>")`` when no answer came (connection refused, TLS,
    timeout, a broken body) and ``error(status, "<what>: answer too large")`` beyond
    ``max_bytes``.
    """
    sent = dict(headers)
    data = None
    if body is not None:
        sent["Content-Type"] = media_type
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
    try:
        async with session.request(
            method,
            url,
            data=data,
            params=params,
            headers=sent,
            timeout=aiohttp.ClientTimeout(total=timeout_seconds),
            allow_redirects=False,
        ) as resp:
            if resp.content_length and resp.content_length > max_bytes:
                raise error(resp.status, f"{what}: answer too large")
            raw = await resp.content.read(max_bytes + 1)
            status = resp.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise error(0, f"{what}: {type(exc).__name__}") from None
    if len(raw) > max_bytes:
        raise error(status, f"{what}: answer too large")
    return status, raw
