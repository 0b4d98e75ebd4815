"""The Kubernetes manifests for one node (deploy/kubernetes/), without a cluster.

Every manifest is valid against the Kubernetes API's JSON schemas with unknown fields refused
(``kubernetes-validate``, schemas shipped in the package, no network); ``kubectl kustomize``
(or, without kubectl, the tests' fallback in kustomize.py, compared with kubectl where both
are there) renders the base; the names the Deployment uses (ConfigMap, Secret, PVC, port) are
the ones the guide's kustomization and ``kubectl create secret`` make; the probes ask paths the
node serves on the port its config listens on; every file ``node.toml`` names is where a volume
puts it; the NetworkPolicy lets in only the adapters and Prometheus, and out only the broker and
DNS.
Threats: real or placeholder key material applied from a manifest; two pods writing one SQLite
store; a pod running as root or with a writable root file system; key files the node would refuse
(group-readable) or could not find; a pod that anything in the cluster can reach; a manifest with
a misspelt field that the API server would drop silently.
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any

import kubernetes_validate
import pytest
import yaml

from gateway.node.config import NodeConfig, load_config
from gateway.node.runner import DRAIN_GRACE_S
from tests.deploy import kustomize
from tests.deploy.conftest import DEPLOY, ROOT

K8S = DEPLOY / "kubernetes"
API_SOURCE = ROOT / "gateway" / "node" / "api.py"
GUIDE = ROOT / "docs" / "ops.md"
#: What the base holds: no ConfigMap (the organisation's kustomization adds it), no Secret.
K8S_BASE_KINDS = (
    "Deployment",
    "NetworkPolicy",
    "PersistentVolumeClaim",
    "PodDisruptionBudget",
    "Service",
)
#: The oldest Kubernetes minor the manifests must be valid for (unhealthyPodEvictionPolicy is
#: there from 1.27; kubernetes-validate ships schemas from 1.29 on).
K8S_VERSION = "1.29"


def validate_strictly(doc: dict[str, Any]) -> None:
    """Raise unless ``doc`` is valid for :data:`K8S_VERSION`, unknown fields refused."""
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


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


def _config() -> NodeConfig:
    return load_config(K8S / "node.toml")


def _secret_keys() -> set[str]:
    """The keys of the Secret the guide's ``kubectl create secret generic`` makes."""
    guide = GUIDE.read_text(encoding="utf-8")
    command = guide[guide.index("kubectl create secret generic zvg-politie-keys") :]
    command = command[: command.index("\n```")]
    return set(re.findall(r"--from-file=([a-z.]+)=", command))


def _guide_config_map() -> tuple[str, set[str]]:
    """Name and files of the ConfigMap the guide's kustomization generates."""
    guide = GUIDE.read_text(encoding="utf-8")
    text = guide[guide.index("cat > politie/k8s/kustomization.yaml <<'EOF'\n") :]
    text = text.split("\n", 1)[1].split("\nEOF\n", 1)[0]
    kustomization = yaml.safe_load(text)
    (generator,) = kustomization["configMapGenerator"]
    assert kustomization["resources"] == ["../../deploy/kubernetes"]
    return generator["name"], set(generator["files"])


def test_every_manifest_is_valid_against_the_api_schemas_with_unknown_fields_refused() -> None:
    for doc in _documents():
        validate_strictly(doc)


