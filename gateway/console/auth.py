"""Local console accounts: an argon2id password **and** a TOTP code (RFC 6238), both required.

For organisations without their own OpenID provider. ``zvg console add-user`` writes the
accounts file (JSON, mode 0600): per account its name, display name, role, the argon2id hash
(argon2-cffi, RFC 9106 parameters) and the TOTP secret (base32; the authenticator app holds
the same). No password is ever stored or logged in clear.

:class:`LocalAccounts` checks a login: the password is verified even for an unknown account
(against a dummy hash, so the answer takes as long), a TOTP code is accepted once only (a code
seen for its time step or an earlier one is refused: no replay within its 30 seconds), and
:class:`LoginThrottle` refuses further attempts after ``max_failed_logins`` failures per
account or per client address within the window.
"""

from __future__ import annotations

import hmac
import json
import os
import re
from collections import OrderedDict, deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from gateway.console.identity import Identity
from gateway.console.roles import Role
from gateway.errors import LocalError

__all__ = [
    "MIN_PASSWORD_LENGTH",
    "Account",
    "LocalAccounts",
    "LoginResult",
    "LoginThrottle",
    "add_account",
    "load_accounts",
    "new_totp_secret",
    "totp_uri",
]

MIN_PASSWORD_LENGTH = 12
_NAME = re.compile(r"^[a-z0-9][a-z0-9._@-]{0,63}$")
_TOTP_STEP = 30
_FILE_VERSION = 1

FailReason = Literal["unknown_or_bad_password", "bad_totp", "locked"]


@dataclass(frozen=True)
class Account:
    name: str
    display_name: str
    role: Role
    password_hash: str
    totp_secret: str


@dataclass(frozen=True)
class LoginResult:
    """A login's outcome: the identity, or why not (never which of name or password)."""

    identity: Identity | None
    reason: FailReason | None = None


def new_totp_secret() -> str:
    """A fresh TOTP secret (160 bits, base32), as authenticator apps take it."""
    return pyotp.random_base32(32)


def totp_uri(account: Account, issuer: str) -> str:
    """The ``otpauth://`` URI to show as text or a QR code to the account's owner."""
    return pyotp.TOTP(account.totp_secret).provisioning_uri(name=account.name, issuer_name=issuer)


def load_accounts(path: Path) -> dict[str, Account]:
    """The accounts in ``path`` (none when the file does not exist). Raises :class:`LocalError`
    for a file that is not an accounts file."""
    if not path.exists():
        return {}
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        if raw.get("version") != _FILE_VERSION:
            raise LocalError(f"{path}: unknown accounts file version {raw.get('version')!r}")
        accounts = {}
        for entry in raw["users"]:
            account = Account(
                name=str(entry["name"]),
                display_name=str(entry["display_name"]),
                role=Role(entry["role"]),
                password_hash=str(entry["password"]),
                totp_secret=str(entry["totp_secret"]),
            )
            accounts[account.name] = account
        return accounts
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise LocalError(f"{path}: not a console accounts file ({type(exc).__name__})") from None


def add_account(
    path: Path,
    *,
    name: str,
    display_name: str,
    role: Role,
    password: str,
    hasher: PasswordHasher | None = None,
    replace: bool = False,
) -> Account:
    """Add (or with ``replace``, reset) an account with a new TOTP secret; writes the file
    0600 in one rename. Raises :class:`LocalError` for a bad name or a short password."""
    if not _NAME.match(name):
        raise LocalError("the user name must be 1-64 of a-z 0-9 . _ @ - (starting alphanumeric)")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise LocalError(f"the password must be at least {MIN_PASSWORD_LENGTH} characters")
    if not display_name.strip():
        raise LocalError("the display name must not be empty")
    accounts = load_accounts(path)
    if name in accounts and not replace:
        raise LocalError(f"{name} exists already (use --replace to reset it)")
    account = Account(
        name=name,
        display_name=display_name.strip(),
        role=role,
        password_hash=(hasher or PasswordHasher()).hash(password),
        totp_secret=new_totp_secret(),
    )
    accounts[name] = account
    users = [
        {
            "name": a.name,
            "display_name": a.display_name,
            "role": a.role.value,
            "password": a.password_hash,
            "totp_secret": a.totp_secret,
        }
        for a in sorted(accounts.values(), key=lambda a: a.name)
    ]
    text = json.dumps({"version": _FILE_VERSION, "users": users}, indent=2) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    tmp.replace(path)
    return account


