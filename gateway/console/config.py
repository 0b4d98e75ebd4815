"""The ``[console]`` section of ``node.toml``: the officer console (docs/console.md).

Off by default. Enabled, it listens on its own address; without a TLS certificate and key it may
listen only on loopback (``127.0.0.1``, ``::1``, ``localhost``), else the node refuses to start
(:func:`console_problems`, run by ``zvg node check-config`` and ``zvg node run``).

The field docstrings are the meaning column of the settings table in ``docs/ops.md``
(``python -m gateway.deploy.settings_doc docs/ops.md``).
"""

from __future__ import annotations

import importlib.util
import ipaddress
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator
from pydantic_core import PydanticCustomError

from gateway.console.roles import Role

__all__ = [
    "CONSOLE_PACKAGES",
    "ConsoleSettings",
    "OidcSettings",
    "console_problems",
    "is_loopback",
    "split_listen",
]


CONSOLE_PACKAGES = ("aiohttp_jinja2", "jinja2", "argon2", "pyotp")
"""What the console needs beyond the node (the ``console`` extra: ``zv-gateway[console]``)."""


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class OidcSettings(_Settings):
    issuer: str | None = None
    """The organisation's OpenID provider (its issuer URL, ``https://``; discovery at
    ``/.well-known/openid-configuration``). Unset: no OpenID Connect login, only local accounts."""
    client_id: str | None = None
    """The console's client id at the provider."""
    client_secret_file: Path | None = None
    """A 0600 file with the client secret (none for a public client with PKCE only)."""
    redirect_url: str | None = None
    """The console's callback as the provider knows it (``https://…/auth/callback``)."""
    scopes: tuple[str, ...] = ("openid", "profile")
    """The scopes asked for; ``openid`` must be among them."""
    acr_values: tuple[str, ...] = ()
    """Authentication contexts to ask the provider for, one of which the ID token's ``acr`` must
    name (its multi-factor login, for instance); empty: whatever login the provider accepts."""
    role_claim: str = "groups"
    """The ID-token claim (a string or a list of strings) whose values ``role_mapping`` maps
    to console roles."""
    role_mapping: dict[str, Role] = {}
    """Claim value -> console role (``security-officer``, ``privacy-officer``, ``auditor``,
    ``contactpunt``). Deny by default: a person with no mapped value cannot log in; with
    several, the first in the claim's order counts."""


class ConsoleSettings(_Settings):
    enabled: bool = False
    """Serve the officer console (docs/console.md) from the node process."""
    listen: Annotated[str, StringConstraints(pattern=r"^[0-9a-zA-Z.:\[\]-]+:[0-9]{1,5}$")] = (
        "127.0.0.1:8401"
    )
    """host:port of the console's own listener. Anything but loopback needs ``tls_cert`` and
    ``tls_key``; without them the node refuses to start."""
    tls_cert: Path | None = None
    """PEM certificate chain the console serves (TLS 1.2 or newer)."""
    tls_key: Path | None = None
    """PEM private key of ``tls_cert`` (mode 0600)."""
    users_file: Path | None = None
    """Local accounts (argon2id password + TOTP), written by ``zvg console add-user``; default
    ``<data_dir>/console-users.json``. For organisations without an OpenID provider."""
    idle_timeout_minutes: Annotated[float, Field(gt=0, le=240)] = 15
    """A session ends after this many minutes without a request."""
    absolute_timeout_hours: Annotated[float, Field(gt=0, le=24)] = 8
    """A session ends this many hours after the login, however active."""
    max_failed_logins: Annotated[int, Field(ge=1, le=100)] = 5
    """Failed logins per account (four times as many per client address) within
    ``lockout_minutes`` after which further attempts are refused (``429``) until the window has
    passed."""
    lockout_minutes: Annotated[float, Field(gt=0, le=1440)] = 15
    """The window of ``max_failed_logins``."""
    page_size: Annotated[int, Field(ge=10, le=500)] = 50
    """Rows per page of a search."""
    export_max_rows: Annotated[int, Field(ge=1, le=1_000_000)] = 10_000
    """Most rows a CSV export of a search holds."""
    review_unreviewed_days: Annotated[int, Field(ge=1, le=90)] = 3
    """A daily log review report not signed off after this many days raises an alert."""
    timezone: str = "Europe/Amsterdam"
    """The officers' time zone (IANA name): the days of the log review and of the overview's
    charts, and the review's office hours, are in it."""
    receipt_wait_hours: Annotated[float, Field(gt=0, le=720)] = 24
    """A message still ``delivered`` but not ``accepted`` after this long is listed on the
    overview."""
    pseudonym_key_file: Path | None = None
    """A 0600 file with this organisation's subject pseudonym key (the adapters'
    ``pseudonym_key_file``, at least 32 bytes), so an officer can search by a typed BSN: the
    console turns it into the pseudonym the adapters send and never keeps the BSN. Unset: search
    by pseudonym only."""
    oidc: OidcSettings = OidcSettings()
    """Login by OpenID Connect (``[console.oidc]``)."""

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise PydanticCustomError(
                "zvg_timezone", "an IANA time zone name, such as Europe/Amsterdam"
            ) from None
        return value

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @field_validator("listen")
    @classmethod
    def _port_in_range(cls, value: str) -> str:
        if not 1 <= int(value.rpartition(":")[2]) <= 65535:
            raise PydanticCustomError("zvg_port", "the port must be from 1 to 65535")
        return value


