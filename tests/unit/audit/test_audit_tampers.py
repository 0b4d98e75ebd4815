"""``zvg audit verify`` against rewritten stores (issue 14 §2), built in-process.

Each store is written by the node's own ``AuditLog`` with checkpoints cosigned by both partners
through the witnessing code (``tests/audit_logs.py``), then rewritten with sqlite3 as someone
with the node's disk — and its audit key — would. Threats:

- the ten tampers ``verify`` has always found (a changed byte, a deleted, reordered or rewritten
  record, a changed personal part or salt, a truncation below a checkpoint, an altered
  checkpoint, cosignature or stored root): exit 1, the first bad record or checkpoint named;
- (a) personal parts erased while their retention period still runs: exit 1, from the signed
  record times and the retention deadlines;
- (b) to (d): checkpoints deleted, cosignatures stripped, or the log forked and every checkpoint
  re-signed with the node's own key: the log is no longer covered by a checkpoint the witness
  threshold cosigned, so ``verify`` names the unwitnessed records and exits 3, never 0;
- a healthy tail written after the last cosigned checkpoint: exit 3 too, named as such.

Exit codes (docs/security-officers.md): 0 every record witnessed, 1 a check failed, 3
consistent but records not (yet) witnessed.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from gateway.cli import cli
from gateway.core import note
from gateway.core.audit import leaf_of
from gateway.testing.federation import FederationFiles
from tests import stores
from tests.audit_logs import (
    AuditNode,
    fork_and_resign,
    make_federation,
    make_node,
    witnessed_node,
)

EXIT_FAILED, EXIT_UNWITNESSED = 1, 3


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> FederationFiles:
    return make_federation(tmp_path_factory.mktemp("fed") / "federation")


@pytest.fixture
async def node(tmp_path: Path, fed: FederationFiles) -> AuditNode:
    """A fully witnessed log of 12 records; checkpoints 4, 8 and 12, each cosigned by both."""
    return await witnessed_node(tmp_path, fed)


def verify(node: AuditNode) -> Result:
    return CliRunner().invoke(cli, ["audit", "verify", "--config", str(node.config)])


def rewrite(node: AuditNode, change: Callable[[sqlite3.Connection], object]) -> None:
    with stores.connect(node.db_path) as db:
        change(db)


def sql(*statements: str) -> Callable[[sqlite3.Connection], None]:
    def change(db: sqlite3.Connection) -> None:
        for statement in statements:
            db.execute(statement)

    return change


def _swap_records(db: sqlite3.Connection) -> None:
    db.execute("UPDATE audit_records SET idx = -1 WHERE idx = 5")
    db.execute("UPDATE audit_records SET idx = 5 WHERE idx = 6")
    db.execute("UPDATE audit_records SET idx = 6 WHERE idx = -1")


def _recompute_leaf(db: sqlite3.Connection) -> None:
    view = json.loads(db.execute("SELECT view FROM audit_records WHERE idx = 1").fetchone()[0])
    view["status"] = "denied"
    db.execute(
        "UPDATE audit_records SET view = ?, leaf = ? WHERE idx = 1",
        (json.dumps(view), leaf_of(view)),
    )


def _other_salt(db: sqlite3.Connection) -> None:
    salt = db.execute("SELECT salt FROM audit_records WHERE idx = 2").fetchone()[0]
    db.execute("UPDATE audit_records SET salt = ? WHERE idx = 3", (salt,))


def _alter_checkpoint_signature(db: sqlite3.Connection) -> None:
    signed = bytes(db.execute("SELECT note FROM audit_checkpoints WHERE size = 8").fetchone()[0])
    parsed = note.parse_note(signed)
    own = parsed.signatures[0]
    flipped = bytes([own.signature[0] ^ 1]) + own.signature[1:]
    bad = note.NoteSignature(own.name, own.key_id, flipped)
    lines = "".join(s.line for s in (bad, *parsed.signatures[1:]))
    db.execute(
        "UPDATE audit_checkpoints SET note = ? WHERE size = 8",
        (parsed.text + b"\n" + lines.encode(),),
    )


def _alter_cosignature(db: sqlite3.Connection) -> None:
    signed = bytes(db.execute("SELECT note FROM audit_checkpoints WHERE size = 8").fetchone()[0])
    parsed = note.parse_note(signed)
    co = parsed.signatures[-1]
    bad = note.NoteSignature(co.name, co.key_id, co.signature[:-1] + bytes([co.signature[-1] ^ 1]))
    lines = "".join(s.line for s in (*parsed.signatures[:-1], bad))
    db.execute(
        "UPDATE audit_checkpoints SET note = ? WHERE size = 8",
        (parsed.text + b"\n" + lines.encode(),),
    )


ALREADY_DETECTED: dict[str, tuple[Callable[[sqlite3.Connection], object], str]] = {
    "a changed byte in a record": (
        sql(
            "UPDATE audit_records SET view = replace(view, 'ZVH.AANMELDING', 'ZVH.AANMELDINH')"
            " WHERE idx = 3"
        ),
        "record 3: its content does not match its leaf hash",
    ),
    "a deleted record": (sql("DELETE FROM audit_records WHERE idx = 2"), "record 2 is missing"),
    "records deleted below a signed checkpoint": (
        sql("DELETE FROM audit_records WHERE idx >= 10"),
        "the log is truncated: checkpoint 12",
    ),
    "a rewritten record with its leaf hash recomputed": (
        _recompute_leaf,
        "checkpoint 4: the records do not reproduce its root",
    ),
    "two records swapped": (_swap_records, "checkpoint 8: the records do not reproduce its root"),
    "a changed case reference": (
        sql("UPDATE audit_records SET personal = replace(personal, '031', '032') WHERE idx = 7"),
        "record 7: its personal fields do not match their commitments",
    ),
    "another record's salt": (
        _other_salt,
        "record 3: its personal fields do not match their commitments",
    ),
    "an altered checkpoint signature": (
        _alter_checkpoint_signature,
        "checkpoint 8: note: invalid signature",
    ),
    "an altered cosignature": (_alter_cosignature, "checkpoint 8: note: invalid signature"),
    "a stored root that differs from the signed one": (
        sql("UPDATE audit_checkpoints SET root = zeroblob(32) WHERE size = 8"),
        "checkpoint 8: the stored size or root differs from the signed one",
    ),
}


@pytest.mark.parametrize("tamper", list(ALREADY_DETECTED), ids=list(ALREADY_DETECTED))
async def test_the_ten_tampers_verify_always_found_are_still_found(
    node: AuditNode, tamper: str
) -> None:
    assert verify(node).exit_code == 0
    change, expected = ALREADY_DETECTED[tamper]
    rewrite(node, change)
    result = verify(node)
    assert result.exit_code == EXIT_FAILED, result.output
    assert expected in result.output
    assert result.output.count("\n") == 1, "one readable line"


async def test_a_healthy_fully_witnessed_log_verifies_ok(node: AuditNode) -> None:
    result = verify(node)
    assert result.exit_code == 0, result.output
    assert "records: 12 verified" in result.output
    assert "witnessed: all 12 records" in result.output
    assert result.output.rstrip().endswith("OK")


# ----------------------------------------------------------------------------- (a) erasure


async def test_personal_parts_erased_inside_their_retention_period_are_found(
    node: AuditNode,
) -> None:
    rewrite(
        node,
        sql(
            "UPDATE audit_records SET personal = NULL, salt = NULL, case_ref = NULL,"
            " purge_after = 0 WHERE idx BETWEEN 5 AND 9"
        ),
    )
    result = verify(node)
    assert result.exit_code == EXIT_FAILED, result.output
    assert "record 5: its personal part was erased before its retention period ended" in (
        result.output
    )
    assert "5 records in all" in result.output
    assert result.output.count("\n") == 1


async def test_personal_parts_shredded_by_the_node_after_retention_are_not_a_tamper(
    tmp_path: Path, fed: FederationFiles
) -> None:
    # The node's retention pass runs with its clock past the retention period; verify runs
    # with the real clock, years earlier, and must still tell the node's shredding from an
    # erasure (the signed retention.purge record says what the node shredded, and when).
    node = make_node(tmp_path, fed)
    await node.grow(6)
    service = await node.service()
    later = datetime.now(UTC) + timedelta(days=5 * 365 + 1)
    service.clock = lambda: later
    try:
        await service.retention.purge_once()
        await node.witness(service.audit)
    finally:
        await service.store.close()
    result = verify(node)
    assert result.exit_code == 0, result.output
    assert "6 past retention" in result.output


# ----------------------------------------------------------------------------- (b) to (d)


def _strip_cosignatures(origin: str) -> Callable[[sqlite3.Connection], None]:
    def change(db: sqlite3.Connection) -> None:
        for size, signed in db.execute("SELECT size, note FROM audit_checkpoints").fetchall():
            parsed = note.parse_note(bytes(signed))
            own = "".join(s.line for s in parsed.signatures if s.name == origin)
            db.execute(
                "UPDATE audit_checkpoints SET note = ? WHERE size = ?",
                (parsed.text + b"\n" + own.encode(), size),
            )

    return change


async def test_deleting_every_checkpoint_leaves_every_record_unwitnessed(node: AuditNode) -> None:
    rewrite(node, sql("DELETE FROM audit_checkpoints"))
    result = verify(node)
    assert result.exit_code == EXIT_UNWITNESSED, result.output
    assert "not witnessed: records 0 to 11" in result.output
    assert "OK" not in result.output


async def test_stripping_every_cosignature_leaves_every_record_unwitnessed(
    node: AuditNode,
) -> None:
    rewrite(node, _strip_cosignatures(node.origin))
    result = verify(node)
    assert result.exit_code == EXIT_UNWITNESSED, result.output
    assert "not witnessed: records 0 to 11" in result.output
    assert "OK" not in result.output


async def test_a_fork_re_signed_with_the_nodes_own_key_leaves_every_record_unwitnessed(
    node: AuditNode,
) -> None:
    fork_and_resign(node)
    result = verify(node)
    assert result.exit_code == EXIT_UNWITNESSED, result.output
    assert "not witnessed: records 0 to 11" in result.output
    assert "OK" not in result.output


async def test_a_healthy_tail_after_the_last_cosigned_checkpoint_is_reported_as_such(
    node: AuditNode,
) -> None:
    await node.grow(3, cosigners=())  # checkpoint 15 signed, no partner has cosigned it yet
    result = verify(node)
    assert result.exit_code == EXIT_UNWITNESSED, result.output
    assert "not witnessed: records 12 to 14" in result.output
    assert "witnessed: records 0 to 11" in result.output


async def test_records_count_as_witnessed_only_up_to_the_threshold_of_partners(
    node: AuditNode,
) -> None:
    await node.grow(4, cosigners=("politie",))  # checkpoint 16: one of the two partners
    result = verify(node)
    assert result.exit_code == EXIT_UNWITNESSED, result.output
    assert "not witnessed: records 12 to 15" in result.output
