"""The ``node.toml`` settings table of ``docs/ops.md``, generated from ``gateway/node/config.py``.

Every setting, its default and its meaning come from the config models and their field
docstrings, so the guide cannot drift from the code: ``tests/deploy/test_ops_guide.py`` fails
when the table in the guide differs from :func:`render_settings_table`. Regenerate with
``python -m gateway.deploy.settings_doc docs/ops.md`` (rewrites the table between the markers).
"""

from __future__ import annotations

import ast
import inspect
import itertools
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from gateway.console import config as console_config_module
from gateway.node import audit_config as audit_config_module
from gateway.node import config as config_module
from gateway.node import rights_config as rights_config_module
from gateway.node import store_config as store_config_module
from gateway.node.config import NodeConfig, PurposeDefaults, Token

__all__ = ["BEGIN", "END", "field_docs", "render_settings_table", "replace_table"]

BEGIN = "<!-- settings:begin (generated: python -m gateway.deploy.settings_doc docs/ops.md) -->"
END = "<!-- settings:end -->"

_TOKEN_DOCS = {
    "name": "A name for the client, in the logs (lower case, digits, `.`, `_`, `-`).",
    "role": (
        "`adapter` (send and receive), `auditor` (read status, the directory and the OpenAPI "
        "document), or `contactpunt` / `privacy-officer` (only the LDV read API, "
        "`POST /v1/processing-activities`; docs/ldv-read-api.md)."
    ),
    "sha256": "SHA-256 (hex) of the bearer token; `zvg node new-token` prints both.",
}
"""``Token``'s fields have no docstrings of their own (its class docstring covers them)."""


def field_docs() -> dict[str, dict[str, str]]:
    """class name -> field name -> the docstring under the field in ``config.py`` (the node's
    and the console's, ``gateway/console/config.py``, ``[audit]``'s,
    ``gateway/node/audit_config.py``, ``[rights]``'s, ``gateway/node/rights_config.py``, and
    ``[store]``'s, ``gateway/node/store_config.py``)."""
    docs: dict[str, dict[str, str]] = {}
    for module in (
        config_module,
        audit_config_module,
        console_config_module,
        rights_config_module,
        store_config_module,
    ):
        docs.update(_field_docs_of(ast.parse(inspect.getsource(module))))
    return docs


def _field_docs_of(tree: ast.Module) -> dict[str, dict[str, str]]:
    docs: dict[str, dict[str, str]] = {}
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        fields: dict[str, str] = {}
        body = node.body
        for current, following in itertools.pairwise(body):
            if (
                isinstance(current, ast.AnnAssign)
                and isinstance(current.target, ast.Name)
                and isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)
            ):
                fields[current.target.id] = " ".join(following.value.value.split())
        docs[node.name] = fields
    return docs


def _default(value: Any) -> str:
    if value is PydanticUndefined:
        return "required"
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Path | str):
        return f"`{json.dumps(str(value))}`"
    if isinstance(value, tuple | list):
        return "`[]`" if not value else f"`{json.dumps([str(v) for v in value])}`"
    if isinstance(value, dict):
        return "`{}`" if not value else f"`{json.dumps(value)}`"
    return f"`{value}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _rows(prefix: str, model: type[BaseModel], docs: dict[str, str]) -> list[str]:
    rows = []
    for name, info in model.model_fields.items():
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            # a subsection ([console.oidc]): its own rows, one level deeper
            rows += _rows(
                f"{prefix}{name}.", info.annotation, field_docs()[info.annotation.__name__]
            )
            continue
        doc = docs.get(name)
        if doc is None:
            raise ValueError(f"{model.__name__}.{name} has no docstring in config.py")
        rows.append(f"| `{prefix}{name}` | {_default(info.default)} | {_cell(doc)} |")
    return rows


def render_settings_table() -> str:
    """The Markdown table of every ``node.toml`` setting (between :data:`BEGIN` and :data:`END`)."""
    docs = field_docs()
    lines = [BEGIN, "", "| setting | default | meaning |", "|---|---|---|"]
    for section, info in NodeConfig.model_fields.items():
        annotation = info.annotation
        if section == "source":
            continue  # set by the loader, not in the file
        if section == "purposes":
            lines += _rows('purposes."<CODE>".', PurposeDefaults, docs["PurposeDefaults"])
            continue
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            raise TypeError(f"NodeConfig.{section} is not a settings section")
        lines += _rows(f"{section}.", annotation, docs[annotation.__name__])
        if section == "api":
            lines += _rows("api.tokens[].", Token, _TOKEN_DOCS)
    lines += ["", END]
    return "\n".join(lines)


def replace_table(text: str) -> str:
    """``text`` with the part from :data:`BEGIN` to :data:`END` replaced by the current table."""
    start, end = text.index(BEGIN), text.index(END) + len(END)
    return text[:start] + render_settings_table() + text[end:]


def main(argv: list[str]) -> int:
    """``python -m gateway.deploy.settings_doc FILE``: rewrite the table in FILE."""
    if len(argv) != 2:
        print("usage: python -m gateway.deploy.settings_doc FILE", file=sys.stderr)
        return 2
    path = Path(argv[1])
    path.write_text(replace_table(path.read_text(encoding="utf-8")), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
