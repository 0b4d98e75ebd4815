"""What every adapter process shares, done one way: configuration, logs, health, state, shutdown,
secrets and pseudonyms.

- **Configuration**: one TOML file per adapter (:func:`load_config`), validated by a pydantic
  model with ``extra="forbid"`` so a misspelt key is an error, not a silent default. Every
  adapter config has ``[node]`` (:class:`NodeSettings`), ``[health]`` and ``[log]``. Secrets
  (the node token, the pseudonym key, shared webhook secrets) are read from files that only the
  owner may read (:func:`read_secret`), never written in the TOML itself.
- **Logs**: one JSON object per line on stderr (:class:`EventLog`), the node's shape: ``time``,
  ``level``, ``logger``, ``message`` (the event name), ``adapter`` and the event's fields.
  Fields are ids, counts, types and error classes — never message content or personal data
  (the adapters log message ids and source-record ids only).
- **Node**: :func:`node_client` connects as ``[node]`` says; :func:`fetch_inbox` reads one inbox
  page and records whether the node answered.
- **Health**: ``GET /healthz`` (the process runs) and ``GET /readyz`` (the node and the partner
  system answered recently) on a small HTTP listener (:func:`serve_health`, or
  :func:`serving` for the adapter's whole run).
- **State**: :class:`StateFile`, a JSON document written atomically (temp file, fsync, rename),
  so a crash leaves either the old or the new state, never half of one.
- **Shutdown**: :func:`run_until_stopped` runs the adapter until SIGTERM/SIGINT, then lets the
  current step finish (nothing half-written) and returns.
- **Pseudonyms**: :class:`Pseudonymiser` turns a partner's own identifier of a person (BSN, FHIR
  patient id, zaak betrokkene) into a ``subject_ref`` with HMAC-SHA-256 under the
  organisation's secret key: stable for the organisation, unlinkable without the key, and never
  the identifier in clear.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import logging
import os
import signal
import stat
import sys
import time
import tomllib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pythonjsonlogger.orjson import OrjsonFormatter

from adapters.errors import ConfigError
from schemas import ids
from schemas.api import InboxPage
from zvg_client.client import Actor, NodeClient
from zvg_client.errors import Unavailable

__all__ = [
    "MAX_CONFIG_BYTES",
    "MIN_SECRET_BYTES",
    "AdapterConfig",
    "EventLog",
    "Health",
    "HealthSettings",
    "LogSettings",
    "NodeSettings",
    "Pseudonymiser",
    "Settings",
    "StateFile",
    "fetch_inbox",
    "load_config",
    "node_client",
    "read_secret",
    "run_until_stopped",
    "serve_health",
    "serving",
    "sleep_or_stop",
]

#: Bytes of a configuration or mapping file. Real ones are a few KiB; anything larger is a
#: mistake (a data file given as config) and is refused before parsing.
MAX_CONFIG_BYTES = 1024 * 1024

#: Bytes of a secret key (pseudonym key, webhook secret): 256 bits, the HMAC-SHA-256 key size
#: RFC 2104 §3 recommends (at least the hash output length).
MIN_SECRET_BYTES = 32

#: Bytes of a secret file (a token or a key with a newline; more is not a secret file).
MAX_SECRET_FILE_BYTES = 4096

#: Seconds after which a component that has not reported success makes ``/readyz`` fail: a few
#: poll intervals, so one slow poll does not flap the probe.
READY_STALE_SECONDS = 120.0

C = TypeVar("C", bound=BaseModel)


class Settings(BaseModel):
    """Base of every configuration section: closed (typos are errors) and frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class NodeSettings(Settings):
    """``[node]``: where the node's local API is and how to authenticate."""

    url: str = Field(pattern=r"^https?://[^\s/]+(/[^\s]*)?$")
    org: str | None = Field(default=None, pattern=r"^[0-9]{20}$")
    """This organisation's OIN (adapters that write it into the partner's records need it)."""
    token_file: Path
    """File holding the bearer token (role ``adapter``); owner-readable only."""
    actor: str | None = None
    """Pseudonymous id of the employee or service account the adapter acts for (ZVG-Actor)."""
    actor_role: str | None = None
    request_timeout_seconds: float = Field(default=30.0, gt=0, le=300)


class HealthSettings(Settings):
    """``[health]``: the health listener (``port = 0`` picks a free port; omit the section to
    listen on 127.0.0.1:0)."""

    host: str = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65535)
    enabled: bool = True


class LogSettings(Settings):
    """``[log]``: ``level`` is one of debug, info, warning, error."""

    level: str = Field(default="info", pattern=r"^(debug|info|warning|error)$")


