"""Inzageverzoeken in the node's store (docs/subject-rights.md, docs/decisions/0116).

The ZVH keeps a request (``rights_requests``) with one row per organisation asked
(``rights_answers``: its status, the request message we sent it, its latest answer); a partner
that defers keeps what it needs to answer later (``rights_deferrals``: the pseudonyms it
searched, never the BSN). The rows are written by the commands of
:mod:`gateway.node.store.commands` in the commit of the messages and audit records they go
with, and read back as the documents the contactpunt, ``zvg rights`` and the console show
(:class:`RightsRows`).

Two answers to one request filed at once change two different rows; one row changes only by a
single conditional ``UPDATE`` (the request message must match, an older answer never replaces a
newer one), so no update is lost, also with several processes on one PostgreSQL database.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from gateway.node.store.commands import (
    ExtendRightsRequest,
    FileRightsAnswer,
    KeepDeferral,
    KeepRightsRequest,
    ReleaseDeferral,
)
from gateway.node.store.engine import CommitState, GroupCommit

__all__ = ["SCHEMA", "RightsRows", "instant", "register"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS rights_requests (
    request_id      TEXT PRIMARY KEY,
    case_ref        TEXT NOT NULL,
    received_on     TEXT NOT NULL,      -- the day the contactpunt received the request
    started_at      TEXT NOT NULL,      -- ISO 8601
    identity_check  TEXT NOT NULL,      -- how the identity was checked (personal data)
    extension       TEXT                -- JSON {reason, on}: the term extended, at most once
);
CREATE TABLE IF NOT EXISTS rights_answers (
    request_id          TEXT NOT NULL REFERENCES rights_requests(request_id),
    org                 TEXT NOT NULL,
    pos                 INTEGER NOT NULL,   -- the organisation's place in the request
    request_message_id  TEXT,               -- our rights.request to it (none: our own part)
    status              TEXT NOT NULL,      -- asked | not_sent | answered | deferred
    entry               TEXT NOT NULL,      -- JSON: the rest of the entry (role, problem, own)
    response            TEXT,               -- JSON: the body of its latest answer
    response_message_id TEXT,
    answered_at         TEXT,               -- that answer's created_at (UTC, microseconds)
    PRIMARY KEY (request_id, org)
);
CREATE TABLE IF NOT EXISTS rights_deferrals (
    request_message_id   TEXT PRIMARY KEY,
    released_on          TEXT,
    response_message_ids TEXT NOT NULL,     -- JSON list: the answers sent
    deferral             TEXT NOT NULL      -- JSON: the rest (pseudonyms, period, ground, ...)
);
"""

#: The entry fields kept in columns of their own (the rest is ``entry``).
_ANSWER_FIELDS = ("status", "request_message_id", "response", "response_message_id", "answered_at")


def instant(value: datetime) -> str:
    """A time as ``answered_at`` holds it: UTC, always with microseconds, so that the text
    sorts as the time does."""
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def register(store: GroupCommit) -> None:
    """Teach ``store`` the inzageverzoek commands."""
    store.on_command(KeepRightsRequest, _keep_request)
    store.on_command(FileRightsAnswer, _file_answer)
    store.on_command(ExtendRightsRequest, _extend)
    store.on_command(KeepDeferral, _keep_deferral)
    store.on_command(ReleaseDeferral, _release)


def _keep_request(db: sqlite3.Connection, c: KeepRightsRequest, _state: CommitState) -> bool:
    kept = db.execute(
        "INSERT OR IGNORE INTO rights_requests (request_id, case_ref, received_on, started_at,"
        " identity_check, extension) VALUES (?,?,?,?,?,?)",
        (c.request_id, c.case_ref, c.received_on, c.started_at, c.identity_check, c.extension),
    ).rowcount
    if not kept:
        return True  # kept already (an import run again): the store's rows are newer
    rows = []
    for pos, (org, raw) in enumerate(c.organisations):
        entry = json.loads(raw)
        status, request_message_id, response, response_message_id, answered_at = (
            entry.pop(k, None) for k in _ANSWER_FIELDS
        )
        rows.append(
            (
                c.request_id,
                org,
                pos,
                request_message_id,
                status,
                json.dumps(entry, sort_keys=True),
                None if response is None else json.dumps(response, sort_keys=True),
                response_message_id,
                None if answered_at is None else instant(datetime.fromisoformat(answered_at)),
            )
        )
    db.executemany(
        "INSERT INTO rights_answers (request_id, org, pos, request_message_id, status, entry,"
        " response, response_message_id, answered_at) VALUES (?,?,?,?,?,?,?,?,?)",
        rows,
    )
    return True


def _file_answer(db: sqlite3.Connection, c: FileRightsAnswer, _state: CommitState) -> bool:
    answered_at = instant(c.answered_at)
    # created_at is in whole seconds: within one, the message ids (UUIDv7) order the answers
    newer = (answered_at, c.response_message_id)
    key = (c.request_id, c.org, c.request_message_id)
    filed = db.execute(
        "UPDATE rights_answers SET status=?, response=?, response_message_id=?, answered_at=?"
        " WHERE request_id=? AND org=? AND request_message_id=?"
        " AND (answered_at IS NULL OR (answered_at, response_message_id) <= (?, ?))",
        (c.status, c.response, c.response_message_id, answered_at, *key, *newer),
    ).rowcount
    if filed:
        return True
    # Not filed: an older answer than the one kept (fine), or no such request message (refused).
    return bool(
        db.execute(
            "SELECT 1 FROM rights_answers WHERE request_id=? AND org=? AND request_message_id=?",
            key,
        ).fetchall()
    )