def test_the_strict_validation_catches_a_misspelt_field() -> None:
    deployment = copy.deepcopy(_one("Deployment"))
    deployment["spec"]["template"]["spec"]["securityContext"]["runAsNonroot"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_strictly(deployment)


def test_every_manifest_parses_and_kustomization_lists_them_all() -> None:
    assert tuple(sorted(d["kind"] for d in _documents())) == K8S_BASE_KINDS
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    listed = set(kustomization["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}


def test_the_base_holds_no_secret_and_no_configuration() -> None:
    """Applying the base can never put a placeholder over a real Secret or ConfigMap."""
    kinds = {d["kind"] for d in _documents()}
    assert not kinds & {"Secret", "ConfigMap"}
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    assert set(kustomization) == {"apiVersion", "kind", "resources"}, "no generators"


def _kubectl_kustomize(folder: Path) -> list[dict[str, Any]]:
    result = subprocess.run(
        ["kubectl", "kustomize", str(folder)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def _render(folder: Path) -> list[dict[str, Any]]:
    """``kubectl kustomize``, or where kubectl is missing the tests' fallback."""
    if shutil.which("kubectl") is None:
        return kustomize.render(folder)
    return _kubectl_kustomize(folder)


def test_kustomize_renders_the_base() -> None:
    rendered = _render(K8S)
    assert tuple(sorted(d["kind"] for d in rendered)) == K8S_BASE_KINDS
    for doc in rendered:
        validate_strictly(doc)


def _guide_overlay(tmp_path: Path) -> Path:
    """The guide's organisation kustomization, made as its Kubernetes block makes it."""
    (tmp_path / "deploy").symlink_to(DEPLOY)
    overlay = tmp_path / "politie" / "k8s"
    overlay.mkdir(parents=True)
    shutil.copy(K8S / "node.toml", overlay)
    for name in ("directory.json", "ca.pem", "client.pem"):
        (overlay / name).write_text(f"{name} of the guide\n", encoding="utf-8")
    guide = GUIDE.read_text(encoding="utf-8")
    text = guide[guide.index("cat > politie/k8s/kustomization.yaml <<'EOF'\n") :]
    (overlay / "kustomization.yaml").write_text(
        text.split("\n", 1)[1].split("\nEOF\n", 1)[0] + "\n", encoding="utf-8"
    )
    return overlay


def _by_kind(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(objects, key=lambda d: (d["kind"], d["metadata"]["name"]))


def test_the_fallback_renders_what_kubectl_renders(tmp_path: Path) -> None:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed: nothing to compare the fallback with")
    overlay = _guide_overlay(tmp_path)
    assert _by_kind(kustomize.render(overlay)) == _by_kind(_kubectl_kustomize(overlay))
    assert _by_kind(kustomize.render(K8S)) == _by_kind(_kubectl_kustomize(K8S))


def test_the_fallback_refuses_what_it_does_not_implement(tmp_path: Path) -> None:
    overlay = _guide_overlay(tmp_path)
    kustomization = overlay / "kustomization.yaml"
    kustomization.write_text(
        kustomization.read_text(encoding="utf-8") + "namePrefix: gemeente-\n", encoding="utf-8"
    )
    with pytest.raises(kustomize.UnsupportedError, match="namePrefix"):
        kustomize.render(overlay)


def _pod_labels() -> dict[str, str]:
    return dict(_one("Deployment")["spec"]["template"]["metadata"]["labels"])


def test_network_policy_admits_only_the_adapters_and_prometheus_to_the_api() -> None:
    policy = _one("NetworkPolicy")["spec"]
    assert policy["podSelector"]["matchLabels"].items() <= _pod_labels().items()
    assert sorted(policy["policyTypes"]) == ["Egress", "Ingress"], "deny all else both ways"
    (rule,) = policy["ingress"]
    assert rule["ports"] == [{"port": "api", "protocol": "TCP"}]
    adapters, prometheus = rule["from"]
    assert adapters == {"podSelector": {"matchLabels": {"zv-gateway.example/client-of": "politie"}}}
    assert set(prometheus) == {"namespaceSelector", "podSelector"}, "both: one peer, not two"


def test_network_policy_lets_out_only_the_broker_and_dns() -> None:
    egress = _one("NetworkPolicy")["spec"]["egress"]
    ports = sorted((p["port"], p["protocol"]) for rule in egress for p in rule["ports"])
    assert ports == [(53, "TCP"), (53, "UDP"), (5671, "TCP")]
    (dns,) = [r for r in egress if r.get("to")]
    assert dns["to"][0]["podSelector"] == {"matchLabels": {"k8s-app": "kube-dns"}}
    url = _config().broker.url
    assert url.startswith("amqps://")
    assert url.split("/")[2].endswith(":5671"), "the port the policy lets out"


def test_disruption_budget_covers_the_pod_and_never_blocks_on_a_broken_one() -> None:
    spec = _one("PodDisruptionBudget")["spec"]
    assert spec["selector"]["matchLabels"].items() <= _pod_labels().items()
    assert spec["maxUnavailable"] == 0, "drains wait until ops stop the single node"
    assert spec["unhealthyPodEvictionPolicy"] == "AlwaysAllow"


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
    assert volumes["config"]["configMap"]["name"] == _guide_config_map()[0]
    guide = GUIDE.read_text(encoding="utf-8")
    secret = volumes["secret"]["secret"]["secretName"]
    assert f"kubectl create secret generic {secret} " in guide
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


def test_probes_ask_served_paths_on_the_configured_port() -> None:
    container = _container()
    (api_port,) = [p for p in container["ports"] if p["name"] == "api"]
    listen = _config().api.listen
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


def test_every_file_in_node_toml_is_where_a_volume_puts_it() -> None:
    config = _config()
    container, init = _container(), _container_init()
    volumes = {v["name"]: v for v in _pod()["volumes"]}
    config_map = _guide_config_map()[1]
    secret = _secret_keys()
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
    text = "\n".join(
        p.read_text(encoding="utf-8") for p in [*K8S.glob("*.yaml"), K8S / "node.toml"]
    )
    assert "PRIVATE KEY" not in text
    assert "BEGIN CERTIFICATE" not in text
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
