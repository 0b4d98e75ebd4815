"""The compose federation on PostgreSQL and a three-member RabbitMQ cluster
(deploy/compose/compose.ha.yaml), without Docker.

``compose.ha.yaml`` is valid against the Compose Specification schema (unknown keys refused),
``prepare.sh --ha`` runs for real, and every file the file mounts is looked up in what it made.
Checked: three broker members with the tested TLS and definitions config of the single broker
plus the cluster config, whose member names are the members' host names; every node lists the
three members in ``broker.urls``, and the broker's certificate names them all; every node's
store URL (with its database password) is a ``0600`` file in the node's own volume, never in a
read-only config folder, and names the role and database the server's init script makes with
that same password; each node starts only after its schema was migrated, the migration only
after its keys and a healthy database; the nodes are locked down as in ``compose.yaml``.
Not run here (no Docker engine): the containers, the cluster's formation at boot, initdb.

Threats: the database password in a config folder or a compose file; a node of one organisation
able to reach another's database with its role; a node started on a schema that is not there;
a cluster member whose certificate a node refuses; a member left out of a node's list.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509

from gateway.node.config import load_config
from tests.deploy.conftest import DEPLOY, ROOT, tool_env
from tests.deploy.test_compose import (
    COMPOSE,
    NODE_KEYS,
    _compose_schema_validator,
    _is_named,
    _mounts,
)

COMPOSE_DIR = DEPLOY / "compose"
COMPOSE_HA = COMPOSE_DIR / "compose.ha.yaml"
STATE_VAR = "${ZVG_STATE:-./state-ha}"
CLUSTER_CONF = DEPLOY / "rabbitmq" / "cluster.conf"
MEMBERS = ("rabbitmq-1", "rabbitmq-2", "rabbitmq-3")


def _load(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    return doc


def _services() -> dict[str, dict[str, Any]]:
    return dict(_load(COMPOSE_HA)["services"])


def _host(source: str, state: Path) -> Path:
    if source.startswith(STATE_VAR):
        return state / source.removeprefix(STATE_VAR).lstrip("/")
    return (COMPOSE_DIR / source).resolve()


@pytest.fixture(scope="module")
def prepared_ha(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``prepare.sh --ha`` run once into a fresh folder (≈ 4 s)."""
    state = tmp_path_factory.mktemp("compose-ha") / "state-ha"
    result = subprocess.run(
        [str(COMPOSE_DIR / "prepare.sh"), "--ha", str(state)],
        env=tool_env(ZVG_PYTHON=sys.executable),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return state


def test_the_file_is_valid_against_the_compose_specification_schema() -> None:
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in _compose_schema_validator().iter_errors(_load(COMPOSE_HA))
    ]
    assert errors == []


def test_three_broker_members_a_database_and_the_five_partners() -> None:
    assert set(_services()) == {
        *MEMBERS,
        "broker-secrets",
        "postgres",
        "postgres-secrets",
        *NODE_KEYS,
        *(f"{k}-keys" for k in NODE_KEYS),
        *(f"{k}-migrate" for k in NODE_KEYS),
    }


def test_every_member_runs_the_single_brokers_config_plus_the_cluster_config() -> None:
    single = {t: s for s, t, _ in _mounts(_load(COMPOSE)["services"]["rabbitmq"])}
    single.pop("/var/lib/rabbitmq")
    data_volumes = set()
    for member in MEMBERS:
        service = _services()[member]
        assert service["hostname"] == member
        assert service["image"] == _load(COMPOSE)["services"]["rabbitmq"]["image"]
        mounts = {t: (s, ro) for s, t, ro in _mounts(service)}
        data_volumes.add(mounts.pop("/var/lib/rabbitmq")[0])
        cluster = mounts.pop("/etc/rabbitmq/conf.d/40-zvg-cluster.conf")
        assert cluster == ("../rabbitmq/cluster.conf", True)
        assert {t: s for t, (s, _) in mounts.items()} == single
        assert all(ro for _, ro in mounts.values())
    assert data_volumes == set(MEMBERS), "a data volume of its own per member"


