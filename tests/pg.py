"""The PostgreSQL side of the tests that run on both stores.

``scripts/test`` starts PostgreSQL and makes the role and database ``zvg_test``
(``ensure_postgres`` in scripts/lib.sh); ``ZVG_TEST_PG`` overrides where
(``postgresql://zvg_test@127.0.0.1/zvg_test``). Each pytest worker gets its own database,
``zvg_test_<worker>_<random>``, created afresh and migrated once per session; each test starts from
empty tables (``DELETE``, a few milliseconds), not a new database. Commits there do not wait
for the WAL's flush (``synchronous_commit = off``): no test here pulls the plug, and the
product's own setting stays PostgreSQL's default.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from gateway.node.pg_store import VERSION, migrate
from gateway.node.store import SqliteStore
from gateway.node.store.postgres import PostgresStore

__all__ = ["STORES", "fresh_store", "in_schema", "pg_url", "schema_url", "store"]

ADMIN_URL = os.environ.get("ZVG_TEST_PG", "postgresql://zvg_test@127.0.0.1/zvg_test")

#: ``params`` of a store fixture that runs its tests on both stores.
STORES = ("sqlite", pytest.param("postgres", marks=pytest.mark.postgres))


def _admin() -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL at {ADMIN_URL} does not answer ({type(exc).__name__}): run the tests "
            "with scripts/test (ensure_postgres), or deselect them with -m 'not postgres'"
        )


@pytest.fixture(scope="session")
def pg_url(worker_id: str) -> Iterator[str]:
    """A migrated database of this pytest worker's own (a random suffix: test runs of other
    checkouts on this machine have theirs)."""
    name = f"zvg_test_{worker_id}_{secrets.token_hex(4)}"
    with _admin() as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
        admin.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
    url = ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    migrate(url)
    yield url
    with _admin() as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def in_schema(url: str, schema: str) -> str:
    """``url`` with its tables in ``schema`` (``search_path``): one database holds several
    nodes' stores, as separate databases would."""
    return f"{url}?options=-csearch_path%3D{schema}"


_migrated: set[str] = set()


def schema_url(url: str, schema: str, *, migrate_it: bool = True) -> str:
    """A store URL in ``schema`` of the worker's database ``url``: migrated once per session,
    emptied for each test; with ``migrate_it=False`` a fresh schema without tables."""
    target = in_schema(url, schema)
    with psycopg.connect(url, autocommit=True) as conn:
        if not migrate_it or target not in _migrated:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            conn.execute(f'CREATE SCHEMA "{schema}"')
            _migrated.discard(target)
    if migrate_it and target not in _migrated:
        migrate(target)
        _migrated.add(target)
    elif migrate_it:
        _truncate(target)
    return target


def _truncate(url: str) -> None:
    """Empty every table and restart its identity column: ``DELETE`` (tables holding a foreign
    key first), many times faster than ``TRUNCATE`` on tables this small."""
    with psycopg.connect(url, autocommit=True) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT c.relname FROM pg_class c WHERE c.relkind = 'r'"
                " AND c.relnamespace = current_schema()::regnamespace"
                " AND c.relname != 'schema_migrations' ORDER BY EXISTS (SELECT 1 FROM"
                " pg_constraint f WHERE f.conrelid = c.oid AND f.contype = 'f') DESC"
            )
        ]
        sequences = [
            r[0]
            for r in conn.execute(
                "SELECT sequencename FROM pg_sequences WHERE schemaname = current_schema()"
            )
        ]
        script = "".join(f'DELETE FROM "{t}";' for t in tables)  # noqa: S608 - names from pg_class
        script += "".join(f"SELECT setval('\"{q}\"', 1, false);" for q in sequences)
        conn.execute(script.encode("utf-8"))


@pytest.fixture(params=STORES)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqliteStore]:
    """The node's store, empty: each test that takes it runs on SQLite and on PostgreSQL."""
    if request.param == "postgres":
        s: SqliteStore = fresh_store(request.getfixturevalue("pg_url"))
    else:
        s = SqliteStore(tmp_path / "node.db")
    try:
        yield s
    finally:
        await s.close()


def fresh_store(url: str) -> PostgresStore:
    """A store on ``url`` (a worker's database) with every table empty."""
    return PostgresStore(schema_url(url, "store"), version=VERSION)
