"""The PostgreSQL store's own rules (the rules both stores share run on both: test_store.py).

Threats: a node writing into a database whose schema is older than its code (a column missing
fails mid-delivery, after the broker gave the message); an upgrade that changes the SQLite
schema without a PostgreSQL migration (the two stores silently differ); a lost database
connection leaving the writer on a state it does not know (a write it believes committed);
the SQLite dialect read differently by PostgreSQL.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit.log import AuditLog
from gateway.cli import cli
from gateway.core.audit import new_record
from gateway.errors import LocalError
from gateway.node.pg_store import MIGRATIONS, VERSION, migrate
from gateway.node.store import KeepDeferral, SqliteStore
from gateway.node.store.postgres import PostgresStore, redact, translate
from tests.node_pair import HANG_S
from tests.pg import schema_url
from tests.unit.node.conftest import NodeSetup

#: sha256 of migration 1. A change to the SQLite schema (gateway/node/store/writes.py,
#: gateway/audit/log.py, gateway/audit/search.py) changes it: add a PostgreSQL migration for the
#: change, then pin this. (Re-pinned once, before any release, when the PostgreSQL store met the
#: console's audit side tables on main.)
MIGRATION_1 = "07a26e2600966241b07388e0bfa76c97536b42cdcba90e3331bd2369f2821ff8"


def zvg(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_migration_1_is_pinned() -> None:
    assert hashlib.sha256(MIGRATIONS[0][1].encode()).hexdigest() == MIGRATION_1, (
        "the SQLite schema changed: add a PostgreSQL migration (gateway/node/pg_store.py)"
    )


@pytest.mark.parametrize(
    ("sqlite", "postgres"),
    [
        (
            "INSERT OR IGNORE INTO inbox (sender) VALUES (?)",
            "INSERT INTO inbox (sender) VALUES (%s) ON CONFLICT DO NOTHING",
        ),
        (
            "INSERT OR REPLACE INTO meta VALUES (?, ?)",
            (
                "INSERT INTO meta VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET value ="
                " EXCLUDED.value"
            ),
        ),
        (
            "SELECT idx FROM audit_records WHERE json_extract(view, '$.detail.status') = ?",
            "SELECT idx FROM audit_records WHERE (view::jsonb #>> '{detail,status}') = %s",
        ),
        (
            "SELECT max(json_extract(view, '$.policy_version')) FROM audit_records",
            "SELECT max((view::jsonb #>> '{policy_version}')::numeric) FROM audit_records",
        ),
        (
            "UPDATE outbox SET purge_after=min(purge_after, ?) WHERE message_id=?",
            "UPDATE outbox SET purge_after=LEAST(purge_after, %s) WHERE message_id=%s",
        ),
        (
            "SELECT 1 FROM outbox o WHERE 1 ORDER BY rowid",
            "SELECT 1 FROM outbox o WHERE TRUE ORDER BY seq",
        ),
        ("SELECT '50%' WHERE x=?", "SELECT '50%%' WHERE x=%s"),
        (
            "EXISTS (SELECT 1 FROM json_each(view, '$.recipients') WHERE value = ?)",
            (
                "EXISTS (SELECT 1 FROM jsonb_array_elements_text(view::jsonb #> '{recipients}')"
                " AS e(value) WHERE value = %s)"
            ),
        ),
        (
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='audit_evidence'",
            (
                "SELECT 1 FROM pg_tables WHERE schemaname = current_schema()"
                " AND tablename='audit_evidence'"
            ),
        ),
    ],
)
def test_the_sqlite_dialect_in_postgresql(sqlite: str, postgres: str) -> None:
    assert translate(sqlite) == postgres


def test_an_upsert_into_a_table_without_a_conflict_target_is_refused() -> None:
    with pytest.raises(LocalError, match="no PostgreSQL upsert for table outbox"):
        translate("INSERT OR REPLACE INTO outbox VALUES (?)")


def test_a_password_never_reaches_a_message() -> None:
    assert redact("postgresql://zvg:s3cret@db.example/zvg") == "postgresql://zvg:***@db.example/zvg"


@pytest.mark.postgres
async def test_the_postgres_store_sets_up_all_the_group_commits_state(
    pg_url: str, tmp_path: Path
) -> None:
    # PostgresStore sets up GroupCommit's state itself (GroupCommit.__init__ opens SQLite):
    # a field added to the engine must be added there too.
    lite = SqliteStore(tmp_path / "node.db")
    pg = PostgresStore(schema_url(pg_url, "fields"), version=VERSION)
    try:
        assert set(vars(lite)) <= set(vars(pg))
    finally:
        await lite.close()
        await pg.close()


@pytest.mark.postgres
async def test_a_store_whose_schema_is_behind_refuses_to_open(pg_url: str) -> None:
    url = schema_url(pg_url, "behind", migrate_it=False)
    with pytest.raises(
        LocalError, match=rf"schema is at version 0, this node needs {VERSION}; run: zvg"
    ):
        PostgresStore(url, version=VERSION)
    assert migrate(url) == (0, VERSION)
    assert migrate(url) == (VERSION, VERSION), "a second run changes nothing"
    store = PostgresStore(url, version=VERSION)
    await store.close()


@pytest.mark.postgres
def test_check_config_refuses_a_schema_behind_and_migrate_brings_it_up(
    pg_url: str, setup: NodeSetup
) -> None:
    url = schema_url(pg_url, "cli", migrate_it=False)
    setup.append(f'[store]\nurl = "{url}"')
    behind = zvg("node", "check-config", "--config", setup.config)
    assert behind.exit_code != 0
    lines = behind.output.strip().splitlines()
    assert len(lines) == 1, behind.output
    assert "store.url: the schema of" in lines[0]
    assert f"is at version 0, this node needs {VERSION}; run: zvg node migrate" in lines[0]
    migrated = zvg("node", "migrate", "--config", setup.config)
    assert migrated.exit_code == 0, migrated.output
    assert f"migrated the store's schema from version 0 to {VERSION}" in migrated.output
    again = zvg("node", "migrate", "--config", setup.config)
    assert f"is at version {VERSION}: nothing to do" in again.output
    ok = zvg("node", "check-config", "--config", setup.config)
    assert ok.exit_code == 0, ok.output


@pytest.mark.postgres
async def test_zvg_node_migrate_takes_a_version_2_store_to_the_current_and_keeps_its_rows(
    pg_url: str, setup: NodeSetup
) -> None:
    """Migrations 3 (the inzageverzoeken, decision 0116) and on, on a store of version 2."""
    url = schema_url(pg_url, "from2", migrate_it=False)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY,"
            " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        for version, ddl in MIGRATIONS[:2]:
            conn.execute(ddl.encode("utf-8"))
            conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
        conn.execute("INSERT INTO meta VALUES ('kept', 'written at version 2')")
    with pytest.raises(LocalError, match=f"at version 2, this node needs {VERSION}"):
        PostgresStore(url, version=VERSION)
    setup.append(f'[store]\nurl = "{url}"')
    migrated = zvg("node", "migrate", "--config", setup.config)
    assert migrated.exit_code == 0, migrated.output
    assert f"migrated the store's schema from version 2 to {VERSION}" in migrated.output
    store = PostgresStore(url, version=VERSION)
    try:
        assert store.read("SELECT value FROM meta WHERE key = 'kept'") == [
            ("written at version 2",)
        ]
        deferral = {"request_id": "r", "subjects": ["p"], "released_on": None}
        assert (await store.commit(KeepDeferral("m", json.dumps(deferral)))).applied
        assert store.rights.deferrals() == [
            {**deferral, "request_message_id": "m", "response_message_ids": []}
        ]
    finally:
        await store.close()


def test_migrate_of_a_sqlite_store_does_nothing(setup: NodeSetup) -> None:
    result = zvg("node", "migrate", "--config", setup.config)
    assert result.exit_code == 0, result.output
    assert "the store is SQLite" in result.output


@pytest.mark.postgres
async def test_a_lost_database_connection_fails_the_store_closed(pg_url: str) -> None:
    store = PostgresStore(schema_url(pg_url, "lost"), version=VERSION)
    try:
        pid = await store.run(lambda db: db.execute("SELECT pg_backend_pid()").fetchone()[0])
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(LocalError, match="restart the node"):
            await asyncio.wait_for(store.run(lambda _db: 1), HANG_S)
        with pytest.raises(LocalError, match="restart the node"):
            await asyncio.wait_for(store.run(lambda _db: 2), HANG_S)
    finally:
        await store.close()


def test_a_database_that_does_not_answer_is_one_line_without_the_password() -> None:
    with pytest.raises(LocalError) as refused:
        PostgresStore("postgresql://zvg:s3cret@127.0.0.1:1/zvg?connect_timeout=5", version=VERSION)
    assert str(refused.value) == (
        "store.url: cannot connect to postgresql://zvg:***@127.0.0.1:1/zvg?connect_timeout=5"
        " (OperationalError)"
    )


@pytest.mark.postgres
async def test_a_percent_sign_in_a_statement_without_parameters_stays_one(pg_url: str) -> None:
    store = PostgresStore(schema_url(pg_url, "percent"), version=VERSION)
    try:
        assert store.read("SELECT '50%'") == [("50%",)]
        assert await store.run(lambda db: db.execute("SELECT '50%'").fetchone()) == ("50%",)
    finally:
        await store.close()


@pytest.mark.postgres
async def test_the_audit_log_on_postgresql_is_one_tree_that_reopens_and_catches_tampering(
    pg_url: str,
) -> None:
    url = schema_url(pg_url, "audit")
    key = Ed25519PrivateKey.generate()
    t0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

    async def opened() -> tuple[PostgresStore, AuditLog]:
        store = PostgresStore(url, version=VERSION)
        try:
            log = await AuditLog.open(
                store, origin="o/x/audit-log", key=key, rand=os.urandom, retention_s=86400.0
            )
        except BaseException:
            await store.close()
            raise
        return store, log

    records = [
        new_record(name="message.receive", status="ok", start_time=t0, end_time=t0)
        for _ in range(5)
    ]
    store, log = await opened()
    try:
        # two commits at once: one group commit or two, the indexes are one sequence
        first, second = await asyncio.gather(
            store.commit(log.append(records[:2], t0)), store.commit(log.append(records[2:], t0))
        )
        assert sorted(first.indexes + second.indexes) == [0, 1, 2, 3, 4]
        signed = await log.checkpoint()
        assert signed is not None
        assert signed.size == 5
    finally:
        await store.close()
    store, again = await opened()  # rebuilt from the stored leaves: the checkpoint's root
    try:
        assert again.size == 5
        assert again.latest == signed
        await store.run(
            lambda db: db.execute("UPDATE audit_records SET leaf=? WHERE idx=2", (bytes(32),))
        )
    finally:
        await store.close()
    with pytest.raises(LocalError, match="does not reproduce its checkpoint of size 5"):
        await opened()
