"""Generate the JSON Schema files in ``schemas/json/`` from the models (``zvg schemas export``).

One file per message type (``<type>.schema.json``: the full claims of that type with its typed
body), ``claims.schema.json`` (any message, discriminated by ``message_type``) and
``catalogue.schema.json`` (the catalogue file format). Partners that do not use Python validate
against these; a test fails when the committed files differ from what the models generate.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from schemas.catalogue import Catalogue
from schemas.claims import CLAIMS_TYPES, SPEC_VERSION, MessageClaims

__all__ = ["JSON_DIR", "SCHEMA_BASE_URI", "check", "generate", "write"]

JSON_DIR = Path(__file__).with_name("json")
SCHEMA_BASE_URI = "https://zv-gateway.example/schemas/zvg-1/"
_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def _finish(schema: dict[str, Any], name: str, title: str) -> str:
    doc = {"$schema": _DIALECT, "$id": SCHEMA_BASE_URI + name, "title": title, **schema}
    doc["title"] = title
    return json.dumps(doc, indent=2, ensure_ascii=False, sort_keys=False) + "\n"


def generate() -> dict[str, str]:
    """File name → JSON Schema text, for every file ``schemas/json/`` should hold."""
    files: dict[str, str] = {}
    for message_type, model in CLAIMS_TYPES.items():
        name = f"{message_type}.schema.json"
        files[name] = _finish(
            model.model_json_schema(), name, f"zv-gateway {SPEC_VERSION} {message_type} message"
        )
    files["claims.schema.json"] = _finish(
        TypeAdapter(MessageClaims).json_schema(),
        "claims.schema.json",
        f"zv-gateway {SPEC_VERSION} message claims (any type)",
    )
    files["catalogue.schema.json"] = _finish(
        Catalogue.model_json_schema(), "catalogue.schema.json", "zv-gateway purpose catalogue"
    )
    return files


def write(out: Path = JSON_DIR) -> list[Path]:
    """Write every schema file into ``out`` (created if missing); return the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in generate().items():
        path = out / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def check(out: Path = JSON_DIR) -> list[str]:
    """Names of files in ``out`` that are missing, stale or unexpected (empty when up to date)."""
    wanted = generate()
    problems = [
        n
        for n, text in wanted.items()
        if not (out / n).is_file() or (out / n).read_text(encoding="utf-8") != text
    ]
    if out.is_dir():
        problems += [p.name for p in sorted(out.glob("*.schema.json")) if p.name not in wanted]
    return problems
