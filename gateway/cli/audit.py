"""``zvg audit``: verify, query and export a node's audit log; verify an evidence bundle offline.

Security officers run these on the node's machine with read access to its store (``--config``
names the node's ``node.toml``); ``verify-bundle`` needs only the bundle and the public
directory. See docs/security-officers.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

__all__ = ["COMMANDS"]

_config = click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="The node's node.toml (the store and directory it names are read, never written).",
)


def node_context(config_file: Path) -> tuple[Any, Any, str]:
    """The node's config, its trusted directory (never remembered: tools do not move the
    node's trust forward) and its org."""
    from gateway.node.config import load_config
    from gateway.node.trust import directory_for_reading
    from schemas.catalogue import default_catalogue, load_catalogue

    config = load_config(config_file)
    cat = (
        load_catalogue(config.directory.catalogue)
        if config.directory.catalogue
        else default_catalogue()
    )
    return config, directory_for_reading(config, cat), config.node.org


@contextlib.contextmanager
def open_log(config: Any) -> Iterator[sqlite3.Connection]:
    """The node's store, read only, as its config names it: the SQLite file
    (``gateway.audit.inspect.open_readonly``) or the PostgreSQL database of ``store.url`` — one
    read-only snapshot (``REPEATABLE READ``), safe while the node's processes append."""
    from gateway.audit.inspect import open_readonly

    if config.store.url is None:
        with open_readonly(config.store_path) as db:
            yield db
        return
    from gateway.node.store.postgres import PgConnection, connect

    conn = connect(config.store.url)
    try:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        yield PgConnection(conn)  # type: ignore[misc]  # the sqlite3 subset the tools use
    finally:
        conn.close()