class AdapterConfig(Settings):
    """Sections every adapter configuration has."""

    node: NodeSettings
    health: HealthSettings = HealthSettings()
    log: LogSettings = LogSettings()


def load_config(path: Path, model: type[C]) -> C:
    """Read and validate a TOML configuration. Relative paths inside it are resolved against
    the file's folder. Raises :class:`ConfigError` naming the key and rule (never a value)."""
    data = load_toml(path)
    try:
        return model.model_validate(_resolve_paths(data, path.parent), context={"base": path})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise ConfigError(f"{path}: {where}: {first['msg']}{more}") from None


def load_toml(path: Path) -> dict[str, Any]:
    """Read a TOML file (config or mapping), bounded by :data:`MAX_CONFIG_BYTES`."""
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES} bytes")
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None


def _resolve_paths(data: Any, base: Path) -> Any:
    # Keys ending in _file, _dir, _path or mapping are paths relative to the config file.
    if isinstance(data, dict):
        out = {}
        for key, value in data.items():
            if (
                isinstance(value, str)
                and key.endswith(("_file", "_dir", "_path", "mapping"))
                and not Path(value).is_absolute()
            ):
                out[key] = str(base / value)
            else:
                out[key] = _resolve_paths(value, base)
        return out
    if isinstance(data, list):
        return [_resolve_paths(v, base) for v in data]
    return data


def read_secret(path: Path, *, min_bytes: int = 1) -> bytes:
    """The content of a secret file, trailing newline removed.

    Fails closed (:class:`ConfigError`) when the file is missing, readable by group or others
    (like ssh refuses a private key with loose permissions), empty, longer than
    :data:`MAX_SECRET_FILE_BYTES`, or shorter than ``min_bytes``.
    """
    try:
        st = path.stat()
        if stat.S_IMODE(st.st_mode) & 0o077:
            raise ConfigError(f"{path}: secret file is readable by others; chmod 600 it")
        with path.open("rb") as f:
            raw = f.read(MAX_SECRET_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read secret ({exc.strerror})") from None
    if len(raw) > MAX_SECRET_FILE_BYTES:
        raise ConfigError(f"{path}: secret file larger than {MAX_SECRET_FILE_BYTES} bytes")
    secret = raw.rstrip(b"\r\n")
    if len(secret) < min_bytes:
        raise ConfigError(f"{path}: secret shorter than {min_bytes} bytes")
    return secret


# ---------------------------------------------------------------- node


def node_client(settings: NodeSettings) -> NodeClient:
    """A client for the node ``[node]`` names: its URL, the bearer token read from
    ``token_file`` (now, so a bad file fails before anything runs: :class:`ConfigError` as
    :func:`read_secret`), the ``ZVG-Actor`` headers when ``actor`` is set, and the request
    timeout. Nothing is connected until the first request; close it (``async with``)."""
    token = read_secret(settings.token_file).decode()
    actor = Actor(settings.actor, settings.actor_role) if settings.actor else None
    return NodeClient(
        settings.url, token, actor=actor, request_timeout=settings.request_timeout_seconds
    )


async def fetch_inbox(
    node: NodeClient, health: Health, *, wait: float, limit: int
) -> InboxPage | None:
    """One page of the node's inbox (``wait`` and ``limit`` as :meth:`NodeClient.inbox`), with
    the answer recorded in ``health`` under ``"node"``: None, and the component failed, when the
    node is unavailable; other node errors are raised."""
    try:
        page = await node.inbox(wait=wait, limit=limit)
    except Unavailable as exc:
        health.failed("node", type(exc).__name__)
        return None
    health.ok("node")
    return page


# ---------------------------------------------------------------- logs


_ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]


class _JsonFormatter(OrjsonFormatter):
    """The node's log shape (``gateway/logs.py``: ``time``, ``level``, ``logger``, ``message``,
    ``exception`` as the class only, the caller's fields at the top level), built by the same
    library the same way: the adapters do not import ``gateway``; a test compares the two."""

    def __init__(self) -> None:
        super().__init__(rename_fields={"exc_info": "exception"})

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        log_data["time"] = datetime.fromtimestamp(record.created, UTC).isoformat(
            timespec="milliseconds"
        )
        log_data["level"] = record.levelname.lower()
        log_data["logger"] = record.name
        log_data["message"] = record.message
        if not record.exc_info:  # the text another formatter cached: a traceback, never here
            message_dict.pop("exc_info", None)
        super().add_fields(log_data, record, message_dict)

    def formatException(self, ei: _ExcInfo) -> str:  # noqa: N802 - logging.Formatter's name
        """The exception class only: messages of foreign exceptions may echo input values."""
        return ei[0].__name__ if ei[0] is not None else ""


