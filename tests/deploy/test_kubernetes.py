"""The Kubernetes manifests for one node (deploy/kubernetes/), without a cluster.

Every YAML document parses; the names the Deployment uses (ConfigMap, Secret, PVC, port) exist
in the other manifests; the probes ask paths the node serves on the port its config listens on;
every file ``node.toml`` names is where a volume puts it; ``kubectl kustomize`` (if installed)
renders the set. Threats: real or example key material committed in a manifest; two pods
writing one SQLite store; a pod running as root or with a writable root file system; key files
the node would refuse (group-readable) or could not find.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from gateway.node.config import NodeConfig, load_config
from gateway.node.runner import DRAIN_GRACE_S
from tests.deploy.conftest import DEPLOY, ROOT

K8S = DEPLOY / "kubernetes"
API_SOURCE = ROOT / "gateway" / "node" / "api.py"


def _documents() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            assert isinstance(doc, dict), path
            docs.append(doc)
    return docs


def _one(kind: str) -> dict[str, Any]:
    (doc,) = [d for d in _documents() if d["kind"] == kind]
    return doc


def _pod() -> dict[str, Any]:
    return dict(_one("Deployment")["spec"]["template"]["spec"])


def _container(name: str = "node") -> dict[str, Any]:
    (container,) = [c for c in _pod()["containers"] if c["name"] == name]
    return dict(container)


def _config(tmp_path: Path) -> NodeConfig:
    path = tmp_path / "node.toml"
    path.write_text(_one("ConfigMap")["data"]["node.toml"], encoding="utf-8")
    return load_config(path)


def test_every_manifest_parses_and_kustomization_lists_them_all() -> None:
    kinds = sorted(d["kind"] for d in _documents())
    assert kinds == ["ConfigMap", "Deployment", "PersistentVolumeClaim", "Secret", "Service"]
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    listed = set(kustomization["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}


def test_kubectl_kustomize_renders_the_set() -> None:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed; the manifests are parsed with PyYAML above")
    result = subprocess.run(
        ["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert sorted(d["kind"] for d in yaml.safe_load_all(result.stdout)) == [
        "ConfigMap",
        "Deployment",
        "PersistentVolumeClaim",
        "Secret",
        "Service",
    ]


def test_one_pod_at_a_time_on_one_store() -> None:
    spec = _one("Deployment")["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}, "a rolling update would run two writers"
    assert _one("PersistentVolumeClaim")["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert _pod()["terminationGracePeriodSeconds"] >= DRAIN_GRACE_S + 10


def test_pod_runs_non_root_with_a_read_only_root_file_system() -> None:
    pod = _pod()
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001, "the image's zvg user"
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    for container in pod["containers"] + pod["initContainers"]:
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True, container["name"]
        assert context["allowPrivilegeEscalation"] is False, container["name"]
        assert context["capabilities"] == {"drop": ["ALL"]}, container["name"]
        assert "memory" in container["resources"]["limits"], container["name"]
        assert "requests" in container["resources"], container["name"]


def test_deployment_references_exist_in_the_other_manifests() -> None:
    volumes = {v["name"]: v for v in _pod()["volumes"]}
    assert volumes["config"]["configMap"]["name"] == _one("ConfigMap")["metadata"]["name"]
    assert volumes["secret"]["secret"]["secretName"] == _one("Secret")["metadata"]["name"]
    claim = volumes["data"]["persistentVolumeClaim"]["claimName"]
    assert claim == _one("PersistentVolumeClaim")["metadata"]["name"]
    for container in _pod()["containers"] + _pod()["initContainers"]:
        for mount in container["volumeMounts"]:
            assert mount["name"] in volumes, mount
    service = _one("Service")
    labels = _one("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["selector"].items() <= labels.items()
    assert _one("Deployment")["spec"]["selector"]["matchLabels"].items() <= labels.items()
    port_names = {p["name"] for p in _container()["ports"]}
    for port in service["spec"]["ports"]:
        assert port["targetPort"] in port_names


def test_probes_ask_served_paths_on_the_configured_port(tmp_path: Path) -> None:
    container = _container()
    (api_port,) = [p for p in container["ports"] if p["name"] == "api"]
    listen = _config(tmp_path).api.listen
    assert listen.rpartition(":")[2] == str(api_port["containerPort"])
    served = set(re.findall(r'add_get\("(/[a-z]+)"', API_SOURCE.read_text(encoding="utf-8")))
    assert {"/healthz", "/readyz"} <= served
    probes = {
        k: container[k]["httpGet"] for k in ("startupProbe", "livenessProbe", "readinessProbe")
    }
    assert probes["startupProbe"]["path"] == "/healthz"
    assert probes["livenessProbe"]["path"] == "/healthz"
    assert probes["readinessProbe"]["path"] == "/readyz"
    for probe in probes.values():
        assert probe["path"] in served
        assert probe["port"] == "api"


def _mount_of(container: dict[str, Any], path: str) -> dict[str, Any]:
    """The volume mount that holds ``path`` in ``container``."""
    candidates = [
        m
        for m in container["volumeMounts"]
        if PurePosixPath(path).is_relative_to(PurePosixPath(m["mountPath"]))
    ]
    assert candidates, f"no volume holds {path}"
    return max(candidates, key=lambda m: len(m["mountPath"]))


def test_every_file_in_node_toml_is_where_a_volume_puts_it(tmp_path: Path) -> None:
    config = _config(tmp_path)
    container, init = _container(), _container_init()
    volumes = {v["name"]: v for v in _pod()["volumes"]}
    config_map = _one("ConfigMap")["data"]
    secret = _one("Secret")["stringData"]
    # ConfigMap files: under the config mount, each a key of the ConfigMap.
    for path in (config.directory.file, config.broker.ca_file, config.broker.cert_file):
        assert path is not None
        mount = _mount_of(container, str(path))
        assert "configMap" in volumes[mount["name"]]
        assert path.name in config_map
    assert config.source.name in config_map
    # Keys: the init container copies the Secret into the keys folder, each a Secret key.
    src, dest = init["command"][1:]
    assert _mount_of(init, src)["name"] == "secret"
    keys_mount = _mount_of(init, dest)
    assert volumes[keys_mount["name"]]["emptyDir"]["medium"] == "Memory"
    assert dest != keys_mount["mountPath"], "a folder of its own: the script sets it 0700"
    assert config.broker.key_file is not None
    for path in [p for _, p in config.key_files()] + [config.broker.key_file]:
        assert str(path.parent) == dest
        assert path.name in secret
        assert _mount_of(container, str(path))["name"] == keys_mount["name"]
    # The store: on the persistent volume.
    data_mount = _mount_of(container, str(config.store_path))
    assert "persistentVolumeClaim" in volumes[data_mount["name"]]
    assert data_mount.get("readOnly") is not True
    assert config.node.mode == "production"
    assert config.broker.url.startswith("amqps://")


def _container_init() -> dict[str, Any]:
    (init,) = _pod()["initContainers"]
    assert init["command"][0] == "zvg-install-secrets"
    return dict(init)


def test_manifests_hold_no_key_material_and_no_example_key() -> None:
    text = "\n".join(p.read_text(encoding="utf-8") for p in K8S.glob("*.yaml"))
    assert "PRIVATE KEY" not in text
    assert "BEGIN CERTIFICATE" not in text
    for value in _one("Secret")["stringData"].values():
        assert value.startswith("REPLACE:"), value
    example_lines = set()
    for path in (ROOT / "keys_example").rglob("*"):
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                if len(line.strip()) >= 20 and "-----" not in line:
                    example_lines.add(line.strip())
    assert example_lines, "keys_example/ has key material to compare with"
    assert not [line for line in example_lines if line in text]
    token_hash = re.search(r'sha256 = "([0-9a-f]{64})"', text)
    assert token_hash is not None
    assert set(token_hash.group(1)) == {"0"}, "a placeholder no token can match"