def _time(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 date or time") from None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


@click.group("audit")
def audit() -> None:
    """Verify, query and export the audit log (for security and privacy officers)."""


EXIT_UNWITNESSED = 3
"""``zvg audit verify``: every check passed, but some records are not (yet) covered by a
checkpoint the witness threshold of partners cosigned (see docs/security-officers.md)."""
EXIT_UNCONFIRMED = 75
"""``zvg audit verify --witnesses``: fewer partners answered than the witness threshold, so the
end of the log could not be confirmed (EX_TEMPFAIL: try again)."""


@audit.command("verify")
@_config
@click.option(
    "--witnesses",
    is_flag=True,
    help="Also ask the partners over the broker which checkpoint of this log they cosigned "
    "(needs the node running: their answers arrive in its queue).",
)
def verify(config_file: Path, witnesses: bool) -> None:
    """Recompute the Merkle tree from the records and check every checkpoint and cosignature,
    then say which records the partners have witnessed.

    \b
    Exit codes:
      0   every check passed and every record is witnessed (covered by a checkpoint
          the federation's witness threshold of partners cosigned)
      1   a check failed: the first bad record or checkpoint is named (tampering)
      2   usage or configuration error
      3   every check passed, but records N to M are not witnessed (yet): a healthy
          node's newest records until the partners cosign, or deleted checkpoints,
          stripped cosignatures, a log re-signed with the node's own key
      75  --witnesses: fewer partners answered than the witness threshold
    """
    from gateway.audit.inspect import add_witness_heads, record_written, verify_log

    config, directory, org = node_context(config_file)
    now = datetime.now(UTC)
    retention = timedelta(days=config.retention.audit_personal_days)
    with open_log(config) as db:
        report = verify_log(db, directory=directory, org=org, now=now, personal_retention=retention)
    if witnesses:
        from gateway.audit.asking import ask_witnesses

        timeout = config.audit.witness_answer_timeout_seconds
        heads = asyncio.run(ask_witnesses(config, directory, timeout_s=timeout))
        add_witness_heads(report, heads, directory=directory, org=org, now=now)
    click.echo(f"audit log of {directory.names().get(org, org)} ({directory.audit_origin(org)})")
    click.echo(
        f"records: {report.records} verified ({report.personal_checked} with personal "
        f"fields checked, {report.shredded} past retention)"
    )
    click.echo(f"checkpoints: {report.checkpoints} verified, each reproduced from the records")
    if report.evidence:
        click.echo(f"evidence: {report.evidence} kept receipt(s) match their records")
    if report.cosignatures:
        size, names = max(report.cosignatures.items())
        click.echo(f"latest checkpoint {size}: cosigned by {', '.join(names) or 'no partner yet'}")
    click.echo(f"root: {report.root.hex() if report.root else '(empty log)'}")
    answered = len(report.answered)
    if witnesses:
        for partner, name in sorted(report.partners.items(), key=lambda p: p[1]):
            if partner in report.answered:
                size = report.answered[partner]
                if size:
                    click.echo(f"  {name}: cosigned checkpoint {size}, which the records extend")
                else:
                    click.echo(f"  {name}: has cosigned no checkpoint of this log")
            elif partner in report.unverified:
                click.echo(f"  {name}: its answer does not verify (not counted)")
            else:
                click.echo(f"  no answer from {name} within {timeout:g} s")
    needed = f"{report.threshold} of the {len(report.partners)} partners"
    witnessed = report.witnessed
    if report.threshold == 0:
        click.echo("witnessed: nobody can witness (no partner in the directory)")
    elif witnessed == report.records:
        click.echo(f"witnessed: all {report.records} records (cosigned by {needed})")
    elif witnessed:
        click.echo(f"witnessed: records 0 to {witnessed - 1} (cosigned by {needed})")
    if witnesses and answered < report.threshold:
        click.echo(
            f"not confirmed: {answered} of the {report.threshold} partners needed answered; "
            "records after what they cosigned may have been removed (is the node running? "
            "try again)"
        )
        raise click.exceptions.Exit(EXIT_UNCONFIRMED)
    if witnessed < report.records:
        with open_log(config) as db:
            since = record_written(db, witnessed)
        click.echo(
            f"not witnessed: records {witnessed} to {report.records - 1} "
            f"({report.records - witnessed} records, written since {since:%Y-%m-%d %H:%M}Z) are "
            f"in no checkpoint cosigned by {needed}"
        )
        raise click.exceptions.Exit(EXIT_UNWITNESSED)
    click.echo("OK")


@audit.command("query")
@_config
@click.option("--case", "case_ref", help="Case reference (case_ref).")
@click.option("--purpose", help="Purpose code, e.g. ZVH.BEKENDHEID.")
@click.option("--partner", help="OIN of the other party (sender, recipient or peer).")
@click.option("--subject", help="A data subject's pseudonym (subject_ref).")
@click.option("--message", "message_id", help="A message id.")
@click.option("--operation", help="Operation name, e.g. message.receive, policy.decision.")
@click.option("--since", help="From this time (ISO 8601, UTC if no offset).")
@click.option("--until", help="Before this time.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines instead of a table.")
@click.option("--limit", type=click.IntRange(1, 1_000_000), default=10_000, show_default=True)
def query_cmd(
    config_file: Path,
    case_ref: str | None,
    purpose: str | None,
    partner: str | None,
    subject: str | None,
    message_id: str | None,
    operation: str | None,
    since: str | None,
    until: str | None,
    as_json: bool,
    limit: int,
) -> None:
    """Who sent what about whom, to whom, for which purpose, and did it arrive."""
    from gateway.audit.inspect import QUERY_COLUMNS, as_row, open_readonly, query

    config, _directory, _org = node_context(config_file)
    with open_readonly(config.store_path) as db:
        hits = query(
            db,
            case_ref=case_ref,
            purpose=purpose,
            partner=partner,
            subject=subject,
            message_id=message_id,
            operation=operation,
            since=_time(since),
            until=_time(until),
            limit=limit,
        )
    if as_json:
        for hit in hits:
            click.echo(json.dumps(hit, ensure_ascii=False))
        return
    rows = [as_row(h) for h in hits]
    widths = [
        max(len(c), *(len(r[i]) for r in rows)) if rows else len(c)
        for i, c in enumerate(QUERY_COLUMNS)
    ]
    click.echo("  ".join(c.ljust(w) for c, w in zip(QUERY_COLUMNS, widths, strict=True)).rstrip())
    click.echo("  ".join("-" * w for w in widths))
    for row in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    click.echo(f"{len(rows)} record(s)")


@audit.command("export")
@_config
@click.option("--message", "message_id", help="Export the evidence for this message.")
@click.option("--case", "case_ref", help="Export the evidence for this case.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["bundle", "ldv"]),
    default="bundle",
    show_default=True,
    help="bundle: an evidence bundle for a message or case; ldv: the whole log as Logboek "
    "Dataverwerkingen lines (JSON lines, one per record and data subject).",
)
def export(
    config_file: Path, message_id: str | None, case_ref: str | None, out: Path, fmt: str
) -> None:
    """Write an evidence bundle: records with inclusion proofs, the cosigned checkpoint, the
    signed messages and receipts. Check it anywhere with ``zvg audit verify-bundle``.

    With ``--format ldv``: the records with the attribute names of the Logboek
    Dataverwerkingen standard, one line per data subject (docs/security-officers.md)."""
    from gateway.audit.inspect import export_bundle, open_readonly
    from gateway.errors import LocalError

    if out.exists():
        raise LocalError(f"{out} already exists")
    if fmt == "ldv":
        if message_id or case_ref:
            raise LocalError("--format ldv exports the whole log: drop --message and --case")
        _export_ldv(config_file, out)
        return
    config, directory, org = node_context(config_file)
    with open_readonly(config.store_path) as db:
        bundle = export_bundle(
            db,
            directory=directory,
            org=org,
            message_id=message_id,
            case_ref=case_ref,
            now=datetime.now(UTC),
        )
    out.write_text(json.dumps(bundle, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    out.chmod(0o600)
    click.echo(
        f"wrote {out}: {len(bundle['records'])} record(s), {len(bundle['messages'])} signed "
        f"message(s), {len(bundle['receipts'])} receipt(s)"
        + (
            f", {len(bundle['contradictions'])} contradicting receipt(s)"
            if bundle["contradictions"]
            else ""
        )
        + "; it contains message content: handle it as the case file it is"
    )


def _export_ldv(config_file: Path, out: Path) -> None:
    from gateway.audit.inspect import open_readonly
    from gateway.audit.ldv import LdvExport, ldv_lines
    from gateway.node.activities import processing_activity

    config, _directory, org = node_context(config_file)
    report = LdvExport()
    with open_readonly(config.store_path) as db, out.open("x", encoding="utf-8") as f:
        out.chmod(0o600)
        for line in ldv_lines(
            db,
            org=org,
            activity_of=lambda purpose: processing_activity(config, purpose),
            report=report,
        ):
            f.write(json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n")
    left = [
        f"{n} {what}"
        for n, what in (
            (report.no_subject, "about no data subject"),
            (report.shredded, "past retention (subjects shredded)"),
            (report.no_trace, "without a trace id (written before 0098)"),
        )
        if n
    ]
    kept = report.records - report.no_subject - report.shredded - report.no_trace
    click.echo(
        f"wrote {out}: {report.lines} LDV line(s) from {kept} of {report.records} record(s)"
        + (f"; left out: {', '.join(left)}" if left else "")
        + "; it holds subject pseudonyms: handle it as personal data"
    )


@audit.command("verify-bundle")
@click.argument("bundle_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--directory",
    "directory_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="The federation directory (public; verified against its own authority threshold).",
)
def verify_bundle_cmd(bundle_file: Path, directory_file: Path) -> None:
    """Check an evidence bundle offline: signatures, proofs, checkpoint and cosignatures
    (docs/evidence-bundle.md). A failure names its reason code, as the console's browser check
    does for the same bundle."""
    from gateway.audit.evidence import check_bundle, load_directory
    from gateway.audit.inspect import VerificationFailed
    from schemas.catalogue import default_catalogue

    now = datetime.now(UTC)
    directory = load_directory(directory_file.read_bytes(), now=now, catalogue=default_catalogue())
    check = check_bundle(bundle_file.read_bytes(), directory=directory, now=now)
    if check.report is None:
        raise VerificationFailed(f"{check.reason}: {check.detail}", code=check.reason)
    report = check.report
    for line in report.lines:
        click.echo(line)
    click.echo(
        f"{report.records} record(s) proved in checkpoint {report.checkpoint_size} of "
        f"{report.origin}, cosigned by {', '.join(report.cosigners) or 'no partner'}"
    )
    click.echo("OK")


COMMANDS: list[click.Command] = [audit]
