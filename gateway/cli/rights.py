"""``zvg rights``: data-subject rights across the federation (AVG art. 15-19).

The inzageverzoek (docs/subject-rights.md): the node is the one process on its data directory
(decision 0081), so ``request``, ``list``, ``show``, ``extend``, ``deferrals`` and ``release``
ask the running node through its local API (``/v1/rights``) with a ``contactpunt`` or
``privacy-officer`` token (``zvg node new-token --role contactpunt``), read from
``--token-file``. The BSN goes to the node over the local API and nowhere else: it is not
printed, logged or kept.

Corrections and erasures (docs/subject-rights.md §5): ``zvg rights notice`` passes a
rectification, erasure or restriction on to every organisation this node sent the person's data
to (:mod:`gateway.cli.rights_notice`); ``zvg rights notices`` lists the notices sent and who
complied (their ``accepted`` receipts).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from gateway.cli.rights_notice import READ_CONFIG, notice
from gateway.errors import LocalError, RemoteError, TransientError

__all__ = ["COMMANDS"]


def _options(f: Any) -> Any:
    f = click.option(
        "--config",
        "config_file",
        type=click.Path(path_type=Path, dir_okay=False),
        default="node.toml",
        show_default=True,
        help="The node's config (for api.listen).",
    )(f)
    f = click.option(
        "--token-file",
        type=click.Path(path_type=Path, dir_okay=False),
        required=True,
        help="A file with a bearer token of the contactpunt or privacy-officer role.",
    )(f)
    return click.option("--url", help="The node's API, if not http://<api.listen>.")(f)


class _Api:
    def __init__(self, config_file: Path, token_file: Path, url: str | None) -> None:
        from gateway.node.config import load_config

        self.config = load_config(config_file)
        self.url = (url or f"http://{self.config.api.listen}").rstrip("/")
        try:
            self.token = token_file.read_text("utf-8").strip()
        except OSError as exc:
            raise LocalError(f"{token_file}: cannot read the token ({exc.strerror})") from None

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(  # noqa: S310 - the node's own API, http(s) only
            self.url + path,
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 - as above
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            try:
                detail = json.loads(exc.read()).get("detail", exc.reason)
            except ValueError:
                detail = exc.reason
            raise RemoteError("invalid_claims", f"the node answered {exc.code}: {detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise TransientError(f"cannot reach the node at {self.url} ({exc})") from None


def _show(api: _Api, doc: dict[str, Any]) -> None:
    from gateway.node.rights_report import build_report, report_text
    from schemas.catalogue import default_catalogue, load_catalogue

    catalogue_file = api.config.directory.catalogue
    catalogue = default_catalogue() if catalogue_file is None else load_catalogue(catalogue_file)
    report = build_report(
        doc, names=doc.get("names", {}), catalogue=catalogue, today=datetime.now(UTC).date()
    )
    click.echo(report_text(report), nl=False)


@click.group("rights")
def rights() -> None:
    """Data-subject rights: inzageverzoeken (start, follow, extend, release) and notices of
    corrections and erasures."""


rights.add_command(notice)


@rights.command("request")
@_options
@click.option("--bsn", required=True, help="The person's BSN (used by the node, never kept).")
@click.option("--identity-check", required=True, help="How the person's identity was checked.")
@click.option("--received-on", help="The day the request was received (default: today).")
def request(
    config_file: Path,
    token_file: Path,
    url: str | None,
    bsn: str,
    identity_check: str,
    received_on: str | None,
) -> None:
    """Start an inzageverzoek: the node asks every partner and keeps the answers."""
    api = _Api(config_file, token_file, url)
    body: dict[str, Any] = {"bsn": bsn, "identity_check": identity_check}
    if received_on:
        body["received_on"] = received_on
    doc = api.call("POST", "/v1/rights/requests", body)
    click.echo(f"inzageverzoek {doc['request_id']} gestart ({doc['case_ref']})")
    for org, entry in doc["organisations"].items():
        click.echo(f"  {org}: {entry['status']}")


@rights.command("list")
@_options
def list_requests(config_file: Path, token_file: Path, url: str | None) -> None:
    """The inzageverzoeken this node started, with how many organisations answered."""
    api = _Api(config_file, token_file, url)
    for doc in api.call("GET", "/v1/rights/requests"):
        answered = sum(1 for e in doc["organisations"].values() if e["status"] == "answered")
        click.echo(
            f"{doc['request_id']}  ontvangen {doc['received_on']}  "
            f"{answered}/{len(doc['organisations'])} beantwoord"
        )


@rights.command("show")
@_options
@click.argument("request_id")
def show(config_file: Path, token_file: Path, url: str | None, request_id: str) -> None:
    """The report of one inzageverzoek (Dutch text)."""
    api = _Api(config_file, token_file, url)
    _show(api, api.call("GET", f"/v1/rights/requests/{request_id}"))


@rights.command("extend")
@_options
@click.argument("request_id")
@click.option("--reason", required=True, help="Why the term is extended by two months.")
def extend(
    config_file: Path, token_file: Path, url: str | None, request_id: str, reason: str
) -> None:
    """Extend the term of an inzageverzoek by two months (once, with a reason)."""
    api = _Api(config_file, token_file, url)
    doc = api.call("POST", f"/v1/rights/requests/{request_id}/extend", {"reason": reason})
    click.echo(f"inzageverzoek {doc['request_id']} verlengd: {reason}")


@rights.command("deferrals")
@_options
def deferrals(config_file: Path, token_file: Path, url: str | None) -> None:
    """The deferred answers this node keeps (a partner that defers)."""
    api = _Api(config_file, token_file, url)
    for d in api.call("GET", "/v1/rights/deferrals"):
        state = f"vrijgegeven {d['released_on']}" if d["released_on"] else "open"
        if d.get("failed"):
            why = f"niet beantwoord door een fout ({d['failed']}) op {d['deferred_on']}"
        else:
            why = f"uitgesteld {d['deferred_on']} ({d['ground']}), heroverweging {d['review_on']}"
        click.echo(f"{d['request_message_id']}  {why}: {state}")


@rights.command("release")
@_options
@click.argument("message_id")
def release(config_file: Path, token_file: Path, url: str | None, message_id: str) -> None:
    """Release a deferred answer: the node sends the exchanges now."""
    api = _Api(config_file, token_file, url)
    sent = api.call("POST", f"/v1/rights/deferrals/{message_id}/release")
    click.echo(f"antwoord verstuurd: {sent['message_id']}")


@rights.command("notices")
@READ_CONFIG
@click.option("--open", "only_open", is_flag=True, help="Only notices not yet accepted by all.")
def notices(config_file: Path, only_open: bool) -> None:
    """The notices this node sent and each recipient's status (``accepted``: it complied)."""
    from gateway.audit.inspect import open_readonly
    from gateway.cli.audit import node_context
    from gateway.console.data.notices import sent_notices

    config, directory, _org = node_context(config_file)
    names = {m.oin: m.name for m in directory.payload.members}
    with open_readonly(config.store_path) as db:
        found = [n for n in sent_notices(db) if n.open or not only_open]
    for n in found:
        state = "open" if n.open else "complied"
        click.echo(f"{n.created_at:%Y-%m-%d %H:%M}  {n.message_id}  {state}")
        for r in n.recipients:
            click.echo(f"    {r.org}  {names.get(r.org, '?')}: {r.status}")
    click.echo(f"{len(found)} notice(s)")


COMMANDS = [rights]
