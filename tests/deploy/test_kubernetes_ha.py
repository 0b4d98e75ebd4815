"""The high-availability Kubernetes base (deploy/kubernetes/ha/, decision 0112), without a cluster.

Two pods of one organisation on a PostgreSQL database and a RabbitMQ cluster. Checked here: every
manifest is valid against the Kubernetes API schemas with unknown fields refused; the base holds
no Secret and no ConfigMap; two replicas that a rolling update never takes below two ready pods,
spread over two Kubernetes nodes, with a PodDisruptionBudget that lets a drain take one of them
and never both; the store URL (it carries the database password) comes from a Secret, through
the init container that makes 0600 copies, to the file ``store.url_file`` names, and nowhere
from a manifest or the ConfigMap; no PersistentVolumeClaim (the state is in PostgreSQL); the
broker members and the database are the only ways out; and everything else in the pod — user,
read-only root, capabilities, probes, resources, the keys — is the single-pod base's, unchanged.
Threats: the database password in a manifest, a ConfigMap or a readable file; both pods evicted
by one drain or lost with one machine; an HA variant that drifted from the hardened base.
"""

from __future__ import annotations

import copy
import shutil
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from gateway.node.config import load_config
from tests.deploy import kustomize
from tests.deploy.conftest import DEPLOY
from tests.deploy.test_kubernetes import _by_kind, _kubectl_kustomize, validate_strictly

BASE = DEPLOY / "kubernetes"
HA = BASE / "ha"
HA_KINDS = ("Deployment", "NetworkPolicy", "PodDisruptionBudget", "Service")
STORE_SECRET = "zvg-politie-db"


