"""Prepare the 5-partner compose federation (``deploy/compose/``) in one folder.

``deploy/compose/prepare.sh`` runs this (``python -m gateway.deploy.compose STATE``), then
``zvg broker provision --out`` and ``zvg node check-config`` for every node. It writes fresh keys
for everyone — the federation's administrators, the five organisations, the broker CA — so the
nodes run in **production mode**: nothing comes from ``keys_example/``. Layout of ``STATE``::

    federation/                  the administrators' side; never mounted into a container
      authority/*.key.pem        the three administrators' keys (2 of 3 sign)
      directory.v1.json          version 1 (authority only)
      directory.json             version 2: the five members and the demo policy
      orgs/<org>/                each organisation's public keys (JWK Set)
    ca/ca.pem, ca/ca.key         the broker CA (its key only signs certificates; keep it offline)
    broker/tls/                  ca.pem, server.pem, server.key   -> the broker's TLS volume
    broker/definitions/          definitions.json (zvg broker provision --out) -> its volume
    broker/secrets/              broker passwords (unused: nodes log in with certificates)
    nodes/<org>/etc/zvg/         node.toml, directory.json, ca.pem, client.pem -> /etc/zvg (ro)
    nodes/<org>/var/lib/zvg/keys/  the organisation's private keys and TLS client key
                                 -> copied into its own volume at /var/lib/zvg/keys, mode 0600
    tokens/<org>.tokens          the adapter's and the auditor's bearer tokens (0600)

With ``--ha`` (``compose.ha.yaml``: PostgreSQL and a three-member RabbitMQ cluster) also::

    broker/cluster/erlang.cookie the cluster members' shared Erlang cookie (0600)
    postgres/secrets/            postgres-password (the server's superuser) and
                                 10-zvg-databases.sql (a role and a database per organisation,
                                 with their passwords; 0600) -> the database server's volumes
    nodes/<org>/var/lib/zvg/keys/store-url   the node's database URL with its password (0600)

and every ``node.toml`` lists the three members in ``broker.urls`` and names ``store-url`` in
``store.url_file``; the broker's certificate names every member.

``nodes/<org>/`` mirrors the container's file system (``etc/zvg`` is ``/etc/zvg``,
``var/lib/zvg`` is the node's volume ``/var/lib/zvg``) and ``node.toml`` names every file
relative to itself, so the very same file passes ``zvg node check-config`` on the host and runs
in the container. Guarantees: refuses a ``STATE`` that exists and is not empty (keys are never
overwritten); every private key file is created ``0600``; no private key is written under
``etc/zvg`` (what is mounted read-only may be less guarded than the node's volume).
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from gateway.core.broker_topology import vhost_name
from gateway.deploy.certs import issue_client, issue_server, make_ca
from gateway.errors import GatewayError, LocalError
from gateway.federation import now_utc, read_directory
from gateway.testing.federation import create_demo_federation
from gateway.testing.nodes import write_node_config
from gateway.testing.veenstad import FEDERATION, ORGS, DemoOrg
from schemas.catalogue import default_catalogue

__all__ = [
    "API_PORT",
    "BROKER_HOST",
    "CONFIG_DIR",
    "DATA_DIR",
    "PreparedFederation",
    "PreparedNode",
    "main",
    "prepare_compose",
]

BROKER_HOST = "rabbitmq"
"""The broker's host name on the compose network (its service name; named in its certificate)."""
CLUSTER_HOSTS = ("rabbitmq-1", "rabbitmq-2", "rabbitmq-3")
"""``--ha``: the cluster members' host names (their service names; named in the certificate)."""
DATABASE_HOST = "postgres"
"""``--ha``: the PostgreSQL server's host name on the compose network."""
BROKER_TLS_PORT = 5671
API_PORT = 8400
"""The local API's port inside every node container (compose publishes it on 127.0.0.1 only)."""
CONFIG_DIR = Path("etc/zvg")
"""Per node, relative to ``nodes/<org>/``: mounted read-only at ``/etc/zvg``."""
DATA_DIR = Path("var/lib/zvg")
"""Per node, relative to ``nodes/<org>/``: the initial content of the node's volume."""
CERT_VALIDITY = timedelta(days=365)
"""Lifetime of the generated certificates and of the directory (renew both within a year)."""
_TO_VOLUME = Path("../../var/lib/zvg")
"""``/var/lib/zvg`` seen from ``/etc/zvg`` (where ``node.toml`` is)."""


@dataclass(frozen=True)
class PreparedNode:
    org: DemoOrg
    root: Path
    config: Path
    keys_dir: Path
    token: str

    @property
    def config_dir(self) -> Path:
        return self.root / CONFIG_DIR


@dataclass(frozen=True)
class PreparedFederation:
    root: Path
    directory: Path
    nodes: dict[str, PreparedNode]

    @property
    def broker_tls_dir(self) -> Path:
        return self.root / "broker" / "tls"

    @property
    def definitions_file(self) -> Path:
        return self.root / "broker" / "definitions" / "definitions.json"

    @property
    def secrets_dir(self) -> Path:
        return self.root / "broker" / "secrets"


