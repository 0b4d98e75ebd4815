"""Who is using the console: the result of a login, by OpenID Connect or a local account."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from gateway.console.roles import Role


@dataclass(frozen=True)
class Identity:
    subject: str
    display_name: str
    role: Role
    method: Literal["oidc", "local"]