class LoginThrottle:
    """Failed logins per key (``account:<name>``, ``address:<ip>``) in a sliding window."""

    MAX_KEYS = 10_000

    def __init__(self, *, max_failures: int, window: timedelta, address_factor: int = 1) -> None:
        self.max_failures = max_failures
        self.window = window
        self.address_factor = address_factor
        self._failures: OrderedDict[str, deque[datetime]] = OrderedDict()

    def _recent(self, key: str, now: datetime) -> deque[datetime]:
        times = self._failures.get(key)
        if times is None:
            return deque()
        while times and now - times[0] >= self.window:
            times.popleft()
        if not times:
            del self._failures[key]
        return times

    def limit(self, key: str) -> int:
        """Failures ``key`` may have in the window (addresses: ``address_factor`` times more)."""
        factor = self.address_factor if key.startswith("address:") else 1
        return self.max_failures * factor

    def locked(self, keys: tuple[str, ...], now: datetime) -> bool:
        return any(len(self._recent(k, now)) >= self.limit(k) for k in keys)

    def failed(self, keys: tuple[str, ...], now: datetime) -> int:
        """Count a failure for every key; returns the most failures any of them has now."""
        most = 0
        for key in keys:
            times = self._failures.setdefault(key, deque())
            times.append(now)
            self._failures.move_to_end(key)
            most = max(most, len(self._recent(key, now)))
        while len(self._failures) > self.MAX_KEYS:
            self._failures.popitem(last=False)
        return most

    def succeeded(self, key: str) -> None:
        self._failures.pop(key, None)


class LocalAccounts:
    """Checks local logins against the accounts file (read again when it changes)."""

    def __init__(self, path: Path, hasher: PasswordHasher | None = None) -> None:
        self.path = path
        self._hasher = hasher or PasswordHasher()
        self._dummy = self._hasher.hash("not a password of anyone")
        self._accounts: dict[str, Account] = {}
        self._stamp: tuple[int, int] | None = None
        self._last_step: dict[str, int] = {}

    def accounts(self) -> dict[str, Account]:
        try:
            stat = self.path.stat()
            stamp = (stat.st_mtime_ns, stat.st_size)
        except FileNotFoundError:
            return {}
        if stamp != self._stamp:
            self._accounts, self._stamp = load_accounts(self.path), stamp
        return self._accounts

    def check(self, name: str, password: str, code: str, now: datetime) -> LoginResult:
        """Password and TOTP code of ``name`` (slow on purpose: run it in a thread)."""
        account = self.accounts().get(name)
        try:
            self._hasher.verify(account.password_hash if account else self._dummy, password)
            password_ok = account is not None
        except (VerificationError, InvalidHashError):
            password_ok = False
        if not password_ok or account is None:
            return LoginResult(None, "unknown_or_bad_password")
        step = self._totp_step(account, code.strip().replace(" ", ""), now)
        if step is None or step <= self._last_step.get(account.name, -1):
            return LoginResult(None, "bad_totp")
        self._last_step[account.name] = step
        identity = Identity(account.name, account.display_name, account.role, "local")
        return LoginResult(identity)

    @staticmethod
    def _totp_step(account: Account, code: str, now: datetime) -> int | None:
        """The time step (now, one before or one after: clock drift) whose code ``code`` is."""
        if not (code.isdigit() and len(code) == 6):
            return None
        totp = pyotp.TOTP(account.totp_secret)
        current = int(now.timestamp()) // _TOTP_STEP
        for step in (current - 1, current, current + 1):
            if hmac.compare_digest(totp.generate_otp(step), code):
                return step
        return None
