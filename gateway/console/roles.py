"""The console's roles. Deny by default: a page or action names the roles that may use it, and
every other role (or no session) is refused.

- ``security-officer``: all metadata, pseudonyms, evidence export, alerts.
- ``privacy-officer``: the same, plus signing off the daily log review report.
- ``auditor``: metadata without personal fields (no pseudonyms).
- ``contactpunt``: only what subject-access work needs; for now, search by subject.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["ALL_ROLES", "OFFICERS", "PERSONAL_FIELDS_ROLES", "Role"]


class Role(StrEnum):
    SECURITY_OFFICER = "security-officer"
    PRIVACY_OFFICER = "privacy-officer"
    AUDITOR = "auditor"
    CONTACTPUNT = "contactpunt"


#: Every role, in the order the console lists them.
ALL_ROLES: frozenset[Role] = frozenset(Role)
#: The roles that see all metadata, export evidence and handle alerts.
OFFICERS: frozenset[Role] = frozenset({Role.SECURITY_OFFICER, Role.PRIVACY_OFFICER})
#: The roles that may see personal fields (subject pseudonyms).
PERSONAL_FIELDS_ROLES: frozenset[Role] = frozenset(
    {Role.SECURITY_OFFICER, Role.PRIVACY_OFFICER, Role.CONTACTPUNT}
)