def test_the_cluster_config_names_the_members_and_grows_every_quorum_queue_to_three() -> None:
    text = CLUSTER_CONF.read_text(encoding="utf-8")
    settings = dict(
        line.split(" = ", 1) for line in text.splitlines() if line and not line.startswith("#")
    )
    assert settings["cluster_formation.peer_discovery_backend"] == "classic_config"
    named = {v for k, v in settings.items() if k.startswith("cluster_formation.classic_config")}
    assert named == {f"rabbit@{m}" for m in MEMBERS}
    assert settings["quorum_queue.continuous_membership_reconciliation.enabled"] == "true"
    assert settings["quorum_queue.continuous_membership_reconciliation.target_group_size"] == "3"


def test_nodes_start_after_their_schema_which_waits_for_keys_and_a_healthy_database() -> None:
    services = _services()
    for key in NODE_KEYS:
        node, migrate = services[key], services[f"{key}-migrate"]
        assert node["depends_on"][f"{key}-migrate"] == {
            "condition": "service_completed_successfully"
        }
        assert node["depends_on"]["rabbitmq-1"] == {"condition": "service_healthy"}
        assert migrate["depends_on"] == {
            f"{key}-keys": {"condition": "service_completed_successfully"},
            "postgres": {"condition": "service_healthy"},
        }
        assert migrate["entrypoint"] == ["zvg", "node", "migrate", "--config", "/etc/zvg/node.toml"]
        assert _mounts(migrate) == _mounts(node), "the node's own config and volume"


def test_nodes_are_locked_down_as_in_the_single_broker_file() -> None:
    single = _load(COMPOSE)["services"]["politie"]
    for key in NODE_KEYS:
        node = _services()[key]
        for setting in ("read_only", "cap_drop", "security_opt", "healthcheck", "user"):
            assert node.get(setting) == single.get(setting), (key, setting)
        assert node["ports"] == _load(COMPOSE)["services"][key]["ports"]
    assert "ports" not in _services()["postgres"], "only the nodes reach the database"
    assert not any("ports" in _services()[m] for m in MEMBERS)


def test_every_mounted_file_exists_and_none_reaches_keys_example(prepared_ha: Path) -> None:
    example = ROOT / "keys_example"
    for name, service in _services().items():
        for source, _, _ in _mounts(service):
            if not _is_named(source):
                host = _host(source, prepared_ha)
                assert host.exists(), f"{name}: {source}"
                assert example not in (host.resolve(), *host.resolve().parents), source
    assert (prepared_ha / "broker" / "cluster" / "erlang.cookie").stat().st_mode & 0o077 == 0


def _store_url(prepared: Path, key: str) -> str:
    config = load_config(prepared / "nodes" / key / "etc" / "zvg" / "node.toml")
    assert config.store.url_file is not None
    assert config.store.url_file == prepared / "nodes" / key / "var" / "lib" / "zvg" / "keys" / (
        "store-url"
    )
    assert config.store.url is not None
    return config.store.url


def test_each_node_has_its_own_database_from_a_0600_file_in_its_volume(prepared_ha: Path) -> None:
    script = (prepared_ha / "postgres" / "secrets" / "10-zvg-databases.sql").read_text("utf-8")
    roles = dict(re.findall(r"CREATE ROLE (\w+) LOGIN PASSWORD '([^']+)';", script))
    assert set(roles) == {f"zvg_{k}" for k in NODE_KEYS}
    assert len(set(roles.values())) == len(roles), "a password of its own per organisation"
    for key in NODE_KEYS:
        role = f"zvg_{key}"
        assert f"CREATE DATABASE {role} OWNER {role};" in script
        assert _store_url(prepared_ha, key) == (
            f"postgresql://{role}:{roles[role]}@postgres:5432/{role}"
        )
        config_dir = prepared_ha / "nodes" / key / "etc" / "zvg"
        for path in config_dir.rglob("*"):
            assert b"postgresql://" not in path.read_bytes(), path
            assert roles[role].encode() not in path.read_bytes(), path


def test_every_node_lists_the_three_members_and_the_certificate_names_them(
    prepared_ha: Path,
) -> None:
    for key in NODE_KEYS:
        config = load_config(prepared_ha / "nodes" / key / "etc" / "zvg" / "node.toml")
        assert config.broker.urls == tuple(f"amqps://{m}:5671/zvg-veenstad" for m in MEMBERS)
        assert config.node.mode == "production"
    pem = (prepared_ha / "broker" / "tls" / "server.pem").read_bytes()
    names = x509.load_pem_x509_certificate(pem).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    assert set(MEMBERS) <= set(names.value.get_values_for_type(x509.DNSName))
