"""The Evidence page: export the bundle (format ``zvg-evidence/v1``) of a
message or a case, and verify an uploaded bundle on the server with only the directory
(:func:`gateway.audit.inspect.export_bundle`, :func:`gateway.audit.inspect.verify_bundle`).

Officers only for the export (it carries the records of a case); officers and the auditor may
have a bundle verified. Both are looks, recorded before the answer (``evidence.export``,
``evidence.verify``).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from gateway.audit.inspect import BundleReport, export_bundle, open_readonly, verify_bundle
from gateway.console.access import Access
from gateway.console.app import CONSOLE, Console, allow, render, session_of
from gateway.console.roles import OFFICERS, Role
from gateway.errors import LocalError, RemoteError
from schemas import ids

__all__ = ["MAX_BUNDLE_BYTES", "add_routes"]

MAX_BUNDLE_BYTES = 16 * 2**20
"""Largest bundle the verify form takes (a case of thousands of records fits)."""


def _identity(request: web.Request) -> Any:
    session = session_of(request)
    if session is None:  # allow() lets only sessions through
        raise web.HTTPForbidden
    return session.identity


@allow(*OFFICERS, Role.AUDITOR)
async def evidence_page(request: web.Request) -> web.StreamResponse:
    """The export and verify forms."""
    return render(request, "evidence.html", {"report": None, "failure": None, "form": {}})


async def _export(console: Console, message_id: str | None, case_ref: str | None) -> dict[str, Any]:
    def run() -> dict[str, Any]:
        with open_readonly(console.store_path) as db:
            return export_bundle(
                db,
                directory=console.directory,
                org=console.org,
                message_id=message_id,
                case_ref=case_ref,
                now=console.clock(),
            )

    return await asyncio.to_thread(run)


@allow(*OFFICERS)
async def export(request: web.Request) -> web.StreamResponse:
    """The bundle of ``?message_id=`` or ``?case_ref=`` as a download."""
    console = request.app[CONSOLE]
    identity = _identity(request)
    message_id = request.query.get("message_id", "").strip() or None
    case_ref = request.query.get("case_ref", "").strip() or None
    form = {"message_id": message_id or "", "case_ref": case_ref or ""}
    if (message_id is None) == (case_ref is None) or any(
        v is not None and (len(v) > 200 or ids.find_bsn(v)) for v in (message_id, case_ref)
    ):
        return render(
            request,
            "evidence.html",
            {"report": None, "failure": None, "form": form, "problem": "evidence.one"},
            status=400,
        )
    try:
        bundle = await _export(console, message_id, case_ref)
    except LocalError as exc:
        return render(
            request,
            "evidence.html",
            {"report": None, "failure": None, "form": form, "problem_text": str(exc)},
            status=404 if "no audit records" in str(exc) else 409,
        )
    await console.look(
        Access(
            identity,
            "evidence.export",
            len(bundle["records"]),
            message_id=message_id,
            case_ref=case_ref,
        )
    )
    name = "message" if message_id else "case"
    stamp = console.clock().strftime("%Y%m%dT%H%M%SZ")
    return web.Response(
        body=json.dumps(bundle, indent=1, ensure_ascii=False).encode("utf-8"),
        content_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="zvg-evidence-{name}-{stamp}.json"'},
    )


def _check(bundle_bytes: bytes, console: Console) -> tuple[BundleReport | None, str | None]:
    """The report, or the failure as ``reason code: detail`` (the code where the verifier
    gives one: the browser's verifier gives the same)."""
    try:
        bundle = json.loads(bundle_bytes)
        if not isinstance(bundle, dict):
            return None, "bundle_malformed: not a zvg-evidence/v1 bundle (not a JSON object)"
        return verify_bundle(bundle, directory=console.directory, now=console.clock()), None
    except RemoteError as exc:
        code = getattr(exc, "code", None)
        return None, f"{code}: {exc.detail}" if code else exc.detail
    except (ValueError, KeyError, TypeError, AttributeError, LocalError) as exc:
        return None, f"bundle_malformed: not a well-formed bundle ({type(exc).__name__})"


@allow(*OFFICERS, Role.AUDITOR)
async def directory_file(request: web.Request) -> web.StreamResponse:
    """The signed directory this node trusts, for the browser's verifier (public data)."""
    return web.Response(
        body=request.app[CONSOLE].directory.raw,
        content_type="application/json",
        headers={"Content-Disposition": 'attachment; filename="directory.json"'},
    )


@allow(*OFFICERS, Role.AUDITOR)
async def verify(request: web.Request) -> web.StreamResponse:
    """Verify an uploaded bundle on the server (the CSRF middleware checked the token)."""
    console = request.app[CONSOLE]
    identity = _identity(request)
    form = await request.post()
    upload = form.get("bundle")
    data = upload.file.read(MAX_BUNDLE_BYTES + 1) if isinstance(upload, web.FileField) else b""
    if not data or len(data) > MAX_BUNDLE_BYTES:
        return render(
            request,
            "evidence.html",
            {"report": None, "failure": None, "form": {}, "problem": "evidence.nofile"},
            status=400,
        )
    report, failure = await asyncio.to_thread(_check, data, console)
    await console.look(
        Access(
            identity, "evidence.verify", report.records if report else 0, {"ok": str(not failure)}
        )
    )
    return render(
        request,
        "evidence.html",
        {"report": report, "failure": failure, "form": {}},
        status=200 if report else 422,
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/evidence", evidence_page)
    app.router.add_get("/evidence/export", export)
    app.router.add_post("/evidence/verify", verify)
    app.router.add_get("/evidence/directory.json", directory_file)
