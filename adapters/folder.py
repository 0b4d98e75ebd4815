"""Folder adapter: the common denominator of legacy systems — files in, files out.

Layout under ``[folder] root_dir`` (each folder may be set on its own)::

    inbox/       the partner's system drops messages to send here
    outbox/      received messages and delivery status files appear here
    processed/   sent files, each with a ``<name>.result.json`` naming its message id(s)
    failed/      refused files, each with a ``<name>.error.json`` saying why
    .state/      the adapter's own state (messages whose status it still follows)

**Sending.** ``inbox/*.json`` is one ``SendRequest`` (the node API's JSON). ``inbox/*.csv`` is one
message per row, built with the mapping file (``[folder] csv_mapping``, see
:mod:`adapters.mapping`). A file is picked up only when it is complete: names ending in
``.tmp``/``.part``, starting with ``.``, or still changing are ignored — write
``x.json.tmp`` and rename it to ``x.json`` (atomic), and the adapter also waits until size and
modification time stayed the same for ``settle_seconds``. Each message gets an
``Idempotency-Key`` derived from the content (SHA-256 of the file, or of the mapping name and
the CSV row), so a restart after sending, or the same file dropped twice, or a CSV export that
repeats yesterday's rows, sends nothing twice. A transient failure (node unavailable) leaves the
file in ``inbox/`` for the next scan; a refusal moves it to ``failed/`` with the node's problem
document (field errors, policy decision) in ``.error.json``.

**Receiving.** Every inbox item is written to ``outbox/<message_id>.message.json`` (atomically:
temp file + rename, so the partner never sees half a file) and then acked (``ack = "auto"``),
which sends the ``accepted`` receipt. With ``ack = "manual"`` the partner's system decides:
it drops ``<anything>.ack.json`` or ``<anything>.reject.json`` (``{"message_id": …, "reason":
…, "note": …}``) into ``inbox/``. **Receipts**: for every message it sent, the adapter follows
the delivery status and writes ``outbox/<message_id>.status.json`` each time it changes, until
every recipient has accepted, rejected or let it expire.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError

from adapters._runtime import (
    AdapterConfig,
    EventLog,
    Health,
    Pseudonymiser,
    Settings,
    StateFile,
    fetch_inbox,
    load_config,
    node_client,
    read_secret,
    serving,
    sleep_or_stop,
    write_atomic,
)
from adapters._status import StatusFollower
from adapters.errors import MappingError
from adapters.mapping import MessageMapping, load_mapping
from schemas import strictjson
from schemas.api import InboxItem, MessageStatus, RejectRequest, SendRequest
from zvg_client.client import NodeClient
from zvg_client.errors import InvalidMessage, NodeError, PolicyDenied, Unavailable

__all__ = ["FolderAdapter", "FolderConfig", "FolderSettings", "load", "run"]

#: Bytes of one file picked up from the inbox. A message is at most a few hundred KiB of JSON;
#: a CSV export of a few thousand rows fits easily. Larger files are refused to failed/.
MAX_INPUT_FILE_BYTES = 8 * 1024 * 1024

#: Rows of one CSV file. Each row is one message; a bigger batch belongs in several files.
MAX_CSV_ROWS = 5000

_IGNORED_SUFFIXES = (".tmp", ".part", ".partial", ".swp", ".crdownload")


class FolderSettings(Settings):
    root_dir: Path
    inbox_dir: Path | None = None
    outbox_dir: Path | None = None
    processed_dir: Path | None = None
    failed_dir: Path | None = None
    state_dir: Path | None = None
    csv_mapping: Path | None = None
    pseudonym_key_file: Path | None = None
    """Key for the CSV mapping's pseudonyms (``subjects``); needed when the mapping has any."""
    poll_seconds: float = Field(default=2.0, gt=0, le=3600)
    settle_seconds: float = Field(default=2.0, ge=0, le=3600)
    status_poll_seconds: float = Field(default=15.0, gt=0, le=3600)
    receive: bool = True
    ack: Literal["auto", "manual"] = "auto"


class FolderConfig(AdapterConfig):
    folder: FolderSettings


@dataclass(frozen=True)
class _Dirs:
    inbox: Path
    outbox: Path
    processed: Path
    failed: Path
    state: Path