def split_listen(listen: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:8401`` too) as the host and the port."""
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (or ``localhost``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def console_problems(settings: ConsoleSettings, users_file: Path) -> list[str]:
    """Why the console may not start (empty when it may, or when it is not enabled).
    ``users_file``: where the local accounts are (``NodeConfig.console_users_file``)."""
    if not settings.enabled:
        return []
    problems: list[str] = []
    missing = [name for name in CONSOLE_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        problems.append(
            f"console: enabled, but {', '.join(missing)} not installed; install zv-gateway[console]"
        )
    if settings.oidc.issuer is None and not users_file.is_file():
        problems.append(
            f"console: no way to log in: no [console.oidc] issuer and no local accounts in "
            f"{users_file}; run: zvg console add-user"
        )
    elif users_file.is_file() and users_file.stat().st_mode & 0o077:
        problems.append(
            f"console.users_file: {users_file} is readable by group or others; "
            f"run: chmod 600 {users_file}"
        )
    host, _ = split_listen(settings.listen)
    tls = settings.tls_cert is not None or settings.tls_key is not None
    if tls and (settings.tls_cert is None or settings.tls_key is None):
        problems.append("console.tls_cert and console.tls_key: set both or neither")
    if not tls and not is_loopback(host):
        problems.append(
            f"console.listen: {settings.listen} is not loopback; without console.tls_cert and "
            "console.tls_key the console listens only on 127.0.0.1 or ::1"
        )
    for name in ("tls_cert", "tls_key"):
        path = getattr(settings, name)
        if path is not None and not path.is_file():
            problems.append(f"console.{name}: {path} does not exist")
    key = settings.tls_key
    if key is not None and key.is_file() and key.stat().st_mode & 0o077:
        problems.append(
            f"console.tls_key: {settings.tls_key} is readable by group or others; "
            f"run: chmod 600 {settings.tls_key}"
        )
    problems += _pseudonym_key_problems(settings.pseudonym_key_file)
    oidc = settings.oidc
    if oidc.issuer is not None:
        if not (oidc.client_id and oidc.redirect_url):
            problems.append("console.oidc: issuer needs client_id and redirect_url")
        if not oidc.issuer.startswith("https://") and not _loopback_url(oidc.issuer):
            problems.append("console.oidc.issuer: must be https:// (or http:// on loopback)")
        if "openid" not in oidc.scopes:
            problems.append("console.oidc.scopes: must include openid")
        if not oidc.role_mapping:
            problems.append("console.oidc.role_mapping: maps no claim value to a role")
    return problems


def _loopback_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme == "http" and is_loopback(parts.hostname or "")


PSEUDONYM_KEY_MIN_BYTES = 32
"""As the adapters require of the same key (``gateway.console.data.subject.MIN_KEY_BYTES``)."""


def _pseudonym_key_problems(path: Path | None) -> list[str]:
    if path is None:
        return []
    if not path.is_file():
        return [f"console.pseudonym_key_file: {path} does not exist"]
    if path.stat().st_mode & 0o077:
        loose = f"console.pseudonym_key_file: {path} is readable by group or others"
        return [f"{loose}; run: chmod 600 {path}"]
    if len(path.read_bytes().rstrip(b"\r\n")) < PSEUDONYM_KEY_MIN_BYTES:
        return [
            f"console.pseudonym_key_file: {path} holds fewer than {PSEUDONYM_KEY_MIN_BYTES} bytes"
        ]
    return []