def _write_secret(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


def prepare_compose(
    out: Path,
    *,
    now: datetime,
    rand: Callable[[int], bytes],
    listen: str = f"0.0.0.0:{API_PORT}",  # in the container; compose publishes it on loopback
    broker_url: str = f"amqps://{BROKER_HOST}:{BROKER_TLS_PORT}/{vhost_name(FEDERATION)}",
    broker_hosts: tuple[str, ...] = (BROKER_HOST, "localhost", "127.0.0.1"),
    ha: bool = False,
) -> PreparedFederation:
    """Write the whole compose federation under ``out`` (see the module docstring).

    Raises :class:`LocalError` if ``out`` exists and is not empty. Does not write the broker
    definitions: ``zvg broker provision --out`` does (``prepare.sh``). ``ha``: the variant on
    PostgreSQL and a broker cluster (the module docstring)."""
    vhost = vhost_name(FEDERATION)
    urls = tuple(f"amqps://{h}:{BROKER_TLS_PORT}/{vhost}" for h in CLUSTER_HOSTS) if ha else ()
    if ha:
        broker_hosts = (*CLUSTER_HOSTS, "localhost", "127.0.0.1")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise LocalError(f"{out} exists and is not empty; refusing to overwrite keys")
    out.mkdir(parents=True, exist_ok=True)
    catalogue = default_catalogue()
    files = create_demo_federation(
        out / "federation", now=now, lifetime=CERT_VALIDITY, catalogue=catalogue, rand=rand
    )
    directory = read_directory(files.directory, catalogue)
    users = {m.oin: m.broker_user for m in directory.payload.members}

    ca = make_ca("zv-gateway broker CA (ZVH Veenstad)", now=now, valid_for=CERT_VALIDITY)
    ca.write(out / "ca" / "ca.pem", out / "ca" / "ca.key")
    tls_dir = out / "broker" / "tls"
    shutil.copyfile(out / "ca" / "ca.pem", _mkparent(tls_dir / "ca.pem"))
    issue_server(ca, broker_hosts, now=now, valid_for=CERT_VALIDITY).write(
        tls_dir / "server.pem", tls_dir / "server.key"
    )
    (out / "broker" / "definitions").mkdir(parents=True)
    (out / "tokens").mkdir()

    nodes: dict[str, PreparedNode] = {}
    for org in ORGS:
        root = out / "nodes" / org.key
        etc, keys = root / CONFIG_DIR, root / DATA_DIR / "keys"
        etc.mkdir(parents=True)
        keys.mkdir(parents=True, mode=0o700)
        # The private keys move from the administrators' folder to the node's; only the public
        # JWK Set stays with the federation.
        for kind in ("signing", "encryption", "audit"):
            name = f"{org.oin}.{kind}.key.pem"
            (files.keys_dir(org.key) / name).replace(keys / name)
        shutil.copyfile(files.directory, etc / "directory.json")
        shutil.copyfile(out / "ca" / "ca.pem", etc / "ca.pem")
        issue_client(ca, users[org.oin], now=now, valid_for=CERT_VALIDITY).write(
            etc / "client.pem", keys / "client.key"
        )
        token = secrets.token_urlsafe(32)
        _write_secret(
            out / "tokens" / f"{org.key}.tokens",
            f"adapter {token}\nauditor {token}-auditor\n",
        )
        node = write_node_config(
            etc / "node.toml",
            org=org,
            keys_dir=_TO_VOLUME / "keys",
            directory=Path("directory.json"),
            data_dir=_TO_VOLUME / "data",
            broker_url=broker_url,
            password_file=None,
            listen=listen,
            token=token,
            catalogue=catalogue,
            mode="production",
            checkpoint_interval_s=60.0,
            broker_tls=(Path("ca.pem"), Path("client.pem"), _TO_VOLUME / "keys" / "client.key"),
            broker_urls=urls,
        )
        nodes[org.key] = PreparedNode(org, root, node.config, keys, token)
    if ha:
        _prepare_ha(out, nodes)
    return PreparedFederation(out, files.directory, nodes)


def _prepare_ha(out: Path, nodes: dict[str, PreparedNode]) -> None:
    """The cluster's Erlang cookie, the database server's secrets, each node's database URL."""
    (out / "broker" / "cluster").mkdir(mode=0o700)
    _write_secret(out / "broker" / "cluster" / "erlang.cookie", secrets.token_hex(32))
    secrets_dir = out / "postgres" / "secrets"
    secrets_dir.mkdir(parents=True, mode=0o700)
    _write_secret(secrets_dir / "postgres-password", secrets.token_urlsafe(32))
    sql = ["-- A role and a database per organisation (prepare.sh --ha); run once by initdb."]
    for key, node in nodes.items():
        role, password = f"zvg_{key}", secrets.token_urlsafe(32)
        sql += [
            f"CREATE ROLE {role} LOGIN PASSWORD '{password}';",
            f"CREATE DATABASE {role} OWNER {role};",
        ]
        _write_secret(
            node.keys_dir / "store-url",
            f"postgresql://{role}:{password}@{DATABASE_HOST}:5432/{role}\n",
        )
        with node.config.open("a", encoding="utf-8") as toml:
            toml.write(f'\n[store]\nurl_file = "{_TO_VOLUME / "keys" / "store-url"}"\n')
    _write_secret(secrets_dir / "10-zvg-databases.sql", "\n".join(sql) + "\n")


def _mkparent(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m gateway.deploy.compose STATE``: prepare, print what was made; 0 or 2."""
    parser = argparse.ArgumentParser(
        prog="python -m gateway.deploy.compose",
        description="Prepare the compose federation (keys, directory, certificates, node.toml).",
    )
    parser.add_argument("state", type=Path, help="folder to create (must be absent or empty)")
    parser.add_argument(
        "--ha", action="store_true", help="for compose.ha.yaml: PostgreSQL and a broker cluster"
    )
    args = parser.parse_args(argv)
    try:
        prepared = prepare_compose(args.state, now=now_utc(), rand=os.urandom, ha=args.ha)
    except GatewayError as exc:
        print(f"prepare: error: {exc}", file=sys.stderr)
        return 2
    print(f"federation directory  {prepared.directory}")
    for key, node in prepared.nodes.items():
        print(f"node {key:<12} {node.config}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
