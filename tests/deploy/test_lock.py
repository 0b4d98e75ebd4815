"""deploy/requirements.lock, the hashed pins the container image installs (deploy/Dockerfile),
is in step with what the two distributions declare (pyproject.toml, clients/python/pyproject.toml):
every runtime dependency is pinned at a version its specifier allows, every pin carries hashes,
and the file is what ``scripts/lock`` writes. Offline: it reads files only (regenerating the lock
needs the package index: run ``scripts/lock``)."""

from __future__ import annotations

import re
import tomllib

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy.conftest import ROOT

LOCK = ROOT / "deploy" / "requirements.lock"
OURS = {"zv-gateway", "zv-gateway-client"}
#: The image: CPython 3.11 on Linux (deploy/Dockerfile's python:3.11-slim).
IMAGE: dict[str, str] = {
    **{k: str(v) for k, v in default_environment().items()},
    "python_version": "3.11",
    "python_full_version": "3.11.0",
    "sys_platform": "linux",
    "platform_system": "Linux",
}


def _pins() -> dict[str, tuple[str, list[str]]]:
    """name → (version, hashes) of every pin in the lock."""
    pins: dict[str, tuple[str, list[str]]] = {}
    for entry in re.split(r"\n(?=\S)", LOCK.read_text(encoding="utf-8")):
        first = entry.splitlines()[0]
        if first.startswith("#") or not first.strip():
            continue
        found = re.match(r"^([A-Za-z0-9._-]+)==([^\s;\\]+)", first)
        assert found, first
        pins[canonicalize_name(found.group(1))] = (
            found.group(2),
            re.findall(r"--hash=sha256:([0-9a-f]{64})", entry),
        )
    return pins


def _declared() -> list[Requirement]:
    out = []
    for pyproject in (ROOT / "pyproject.toml", ROOT / "clients" / "python" / "pyproject.toml"):
        project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
        out += [Requirement(r) for r in project["dependencies"]]
    return out


def test_every_runtime_dependency_is_pinned_at_an_allowed_version() -> None:
    pins = _pins()
    for req in _declared():
        name = canonicalize_name(req.name)
        if name in OURS or (req.marker is not None and not req.marker.evaluate(IMAGE)):
            continue
        assert name in pins, f"{req} is not in {LOCK.name}: run scripts/lock"
        assert req.specifier.contains(pins[name][0], prereleases=True), (
            f"{LOCK.name} pins {name}=={pins[name][0]}, outside {req}: run scripts/lock"
        )


def test_every_pin_carries_hashes_and_our_own_distributions_are_not_pinned() -> None:
    pins = _pins()
    assert len(pins) > 20, "the lock holds the dependencies' dependencies too"
    for name, (_, hashes) in pins.items():
        assert hashes, f"{name} has no --hash"
    assert not OURS & set(pins), "the image builds these from the checkout"


def test_the_lock_is_what_scripts_lock_writes() -> None:
    script = (ROOT / "scripts" / "lock").read_text(encoding="utf-8")
    call = script[script.index('/bin/uv" ') + len('/bin/uv" ') :]
    words = call.replace("\\\n", " ").replace('"$@"', "").split()
    command = " ".join(["uv", *(w for w in words if w != "--quiet")])
    header = LOCK.read_text(encoding="utf-8").splitlines()[1].lstrip("# ").strip()
    assert header == command
    inputs = (ROOT / "deploy" / "requirements.in").read_text(encoding="utf-8").splitlines()
    assert [x for x in inputs if x and not x.startswith("#")] == [
        "-e ./clients/python",
        "-e .[console]",
    ]


def test_the_image_installs_from_the_lock() -> None:
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text(encoding="utf-8")
    assert "COPY deploy/requirements.lock" in dockerfile
    assert "--require-hashes" in dockerfile


def test_the_lock_names_no_path_of_this_machine() -> None:
    text = LOCK.read_text(encoding="utf-8")
    assert "file://" not in text
    assert str(ROOT) not in text
