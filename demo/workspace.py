"""What the demo sets up before the case starts: the working folder, the federation, the
broker, and the configuration of every node and adapter.

Guarantees:

- **The working folder** is wiped at the start of a run only when it is a demo working folder
  (it holds :data:`WORK_MARKER`) or empty; any other existing folder is refused, so
  ``--work ~`` cannot delete a home directory. It stays after the run: the audit logs in it are
  what ``zvg audit query`` reads afterwards.
- **Keys** are fresh for every run (a new federation: authority keys, member keys, a directory
  signed by two of three administrators), or copied from ``keys_example/`` with
  ``--example-keys`` and made ``0600`` (git does not keep file modes).
- **The broker**: each run has a vhost and (with fresh keys) users of its own, named with a
  random run id (``zvg-veenstad-<run>``, ``zvg-<run>-politie``), provisioned with the same code
  as ``zvg broker provision`` and tagged :data:`DEMO_TAG` and with the run's tag; the vhost's
  description records the working folder. A run kept with ``--keep`` lives as long as that
  folder names it: another demo elsewhere never changes its passwords, and
  :meth:`DemoBroker.sweep` removes only tagged objects of runs whose folder is gone or was taken
  by a later run. An existing vhost or user of one of our names *without* the tag belongs to
  somebody else and stops the demo with an error instead (docs/decisions/0075, 0092).
- Every secret the demo writes (broker passwords, API tokens, pseudonym keys, webhook secrets,
  the TLS key) is a ``0600`` file in the working folder; nothing personal or secret is printed.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import tomllib
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from demo.story import EXAMPLES_DIR
from gateway.broker.provision import (
    Rabbitmqctl,
    apply_definitions,
    build_definitions,
    members_from_directory,
    password_file,
)
from gateway.core.broker_topology import MEMBER_TAG, BrokerMember, vhost_name
from gateway.core.directory import TrustedDirectory
from gateway.errors import LocalError
from gateway.testing.federation import (
    AUTHORITIES,
    THRESHOLD,
    FederationFiles,
    create_demo_federation,
)
from gateway.testing.nodes import NodeFiles, write_node_config
from gateway.testing.veenstad import ORGS, DemoOrg, org_by_key
from schemas.catalogue import Catalogue

__all__ = [
    "BROKER_HOST",
    "BROKER_PORT",
    "DEMO_TAG",
    "RUN_TAG",
    "WORK_MARKER",
    "AdapterFiles",
    "DemoBroker",
    "DemoFederation",
    "Workspace",
    "build_workspace",
    "check_work_dir",
    "demo_broker",
    "demo_federations",
    "make_federation",
    "new_run_id",
    "prepare_work_dir",
    "work_run",
]

ROOT = Path(__file__).resolve().parents[1]
KEYS_EXAMPLE = ROOT / "keys_example"

#: The file that marks a folder as a demo working folder (and so allows wiping it).
WORK_MARKER = ".zvg-demo-work"

#: Tag on the demo's broker vhost and users; the demo removes nothing without it.
DEMO_TAG = "zvg-demo"

#: Prefix of the tag naming the run that made a vhost or user: ``zvg-demo-run-<run id>``.
RUN_TAG = DEMO_TAG + "-run-"

#: A run's vhost description: this, then the working folder that keeps the run's objects.
KEPT_WITH = "zv-gateway demo federation, kept while this working folder names its run: "

#: Random bytes of a run id (8 hex digits: names stay short, collisions stay negligible).
RUN_ID_BYTES = 4

#: Where the demo expects RabbitMQ (``scripts/lib.sh`` makes sure it answers there).
BROKER_HOST = "127.0.0.1"
BROKER_PORT = 5672

#: How long a fresh demo directory is valid: long enough that a kept working folder can be
#: explored for weeks, short enough to be obviously a demo.
DIRECTORY_LIFETIME = timedelta(days=90)

#: Audit checkpoint interval of the demo's nodes (seconds): short, so partners cosign each
#: other's logs while the case runs. Production default: 60 s.
CHECKPOINT_INTERVAL_S = 1.0

#: How often the folder adapters look at their folders, and how often they write status files
#: (seconds). The documented examples use 2 s and 15 s; the demo plays fast.
FOLDER_POLL_S = 0.2
STATUS_POLL_S = 0.5

#: Bytes of the generated secrets (256 bits, as ``adapters._runtime.MIN_SECRET_BYTES``).
SECRET_BYTES = 32


def check_work_dir(work: Path) -> Path:
    """The absolute path of ``work`` if the demo may use it: missing, empty, or a demo working
    folder. Raises :class:`LocalError` for anything else (it changes nothing)."""
    work = work.expanduser().absolute()
    if work.is_symlink() or (work.exists() and not work.is_dir()):
        raise LocalError(f"{work} is not a folder; choose another --work")
    if work.exists() and not (work / WORK_MARKER).is_file() and any(work.iterdir()):
        raise LocalError(
            f"{work} exists and is not a demo working folder (no {WORK_MARKER}); "
            "refusing to wipe it: choose another --work or remove it"
        )
    return work


def prepare_work_dir(work: Path, run: str) -> Path:
    """Make ``work`` an empty demo working folder of run ``run`` (wiping the previous run's)
    and return its absolute path. Raises :class:`LocalError` for a folder the demo did not
    make."""
    work = check_work_dir(work)
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    (work / WORK_MARKER).write_text(
        "zv-gateway demo working folder: the demo wipes it at the start of its next run.\n"
        "Its broker vhost and users stay while this file names their run (--keep).\n"
        f"run = {run}\n",
        encoding="utf-8",
    )
    return work


def work_run(work: Path) -> str | None:
    """The run whose working folder ``work`` is (its marker's ``run = ...``), if any."""
    try:
        text = (work / WORK_MARKER).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    runs = [
        ln.removeprefix("run = ").strip() for ln in text.splitlines() if ln.startswith("run = ")
    ]
    return runs[0] if runs else None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind((BROKER_HOST, 0))
        return int(s.getsockname()[1])


def write_secret(path: Path, value: str) -> Path:
    """Write a secret file with mode 0600 (created that way, never readable by others)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(value + "\n")
    return path


# ------------------------------------------------------------------ federation


def copy_example_federation(root: Path) -> FederationFiles:
    """Copy ``keys_example/`` to ``root`` and make the private keys 0600."""
    if not (KEYS_EXAMPLE / "directory.json").is_file():
        raise LocalError(f"{KEYS_EXAMPLE} is missing: run the demo from a zv-gateway checkout")
    shutil.copytree(KEYS_EXAMPLE, root)
    for path in root.rglob("*.key.pem"):
        path.chmod(0o600)
    for folder in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        folder.chmod(0o700)
    return FederationFiles(root, root / "directory.json", root / "authority")


def make_federation(
    root: Path, *, example_keys: bool, now: datetime, catalogue: Catalogue, run: str
) -> FederationFiles:
    """The run's federation: fresh keys, and broker users named for the run; or the example
    federation, whose directory fixes the user names (``zvg-<org key>``)."""
    if example_keys:
        return copy_example_federation(root)
    return create_demo_federation(
        root,
        now=now - timedelta(minutes=1),
        lifetime=DIRECTORY_LIFETIME,
        catalogue=catalogue,
        rand=os.urandom,
        user_prefix=demo_user_prefix(run),
    )


# ------------------------------------------------------------------ broker


def new_run_id() -> str:
    """A fresh id for one run: it names the run's broker vhost and (fresh keys) users."""
    return secrets.token_hex(RUN_ID_BYTES)


def demo_vhost(federation: str, run: str) -> str:
    """The vhost of one run: ``zvg-<federation>-<run>``."""
    return f"{vhost_name(federation)}-{run}"


def demo_user_prefix(run: str) -> str:
    """The prefix of one run's broker users (fresh keys): ``zvg-<run>-`` + the org key."""
    return f"zvg-{run}-"


@dataclass(frozen=True)
class DemoFederation:
    """One demo run's objects as the broker lists them (tagged :data:`DEMO_TAG`)."""

    run: str | None  # None: made by a demo from before per-run names
    vhosts: tuple[str, ...]
    work: Path | None  # the working folder the run recorded on its vhost
    users: tuple[str, ...]

    def kept(self) -> bool:
        """It still belongs to a working folder: that folder's marker names this run. A
        federation whose folder is gone, or was taken by a later run, is stale."""
        return (
            self.run is not None
            and bool(self.vhosts)
            and self.work is not None
            and work_run(self.work) == self.run
        )


#: What the broker lists: (vhost rows with name, description and tags; user rows).
Listing = tuple[list[dict[str, Any]], list[dict[str, Any]]]


def broker_listing(ctl: Rabbitmqctl) -> Listing:
    """The broker's vhosts and users, in two ``rabbitmqctl`` calls (each starts an Erlang VM)."""
    return ctl.json("list_vhosts", "name", "description", "tags"), ctl.json("list_users")


def demo_federations(ctl: Rabbitmqctl, listing: Listing | None = None) -> list[DemoFederation]:
    """Every demo run's vhosts and users on the broker (or in ``listing``), grouped by run."""
    vhost_rows, user_rows = listing if listing is not None else broker_listing(ctl)
    vhosts: dict[str | None, list[str]] = {}
    works: dict[str | None, Path] = {}
    for row in vhost_rows:
        tags = _tags(row.get("tags"))
        if DEMO_TAG in tags:
            run = _run_of(tags)
            vhosts.setdefault(run, []).append(str(row.get("name")))
            description = str(row.get("description") or "")
            if description.startswith(KEPT_WITH):
                works[run] = Path(description.removeprefix(KEPT_WITH))
    users: dict[str | None, list[str]] = {}
    for row in user_rows:
        tags = _tags(row.get("tags"))
        if DEMO_TAG in tags:
            users.setdefault(_run_of(tags), []).append(str(row.get("user")))
    return [
        DemoFederation(run, tuple(vhosts.get(run, ())), works.get(run), tuple(users.get(run, ())))
        for run in sorted(vhosts.keys() | users.keys(), key=lambda r: r or "")
    ]


def _run_of(tags: Sequence[str]) -> str | None:
    runs = [t.removeprefix(RUN_TAG) for t in tags if t.startswith(RUN_TAG)]
    return runs[0] if runs else None


@dataclass
class DemoBroker:
    """One run's vhost and users on the local RabbitMQ (docs/decisions/0092)."""

    ctl: Rabbitmqctl
    federation: str
    users: tuple[str, ...]
    run: str
    work: Path
    provisioned: bool = False

    @property
    def vhost(self) -> str:
        return demo_vhost(self.federation, self.run)

    def check_names(self) -> list[DemoFederation]:
        """The demo federations on the broker. Raises :class:`LocalError` when our vhost or one
        of our users exists without the demo's tag (somebody else's)."""
        listing = broker_listing(self.ctl)
        federations = demo_federations(self.ctl, listing)
        ours = {name for f in federations for name in (*f.vhosts, *f.users)}
        vhosts = {str(row.get("name")) for row in listing[0]}
        if self.vhost in vhosts and self.vhost not in ours:
            raise LocalError(
                f"broker vhost {self.vhost} exists but was not made by the demo (no {DEMO_TAG} "
                f"tag); the demo does not touch it. If it is left from an interrupted demo, "
                f"remove it with: rabbitmqctl delete_vhost {self.vhost}"
            )
        users = {str(row.get("user")) for row in listing[1]}
        for user in self.users:
            if user in users and user not in ours:
                raise LocalError(
                    f"broker user {user} exists but was not made by the demo (no {DEMO_TAG} "
                    f"tag); the demo does not touch it. If it is left from an interrupted demo, "
                    f"remove it with: rabbitmqctl delete_user {user}"
                )
        return federations

    def sweep(self) -> list[str]:
        """Remove the broker objects of earlier runs that no working folder keeps any more
        (:meth:`DemoFederation.kept`); kept ones stay. Raises :class:`LocalError` when a kept
        run owns one of our user names (both use ``--example-keys``): importing ours would
        change its passwords. Returns what was removed."""
        federations = self.check_names()
        stale = [f for f in federations if not f.kept()]
        for kept in (f for f in federations if f.kept()):
            taken = sorted(set(kept.users) & set(self.users))
            if taken:
                raise LocalError(
                    f"broker user {taken[0]} belongs to the demo federation kept with "
                    f"{kept.work} (--keep); --example-keys gives every run the same user names, "
                    "so this run would change its passwords. Remove that folder (the next demo "
                    "then removes its broker objects) or run without --example-keys"
                )
        removed = [name for f in stale for name in (*f.vhosts, *f.users)]
        self._delete(stale)
        return removed

    def provision(self, members: Sequence[BrokerMember], secrets_dir: Path) -> dict[str, Any]:
        """Provision the vhost, users, permissions, exchanges, queues and policies (the same
        definitions as ``zvg broker provision``, in this run's vhost), tagged as this run's."""
        built = build_definitions(self.federation, members, secrets_dir=secrets_dir)
        definitions = mark_as_demo(in_vhost(built, self.vhost), run=self.run, work=self.work)
        self.provisioned = True  # from here on, clean up even if the import fails half-way
        apply_definitions(definitions, ctl=self.ctl)
        return definitions

    def remove(self) -> None:
        """Remove this run's vhost and users (at the end of a run, unless ``--keep``): the
        names are known, so nothing is listed first (what is gone already is not an error)."""
        self._delete([DemoFederation(self.run, (self.vhost,), self.work, self.users)])
        self.provisioned = False

    def _delete(self, federations: Sequence[DemoFederation]) -> None:
        """Delete the vhosts and users, all at once (each rabbitmqctl call starts an Erlang VM,
        about a second)."""
        commands = [("delete_vhost", v) for f in federations for v in f.vhosts]
        commands += [("delete_user", u) for f in federations for u in f.users]
        if not commands:
            return
        with ThreadPoolExecutor(max_workers=len(commands)) as pool:
            results = list(pool.map(lambda cmd: self._try(*cmd), commands))
        failures = [r for r in results if r]
        if failures:
            raise LocalError("; ".join(" ".join(f.split()) for f in failures)[:300])

    def _try(self, *command: str) -> str:
        """Run one command; '' when it worked or the object was gone already, else why not."""
        try:
            self.ctl.run(*command)
        except LocalError as exc:
            if "not found" in str(exc).lower() or "does not exist" in str(exc).lower():
                return ""
            return str(exc)
        return ""


def _tags(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    if isinstance(value, str):  # some versions print "[a, b]" or "a,b"
        return [t.strip(" []") for t in value.split(",") if t.strip(" []")]
    return []


def in_vhost(definitions: Mapping[str, Any], vhost: str) -> dict[str, Any]:
    """The definitions with every object moved to ``vhost`` (one vhost in, one out)."""
    moved: dict[str, Any] = json.loads(json.dumps(definitions))
    (old,) = [v["name"] for v in moved["vhosts"]]
    moved["vhosts"] = [{**v, "name": vhost} for v in moved["vhosts"]]
    for section, items in moved.items():
        if section != "vhosts" and isinstance(items, list):
            for item in items:
                if isinstance(item, dict) and item.get("vhost") == old:
                    item["vhost"] = vhost
    return moved


def mark_as_demo(definitions: Mapping[str, Any], *, run: str, work: Path) -> dict[str, Any]:
    """The definitions with :data:`DEMO_TAG` and the run's tag on the vhost (metadata, with the
    working folder that keeps it) and on every user."""
    marked: dict[str, Any] = json.loads(json.dumps(definitions))
    tags = [DEMO_TAG, RUN_TAG + run]
    marked["vhosts"] = [
        {"name": v["name"], "metadata": {"description": f"{KEPT_WITH}{work}", "tags": tags}}
        for v in marked["vhosts"]
    ]
    for user in marked["users"]:
        user["tags"] = [MEMBER_TAG, *tags]
    return marked


# ------------------------------------------------------------------ adapters


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))  # a TOML basic string (JSON escapes are valid TOML)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML for {type(value).__name__}")


def write_toml(path: Path, doc: Mapping[str, Mapping[str, Any]], header: str) -> Path:
    """Write a TOML file of ``[section]`` tables holding scalars and lists."""
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    for section, values in doc.items():
        lines += ["", f"[{section}]"]
        lines += [f"{key} = {_toml_value(value)}" for key, value in values.items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def example_config(org_dir: str, name: str) -> dict[str, dict[str, Any]]:
    """A documented adapter configuration (``docs/adapters/examples/<org>/<name>``)."""
    path = EXAMPLES_DIR / org_dir / name
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError:
        raise LocalError(f"{path} is missing: run the demo from a zv-gateway checkout") from None


@dataclass(frozen=True)
class AdapterFiles:
    """One adapter process of the demo: its config, where it works, and its ports."""

    name: str  # politie-folder, om-folder, veiligthuis-webhook
    org: DemoOrg
    kind: str  # folder | webhook
    config: Path
    folder: Path  # the partner system's side: files (folder) or state (webhook)
    health_port: int
    listen_port: int | None = None  # the webhook adapter's own endpoint
    inbound_token: str | None = None
    signing_secret: bytes | None = None
    manual_ack: bool = False  # the folder adapter waits for the system's .ack.json files


def folder_adapter(
    root: Path,
    org: DemoOrg,
    example: str,
    node: NodeFiles,
    token_file: Path,
    pseudonym_key: Path | None = None,
) -> AdapterFiles:
    """The documented folder adapter configuration of ``org``, with the demo's paths and
    faster polling; the mapping file is the documented one. ``pseudonym_key``: the
    organisation's subject pseudonym key, which its node uses too (``[rights]``)."""
    doc = example_config(org.key, example)
    folder = root / "files"
    doc["node"] |= {"url": node.url, "token_file": token_file}
    settings = doc["folder"]
    settings["root_dir"] = folder
    if "csv_mapping" in settings:
        settings["csv_mapping"] = EXAMPLES_DIR / org.key / settings["csv_mapping"]
    if "pseudonym_key_file" in settings:
        settings["pseudonym_key_file"] = pseudonym_key or write_secret(
            root / "pseudonym-key", secrets.token_hex(SECRET_BYTES)
        )
    # Files are renamed into inbox/ complete, so no settle time is needed.
    settings |= {
        "settle_seconds": 0,
        "poll_seconds": FOLDER_POLL_S,
        "status_poll_seconds": STATUS_POLL_S,
    }
    port = free_port()
    doc["health"] = {"host": BROKER_HOST, "port": port}
    doc.setdefault("log", {})["level"] = "info"
    config = write_toml(
        root / "folder.toml",
        doc,
        f"{org.name} — folder adapter, generated by the demo from\n"
        f"docs/adapters/examples/{org.key}/{example} (demo paths, faster polling).",
    )
    return AdapterFiles(
        f"{org.key}-folder",
        org,
        "folder",
        config,
        folder,
        port,
        manual_ack=settings.get("ack") == "manual",
    )


def webhook_adapter(
    root: Path, org: DemoOrg, node: NodeFiles, token_file: Path, push_url: str, ca_file: Path
) -> AdapterFiles:
    """The documented webhook adapter configuration of Veilig Thuis, pushing to the demo's
    stand-in of the registration system. Without the ``melding`` mapping: in the demo VT's
    system answers a question, which it posts as the node API's JSON."""
    doc = example_config(org.key, "webhook.toml")
    secret = secrets.token_hex(SECRET_BYTES)
    inbound = secrets.token_urlsafe(SECRET_BYTES)
    listen = free_port()
    doc["node"] |= {"url": node.url, "token_file": token_file}
    settings = doc["webhook"]
    for key in ("mapping", "pseudonym_key_file"):
        settings.pop(key, None)
    settings |= {
        "push_url": push_url,
        "ca_file": ca_file,
        "signing_secret_file": write_secret(root / "webhook-secret", secret),
        "inbound_token_file": write_secret(root / "inbound-token", inbound),
        "listen_host": BROKER_HOST,
        "listen_port": listen,
        "state_dir": root / "state",
        "status_poll_seconds": 1.0,
        "pause_seconds": 1.0,
        "push_timeout_seconds": 5.0,
    }
    port = free_port()
    doc["health"] = {"host": BROKER_HOST, "port": port}
    config = write_toml(
        root / "webhook.toml",
        doc,
        f"{org.name} — webhook adapter, generated by the demo from\n"
        "docs/adapters/examples/veiligthuis/webhook.toml (demo paths; no melding mapping).",
    )
    return AdapterFiles(
        f"{org.key}-webhook",
        org,
        "webhook",
        config,
        root / "state",
        port,
        listen_port=listen,
        inbound_token=inbound,
        signing_secret=secret.encode(),
    )


def self_signed_certificate(folder: Path, host: str = BROKER_HOST) -> tuple[Path, Path]:
    """A throwaway certificate for ``host`` (its own CA) and its key (0600), made on the fly
    for the demo's stand-in of Veilig Thuis' registration system."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "registratie.veiligthuis (demo)")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ip_address(host))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    cert_path = folder / "registratie.crt"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path = folder / "registratie.key"
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return cert_path, key_path


# ------------------------------------------------------------------ everything


@dataclass(frozen=True)
class Workspace:
    """Everything set up for one run."""

    work: Path
    federation: FederationFiles
    directory: TrustedDirectory
    broker: DemoBroker
    nodes: dict[str, NodeFiles]
    adapters: dict[str, AdapterFiles]
    logs: Path
    receiver_socket: socket.socket  # the VT stand-in listens here (bound before the adapter runs)
    receiver_tls: tuple[Path, Path]
    example_keys: bool
    signers: tuple[str, ...]

    def org(self, key: str) -> DemoOrg:
        return org_by_key(key)


def demo_broker(
    fed: FederationFiles,
    *,
    ctl: Rabbitmqctl,
    now: datetime,
    catalogue: Catalogue,
    run: str,
    work: Path,
) -> tuple[DemoBroker, list[BrokerMember]]:
    """The broker objects of run ``run`` of the federation in ``fed`` (read from its verified
    directory), kept with the working folder ``work``."""
    federation, members = members_from_directory(fed.directory, now=now, catalogue=catalogue)
    users = tuple(m.broker_user for m in members)
    return DemoBroker(ctl, federation, users, run, work), members


def build_workspace(
    work: Path,
    *,
    fed: FederationFiles,
    broker: DemoBroker,
    example_keys: bool,
    now: datetime,
    catalogue: Catalogue,
) -> Workspace:
    """Write the node and adapter configurations for a provisioned federation."""
    directory = TrustedDirectory.first(fed.directory.read_bytes(), now=now, catalogue=catalogue)
    secrets_dir = work / "broker-secrets"
    nodes: dict[str, NodeFiles] = {}
    # Each organisation's subject pseudonym key, shared by its node (the inzageverzoek,
    # docs/subject-rights.md) and its adapters; the police node defers inzageverzoeken (Wpg).
    pseudonym_keys = {
        org.key: write_secret(
            work / "nodes" / org.key / "pseudonym-key", secrets.token_hex(SECRET_BYTES)
        )
        for org in ORGS
    }
    for org in ORGS:
        folder = work / "nodes" / org.key
        nodes[org.key] = write_node_config(
            folder / "node.toml",
            org=org,
            keys_dir=fed.keys_dir(org.key),
            directory=fed.directory,
            data_dir=folder / "data",
            broker_url=f"amqp://{BROKER_HOST}:{BROKER_PORT}/{broker.vhost}",
            password_file=password_file(secrets_dir, org.oin),
            listen=f"{BROKER_HOST}:{free_port()}",
            token=secrets.token_urlsafe(SECRET_BYTES),
            catalogue=catalogue,
            mode="demo",
            checkpoint_interval_s=CHECKPOINT_INTERVAL_S,
            pseudonym_key_file=pseudonym_keys[org.key],
            defer_ground="WPG" if org.key == "politie" else None,
        )

    adapters_dir = work / "adapters"
    tokens = {
        key: write_secret(adapters_dir / key / "node-token", nodes[key].token)
        for key in ("politie", "om", "veiligthuis")
    }
    receiver = socket.socket()
    receiver.bind((BROKER_HOST, 0))
    receiver.listen(16)
    tls = self_signed_certificate(adapters_dir / "veiligthuis" / "registratie-tls")
    push_url = f"https://{BROKER_HOST}:{receiver.getsockname()[1]}/zvg/inbound"
    adapters = {
        "politie": folder_adapter(
            adapters_dir / "politie",
            org_by_key("politie"),
            "folder.toml",
            nodes["politie"],
            tokens["politie"],
            pseudonym_keys["politie"],
        ),
        "om": folder_adapter(
            adapters_dir / "om", org_by_key("om"), "folder.toml", nodes["om"], tokens["om"]
        ),
        "veiligthuis": webhook_adapter(
            adapters_dir / "veiligthuis",
            org_by_key("veiligthuis"),
            nodes["veiligthuis"],
            tokens["veiligthuis"],
            push_url,
            tls[0],
        ),
    }
    logs = work / "logs"
    logs.mkdir(exist_ok=True)
    return Workspace(
        work,
        fed,
        directory,
        broker,
        nodes,
        adapters,
        logs,
        receiver,
        tls,
        example_keys,
        tuple(AUTHORITIES[:THRESHOLD]),
    )