def _extend(db: sqlite3.Connection, c: ExtendRightsRequest, _state: CommitState) -> bool:
    return (
        db.execute(
            "UPDATE rights_requests SET extension=? WHERE request_id=? AND extension IS NULL",
            (c.extension, c.request_id),
        ).rowcount
        == 1
    )


def _keep_deferral(db: sqlite3.Connection, c: KeepDeferral, _state: CommitState) -> bool:
    deferral = json.loads(c.deferral)
    deferral.pop("request_message_id", None)
    released_on = deferral.pop("released_on", None)
    sent = deferral.pop("response_message_ids", [])
    db.execute(
        "INSERT OR IGNORE INTO rights_deferrals (request_message_id, released_on,"
        " response_message_ids, deferral) VALUES (?,?,?,?)",
        (c.request_message_id, released_on, json.dumps(sent), json.dumps(deferral, sort_keys=True)),
    )
    return True


def _release(db: sqlite3.Connection, c: ReleaseDeferral, _state: CommitState) -> bool:
    row = db.execute(
        "SELECT response_message_ids FROM rights_deferrals WHERE request_message_id=?"
        " AND released_on IS NULL",
        (c.request_message_id,),
    ).fetchone()
    if row is None:
        return False
    sent = [*json.loads(row[0]), c.response_message_id]
    # The list changes only here and when the row is made, so the compare-and-set on
    # released_on is all that two releases at once need.
    return (
        db.execute(
            "UPDATE rights_deferrals SET released_on=?, response_message_ids=?"
            " WHERE request_message_id=? AND released_on IS NULL",
            (c.released_on, json.dumps(sent), c.request_message_id),
        ).rowcount
        == 1
    )


Read = Callable[[str, tuple[Any, ...]], list[tuple[Any, ...]]]


class RightsRows:
    """The inzageverzoeken a store keeps, as documents. Reads run on the store's read
    connection (committed data only) in the caller's thread, like ``SqliteStore.read``: the
    console's alerts read them from a worker thread."""

    def __init__(self, read: Read) -> None:
        self._read = read

    def request(self, request_id: str) -> dict[str, Any] | None:
        """The request ``request_id`` with every organisation's entry (``None``: unknown)."""
        found = self._requests("WHERE request_id = ?", (request_id,))
        return found[0] if found else None

    def requests(self) -> list[dict[str, Any]]:
        """Every request this node started, oldest first."""
        return self._requests("", ())

    def _requests(self, where: str, args: tuple[str, ...]) -> list[dict[str, Any]]:
        docs: dict[str, dict[str, Any]] = {}
        sql = (
            "SELECT request_id, case_ref, received_on, started_at, identity_check, extension"  # noqa: S608 - a fixed condition, values are placeholders
            f" FROM rights_requests {where} ORDER BY started_at, request_id"
        )
        for request_id, case_ref, received_on, started_at, identity_check, ext in self._read(
            sql, args
        ):
            docs[request_id] = {
                "request_id": request_id,
                "case_ref": case_ref,
                "received_on": received_on,
                "started_at": started_at,
                "identity_check": identity_check,
                "extension": None if ext is None else json.loads(ext),
                "organisations": {},
            }
        if not docs:
            return []
        sql = (
            "SELECT request_id, org, request_message_id, status, entry, response,"  # noqa: S608 - as above
            f" response_message_id, answered_at FROM rights_answers {where}"
            " ORDER BY request_id, pos"
        )
        for request_id, org, asked, status, entry, response, response_id, at in self._read(
            sql, args
        ):
            if request_id not in docs:  # started after the first read
                continue
            columns = {
                "request_message_id": asked,
                "response": None if response is None else json.loads(response),
                "response_message_id": response_id,
                "answered_at": at,
            }
            doc = {**json.loads(entry), "status": status}
            doc |= {k: v for k, v in columns.items() if v is not None}
            docs[request_id]["organisations"][org] = doc
        return list(docs.values())

    def deferral(self, request_message_id: str) -> dict[str, Any] | None:
        """The deferral of the request message ``request_message_id`` (``None``: none kept)."""
        found = self._deferrals("WHERE request_message_id = ?", (request_message_id,))
        return found[0] if found else None

    def deferrals(self) -> list[dict[str, Any]]:
        """Every deferral this node keeps, released or not, oldest request first."""
        return self._deferrals("", ())

    def _deferrals(self, where: str, args: tuple[str, ...]) -> list[dict[str, Any]]:
        sql = (
            "SELECT request_message_id, released_on, response_message_ids, deferral"  # noqa: S608 - a fixed condition, values are placeholders
            f" FROM rights_deferrals {where} ORDER BY request_message_id"
        )
        return [
            {
                **json.loads(rest),
                "request_message_id": key,
                "released_on": released_on,
                "response_message_ids": json.loads(sent),
            }
            for key, released_on, sent, rest in self._read(sql, args)
        ]
