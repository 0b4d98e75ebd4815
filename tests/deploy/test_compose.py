"""The compose federation (deploy/compose/) without Docker.

``compose.yaml`` is valid against the Compose Specification schema (vendored in schemas/);
``prepare.sh`` runs for real (fixture ``prepared``); ``compose.yaml`` is parsed with PyYAML and
every file it mounts is looked up in what ``prepare.sh`` made; every ``node.toml`` passes
``zvg node check-config`` in production mode; and (slow, root) the broker half runs: a private
RabbitMQ node boots with the very conf.d files compose mounts and the prepared definitions and
certificates, and two nodes started from the prepared configs exchange a message over TLS with
certificate login.

Threats: example keys in a deployment; a private key in a folder mounted into a container
read-only (less guarded than the node's own volume); two organisations sharing a volume; a node
talking to the broker in clear or with a password; a node starting before its keys or the broker
are there; a config that names a file the container does not have; a broker that accepts
plain AMQP or the guest user.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import socket
import stat
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from click.testing import CliRunner
from cryptography import x509
from cryptography.x509.oid import NameOID

from gateway.cli import cli
from gateway.federation import read_directory
from gateway.node.config import load_config
from gateway.node.preflight import example_kids
from gateway.node.runner import DRAIN_GRACE_S, Node
from gateway.testing.nodes import NodeFiles
from gateway.testing.veenstad import ORGS, org_by_key
from schemas.catalogue import default_catalogue
from tests.deploy._broker import BootedBroker, boot
from tests.deploy.conftest import DEPLOY, ROOT
from tests.e2e.harness import Client, request_from_example

COMPOSE_DIR = DEPLOY / "compose"
COMPOSE = COMPOSE_DIR / "compose.yaml"
STATE_VAR = "${ZVG_STATE:-./state}"
NODE_KEYS = tuple(org.key for org in ORGS)
TLS_CONF = DEPLOY / "rabbitmq" / "rabbitmq-tls.conf"
#: The Compose Specification's JSON Schema, vendored (source and licence: schemas/README.md).
COMPOSE_SCHEMA = Path(__file__).parent / "schemas" / "compose-spec.json"


def _compose() -> dict[str, Any]:
    doc = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    return doc


def _services() -> dict[str, dict[str, Any]]:
    return dict(_compose()["services"])


def _mounts(service: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(source, target, read_only) of every short-syntax volume entry."""
    out = []
    for entry in service.get("volumes", []):
        mode = entry.rsplit(":", 1)[1] if entry.endswith((":ro", ":rw")) else ""
        source, target = entry.removesuffix(f":{mode}").rsplit(":", 1)
        out.append((source, target, mode == "ro"))
    return out


def _is_named(source: str) -> bool:
    return not source.startswith((".", "/", "$"))


def _host(source: str, state: Path) -> Path:
    """A bind mount's source on this machine, ``${ZVG_STATE:-./state}`` being ``state``."""
    if source.startswith(STATE_VAR):
        return state / source.removeprefix(STATE_VAR).lstrip("/")
    return (COMPOSE_DIR / source).resolve()


# ------------------------------------------------------------------ structure


def _compose_schema_validator() -> jsonschema.Draft7Validator:
    schema = json.loads(COMPOSE_SCHEMA.read_text(encoding="utf-8"))
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(
        schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER
    )


def test_compose_file_is_valid_against_the_compose_specification_schema() -> None:
    """The vendored Compose Specification schema (tests/deploy/schemas/README.md) refuses
    unknown keys, so a misspelt setting that Docker would reject, or ignore, fails here."""
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in _compose_schema_validator().iter_errors(_compose())
    ]
    assert errors == []


def test_the_compose_schema_catches_a_misspelt_setting() -> None:
    doc = _compose()
    doc["services"]["politie"]["read_olny"] = True
    assert not _compose_schema_validator().is_valid(doc)


