"""``zvg rights notice``: tell every organisation this node sent a person's data to that the
data was rectified, erased or restricted (AVG art. 19; docs/subject-rights.md §5).

The recipients come from the node's own audit log (read-only, like ``zvg audit``): every
organisation the broker confirmed one of this node's messages about the person for
(:func:`gateway.core.notices.notice_targets`). The person is found by this organisation's
pseudonym — given, or computed from a typed BSN with the pseudonym key the adapters use. The
notices are sent through the running node's local API (an ``adapter`` token), one per
organisation, naming only the messages that organisation received. Sending an ``erase``
notice makes the node erase its own copy too
(docs/decisions/0107-erasure-shreds-personal-parts-and-is-logged.md).
The BSN is never printed or logged; it travels only inside the encrypted body.
"""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, get_args

import click

from gateway.errors import LocalError

__all__ = ["READ_CONFIG", "notice"]


def _grounds() -> list[str]:
    from schemas.bodies import RightsNoticeBody

    return list(get_args(RightsNoticeBody.model_fields["ground"].annotation))


def _subject(bsn: str | None, key_file: Path | None, subject: str | None) -> str:
    from gateway.console.data.subject import NotABsn, subject_pseudonym

    if (bsn is None) == (subject is None):
        raise click.UsageError("give the person by --bsn (with --pseudonym-key-file) or --subject")
    if subject is not None:
        return subject
    if key_file is None:
        raise click.UsageError("--bsn needs --pseudonym-key-file (the adapters' pseudonym key)")
    try:
        return subject_pseudonym(key_file.read_bytes().strip(), bsn or "")
    except NotABsn:
        raise click.BadParameter("not a valid BSN (nine digits passing the elfproef)") from None
    except OSError as exc:
        raise LocalError(f"cannot read the pseudonym key file ({exc.strerror})") from None


#: ``--config`` of the commands that only read the node's store (``notice``, ``notices``).
READ_CONFIG = click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="The node's node.toml (its store is read, never written).",
)


@click.command("notice")
@READ_CONFIG
@click.option("--bsn", help="The person's BSN (never printed; only inside the encrypted body).")
@click.option(
    "--pseudonym-key-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The pseudonym key the adapters use, to find the person's records by BSN.",
)
@click.option("--subject", help="The person's pseudonym at this organisation (sub-...).")
@click.option(
    "--kind",
    type=click.Choice(["rectify", "erase", "restrict"]),
    required=True,
    help="What was done.",
)
@click.option(
    "--ground",
    type=click.Choice(_grounds()),
    default="request_of_data_subject",
    show_default=True,
)
@click.option(
    "--category",
    "categories",
    multiple=True,
    help="A data category changed (repeat); default: every category the messages declared.",
)
@click.option("--sender-role", help="The role to send in, when the organisation holds several.")
@click.option("--node-url", help="The node's local API; default: http://<api.listen>.")
@click.option(
    "--token-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A file with an adapter token of the node (needed unless --dry-run).",
)
@click.option("--dry-run", is_flag=True, help="List the recipients; send nothing.")
def notice(
    config_file: Path,
    bsn: str | None,
    pseudonym_key_file: Path | None,
    subject: str | None,
    kind: str,
    ground: str,
    categories: tuple[str, ...],
    sender_role: str | None,
    node_url: str | None,
    token_file: Path | None,
    dry_run: bool,
) -> None:
    """Pass a rectification, erasure or restriction on to every recipient (AVG art. 19)."""
    from gateway.audit.erasure import targets
    from gateway.audit.inspect import open_readonly
    from gateway.cli.audit import node_context
    from gateway.core.notices import notice_request
    from schemas.ids import uuid7

    ref = _subject(bsn, pseudonym_key_file, subject)
    if not dry_run and token_file is None:
        raise click.UsageError("--token-file is needed to send (or use --dry-run)")
    config, directory, org = node_context(config_file)
    with open_readonly(config.store_path) as db:
        found = targets(db, ref, org)
    if not found:
        click.echo("no organisation received data about this person from this node")
        return
    members = {m.oin: m for m in directory.payload.members}
    now = datetime.now(UTC)
    correlation = uuid7(int(now.timestamp() * 1000), os.urandom(10))
    requests: list[tuple[str, dict[str, Any]]] = []
    for t in found:
        member = members.get(t.org)
        name = member.name if member else t.org
        click.echo(f"{t.org}  {name}: {len(t.message_ids)} message(s)")
        if member is None:
            raise LocalError(f"{t.org} is no longer in the directory: tell it outside the gateway")
        request = notice_request(
            t,
            role=member.roles[0],
            subject=ref,
            kind=kind,
            ground=ground,
            at=now,
            correlation_id=correlation,
            categories=categories,
            bsn=bsn,
            sender_role=sender_role,
        )
        requests.append((t.org, request))
    if dry_run:
        click.echo(f"{len(requests)} notice(s) would be sent (dry run)")
        return
    token = token_file.read_text("utf-8").strip() if token_file is not None else ""
    url = node_url or f"http://{config.api.listen}"
    sent = asyncio.run(_send(url, token, correlation, requests))
    for org_id, message_id in sent:
        click.echo(f"sent {message_id} to {org_id}")
    click.echo(
        f"{len(sent)} notice(s) sent (correlation {correlation}); their receipts show who "
        "complied: zvg rights notices, or the console"
    )


async def _send(
    url: str, token: str, correlation: str, requests: list[tuple[str, dict[str, Any]]]
) -> list[tuple[str, str]]:
    from zvg_client import NodeClient, request_from_dict
    from zvg_client.errors import AdapterError

    sent: list[tuple[str, str]] = []
    async with NodeClient(url, token) as node:
        for org, request in requests:
            try:
                accepted = await node.send(
                    request_from_dict(request),
                    idempotency_key=f"rights-notice-{correlation}-{org}",
                )
            except AdapterError as exc:
                done = ", ".join(f"{o} ({m})" for o, m in sent) or "none"
                rest = ", ".join(o for o, _ in requests[len(sent) :])
                raise LocalError(
                    f"the node refused the notice to {org}: {exc}; sent: {done}; not sent: "
                    f"{rest} (after an erase notice the log no longer finds them: send those "
                    "by hand, docs/subject-rights.md §5)"
                ) from None
            sent.append((org, accepted.message_id))
    return sent
