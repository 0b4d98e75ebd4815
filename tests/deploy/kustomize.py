"""``kubectl kustomize DIR`` for the part of kustomize that deploy/kubernetes/ and docs/ops.md
use, for machines without kubectl (it is not in Debian): ``resources`` (files and folders) and
``configMapGenerator`` (``files``, ``options.labels``, ``options.disableNameSuffixHash: true``).
Anything else is refused, never ignored. ``tests/deploy/test_kubernetes.py`` checks that it
renders what kubectl renders wherever kubectl is installed.

Run as ``python tests/deploy/kustomize.py kustomize DIR`` (the guide test puts it on PATH as
``kubectl`` when there is no kubectl); prints the objects as YAML documents.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

KNOWN = {"apiVersion", "kind", "resources", "configMapGenerator"}
GENERATOR_KNOWN = {"name", "files", "options"}
OPTIONS_KNOWN = {"labels", "disableNameSuffixHash"}


class UnsupportedError(Exception):
    """The kustomization uses something this fallback does not implement."""


def render(folder: Path) -> list[dict[str, Any]]:
    """The objects the kustomization in ``folder`` makes."""
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text(encoding="utf-8"))
    unknown = set(kustomization) - KNOWN
    if unknown:
        raise UnsupportedError(f"{folder}: {', '.join(sorted(unknown))}")
    objects: list[dict[str, Any]] = []
    for entry in kustomization.get("resources", []):
        path = (folder / entry).resolve()
        if path.is_dir():
            objects += render(path)
        else:
            docs = yaml.safe_load_all(path.read_text(encoding="utf-8"))
            objects += [doc for doc in docs if doc]
    objects += [_config_map(folder, g) for g in kustomization.get("configMapGenerator", [])]
    return objects


def _config_map(folder: Path, generator: dict[str, Any]) -> dict[str, Any]:
    options = generator.get("options", {})
    if set(generator) - GENERATOR_KNOWN or set(options) - OPTIONS_KNOWN:
        raise UnsupportedError(f"{folder}: configMapGenerator {generator.get('name')}")
    if options.get("disableNameSuffixHash") is not True:
        raise UnsupportedError(f"{folder}: a name suffix hash (set disableNameSuffixHash: true)")
    data = {}
    for name in generator["files"]:
        path = folder / name
        if path.resolve().parent != folder.resolve():
            raise UnsupportedError(f"{folder}: {name} is outside the kustomization's folder")
        data[path.name] = path.read_text(encoding="utf-8")
    metadata: dict[str, Any] = {"name": generator["name"]}
    if options.get("labels"):
        metadata["labels"] = dict(options["labels"])
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data}


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[1] != "kustomize":
        print(
            "usage: kubectl kustomize DIR (the test fallback knows nothing else)", file=sys.stderr
        )
        return 2
    try:
        objects = render(Path(argv[2]))
    except (UnsupportedError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(yaml.safe_dump_all(objects, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