#: Field names a caller's field must not take (the line's own, and the ``LogRecord``'s, which
#: ``logging`` refuses as ``extra``): such a field is logged as ``field_<name>``.
_TAKEN = frozenset(logging.makeLogRecord({}).__dict__) | {
    "message",
    "asctime",
    "time",
    "level",
    "logger",
    "exception",
}


class EventLog:
    """Structured log lines for one adapter: ``log.info("sent", message_id=…, source=…)``.

    Callers pass ids, counts, types and error classes only; never content or personal data.
    """

    def __init__(self, adapter: str, stream: TextIO | None = None, level: str = "info") -> None:
        self.adapter = adapter
        self._logger = logging.getLogger(f"zvg.adapter.{adapter}")
        self._logger.propagate = False
        self._logger.setLevel(level.upper())
        if not self._logger.handlers or stream is not None:
            for h in list(self._logger.handlers):
                self._logger.removeHandler(h)
            handler = logging.StreamHandler(stream or sys.stderr)
            handler.setFormatter(_JsonFormatter())
            self._logger.addHandler(handler)

    def _log(self, level: int, event: str, fields: Mapping[str, Any], exc: bool = False) -> None:
        if not self._logger.isEnabledFor(level):
            return
        extra: dict[str, Any] = {"adapter": self.adapter}
        extra.update((f"field_{k}" if k in _TAKEN else k, v) for k, v in fields.items())
        self._logger.log(level, event, extra=extra, exc_info=exc)

    def debug(self, event: str, /, **fields: Any) -> None:
        self._log(logging.DEBUG, event, fields)

    def info(self, event: str, /, **fields: Any) -> None:
        self._log(logging.INFO, event, fields)

    def warning(self, event: str, /, **fields: Any) -> None:
        self._log(logging.WARNING, event, fields)

    def error(self, event: str, /, **fields: Any) -> None:
        self._log(logging.ERROR, event, fields)

    def exception(self, event: str, /, **fields: Any) -> None:
        """An unexpected failure: logs the exception class (not its message) at error level."""
        self._log(logging.ERROR, event, fields, exc=True)


# ---------------------------------------------------------------- health


class Health:
    """What the health endpoint reports: per component, when it last succeeded or failed."""

    def __init__(self, adapter: str, components: tuple[str, ...]) -> None:
        self.adapter = adapter
        self._ok: dict[str, float] = {}
        self._error: dict[str, tuple[float, str]] = {}
        self.components = components
        self.started = time.monotonic()

    def ok(self, component: str) -> None:
        self._ok[component] = time.monotonic()
        self._error.pop(component, None)

    def failed(self, component: str, kind: str) -> None:
        """Record a failure; ``kind`` is an error class name, never a message."""
        self._error[component] = (time.monotonic(), kind)

    def ready(self) -> bool:
        now = time.monotonic()
        for c in self.components:
            if c in self._error:
                return False
            last = self._ok.get(c)
            if last is None or now - last > READY_STALE_SECONDS:
                return False
        return True

    def report(self) -> dict[str, Any]:
        now = time.monotonic()
        comps: dict[str, Any] = {}
        for c in self.components:
            entry: dict[str, Any] = {}
            if c in self._ok:
                entry["last_ok_seconds_ago"] = round(now - self._ok[c], 1)
            if c in self._error:
                entry["error"] = self._error[c][1]
            comps[c] = entry
        return {"adapter": self.adapter, "ready": self.ready(), "components": comps}


async def serve_health(health: Health, settings: HealthSettings) -> tuple[web.AppRunner, int]:
    """Start ``GET /healthz`` and ``GET /readyz``; returns the runner (clean it up) and port."""

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "adapter": health.adapter})

    async def readyz(_request: web.Request) -> web.Response:
        report = health.report()
        return web.json_response(report, status=200 if report["ready"] else 503)

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    await site.start()
    return runner, bound_port(runner, settings.port)


@contextlib.asynccontextmanager
async def serving(health: Health, settings: HealthSettings, log: EventLog) -> AsyncIterator[None]:
    """An adapter's run: the health listener serves while the body runs (not when ``[health]
    enabled = false``) and its port is logged (``health_listening``); when the body ends, however
    it ends, the listener is stopped and ``stopped`` is logged."""
    runner = None
    if settings.enabled:
        runner, port = await serve_health(health, settings)
        log.info("health_listening", port=port)
    try:
        yield
    finally:
        if runner is not None:
            await runner.cleanup()
        log.info("stopped")