def test_compose_runs_a_tls_broker_and_the_five_partners() -> None:
    services = _services()
    assert set(services) == {
        "rabbitmq",
        "broker-secrets",
        *NODE_KEYS,
        *(f"{k}-keys" for k in NODE_KEYS),
    }
    assert services["rabbitmq"]["image"].startswith("rabbitmq:")
    assert services["rabbitmq"]["hostname"] == "rabbitmq"


def test_each_node_has_one_volume_of_its_own_for_store_and_keys() -> None:
    services, owners = _services(), {}
    for key in NODE_KEYS:
        named = [(s, t) for s, t, _ in _mounts(services[key]) if _is_named(s)]
        assert named == [(key, "/var/lib/zvg")], key
        installer = [(s, t) for s, t, _ in _mounts(services[f"{key}-keys"]) if _is_named(s)]
        assert installer == [(key, "/var/lib/zvg")], "the keys go into the node's own volume"
        owners[key] = key
    assert set(_compose()["volumes"]) >= set(owners.values())
    for name, service in services.items():
        for source, _, _ in _mounts(service):
            if _is_named(source) and source in NODE_KEYS:
                assert name in (source, f"{source}-keys"), f"{name} mounts {source}'s volume"


def test_key_installers_copy_only_their_own_organisations_keys() -> None:
    services = _services()
    for key in NODE_KEYS:
        installer = services[f"{key}-keys"]
        assert installer["entrypoint"] == ["zvg-install-secrets"]
        assert installer["command"] == ["/prepared/keys", "/var/lib/zvg/keys", "10001:10001"]
        assert installer["network_mode"] == "none"
        binds = [(s, t, ro) for s, t, ro in _mounts(installer) if not _is_named(s)]
        assert binds == [(f"{STATE_VAR}/nodes/{key}/var/lib/zvg/keys", "/prepared/keys", True)]


def test_nodes_start_after_their_keys_and_a_healthy_broker() -> None:
    services = _services()
    for key in NODE_KEYS:
        node = services[key]
        assert node["depends_on"] == {
            f"{key}-keys": {"condition": "service_completed_successfully"},
            "rabbitmq": {"condition": "service_healthy"},
        }
        assert node["healthcheck"]["test"] == ["CMD", "zvg-healthcheck", "/readyz"]
    assert services["rabbitmq"]["depends_on"] == {
        "broker-secrets": {"condition": "service_completed_successfully"}
    }
    assert services["rabbitmq"]["healthcheck"]["test"][1:] == [
        "rabbitmq-diagnostics",
        "-q",
        "check_port_listener",
        "5671",
    ]


def _seconds(text: str) -> float:
    match = re.fullmatch(r"([0-9]+)s", text)
    assert match, text
    return float(match.group(1))


def test_nodes_are_locked_down_and_reachable_from_loopback_only() -> None:
    services = _services()
    ports = set()
    for key in NODE_KEYS:
        node = services[key]
        assert node["read_only"] is True
        assert node["cap_drop"] == ["ALL"]
        assert "no-new-privileges:true" in node["security_opt"]
        assert _seconds(node["stop_grace_period"]) >= DRAIN_GRACE_S + 10
        assert node["environment"]["ZVG_CONFIG"] == "/etc/zvg/node.toml"
        assert node["build"] == {"context": "../..", "dockerfile": "deploy/Dockerfile"}
        (port,) = node["ports"]
        assert port.startswith("127.0.0.1:"), port
        assert port.endswith(":8400")
        ports.add(port)
        assert "user" not in node, "nodes run as the image's non-root user"
    assert len(ports) == len(NODE_KEYS)
    assert "ports" not in services["rabbitmq"], "only nodes on the compose network reach it"


