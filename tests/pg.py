"""The PostgreSQL side of the tests that run on both stores.

``scripts/test`` starts PostgreSQL and makes the role and database ``zvg_test``
(``ensure_postgres`` in scripts/lib.sh); ``ZVG_TEST_PG`` overrides where
(``postgresql://zvg_test@127.0.0.1/zvg_test``). Each pytest worker gets its own database,
``zvg_test_<worker>``, created afresh and migrated once per session; each test starts from
empty tables (``TRUNCATE``, a few milliseconds), not a new database.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from gateway.node.pg_store import VERSION, migrate
from gateway.node.store.postgres import PostgresStore

__all__ = ["STORES", "fresh_store", "pg_url"]

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
    """A migrated database of this pytest worker's own."""
    name = f"zvg_test_{worker_id}"
    with _admin() as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    url = ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    migrate(url)
    yield url
    with _admin() as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def fresh_store(url: str) -> PostgresStore:
    """A store on ``url`` with every table emptied (the schema stays)."""
    with psycopg.connect(url, autocommit=True) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
                " AND tablename != 'schema_migrations'"
            )
        ]
        conn.execute(
            "TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE"
        )
    return PostgresStore(url, version=VERSION)