def _documents(folder: Path = HA) -> list[dict[str, Any]]:
    docs = []
    for path in sorted(folder.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            docs += [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
    return docs


def _one(kind: str, folder: Path = HA) -> dict[str, Any]:
    (doc,) = [d for d in _documents(folder) if d["kind"] == kind]
    return doc


def _pod(folder: Path = HA) -> dict[str, Any]:
    return dict(_one("Deployment", folder)["spec"]["template"]["spec"])


def _labels() -> dict[str, str]:
    return dict(_one("Deployment")["spec"]["template"]["metadata"]["labels"])


def test_every_manifest_is_valid_and_listed_and_none_is_a_secret_or_config() -> None:
    docs = _documents()
    for doc in docs:
        validate_strictly(doc)
    assert tuple(sorted(d["kind"] for d in docs)) == HA_KINDS
    kustomization = yaml.safe_load((HA / "kustomization.yaml").read_text(encoding="utf-8"))
    assert set(kustomization) == {"apiVersion", "kind", "resources"}, "no generators"
    assert set(kustomization["resources"]) == {p.name for p in HA.glob("*.yaml")} - {
        "kustomization.yaml"
    }
    rendered = kustomize.render(HA)
    assert tuple(sorted(d["kind"] for d in rendered)) == HA_KINDS


def test_two_pods_that_a_rolling_update_never_takes_below_two() -> None:
    spec = _one("Deployment")["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    (spread,) = _pod()["topologySpreadConstraints"]
    assert spread["topologyKey"] == "kubernetes.io/hostname"
    assert spread["whenUnsatisfiable"] == "DoNotSchedule", "never both on one machine"
    assert spread["labelSelector"]["matchLabels"].items() <= _labels().items()


def test_a_drain_takes_at_most_one_pod_and_a_broken_one_never_blocks_it() -> None:
    spec = _one("PodDisruptionBudget")["spec"]
    assert spec["selector"]["matchLabels"].items() <= _labels().items()
    assert spec["minAvailable"] == 1
    assert spec["minAvailable"] < _one("Deployment")["spec"]["replicas"], "a drain can proceed"
    assert spec["unhealthyPodEvictionPolicy"] == "AlwaysAllow"


def test_the_store_url_comes_from_a_secret_as_a_0600_file(tmp_path: Path) -> None:
    pod = _pod()
    volumes = {v["name"]: v for v in pod["volumes"]}
    sources = volumes["secret"]["projected"]["sources"]
    (db,) = [s["secret"] for s in sources if s["secret"]["name"] == STORE_SECRET]
    assert db["items"] == [{"key": "uri", "path": "store-url"}]
    (init,) = pod["initContainers"]
    assert init["command"][0] == "zvg-install-secrets", "0600 copies, node-owned"
    src, dest = init["command"][1:]
    raw = tomllib.loads((HA / "node.toml").read_text(encoding="utf-8"))
    assert set(raw["store"]) == {"url_file"}, "no URL (and no password) in the ConfigMap"
    url_file = PurePosixPath(raw["store"]["url_file"])
    assert url_file == PurePosixPath(dest) / "store-url"
    (mount,) = [m for m in init["volumeMounts"] if m["name"] == "secret"]
    assert mount["mountPath"] == src
    # The config loads once the init container has put the URL there (here: a scratch file).
    scratch = tmp_path / "store-url"
    scratch.write_text("postgresql://zvg_politie:pw@db.politie.example/zvg_politie\n", "utf-8")
    scratch.chmod(0o600)
    config_file = tmp_path / "node.toml"
    config_file.write_text(
        (HA / "node.toml").read_text(encoding="utf-8").replace(str(url_file), str(scratch)),
        encoding="utf-8",
    )
    config = load_config(config_file)
    assert config.store.url is not None
    assert config.store.url.startswith("postgresql://")
    assert config.node.mode == "production"
    assert len(config.broker.urls) == 3
    assert all(u.startswith("amqps://") and ":5671/" in u for u in config.broker.urls)
    text = "\n".join(p.read_text(encoding="utf-8") for p in HA.iterdir())
    assert "postgresql://" not in text, "no store URL anywhere in the base"


def test_no_volume_claim_the_state_is_in_postgresql() -> None:
    volumes = {v["name"]: v for v in _pod()["volumes"]}
    assert not any("persistentVolumeClaim" in v for v in volumes.values())
    assert "emptyDir" in volumes["data"]


def test_only_the_broker_members_the_database_and_dns_are_reachable() -> None:
    egress = _one("NetworkPolicy")["spec"]["egress"]
    ports = sorted((p["port"], p["protocol"]) for rule in egress for p in rule["ports"])
    assert ports == [(53, "TCP"), (53, "UDP"), (5432, "TCP"), (5671, "TCP")]
    ingress = _one("NetworkPolicy")["spec"]["ingress"]
    assert ingress == _one("NetworkPolicy", BASE)["spec"]["ingress"]
    assert _one("Service")["spec"] == _one("Service", BASE)["spec"]


def test_everything_else_in_the_pod_is_the_single_pod_bases() -> None:
    """The hardened pod of deploy/kubernetes/ (tests/deploy/test_kubernetes.py) with exactly
    three changes: the spread, the secret folder (keys plus the store URL) and the data
    folder; the containers themselves are the same."""
    ha, base = copy.deepcopy(_pod()), copy.deepcopy(_pod(BASE))
    ha.pop("topologySpreadConstraints")
    ha_volumes = {v["name"]: v for v in ha.pop("volumes")}
    base_volumes = {v["name"]: v for v in base.pop("volumes")}
    assert ha == base
    for name in ("secret", "data"):
        assert ha_volumes.pop(name) != base_volumes.pop(name)
    assert ha_volumes == base_volumes
    (secret,) = [v for v in _pod()["volumes"] if v["name"] == "secret"]
    (base_secret,) = [v for v in _pod(BASE)["volumes"] if v["name"] == "secret"]
    names = [s["secret"]["name"] for s in secret["projected"]["sources"]]
    assert names == [base_secret["secret"]["secretName"], STORE_SECRET], "the keys, as before"


def test_the_fallback_renders_the_ha_base_as_kubectl_does() -> None:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed: nothing to compare the fallback with")
    assert _by_kind(kustomize.render(HA)) == _by_kind(_kubectl_kustomize(HA))