def test_broker_uses_the_tested_tls_config_unchanged() -> None:
    rabbit = _services()["rabbitmq"]
    mounts = {t: (s, ro) for s, t, ro in _mounts(rabbit)}
    source, ro = mounts["/etc/rabbitmq/conf.d/20-zvg-tls.conf"]
    assert _host(source, Path()) == TLS_CONF
    assert ro
    text = TLS_CONF.read_text(encoding="utf-8")
    settings = dict(
        line.split(" = ", 1) for line in text.splitlines() if " = " in line and line[0] != "#"
    )
    assert settings["listeners.tcp"] == "none", "no plain AMQP listener at all"
    assert settings["listeners.ssl.default"] == "5671"
    assert settings["ssl_options.verify"] == "verify_peer"
    assert settings["ssl_options.fail_if_no_peer_cert"] == "true"
    assert settings["auth_mechanisms.1"] == "EXTERNAL"
    assert not any(k.startswith("auth_mechanisms.") for k in settings if k != "auth_mechanisms.1")
    assert settings["ssl_cert_login_from"] == "common_name"
    # Every TLS file the config names lives on the broker-tls volume.
    tls_files = [v for k, v in settings.items() if k.startswith("ssl_options.") and "file" in k]
    assert mounts["/etc/rabbitmq/tls"] == ("broker-tls", True)
    assert all(f.startswith("/etc/rabbitmq/tls/") for f in tls_files)
    plugins = _host(mounts["/etc/rabbitmq/enabled_plugins"][0], Path()).read_text("utf-8")
    assert "rabbitmq_auth_mechanism_ssl" in plugins


def test_broker_loads_the_provisioned_definitions_at_boot() -> None:
    rabbit = _services()["rabbitmq"]
    mounts = {t: (s, ro) for s, t, ro in _mounts(rabbit)}
    source, ro = mounts["/etc/rabbitmq/conf.d/30-zvg-definitions.conf"]
    assert ro
    conf = _host(source, Path())
    assert conf == DEPLOY / "rabbitmq" / "load-definitions.conf"
    (line,) = [x for x in conf.read_text("utf-8").splitlines() if x.startswith("load_definitions")]
    path = line.split(" = ", 1)[1]
    assert mounts["/etc/rabbitmq/definitions"] == ("broker-definitions", True)
    assert path == "/etc/rabbitmq/definitions/definitions.json"


# ------------------------------------------------------------------ against prepare.sh's output


def test_every_file_and_folder_compose_mounts_exists(prepared: Path) -> None:
    for name, service in _services().items():
        for source, _, _ in _mounts(service):
            if not _is_named(source):
                assert _host(source, prepared).exists(), f"{name}: {source}"
        if "build" in service:
            context = (COMPOSE_DIR / service["build"]["context"]).resolve()
            assert context == ROOT
            assert (context / service["build"]["dockerfile"]).is_file()
    broker = _services()["broker-secrets"]
    binds = {t: _host(s, prepared) for s, t, _ in _mounts(broker) if not _is_named(s)}
    assert sorted(p.name for p in binds["/prepared/tls"].iterdir()) == [
        "ca.pem",
        "server.key",
        "server.pem",
    ]
    assert (binds["/prepared/definitions"] / "definitions.json").is_file()


def test_no_mount_reaches_keys_example(prepared: Path) -> None:
    example = ROOT / "keys_example"
    for service in _services().values():
        for source, _, _ in _mounts(service):
            if not _is_named(source):
                host = _host(source, prepared).resolve()
                assert example not in (host, *host.parents), source


def test_read_only_config_folders_hold_no_private_key(prepared: Path) -> None:
    for key in NODE_KEYS:
        binds = {t: (s, ro) for s, t, ro in _mounts(_services()[key]) if not _is_named(s)}
        source, ro = binds["/etc/zvg"]
        assert ro
        folder = _host(source, prepared)
        assert folder == prepared / "nodes" / key / "etc" / "zvg"
        for path in folder.rglob("*"):
            assert b"PRIVATE KEY" not in path.read_bytes(), path


