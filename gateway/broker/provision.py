"""Provision RabbitMQ for one federation: definitions, per-organisation passwords, apply.

Design: docs/architecture.md §8 and docs/ops/broker.md §3. What it guarantees:

- :func:`build_definitions` turns the federation's members into RabbitMQ definitions (vhost,
  one user per organisation, permissions, topic permissions, exchanges, quorum queues, bindings,
  policies — see :mod:`gateway.core.broker_topology`). Each organisation's broker password is
  generated **once** (256 random bits) into ``<secrets-dir>/<oin>.broker-password`` with mode
  ``0600`` and reused on every later run; only a salted hash enters the definitions.
- :func:`apply_definitions` makes sure the vhost exists, then loads the definitions with
  ``rabbitmqctl import_definitions`` (read from stdin, so no file with hashes is left behind) and
  checks that every queue is there with the arguments the definitions give it. It never deletes
  anything, and it refuses to touch an existing broker user it did not create (one without the
  ``zvg-member`` tag, and never ``guest``), so re-running it is safe. Import *does* reset what it
  names — users' passwords to the ones in the files, permissions and policies — which is how
  changed tunables take effect.
  Import does *not* change an existing queue (RabbitMQ cannot change a queue's arguments): an
  inbox made before ``x-single-active-consumer`` is reported, with the way to migrate it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import stat
import subprocess
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any

from gateway.core import broker_topology as topology
from gateway.core.broker_topology import BrokerLimits, BrokerMember
from gateway.core.directory import MAX_DIRECTORY_BYTES, TrustedDirectory
from gateway.errors import LocalError, TransientError
from schemas.catalogue import Catalogue

__all__ = [
    "MAX_DIRECTORY_BYTES",
    "PASSWORD_BYTES",
    "Rabbitmqctl",
    "apply_definitions",
    "build_definitions",
    "ensure_password",
    "limits_from_toml",
    "members_from_directory",
    "password_file",
    "read_password_file",
    "write_definitions",
]

PASSWORD_BYTES = 32
"""Random bytes in a generated broker password (256 bits; URL-safe base64, 43 characters)."""


MAX_PASSWORD_FILE_BYTES = 1024
"""Largest password file accepted (1 KiB); a generated one is 44 bytes."""

RABBITMQCTL_TIMEOUT_S = 120.0
"""Seconds one ``rabbitmqctl`` call may take (an import of a large federation takes a few)."""

_FILE_SUFFIX = ".broker-password"

_UNREACHABLE = "unable to perform an operation on node"
"""rabbitmqctl's message when the node cannot be reached. (Its exit code, 69, does not tell:
validation errors exit with 69 too.)"""

_ERROR_CHARS = 300
"""How much of rabbitmqctl's error output goes into our error message."""

_PASSWORD = re.compile(r"[\x21-\x7e]{16,512}")
"""A password read from a file: printable ASCII without spaces, 16 to 512 characters."""


# ------------------------------------------------------------------------------ directory


def members_from_directory(
    path: Path, *, now: datetime, catalogue: Catalogue
) -> tuple[str, list[BrokerMember]]:
    """The federation id and ``(oin, broker_user)`` of every member of a **verified** directory.

    The directory must carry a threshold of its own authority's signatures and not be expired
    (``TrustedDirectory.first``): provisioning never trusts an unsigned or tampered member list.
    Raises :class:`LocalError` when the file cannot be read and
    :class:`~gateway.errors.RemoteError` when it does not verify.
    """
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_DIRECTORY_BYTES + 1)
    except OSError as exc:
        raise LocalError(f"cannot read directory {path}: {exc.strerror}") from None
    trusted = TrustedDirectory.first(raw, now=now, catalogue=catalogue)
    federation = topology.check_federation(trusted.payload.federation)
    members = [BrokerMember(org=m.oin, broker_user=m.broker_user) for m in trusted.payload.members]
    return federation, members


