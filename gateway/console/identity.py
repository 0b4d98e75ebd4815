"""Who is logged in to the console: the result of a login by OpenID Connect or by a local account
(password + TOTP), and what a session carries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from gateway.console.roles import Role

__all__ = ["Identity"]


@dataclass(frozen=True)
class Identity:
    """A logged-in person. ``subject`` is stable per person (the OIDC ``sub`` or the local user
    name); ``display_name`` is what the console shows and the access records carry beside it."""

    subject: str
    display_name: str
    role: Role
    method: Literal["oidc", "local"]