def test_every_node_config_passes_check_config_in_production_mode(prepared: Path) -> None:
    runner = CliRunner()
    for key in NODE_KEYS:
        config = prepared / "nodes" / key / "etc" / "zvg" / "node.toml"
        result = runner.invoke(cli, ["node", "check-config", "--config", str(config)])
        assert result.exit_code == 0, result.output
        assert "OK (production mode" in result.output


def test_prepared_keys_are_fresh_not_the_example_keys(prepared: Path) -> None:
    directory = read_directory(prepared / "federation" / "directory.json", default_catalogue())
    kids = {k.kid for m in directory.payload.members for k in m.keys}
    kids |= {k.kid for k in directory.payload.authority.keys}
    assert kids
    assert not kids & example_kids()
    assert example_kids(), "the list of example key ids is there to compare with"


def test_node_config_names_only_files_its_container_has(prepared: Path) -> None:
    """Each path in node.toml lies in the read-only config mount (/etc/zvg) or in the node's
    volume (/var/lib/zvg): keys where the key installer puts them, the store beside them."""
    for key in NODE_KEYS:
        root = prepared / "nodes" / key
        etc, volume = root / "etc" / "zvg", root / "var" / "lib" / "zvg"
        config = load_config(etc / "node.toml")
        assert config.node.data_dir == volume / "data"
        assert config.directory.file.parent == etc
        for setting, path in config.key_files():
            assert path.parent == volume / "keys", setting
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, setting
        assert config.broker.ca_file is not None
        assert config.broker.cert_file is not None
        assert config.broker.key_file is not None
        assert config.broker.ca_file.parent == etc
        assert config.broker.cert_file.parent == etc
        assert config.broker.key_file.parent == volume / "keys"
        assert stat.S_IMODE(config.broker.key_file.stat().st_mode) == 0o600
        assert config.node.mode == "production"
        assert config.api.listen == "0.0.0.0:8400"


def test_nodes_log_in_to_the_broker_by_certificate_over_tls(prepared: Path) -> None:
    directory = read_directory(prepared / "federation" / "directory.json", default_catalogue())
    users = {m.oin: m.broker_user for m in directory.payload.members}
    ca = x509.load_pem_x509_certificate((prepared / "ca" / "ca.pem").read_bytes())
    server_pem = (prepared / "broker" / "tls" / "server.pem").read_bytes()
    server = x509.load_pem_x509_certificate(server_pem)
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "rabbitmq" in names.get_values_for_type(x509.DNSName), "the host nodes connect to"
    server.verify_directly_issued_by(ca)
    for key in NODE_KEYS:
        config = load_config(prepared / "nodes" / key / "etc" / "zvg" / "node.toml")
        assert config.broker.url.startswith("amqps://rabbitmq:5671/")
        assert config.broker.password_file is None, "certificate login: no password anywhere"
        assert config.broker.cert_file is not None
        cert = x509.load_pem_x509_certificate(config.broker.cert_file.read_bytes())
        cert.verify_directly_issued_by(ca)
        (cn,) = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        assert cn.value == users[org_by_key(key).oin]


def test_prepare_refuses_to_overwrite_a_prepared_federation(prepared: Path) -> None:
    before = {p: p.read_bytes() for p in prepared.rglob("*") if p.is_file()}
    from gateway.deploy.compose import main

    assert main([str(prepared)]) == 2
    assert {p: p.read_bytes() for p in prepared.rglob("*") if p.is_file()} == before


# ------------------------------------------------------------------ the broker half, for real