def limits_from_toml(path: Path) -> BrokerLimits:
    """Read :class:`BrokerLimits` overrides from a TOML file of ``name = integer`` lines.

    Raises :class:`LocalError` on unknown names, wrong types or an unreadable file.
    """
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise LocalError(f"cannot read limits file {path}: {exc}") from None
    known = {f.name for f in fields(BrokerLimits)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise LocalError(f"unknown broker limit(s) in {path}: {', '.join(unknown)}")
    return BrokerLimits(**data)


# ------------------------------------------------------------------------------ passwords


def password_file(secrets_dir: Path, org: str) -> Path:
    """Where ``org``'s node's broker password lives: ``<secrets_dir>/<oin>.broker-password``."""
    return secrets_dir / (topology.check_org(org) + _FILE_SUFFIX)


def ensure_password(secrets_dir: Path, org: str) -> str:
    """Return ``org``'s broker password, generating it on first use.

    A new password is written with ``O_CREAT | O_EXCL`` and mode ``0600`` (``secrets_dir`` is
    created ``0700``); an existing file is reused through :func:`read_password_file`.
    """
    path = password_file(secrets_dir, org)
    try:
        secrets_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise LocalError(f"cannot create secrets directory {secrets_dir}: {exc.strerror}") from None
    password = secrets.token_urlsafe(PASSWORD_BYTES)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        return read_password_file(path)
    except OSError as exc:
        raise LocalError(f"cannot create password file {path}: {exc.strerror}") from None
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(password + "\n")
    return password


def read_password_file(path: Path) -> str:
    """Read a broker password file. Refuses symlinks, non-regular files, files that group or
    others may access (``chmod 600``), and implausible content — with :class:`LocalError`."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise LocalError(f"cannot open password file {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise LocalError(f"password file {path} is not a regular file")
        if info.st_mode & 0o077:
            raise LocalError(f"password file {path} is accessible to group/others: chmod 600 it")
        raw = handle.read(MAX_PASSWORD_FILE_BYTES + 1)
    text = raw.decode("ascii", errors="replace").rstrip("\r\n")
    if len(raw) > MAX_PASSWORD_FILE_BYTES or not _PASSWORD.fullmatch(text):
        raise LocalError(f"password file {path} does not hold one plausible password")
    return text


# ------------------------------------------------------------------------------ definitions


def build_definitions(
    federation: str,
    members: Sequence[BrokerMember],
    *,
    secrets_dir: Path,
    limits: BrokerLimits = topology.DEFAULT_LIMITS,
) -> dict[str, Any]:
    """Definitions for ``federation``; creates missing password files in ``secrets_dir``.

    Raises :class:`LocalError` on an invalid member list or unusable password files.
    """
    # Validate the whole member list before any password file is created.
    topology.definitions(
        federation, members, password_hashes={m.broker_user: "" for m in members}, limits=limits
    )
    hashes = {
        m.broker_user: topology.password_hash(
            ensure_password(secrets_dir, m.org), secrets.token_bytes(topology.PASSWORD_SALT_BYTES)
        )
        for m in members
    }
    return topology.definitions(federation, members, password_hashes=hashes, limits=limits)


def write_definitions(definitions: Mapping[str, Any], path: Path) -> None:
    """Write definitions as JSON with mode ``0600`` (they hold password hashes)."""
    data = json.dumps(definitions, indent=2, sort_keys=True) + "\n"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(data)
    except OSError as exc:
        raise LocalError(f"cannot write {path}: {exc.strerror}") from None


# ------------------------------------------------------------------------------ rabbitmqctl


@dataclass(frozen=True, slots=True)
class Rabbitmqctl:
    """How to call ``rabbitmqctl``: the executable and, optionally, the node (``-n``)."""

    executable: str = "rabbitmqctl"
    node: str | None = None
    timeout: float = RABBITMQCTL_TIMEOUT_S

    def run(self, *args: str, stdin: str | None = None) -> str:
        """Run one command quietly; return stdout. Raises :class:`TransientError` when the node
        is unreachable, :class:`LocalError` for any other failure (with rabbitmqctl's message)."""
        command = [self.executable, "-q"]
        if self.node is not None:
            command += ["-n", self.node]
        command += list(args)
        try:
            # Its own process group: rabbitmqctl is a script that starts an Erlang VM, and a
            # timeout must end the VM too — a VM left behind holds one of the ten ports the CLI
            # tools share, and ten of them make every later rabbitmqctl fail.
            process = subprocess.Popen(
                command,
                # Without input, never let rabbitmqctl read (and swallow) our own stdin.
                stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )
        except FileNotFoundError:
            raise LocalError(f"{self.executable} not found: install rabbitmq-server") from None
        try:
            stdout, stderr = process.communicate(stdin, timeout=self.timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise TransientError(f"rabbitmqctl {args[0]} timed out") from None
        result = subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
        if result.returncode != 0:
            lines = [ln.strip() for ln in (result.stderr or result.stdout).splitlines()]
            summary = " ".join(ln for ln in lines if ln)[:_ERROR_CHARS] or "no output"
            message = f"rabbitmqctl {args[0]} failed ({result.returncode}): {summary}"
            if _UNREACHABLE in result.stderr:
                raise TransientError(message)
            raise LocalError(message)
        return result.stdout

    def json(self, *args: str) -> list[dict[str, Any]]:
        """Run a ``list_*`` command with ``--formatter json`` and return its rows."""
        output = self.run(*args, "--formatter", "json")
        try:
            rows = json.loads(output or "[]")
        except ValueError:
            raise LocalError(f"rabbitmqctl {args[0]} did not return JSON") from None
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise LocalError(f"rabbitmqctl {args[0]} returned an unexpected shape")
        return rows


def apply_definitions(
    definitions: Mapping[str, Any],
    *,
    ctl: Rabbitmqctl = Rabbitmqctl(),
) -> None:
    """Load ``definitions`` into the broker (see the module docstring for the guarantees).

    Raises :class:`LocalError` if a member's broker user exists but was not created by
    provisioning, if the import fails, if a queue is missing afterwards or if a queue made
    earlier lacks an argument the definitions give it (after the import, so the rest is applied);
    :class:`TransientError` when the broker node cannot be reached.
    """
    vhosts = [v["name"] for v in definitions["vhosts"]]
    wanted_users = {u["name"] for u in definitions["users"]}
    existing = {row.get("user"): row.get("tags") or [] for row in ctl.json("list_users")}
    for user in sorted(wanted_users & existing.keys()):
        if topology.MEMBER_TAG not in existing[user]:
            raise LocalError(
                f"broker user {user!r} exists and was not created by zvg provisioning; "
                "refusing to change it (pick another broker_user in the directory)"
            )
    present = {row.get("name") for row in ctl.json("list_vhosts", "name")}
    for vhost in vhosts:
        if vhost not in present:
            ctl.run("add_vhost", vhost)
    ctl.run("import_definitions", "--format", "json", stdin=json.dumps(definitions))
    behind: list[str] = []
    for vhost in vhosts:
        wanted = {q["name"]: q["arguments"] for q in definitions["queues"] if q["vhost"] == vhost}
        have = {
            row.get("name"): _queue_arguments(row.get("arguments"))
            for row in ctl.json("list_queues", "-p", vhost, "name", "arguments")
        }
        missing = sorted(wanted.keys() - have.keys())
        if missing:
            raise LocalError(f"after import, queue(s) missing in {vhost}: {', '.join(missing)}")
        for name in sorted(wanted):
            differ = sorted(k for k, v in wanted[name].items() if have[name].get(k) != v)
            if differ:
                behind.append(f"{name} in {vhost} ({', '.join(differ)})")
    if behind:
        raise LocalError(
            "definitions applied, but queue(s) made earlier keep arguments RabbitMQ cannot "
            f"change on an existing queue: {'; '.join(behind)}. An inbox without "
            "x-single-active-consumer lets a second node process of that organisation take "
            'half of its messages: migrate it as docs/ops/broker.md describes ("Inboxes made '
            'before single-active-consumer"), then run this again'
        )


def _queue_arguments(listed: object) -> dict[str, Any]:
    """A queue's arguments as ``rabbitmqctl list_queues ... arguments --formatter json`` shows
    them: ``[[name, type, value], ...]`` (RabbitMQ 3.x) or an object."""
    if isinstance(listed, dict):
        return dict(listed)
    if isinstance(listed, list):
        return {
            str(item[0]): item[-1] for item in listed if isinstance(item, list) and len(item) >= 2
        }
    return {}
