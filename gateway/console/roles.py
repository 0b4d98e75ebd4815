"""The console's roles (deny by default: a user without one of these sees nothing)."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    SECURITY_OFFICER = "security-officer"
    PRIVACY_OFFICER = "privacy-officer"
    AUDITOR = "auditor"
    CONTACTPUNT = "contactpunt"
