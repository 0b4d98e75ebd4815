"""The local API's routes for inzageverzoeken (``/v1/rights``; docs/subject-rights.md), for a
token with the ``rights`` role (the contactpunt, a privacy officer) and the ``zvg rights`` CLI:

- ``POST /v1/rights/requests`` — start a request (BSN and identity check; the ZVH);
- ``GET /v1/rights/requests`` and ``GET /v1/rights/requests/{request_id}`` — the requests, one
  request with every organisation's answer (the report is computed from it);
- ``POST /v1/rights/requests/{request_id}/extend`` — extend the term by two months, with a reason;
- ``GET /v1/rights/deferrals`` and ``POST /v1/rights/deferrals/{message_id}/release`` — the
  deferrals this node keeps, and releasing one (a partner that defers).

The BSN of a start is used and dropped (:class:`~gateway.node.contactpunt.Contactpunt`); it is
never logged or echoed. Errors are problem+json like every route.
"""

from __future__ import annotations

import json
from datetime import date
from typing import Annotated, Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.core.audit import Actor
from gateway.errors import LocalError
from gateway.node.api_common import SERVICE, actor_of, client_of
from gateway.node.problems import PROBLEM_TYPES, ApiError
from schemas import strictjson
from schemas.api import field_errors

__all__ = ["RIGHTS_PATHS", "RIGHTS_TAG", "add_rights_routes"]

#: The token roles that may use these routes: the ZVH's contactpunt starts and follows
#: requests; a privacy officer also releases deferred answers (docs/subject-rights.md).
ROLES = ("contactpunt", "privacy-officer")


class StartRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    bsn: Annotated[str, Field(min_length=9, max_length=11)]
    identity_check: Annotated[str, Field(min_length=1, max_length=500)]
    received_on: Annotated[str, Field(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")] | None = None


class ExtendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    reason: Annotated[str, Field(min_length=1, max_length=500)]


_M = TypeVar("_M", bound=BaseModel)


def _parse(model: type[_M], body: bytes) -> _M:
    try:
        strictjson.loads(body)
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise ApiError(
            "invalid-message",
            "the request does not have the expected fields",
            errors=field_errors(exc),
        ) from None
    except ValueError as exc:
        raise ApiError("invalid-request", f"the body is not acceptable JSON: {exc}") from None


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, text=json.dumps(data), content_type="application/json")


def _refused(exc: LocalError) -> ApiError:
    text = str(exc)
    if text.startswith("no "):
        return ApiError("not-found", text)
    return ApiError("invalid-request", text)


async def _start(request: web.Request) -> web.Response:
    client_of(request, *ROLES)
    start = _parse(StartRequest, await request.read())
    try:
        received = None if start.received_on is None else date.fromisoformat(start.received_on)
        doc = await request.app[SERVICE].contactpunt.start(
            bsn=start.bsn, identity_check=start.identity_check, received_on=received
        )
    except ValueError:
        raise ApiError("invalid-request", "received_on is not a date") from None
    except LocalError as exc:
        raise _refused(exc) from None
    return _json(doc, 201)


async def _requests(request: web.Request) -> web.Response:
    client_of(request, *ROLES)
    return _json(request.app[SERVICE].contactpunt.requests())


async def _request(request: web.Request) -> web.Response:
    client_of(request, *ROLES)
    try:
        doc = request.app[SERVICE].contactpunt.request(request.match_info["request_id"])
    except LocalError as exc:
        raise ApiError("not-found", str(exc)) from None
    if doc is None:
        raise ApiError("not-found", "no such inzageverzoek on this node")
    members = request.app[SERVICE].directory.payload.members
    return _json({**doc, "names": {m.oin: m.name for m in members}})


async def _extend(request: web.Request) -> web.Response:
    client_of(request, *ROLES)
    extend = _parse(ExtendRequest, await request.read())
    try:
        doc = await request.app[SERVICE].contactpunt.extend(
            request.match_info["request_id"], reason=extend.reason
        )
    except LocalError as exc:
        raise _refused(exc) from None
    return _json(doc)


async def _deferrals(request: web.Request) -> web.Response:
    client_of(request, *ROLES)
    return _json(request.app[SERVICE].rights.deferrals())


async def _release(request: web.Request) -> web.Response:
    token = client_of(request, *ROLES)
    try:
        sent = await request.app[SERVICE].rights.release(
            request.match_info["message_id"], actor=actor_of(request) or Actor(id=token.name)
        )
    except LocalError as exc:
        raise _refused(exc) from None
    return _json({"message_id": sent})


def add_rights_routes(app: web.Application) -> None:
    app.router.add_post("/v1/rights/requests", _start)
    app.router.add_get("/v1/rights/requests", _requests)
    app.router.add_get("/v1/rights/requests/{request_id}", _request)
    app.router.add_post("/v1/rights/requests/{request_id}/extend", _extend)
    app.router.add_get("/v1/rights/deferrals", _deferrals)
    app.router.add_post("/v1/rights/deferrals/{message_id}/release", _release)


# ---------------------------------------------------------------- OpenAPI

RIGHTS_TAG = {
    "name": "rights",
    "description": "Inzageverzoeken (contactpunt and privacy-officer tokens)",
}
_OBJECT = {"type": "object"}


def _problems(*slugs: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for slug in slugs:
        status, title = PROBLEM_TYPES[slug]
        entry = out.setdefault(
            str(status),
            {
                "description": "",
                "content": {
                    "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
                },
            },
        )
        entry["description"] = (entry["description"] + "; " if entry["description"] else "") + (
            f"{slug}: {title}"
        )
    return out


def _op(op_id: str, summary: str, ok: str, *problems: str, body: Any = None) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": op_id,
        "tags": ["rights"],
        "summary": summary,
        "description": summary + ". Needs a contactpunt or privacy-officer token.",
        "responses": {
            ok: {"description": "OK", "content": {"application/json": {"schema": _OBJECT}}},
            **_problems("invalid-request", "unauthorized", "forbidden", *problems),
        },
    }
    if body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": body.model_json_schema()}},
        }
    return op


def _path_param(name: str) -> list[dict[str, Any]]:
    return [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}]


RIGHTS_PATHS: dict[str, Any] = {
    "/v1/rights/requests": {
        "post": _op(
            "startRightsRequest",
            "Start an inzageverzoek for a person (the ZVH's contactpunt)",
            "201",
            "invalid-message",
            body=StartRequest,
        ),
        "get": _op("listRightsRequests", "The inzageverzoeken this node started", "200"),
    },
    "/v1/rights/requests/{request_id}": {
        "get": {
            **_op("getRightsRequest", "One inzageverzoek with every answer", "200", "not-found"),
            "parameters": _path_param("request_id"),
        }
    },
    "/v1/rights/requests/{request_id}/extend": {
        "post": {
            **_op(
                "extendRightsRequest",
                "Extend the term by two months, with a reason",
                "200",
                "not-found",
                "invalid-message",
                body=ExtendRequest,
            ),
            "parameters": _path_param("request_id"),
        }
    },
    "/v1/rights/deferrals": {
        "get": _op("listRightsDeferrals", "The deferred answers this node keeps", "200")
    },
    "/v1/rights/deferrals/{message_id}/release": {
        "post": {
            **_op("releaseRightsDeferral", "Release a deferred answer", "200", "not-found"),
            "parameters": _path_param("message_id"),
        }
    },
}
