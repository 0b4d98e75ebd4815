"""Build hooks of zv-gateway-client: take ``zvg_client/`` and ``schemas/`` from the repository
root (two folders up) when building from the repository, or from the project folder when
building from the source distribution (which holds copies of them); read the version from
``zvg_client/__init__.py`` (its one source)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface
from hatchling.metadata.plugin.interface import MetadataHookInterface

PACKAGES = ("zvg_client", "schemas")


def _source(root: str, package: str) -> Path:
    here = Path(root) / package
    return here if here.is_dir() else Path(root).resolve().parents[1] / package


class CustomMetadataHook(MetadataHookInterface):
    def update(self, metadata: dict[str, Any]) -> None:
        text = (_source(self.root, "zvg_client") / "__init__.py").read_text("utf-8")
        found = re.search(r'^__version__ = "([^"]+)"$', text, re.MULTILINE)
        if found is None:
            raise ValueError("zvg_client/__init__.py sets no __version__")
        metadata["version"] = found.group(1)


class CustomBuildHook(BuildHookInterface):
    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name == "wheel" and version == "editable":
            return  # dev-mode-dirs puts the repository root on sys.path instead
        for package in PACKAGES:
            build_data["force_include"][str(_source(self.root, package))] = package