def load(path: Path) -> FolderConfig:
    return load_config(path, FolderConfig)


class FolderAdapter:
    """The adapter's work, step by step (``scan_once``, ``receive_once``, ``poll_statuses``),
    so tests can drive it; :meth:`run` loops them until stopped."""

    def __init__(self, config: FolderConfig, node: NodeClient, log: EventLog) -> None:
        self.config = config
        self.node = node
        self.log = log
        f = config.folder
        root = f.root_dir
        self.dirs = _Dirs(
            inbox=f.inbox_dir or root / "inbox",
            outbox=f.outbox_dir or root / "outbox",
            processed=f.processed_dir or root / "processed",
            failed=f.failed_dir or root / "failed",
            state=f.state_dir or root / ".state",
        )
        for d in (self.dirs.inbox, self.dirs.outbox, self.dirs.processed, self.dirs.failed):
            d.mkdir(parents=True, exist_ok=True)
        self.state = StateFile.open(self.dirs.state / "folder-state.json")
        self.statuses = StatusFollower(self.state, summary_key="last")
        self.mapping: MessageMapping | None = None
        if f.csv_mapping is not None:
            pseudonyms = (
                Pseudonymiser(read_secret(f.pseudonym_key_file)) if f.pseudonym_key_file else None
            )
            self.mapping = load_mapping(f.csv_mapping, pseudonyms)
        self._seen: dict[Path, tuple[int, int, float]] = {}
        self.health = Health("folder", ("node", "folder"))

    # ------------------------------------------------------------------ sending

    def ready_files(self, now: float) -> list[Path]:
        """Complete files in the inbox: stable name, size and mtime for ``settle_seconds``."""
        ready: list[Path] = []
        current: dict[Path, tuple[int, int, float]] = {}
        for path in sorted(self.dirs.inbox.iterdir()):
            name = path.name
            if name.startswith(".") or name.endswith(_IGNORED_SUFFIXES) or not path.is_file():
                continue
            if not name.endswith((".json", ".csv")):
                continue
            st = path.stat()
            first_seen = now
            prev = self._seen.get(path)
            if prev is not None and prev[:2] == (st.st_size, st.st_mtime_ns):
                first_seen = prev[2]
            current[path] = (st.st_size, st.st_mtime_ns, first_seen)
            if now - first_seen >= self.config.folder.settle_seconds:
                ready.append(path)
        self._seen = current
        return ready

    async def scan_once(self, now: float | None = None) -> int:
        """Send every complete inbox file once; returns how many files were settled."""
        now = asyncio.get_running_loop().time() if now is None else now
        done = 0
        for path in self.ready_files(now):
            if path.name.endswith((".ack.json", ".reject.json")):
                settled = await self._control(path)
            elif path.suffix == ".csv":
                settled = await self._send_csv(path)
            else:
                settled = await self._send_json(path)
            done += settled
        self.health.ok("folder")
        return done

    def _read(self, path: Path) -> bytes | None:
        size = path.stat().st_size
        if size > MAX_INPUT_FILE_BYTES:
            self._fail(path, {"error": "too_large", "detail": f"over {MAX_INPUT_FILE_BYTES} bytes"})
            return None
        return path.read_bytes()

    async def _send_json(self, path: Path) -> int:
        raw = self._read(path)
        if raw is None:
            return 1
        key = "folder-" + hashlib.sha256(raw).hexdigest()
        try:
            request = SendRequest.model_validate_json(_strict(raw))
        except (ValueError, ValidationError) as exc:
            self._fail(path, _local_error(exc))
            return 1
        result = await self._send(path, request, key)
        if result is None:
            return 0  # transient: try again on the next scan
        if "error" in result:
            self._fail(path, result)
        else:
            self._done(path, {"messages": [result]})
        return 1

    async def _send_csv(self, path: Path) -> int:
        if self.mapping is None:
            self._fail(path, {"error": "no_mapping", "detail": "no [folder] csv_mapping set"})
            return 1
        raw = self._read(path)
        if raw is None:
            return 1
        try:
            text = raw.decode(self.mapping.encoding).lstrip("\ufeff")
            rows = list(csv.DictReader(io.StringIO(text), delimiter=self.mapping.delimiter))
        except (UnicodeDecodeError, csv.Error) as exc:
            self._fail(path, {"error": "unreadable_csv", "detail": type(exc).__name__})
            return 1
        if len(rows) > MAX_CSV_ROWS:
            self._fail(path, {"error": "too_large", "detail": f"over {MAX_CSV_ROWS} rows"})
            return 1
        results: list[dict[str, Any]] = []
        failed = False
        for number, row in enumerate(rows, start=2):  # line 1 is the header
            canon = json.dumps(row, sort_keys=True, ensure_ascii=False).encode()
            key = f"folder-csv-{self.mapping.digest}-" + hashlib.sha256(canon).hexdigest()
            try:
                request = self.mapping.build(row)
            except MappingError as exc:
                results.append({"line": number, **_local_error(exc)})
                failed = True
                continue
            result = await self._send(path, request, key)
            if result is None:
                return 0  # transient: the whole file again later (sent rows dedupe by key)
            failed = failed or "error" in result
            results.append({"line": number, **result})
        if failed:
            self._fail(path, {"error": "some_rows_refused", "rows": results})
        else:
            self._done(path, {"messages": results})
        return 1

    async def _send(self, path: Path, request: SendRequest, key: str) -> dict[str, Any] | None:
        try:
            accepted = await self.node.send(request, idempotency_key=key[:200])
        except Unavailable as exc:
            self.health.failed("node", type(exc).__name__)
            self.log.warning("send_postponed", file=path.name, status=exc.status)
            return None
        except NodeError as exc:
            self.health.ok("node")
            self.log.warning("send_refused", file=path.name, problem=exc.type, status=exc.status)
            return _node_error(exc)
        self.health.ok("node")
        self._track(accepted.message_id, path.name)
        self.log.info(
            "sent", file=path.name, message_id=accepted.message_id, type=request.message_type
        )
        return {"message_id": accepted.message_id, "status_url": accepted.status_url}

    def _done(self, path: Path, result: dict[str, Any]) -> None:
        target = _unique(self.dirs.processed / path.name)
        write_atomic(target.with_name(target.name + ".result.json"), _dump(result))
        path.replace(target)
        self._seen.pop(path, None)

    def _fail(self, path: Path, error: dict[str, Any]) -> None:
        target = _unique(self.dirs.failed / path.name)
        error = {"file": path.name, "at": _now(), **error}
        write_atomic(target.with_name(target.name + ".error.json"), _dump(error))
        path.replace(target)
        self._seen.pop(path, None)
        self.log.warning("file_failed", file=path.name, error=error.get("error"))

    async def _control(self, path: Path) -> int:
        """An ``.ack.json`` or ``.reject.json`` from the partner's system (``ack = "manual"``)."""
        raw = self._read(path)
        if raw is None:
            return 1
        try:
            mid, reject = _control_doc(raw, ack=path.name.endswith(".ack.json"))
            if reject is None:
                await self.node.ack(mid)
                self.log.info("acked", message_id=mid)
            else:
                await self.node.reject(mid, reject.reason, reject.note)
                self.log.info("rejected", message_id=mid, reason=reject.reason)
        except Unavailable:
            return 0
        except (ValueError, ValidationError, NodeError) as exc:
            self._fail(path, _node_error(exc) if isinstance(exc, NodeError) else _local_error(exc))
            return 1
        self._done(path, {"settled": mid})
        return 1

    # ------------------------------------------------------------------ receiving

    async def receive_once(self, wait: float = 0) -> int:
        """Write waiting inbox items to the outbox (and ack them in auto mode)."""
        page = await fetch_inbox(self.node, self.health, wait=wait, limit=50)
        if page is None:
            return 0
        written = 0
        for item in page.items:
            target = self.dirs.outbox / f"{item.message_id}.message.json"
            manual = self.config.folder.ack == "manual"
            if manual and target.exists():
                continue  # waiting for the partner's decision
            self.write_item(item)
            written += 1
            if not manual:
                await self.node.ack(item.message_id)
                self.log.info("received", message_id=item.message_id, sender=item.sender)
        return written

    def write_item(self, item: InboxItem) -> Path:
        target = self.dirs.outbox / f"{item.message_id}.message.json"
        write_atomic(target, item.model_dump_json(indent=1).encode())
        return target

    # ------------------------------------------------------------------ receipts

    def _track(self, message_id: str, source: str) -> None:
        for oldest in self.statuses.track(message_id, {"source": source, "last": None}):
            self.log.warning("status_untracked", message_id=oldest, why="too many tracked")

    async def poll_statuses(self) -> int:
        """Write a status file for each followed message whose status changed."""

        async def write(_mid: str, status: MessageStatus) -> bool:
            self.write_status(status)
            return True

        def unknown(mid: str, exc: NodeError) -> None:
            self.log.warning("status_unknown", message_id=mid, problem=exc.type)

        return await self.statuses.poll(self.node, write, unknown)

    def write_status(self, status: MessageStatus) -> Path:
        target = self.dirs.outbox / f"{status.message_id}.status.json"
        write_atomic(target, status.model_dump_json(indent=1).encode())
        return target

    # ------------------------------------------------------------------ loop

    async def run(self, stop: asyncio.Event) -> None:
        f = self.config.folder
        last_status = 0.0
        while not stop.is_set():
            loop_time = asyncio.get_running_loop().time()
            await self.scan_once(loop_time)
            if f.receive:
                await self.receive_once(wait=0)
            if loop_time - last_status >= f.status_poll_seconds:
                await self.poll_statuses()
                last_status = loop_time
            if await sleep_or_stop(stop, f.poll_seconds):
                break


