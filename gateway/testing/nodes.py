"""Node configuration files for the demo federation (the demo, the tests, the compose example)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from gateway.node.config import hash_token
from gateway.testing.veenstad import LEGAL_BASES, DemoOrg
from schemas.catalogue import Catalogue

__all__ = ["NodeFiles", "write_node_config"]


@dataclass(frozen=True)
class NodeFiles:
    org: DemoOrg
    config: Path
    data_dir: Path
    listen: str
    token: str

    @property
    def url(self) -> str:
        return f"http://{self.listen}"


def _s(value: str | Path) -> str:
    return json.dumps(str(value))  # a TOML basic string (JSON escapes are valid TOML)


def _rights(pseudonym_key_file: Path | None, defer_ground: str | None) -> list[str]:
    if pseudonym_key_file is None and defer_ground is None:
        return []
    return [
        "[rights]",
        *([f"pseudonym_key_file = {_s(pseudonym_key_file)}"] if pseudonym_key_file else []),
        *(["defer = true", f"defer_ground = {_s(defer_ground)}"] if defer_ground else []),
        "",
    ]


def write_node_config(
    path: Path,
    *,
    org: DemoOrg,
    keys_dir: Path,
    directory: Path,
    data_dir: Path,
    broker_url: str,
    password_file: Path | None,
    listen: str,
    token: str,
    catalogue: Catalogue,
    mode: str = "demo",
    checkpoint_interval_s: float = 5.0,
    broker_tls: tuple[Path, Path, Path] | None = None,
    broker_urls: tuple[str, ...] = (),
    pseudonym_key_file: Path | None = None,
    defer_ground: str | None = None,
) -> NodeFiles:
    """Write a ``node.toml`` for one demo organisation; returns where everything is.

    ``broker_tls`` = (CA, client certificate, client key) switches to certificate login over TLS
    (``amqps://`` URL, no password). ``broker_urls`` (the members of a cluster) replaces
    ``broker_url``. ``pseudonym_key_file`` (the organisation's subject pseudonym key) and
    ``defer_ground`` (``WPG``, ``WJSG``, ``AVG_23``: the node defers every inzageverzoek) fill
    ``[rights]`` (docs/subject-rights.md, decision 0114)."""
    role = org.roles[0]
    lines = [
        "# zv-gateway node configuration (generated for the demo federation).",
        "[node]",
        f"org = {_s(org.oin)}",
        f"node_id = {_s(org.node_id)}",
        f"mode = {_s(mode)}",
        f"data_dir = {_s(data_dir)}",
        "",
        "[keys]",
        f"signing = {_s(keys_dir / f'{org.oin}.signing.key.pem')}",
        f"encryption = [{_s(keys_dir / f'{org.oin}.encryption.key.pem')}]",
        f"audit = {_s(keys_dir / f'{org.oin}.audit.key.pem')}",
        "",
        "[directory]",
        f"file = {_s(directory)}",
        "",
        "[broker]",
        (
            "urls = [" + ", ".join(_s(u) for u in broker_urls) + "]"
            if broker_urls
            else f"url = {_s(broker_url)}"
        ),
        *([f"password_file = {_s(password_file)}"] if password_file else []),
        *(
            [
                f"ca_file = {_s(broker_tls[0])}",
                f"cert_file = {_s(broker_tls[1])}",
                f"key_file = {_s(broker_tls[2])}",
            ]
            if broker_tls
            else []
        ),
        "",
        "[api]",
        f"listen = {_s(listen)}",
        "",
        "[[api.tokens]]",
        f'name = "{org.key}-adapter"',
        'role = "adapter"',
        f"sha256 = {_s(hash_token(token))}",
        "",
        "[[api.tokens]]",
        f'name = "{org.key}-auditor"',
        'role = "auditor"',
        f"sha256 = {_s(hash_token(token + '-auditor'))}",
        "",
        *(
            line
            for role in ("contactpunt", "privacy-officer")
            for line in (
                "[[api.tokens]]",
                f'name = "{org.key}-{role}"',
                f"role = {_s(role)}",
                f"sha256 = {_s(hash_token(f'{token}-{role}'))}",
                "",
            )
        ),
        "[audit]",
        f"checkpoint_interval_seconds = {checkpoint_interval_s}",
        "",
        *_rights(pseudonym_key_file, defer_ground),
    ]
    for purpose in catalogue.purposes:
        lines += [
            f'[purposes."{purpose.code}"]',
            "legal_basis = [" + ", ".join(_s(b) for b in LEGAL_BASES.get(role, ("WGS",))) + "]",
            "processing_activity = "
            + _s(
                f"https://register.{org.key}.veenstad.example/verwerkingen/{purpose.code.lower()}/v1"
            ),
            "",
        ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines), encoding="utf-8")
    return NodeFiles(org, path, data_dir, listen, token)
