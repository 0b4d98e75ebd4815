"""Which store a node opens (``store.url``), and the PostgreSQL store's versioned schema.

SQLite (``node.db`` in ``node.data_dir``) stays the zero-setup default; ``store.url =
"postgresql://..."`` puts the node's state and its audit log in one PostgreSQL database
(:class:`~gateway.node.store.postgres.PostgresStore`, decision 0094).

The PostgreSQL schema is versioned: :data:`MIGRATIONS` are applied in order, each in its own
transaction, by ``zvg node migrate`` (:func:`migrate`), and recorded in ``schema_migrations``.
A node, and ``zvg node check-config``, refuse a database whose schema is not at
:data:`VERSION` with one line that says to migrate. Migration 1 is the SQLite schema of the
same code in PostgreSQL's types; every later change is a new migration (a test pins migration
1's text, so changing the SQLite schema without a migration fails).
"""

from __future__ import annotations

from gateway.audit.log import AUDIT_SCHEMA
from gateway.errors import LocalError
from gateway.node.config import NodeConfig
from gateway.node.store import SqliteStore, writes
from gateway.node.store.postgres import (
    PgConnection,
    PostgresStore,
    connect,
    redact,
    schema_version,
    translate_schema,
)
from gateway.node.trust import TrustHistory, read_history

__all__ = ["MIGRATIONS", "VERSION", "migrate", "open_store", "pg_history"]

#: (version, DDL), applied in order.
MIGRATIONS: tuple[tuple[int, str], ...] = ((1, translate_schema(writes.SCHEMA + AUDIT_SCHEMA)),)
#: The schema version this code reads and writes.
VERSION = MIGRATIONS[-1][0]

#: Serialises ``zvg node migrate`` runs on one database (pg_advisory_xact_lock key).
_MIGRATE_LOCK = 0x7A76_6701


def open_store(config: NodeConfig) -> SqliteStore:
    """The node's store as its config names it (the caller closes it)."""
    if config.store.url is not None:
        return PostgresStore(config.store.url, version=VERSION)
    return SqliteStore(config.store_path, schemas=(AUDIT_SCHEMA,))


def migrate(url: str) -> tuple[int, int]:
    """Apply the migrations the database at ``url`` lacks; (version before, version after).

    Raises :class:`LocalError` for a database newer than this code (a downgrade)."""
    with connect(url) as conn:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATE_LOCK,))
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY,"
                " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
        before = schema_version(conn)
        if before > VERSION:
            raise LocalError(
                f"store.url: the schema is at version {before}, newer than this node's"
                f" {VERSION}; run the newer version"
            )
        for version, ddl in MIGRATIONS:
            if version <= before:
                continue
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATE_LOCK,))
                if schema_version(conn) >= version:  # another migrate run was first
                    continue
                conn.execute(ddl.encode("utf-8"))  # several statements, no parameters
                conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
        return before, schema_version(conn)


def pg_history(url: str) -> TrustHistory:
    """:func:`~gateway.node.trust.stored_history` of a PostgreSQL store: where ``check-config``
    and ``run`` refuse a schema that is not at :data:`VERSION`."""
    with connect(url) as conn:
        found = schema_version(conn)
        if found != VERSION:
            raise LocalError(
                f"store.url: the schema of {redact(url)} is at version {found}, this node needs"
                f" {VERSION}; run: zvg node migrate"
            )
        return read_history(PgConnection(conn))  # type: ignore[arg-type]  # the sqlite3 subset