def bound_port(runner: web.AppRunner, default: int) -> int:
    """The port an aiohttp runner's first site listens on (resolves ``port = 0``)."""
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return default


# ---------------------------------------------------------------- state


#: Bytes of a state file read back. State holds cursors and a bounded set of ids.
MAX_STATE_BYTES = 16 * 1024 * 1024


class StateFile:
    """A small JSON document on disk, replaced atomically on every :meth:`save`.

    Write a temporary file in the same folder, fsync it, rename it over the old one, fsync the
    folder: after a crash the file holds the old or the new state, never a mix.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = {}

    @classmethod
    def open(cls, path: Path, tables: Iterable[str] = ()) -> StateFile:
        """The state at ``path`` loaded (empty when the file does not exist yet), with an empty
        table (JSON object) for each name in ``tables`` that it does not hold. Raises
        :class:`ConfigError` like :meth:`load`. Writes nothing."""
        state = cls(path)
        state.load()
        for table in tables:
            state.data.setdefault(table, {})
        return state

    def load(self) -> dict[str, Any]:
        try:
            with self.path.open("rb") as f:
                raw = f.read(MAX_STATE_BYTES + 1)
        except FileNotFoundError:
            self.data = {}
            return self.data
        if len(raw) > MAX_STATE_BYTES:
            raise ConfigError(f"{self.path}: state file larger than {MAX_STATE_BYTES} bytes")
        try:
            data = json.loads(raw)
        except ValueError:
            raise ConfigError(f"{self.path}: state file is not JSON") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{self.path}: state file is not a JSON object")
        self.data = data
        return data

    def save(self) -> None:
        write_atomic(self.path, json.dumps(self.data, sort_keys=True, indent=1).encode())

    def remember(self, table: str, key: str, value: Any, limit: int) -> list[str]:
        """Set ``key`` to ``value`` in the table named ``table``, drop its oldest entries until
        at most ``limit`` remain, and :meth:`save`. Returns the keys dropped, oldest first.

        Oldest means first added: replacing the value of a key keeps its place. ``limit`` is the
        caller's named bound on the table (a state file must not grow without end); the table
        must exist (see :meth:`open`).
        """
        entries: dict[str, Any] = self.data[table]
        entries[key] = value
        dropped: list[str] = []
        while len(entries) > limit:
            oldest = next(iter(entries))
            del entries[oldest]
            dropped.append(oldest)
        self.save()
        return dropped


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically and durably (POSIX rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    tmp.replace(path)
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ---------------------------------------------------------------- shutdown


def run_until_stopped(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run ``main(stop)`` in a new event loop; SIGTERM and SIGINT set ``stop``.

    ``main`` must return soon after ``stop`` is set (finishing the step it is in).
    """

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        await main(stop)

    asyncio.run(runner())


async def sleep_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep up to ``seconds``; True when ``stop`` was set (return at once then)."""
    if stop.is_set():
        return True
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()


# ---------------------------------------------------------------- pseudonyms


class Pseudonymiser:
    """Keyed pseudonyms: ``subject_ref = "sub-" + base64url(HMAC-SHA-256(key, kind ‖ 0 ‖ id))``.

    ``kind`` separates identifier systems (``"bsn"``, ``"fhir-patient"``, ``"zaak-rol"``), so
    two systems' ids never collide. The result matches the contract's ``SubjectRef`` shape and
    contains no BSN-shaped run of digits (if the 43 characters happen to hold one, the next
    counter value is used: still deterministic). The key must be at least
    :data:`MIN_SECRET_BYTES` long.
    """

    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_SECRET_BYTES:
            raise ConfigError(f"pseudonym key shorter than {MIN_SECRET_BYTES} bytes")
        self._key = key

    def subject_ref(self, kind: str, identifier: str) -> str:
        return self._derive("sub-", kind, identifier)

    def case_ref(self, kind: str, identifier: str) -> str:
        """A meaningless, stable case reference for a local record (e.g. a zaak URL)."""
        return self._derive("case-", kind, identifier)[:29]

    def _derive(self, prefix: str, kind: str, identifier: str) -> str:
        if "\x00" in kind:
            raise ValueError("kind must not contain NUL")
        for counter in range(256):
            msg = kind.encode() + b"\x00" + identifier.encode() + bytes([counter])
            digest = hmac.new(self._key, msg, hashlib.sha256).digest()
            ref = prefix + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
            if not ids.find_bsn(ref[:29]) and not ids.find_bsn(ref):
                return ref
        raise AssertionError("unreachable: 256 digests all held a BSN-shaped run")
