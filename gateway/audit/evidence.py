"""Checking an evidence bundle (``zvg-evidence/v1``) from its bytes, with a reason code.

The codes are the contract between the two verifiers of a bundle: this one (the node's, via
:func:`gateway.audit.inspect.verify_bundle`) and the JavaScript one the officer's browser runs
(``gateway/console/static/js/evidence-verify.js``), both written to docs/evidence-bundle.md. A
bundle that fails, fails in both with the same code; tests/console/evidence checks that on a
set of tampered bundles. The detail text is for people and may differ between the two.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from gateway.audit.inspect import BundleReport, VerificationFailed, verify_bundle
from gateway.core.directory import TrustedDirectory
from gateway.errors import GatewayError
from schemas import strictjson
from schemas.catalogue import Catalogue

__all__ = ["REASONS", "BundleCheck", "check_bundle", "load_directory"]

#: Every reason code, with what it means (docs/evidence-bundle.md §5 lists the same).
REASONS: dict[str, str] = {
    "directory_invalid": "the directory is not signed by a threshold of its authority, or expired",
    "bundle_malformed": "the bundle is not JSON of the specified shape",
    "bundle_format": "the bundle's format is not zvg-evidence/v1",
    "org_unknown": "the exporting organisation is not a member of the directory",
    "checkpoint_invalid": "the checkpoint is not signed by the organisation's audit-log key "
    "(or a known cosignature on it is invalid)",
    "record_proof_invalid": "a record is not proved included in its checkpoint",
    "record_checkpoint_mismatch": "a record is proved at another index or in another checkpoint",
    "message_signature_invalid": "a message's signed claims do not verify",
    "message_unproved": "no proved record names a message's signed content",
    "receipt_signature_invalid": "a receipt's signed claims do not verify",
    "receipt_mismatch": "a receipt is about another message or from another organisation",
    "receipt_proof_invalid": "a receipt's proof of the receiver's record does not verify",
    "contradiction_unproved": "no proved record names a kept contradicting receipt",
    "contradiction_signature_invalid": "a kept contradicting receipt does not verify",
    "contradiction_mismatch": "a kept contradicting receipt is not a receipt by the record's peer",
}


@dataclass(frozen=True)
class BundleCheck:
    """The outcome: ``ok`` with the ``report``, or the first failure's ``reason`` code and a
    ``detail`` for people (never payload content or key material)."""

    ok: bool
    reason: str | None = None
    detail: str = ""
    report: BundleReport | None = None


def load_directory(raw: bytes, *, now: datetime, catalogue: Catalogue) -> TrustedDirectory:
    """The directory a bundle is checked against, trusted on its own authority's threshold
    (as ``zvg audit verify-bundle`` does). Raises :class:`VerificationFailed`
    (``directory_invalid``)."""
    try:
        return TrustedDirectory.first(raw, now=now, catalogue=catalogue)
    except GatewayError as exc:
        raise VerificationFailed(f"directory: {exc}", code="directory_invalid") from None


def check_bundle(raw: bytes, *, directory: TrustedDirectory, now: datetime) -> BundleCheck:
    """Parse ``raw`` (strict JSON: UTF-8, no duplicate member names) and verify it against
    ``directory`` at ``now``. Never raises for any input bytes."""
    try:
        bundle = strictjson.loads(raw)
    except ValueError as exc:
        return BundleCheck(False, "bundle_malformed", f"the bundle is not JSON: {exc}")
    try:  # a lone surrogate escape (\ud800) is JSON, but no Unicode text: refused up front
        json.dumps(bundle, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return BundleCheck(False, "bundle_malformed", "the bundle is not JSON: not valid Unicode")
    try:
        report = verify_bundle(bundle, directory=directory, now=now)
    except VerificationFailed as exc:
        return BundleCheck(False, exc.code or "bundle_malformed", exc.detail)
    return BundleCheck(True, report=report)