@pytest.fixture(scope="module")
def broker(prepared: Path) -> Iterator[BootedBroker]:
    """One private broker for this module's broker tests (boot and stop ≈ 9 s)."""
    yield from boot(prepared / "broker" / "tls", prepared / "broker" / "definitions")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _local_copy(prepared: Path, tmp: Path, key: str, broker_port: int) -> NodeFiles:
    """A prepared node folder, with only the broker address and the API address rewritten
    (in compose they are the service name and 0.0.0.0:8400)."""
    root = tmp / key
    shutil.copytree(prepared / "nodes" / key, root)
    config = root / "etc" / "zvg" / "node.toml"
    listen = f"127.0.0.1:{_free_port()}"
    text = config.read_text(encoding="utf-8")
    text = text.replace('"amqps://rabbitmq:5671/', f'"amqps://localhost:{broker_port}/')
    text = text.replace('listen = "0.0.0.0:8400"', f'listen = "{listen}"')
    config.write_text(text, encoding="utf-8")
    token = (prepared / "tokens" / f"{key}.tokens").read_text("utf-8").split()[1]
    return NodeFiles(org_by_key(key), config, root / "var/lib/zvg/data", listen, token)


@pytest.fixture
async def two_nodes(
    broker: BootedBroker, prepared: Path, tmp_path: Path
) -> AsyncIterator[dict[str, NodeFiles]]:
    files = {k: _local_copy(prepared, tmp_path, k, broker.port) for k in ("politie", "gemeente")}
    nodes = []
    try:
        for node_files in files.values():
            node = await Node.start(load_config(node_files.config))
            nodes.append(node)
            await asyncio.wait_for(node.connected.wait(), timeout=30)
        yield files
    finally:
        for node in nodes:
            await node.stop()


@pytest.mark.slow
@pytest.mark.broker
def test_broker_boots_with_the_compose_config_and_only_the_provisioned_users(
    broker: BootedBroker,
) -> None:
    users = {row["user"] for row in broker.ctl.json("list_users")}
    assert users == {f"zvg-{k}" for k in NODE_KEYS}, "no guest user when definitions load"
    queues = {row["name"] for row in broker.ctl.json("list_queues", "-p", "zvg-veenstad", "name")}
    assert queues == {f"zvg.{kind}.{o.oin}" for o in ORGS for kind in ("inbox", "dead")}
    policies = broker.ctl.json("list_policies", "-p", "zvg-veenstad")
    assert {row["name"] for row in policies} == {"zvg-inbox", "zvg-dead"}


@pytest.mark.slow
@pytest.mark.broker
async def test_prepared_nodes_exchange_a_message_over_tls_with_certificate_login(
    two_nodes: dict[str, NodeFiles],
) -> None:
    pol, gem = Client(two_nodes["politie"]), Client(two_nodes["gemeente"])
    code, accepted = await pol.send(request_from_example("case.referral"))
    assert code == 202, accepted
    message_id = accepted["message_id"]
    items = await gem.inbox(wait=20)
    assert [i["message_id"] for i in items] == [message_id]
    assert await gem.ack(message_id) == 204
    await pol.wait_status(message_id, "accepted")


def test_prepare_in_process_writes_every_private_key_0600_outside_the_config_folders(
    tmp_path: Path,
) -> None:
    """The same step prepare.sh runs, in this process: private keys only in the folders that
    go into volumes or stay with the administrators, all 0600."""
    from gateway.deploy.compose import main

    state = tmp_path / "state"
    assert main([str(state)]) == 0
    private = [p for p in state.rglob("*") if p.is_file() and b"PRIVATE KEY" in p.read_bytes()]
    assert len(private) == 3 + 2 + 5 * 4, "3 authorities, CA + broker, 4 per organisation"
    for path in private:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        rel = path.relative_to(state).parts
        assert rel[0] in {"federation", "ca", "broker", "nodes"}, path
        if rel[0] == "nodes":
            assert rel[2:5] == ("var", "lib", "zvg"), path
        if rel[0] == "broker":
            assert rel[1] == "tls", path
    for tokens in (state / "tokens").iterdir():
        assert stat.S_IMODE(tokens.stat().st_mode) == 0o600
    assert main([str(state)]) == 2, "a second run refuses the prepared folder"