def _control_doc(raw: bytes, *, ack: bool) -> tuple[str, RejectRequest | None]:
    """``(message_id, None)`` for an ack file, ``(message_id, reject)`` for a reject file."""
    doc = strictjson.loads(raw)
    mid = doc.get("message_id") if isinstance(doc, dict) else None
    if not isinstance(mid, str):
        raise ValueError("a control file needs a message_id")  # noqa: TRY004 - bad input, not a bug

    if ack:
        return mid, None
    rest = {k: v for k, v in doc.items() if k != "message_id"}
    return mid, RejectRequest.model_validate_json(json.dumps(rest))


def _strict(raw: bytes) -> bytes:
    strictjson.loads(raw)  # refuses duplicate keys, NaN, BOM, bad UTF-8, deep nesting
    return raw


def _local_error(exc: Exception) -> dict[str, Any]:
    if isinstance(exc, ValidationError):
        return {
            "error": "invalid_message",
            "detail": "the file is not a valid message",
            "errors": [
                {"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]}
                for e in exc.errors()
            ],
        }
    if isinstance(exc, MappingError):
        return {"error": "mapping", "errors": [{"field": exc.field, "message": exc.rule}]}
    return {"error": "unreadable", "detail": str(exc)}


def _node_error(exc: NodeError) -> dict[str, Any]:
    out: dict[str, Any] = {"error": exc.type or "node_error", "status": exc.status}
    if exc.problem is not None:
        out["title"] = exc.problem.title
        out["detail"] = exc.problem.detail
    if isinstance(exc, InvalidMessage):
        out["errors"] = [e.model_dump() for e in exc.errors]
    if isinstance(exc, PolicyDenied):
        out["decision"] = exc.decision
    return out


def _unique(path: Path) -> Path:
    """``path``, or ``name.1.ext``, ``name.2.ext``… when a file of that name exists already."""
    if not path.exists():
        return path
    for n in range(1, 10_000):
        candidate = path.with_name(f"{path.stem}.{n}{path.suffix}")
        if not candidate.exists():
            return candidate
    raise FileExistsError(path)


def _dump(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, indent=1, ensure_ascii=False).encode("utf-8")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


async def run(config_path: Path, stop: asyncio.Event) -> None:
    """Entry point of ``zvg adapter folder --config FILE``."""
    config = load(config_path)
    log = EventLog("folder", level=config.log.level)
    async with node_client(config.node) as node:
        adapter = FolderAdapter(config, node, log)
        async with serving(adapter.health, config.health, log):
            log.info("started", inbox=str(adapter.dirs.inbox), pid=os.getpid())
            await adapter.run(stop)
