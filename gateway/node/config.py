"""``node.toml``: one file configures a node. Every setting has a documented default.

``load_config(path)`` parses and validates the file and resolves relative paths against the
file's folder. Errors are :class:`~gateway.errors.LocalError` with one line per problem, naming
the setting (``api.listen: …``). :mod:`gateway.node.preflight` checks the rest before
``zvg node check-config`` and ``zvg node run`` go on: that the files the config names exist and
are private enough (``check_files``), and everything else a start needs.

Production mode (``node.mode = "production"``) refuses example keys and directories: any path
inside a ``keys_example`` folder, and any key whose public part is one of ``keys_example``'s.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)
from pydantic_core import PydanticCustomError

from gateway.console.config import ConsoleSettings
from gateway.errors import LocalError
from gateway.node.audit_config import AuditSettings, LdvOtlpSettings
from gateway.node.rights_config import RightsSettings
from gateway.node.store_config import StoreSettings
from schemas._base import NodeId, Oin, describe_errors
from schemas.limits import MAX_RECEIPT_ENTRIES

__all__ = [
    "ApiSettings",
    "AuditSettings",
    "BrokerSettings",
    "DirectorySettings",
    "KeySettings",
    "LdvOtlpSettings",
    "Limits",
    "NodeConfig",
    "PurposeDefaults",
    "Retention",
    "StoreSettings",
    "Token",
    "TokenRole",
    "hash_token",
    "load_config",
]


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


#: The roles of API tokens: ``adapter`` sends and receives; ``auditor`` reads status and the
#: directory; ``contactpunt`` and ``privacy-officer`` read the audit log as Logboek
#: Dataverwerkingen (``POST /v1/processing-activities``, decision 0102) and use the
#: inzageverzoek routes (``/v1/rights``, decision 0106), and nothing else.
TokenRole = Literal["adapter", "auditor", "contactpunt", "privacy-officer"]


def hash_token(token: str) -> str:
    """The SHA-256 hex digest the config stores for a token (tokens are random, 32+ bytes)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class Token(_Settings):
    """An API client: a name for the logs, a role, and the SHA-256 of its bearer token."""

    name: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")]
    role: TokenRole
    sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]

    def matches(self, token: str) -> bool:
        """Constant-time comparison of a presented token with the stored hash."""
        return hmac.compare_digest(hash_token(token), self.sha256)


class NodeSection(_Settings):
    org: Oin
    """The OIN of the organisation this node belongs to."""
    node_id: NodeId
    """This node's id, as listed in the directory."""
    mode: Literal["production", "demo"] = "production"
    """``production`` refuses example keys and directories; ``demo`` allows them."""
    data_dir: Path = Path("var")
    """Where the store (``node.db``) lives; relative to the config file. Created ``0700``, every
    file in it ``0600``; check-config and start-up warn when others may read it."""


class KeySettings(_Settings):
    signing: Path
    """PKCS#8 PEM of the envelope signing key (P-256 or Ed25519)."""
    encryption: Annotated[tuple[Path, ...], Field(min_length=1)]
    """PKCS#8 PEM files of the decryption keys, newest first (old ones stay during rotation)."""
    audit: Path
    """PKCS#8 PEM of the Ed25519 audit-log (checkpoint) key."""
    passphrase_file: Path | None = None
    """A file holding the passphrase of encrypted key files (mode 0600)."""


class DirectorySettings(_Settings):
    file: Path
    """The signed directory (JWS JSON) this node trusts; updates replace it (higher versions)."""
    trust_anchor: Path | None = None
    """A directory version pinned by ops from which ``file`` must be reachable by the update
    rules, the first time the node starts. After that the node starts from the last version it
    trusted (``<data_dir>/trusted-directory.json``, its store, its audit log), so it never rolls
    back."""
    catalogue: Path | None = None
    """The purpose catalogue file; default: the packaged one. Its version must match the
    directory's ``catalogue_version``."""
    expiry_warning_days: Annotated[int, Field(ge=1, le=365)] = 14
    """Warn (log, /readyz detail, metric) this many days before the directory expires."""


class BrokerSettings(_Settings):
    url: str = "amqp://127.0.0.1:5672/"
    """AMQP URL without credentials: host, port, and the federation's vhost path."""
    urls: tuple[str, ...] = ()
    """Instead of ``url``: the members of a RabbitMQ cluster, each an AMQP URL like ``url`` (all
    ``amqp://`` or all ``amqps://``, one vhost path). The node connects to the first that
    answers and, when its member dies, to the next; TLS and the password file apply to all."""
    vhost: str | None = None
    """The vhost (default ``zvg-<federation>`` from the directory)."""
    user: str | None = None
    """The broker user (default: this org's ``broker_user`` in the directory)."""
    password_file: Path | None = None
    """A 0600 file with the broker password written by ``zvg broker provision``."""
    prefetch: Annotated[int, Field(ge=1, le=10_000)] = 128
    """Unacknowledged deliveries the broker may push to this node at once."""
    publish_window: Annotated[int, Field(ge=1, le=10_000)] = 256
    """Publishes awaiting a confirm at once (pipelining bound)."""
    standby_check_seconds: Annotated[float, Field(ge=0.1, le=300)] = 5.0
    """While another process of this organisation consumes its inbox (this one is standby,
    ``/readyz`` 503), seconds between checks whether it is gone; then this one takes over. The
    messages wait durably in the broker meanwhile; a check is one passive queue declare."""
    ca_file: Path | None = None
    """TLS: the CA that signed the broker's certificate (enables TLS with ``amqps://``)."""
    cert_file: Path | None = None
    """TLS: this node's client certificate (for ``auth=external``)."""
    key_file: Path | None = None
    """TLS: the client certificate's private key."""


class ApiSettings(_Settings):
    listen: Annotated[str, StringConstraints(pattern=r"^[0-9a-zA-Z.:\[\]-]+:[0-9]{1,5}$")] = (
        "127.0.0.1:8400"
    )
    """host:port of the local API. Keep it on loopback or a private network."""
    tokens: tuple[Token, ...] = ()
    """API client tokens with their role (stored hashed; make one with ``zvg node new-token``)."""
    idle_timeout_seconds: Annotated[float, Field(gt=0, le=3600)] = 30
    """Seconds a connection has to complete its next request head, from when it opened or got
    its previous answer; then the node closes it. This closes idle keep-alive connections and
    cuts heads sent slowly (a line a second). 30 s: longer than HTTP clients keep idle pooled
    connections (aiohttp's client: 15 s), so clients close idle connections first."""
    body_timeout_seconds: Annotated[float, Field(gt=0, le=3600)] = 30
    """Seconds a request body has to arrive in full after its head; then ``408`` and the
    connection closes (after at most 10 s in which the node discards what still comes, so the
    client can read the answer). 30 s carries ``limits.max_request_bytes`` (512 KiB) at
    17 KiB/s, far slower than any network an adapter sits on."""
    max_connections: Annotated[int, Field(ge=1, le=100_000)] = 128
    """Connections the API serves at once; one more is answered ``503`` and closed. An adapter
    needs a few (a long-poll or event stream, sends); 128 leaves room for many and bounds the
    request bodies held in memory to 64 MiB (128 x 512 KiB)."""

    @field_validator("listen")
    @classmethod
    def _port_in_range(cls, value: str) -> str:
        if not 1 <= int(value.rpartition(":")[2]) <= 65535:
            raise PydanticCustomError("zvg_port", "the port must be from 1 to 65535")
        return value

    @field_validator("tokens")
    @classmethod
    def _unique_tokens(cls, tokens: tuple[Token, ...]) -> tuple[Token, ...]:
        for what, values in (
            ("name", [t.name for t in tokens]),
            ("hash", [t.sha256 for t in tokens]),
        ):
            if len(values) != len(set(values)):
                raise PydanticCustomError("zvg_unique", f"two tokens share a {what}")
        return tokens


class Limits(_Settings):
    max_request_bytes: Annotated[int, Field(ge=1024, le=16 * 2**20)] = 512 * 1024
    """Largest API request body (bytes). A message is a summary, not a file."""
    max_envelope_bytes: Annotated[int, Field(ge=1024, le=16 * 2**20)] = 256 * 1024
    """Largest envelope accepted from the broker (bytes)."""
    max_clock_skew_seconds: Annotated[int, Field(ge=0, le=3600)] = 300
    """How far in the future a sender's ``iat`` may be (5 minutes; docs/envelope.md §2.6)."""
    max_age_seconds: Annotated[int, Field(ge=60, le=30 * 86400)] = 7 * 86400
    """How old a message's ``iat`` may be on arrival (7 days; docs/envelope.md §2.6): the replay
    window."""
    default_ttl_seconds: Annotated[int, Field(ge=60, le=7 * 86400)] = 3 * 86400
    """``expires_at - created_at`` when the adapter does not ask for another lifetime."""
    inbox_wait_max_seconds: Annotated[int, Field(ge=0, le=300)] = 60
    """Longest long-poll an adapter may ask for (``GET /v1/inbox?wait=``)."""
    inbox_page_max: Annotated[int, Field(ge=1, le=1000)] = 100
    """Most items one inbox page returns."""
    outbox_retry_seconds: Annotated[float, Field(ge=0.1, le=3600)] = 5.0
    """Delay before a publish that failed (broker down, nack) is tried again."""
    max_outbox_backlog: Annotated[int, Field(ge=1, le=1_000_000)] = 1024
    """Publishes (one per message and recipient organisation, receipts included) accepted but
    not yet confirmed by the broker above which ``POST /v1/messages`` answers ``429`` with
    ``Retry-After`` instead of accepting (metric ``zvg_outbox_pending``). 1024 is four publish
    windows (``broker.publish_window``), about ten seconds of work at the throughput in
    docs/performance.md: a sustained overload is refused within seconds and memory stays
    flat, while a broker outage of hours at ordinary traffic (a few messages a minute) is
    absorbed without a refusal."""
    receipt_entries: Annotated[int, Field(ge=1, le=MAX_RECEIPT_ENTRIES)] = MAX_RECEIPT_ENTRIES
    """Most receipts one receipt envelope acknowledges. Receipts pending together for one sender
    under one purpose and legal basis share a signed envelope, one entry and inclusion proof
    each (docs/decisions/0006-coalesced-receipts.md); a receipt alone always leaves at once.
    ``1`` sends every receipt in its own envelope, for a partner still on a release that cannot
    read coalesced receipts."""


class Retention(_Settings):
    inbox_after_ack_days: Annotated[float, Field(ge=0, le=3650)] = 30
    """Days a delivered payload stays in the inbox after the adapter acked or rejected it."""
    outbox_after_final_days: Annotated[float, Field(ge=0, le=3650)] = 7
    """Days the sealed envelope stays in the outbox after every recipient answered or it expired."""
    purge_interval_seconds: Annotated[float, Field(ge=1, le=86400)] = 60
    """How often the purge job runs."""
    audit_personal_days: Annotated[float, Field(ge=1, le=36500)] = 5 * 365
    """Days the personal fields of audit records (case reference, subject pseudonyms, actor)
    are kept; then they and their salts are deleted and only the commitments stay."""


class PurposeDefaults(_Settings):
    legal_basis: Annotated[tuple[str, ...], Field(min_length=1)]
    """Legal-basis codes used when an adapter does not name them for this purpose."""
    processing_activity: str
    """The processing activity in this organisation's register for this purpose."""


class NodeConfig(_Settings):
    """The whole ``node.toml``; see ``docs/ops.md`` for a commented example."""

    node: NodeSection
    keys: KeySettings
    directory: DirectorySettings
    broker: BrokerSettings = BrokerSettings()
    store: StoreSettings = StoreSettings()
    api: ApiSettings = ApiSettings()
    limits: Limits = Limits()
    retention: Retention = Retention()
    audit: AuditSettings = AuditSettings()
    console: ConsoleSettings = ConsoleSettings()
    rights: RightsSettings = RightsSettings()
    purposes: dict[str, PurposeDefaults] = {}
    """Per purpose code: default legal basis and processing activity."""
    source: Path = Path("node.toml")
    """The file this config was read from (set by the loader)."""

    @property
    def store_path(self) -> Path:
        return self.node.data_dir / "node.db"

    @property
    def console_users_file(self) -> Path:
        """The console's local accounts: ``console.users_file``, else in the data directory."""
        return self.console.users_file or self.node.data_dir / "console-users.json"

    def key_files(self) -> list[tuple[str, Path]]:
        """Every key file the node will read, with the setting that names it."""
        files = [("keys.signing", self.keys.signing), ("keys.audit", self.keys.audit)]
        files += [(f"keys.encryption[{i}]", p) for i, p in enumerate(self.keys.encryption)]
        return files


_PATH_FIELDS = {
    ("node", "data_dir"),
    ("keys", "signing"),
    ("keys", "audit"),
    ("keys", "passphrase_file"),
    ("directory", "file"),
    ("directory", "trust_anchor"),
    ("directory", "catalogue"),
    ("broker", "password_file"),
    ("broker", "ca_file"),
    ("broker", "cert_file"),
    ("broker", "key_file"),
    ("audit", "pseudonym_key_file"),
    ("rights", "pseudonym_key_file"),
    ("console", "tls_cert"),
    ("console", "tls_key"),
    ("console", "users_file"),
    ("store", "url_file"),
}


def _paths(raw: dict[str, Any], base: Path) -> None:
    node = raw.get("node")
    if isinstance(node, dict):
        # The default is relative to the config file too, not to the working directory.
        node.setdefault("data_dir", str(NodeSection.model_fields["data_dir"].default))
    for section, name in _PATH_FIELDS:
        sec = raw.get(section)
        if isinstance(sec, dict) and isinstance(sec.get(name), str):
            sec[name] = (base / sec[name]).resolve()
    keys = raw.get("keys")
    if isinstance(keys, dict):
        enc = keys.get("encryption")
        if isinstance(enc, str):
            enc = [enc]
        if isinstance(enc, list):
            keys["encryption"] = tuple(
                (base / p).resolve() if isinstance(p, str) else p for p in enc
            )
    console = raw.get("console")
    oidc = console.get("oidc") if isinstance(console, dict) else None
    if isinstance(oidc, dict):
        if isinstance(oidc.get("client_secret_file"), str):
            oidc["client_secret_file"] = (base / oidc["client_secret_file"]).resolve()
        for name in ("scopes", "acr_values"):
            if isinstance(oidc.get(name), list):
                oidc[name] = tuple(oidc[name])
    api = raw.get("api")
    if isinstance(api, dict) and isinstance(api.get("tokens"), list):
        api["tokens"] = tuple(api["tokens"])
    for sec in (raw.get("purposes") or {}).values():
        if isinstance(sec, dict) and isinstance(sec.get("legal_basis"), list):
            sec["legal_basis"] = tuple(sec["legal_basis"])


def load_config(path: Path) -> NodeConfig:
    """Read ``node.toml``. Raises :class:`LocalError` naming every invalid setting."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise LocalError(f"{path}: cannot read the config file ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise LocalError(f"{path}: not UTF-8 (byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise LocalError(f"{path}: not valid TOML ({exc})") from None
    base = path.resolve().parent
    _paths(raw, base)
    raw["source"] = path.resolve()
    try:
        config = NodeConfig.model_validate(raw, strict=False)
    except ValidationError as exc:
        raise LocalError(f"{path}: {describe_errors(exc)}") from None
    if config.store.url_file is None:
        return config
    url = _read_url_file(path, config.store.url_file)
    return config.model_copy(update={"store": config.store.model_copy(update={"url": url})})


def _read_url_file(config: Path, path: Path) -> str:
    """``store.url_file``'s URL. Never quotes the file: the URL may hold a password."""
    where = f"{config}: store.url_file: {path}"
    try:
        with path.open("rb") as handle:
            info = os.fstat(handle.fileno())
            raw = handle.read(4097)
    except OSError as exc:
        raise LocalError(f"{where}: cannot read it ({exc.strerror})") from None
    if info.st_mode & 0o077:
        raise LocalError(f"{where} is readable by group or others; chmod 600 it")
    url = raw.decode("utf-8", errors="replace").strip()
    if len(raw) > 4096 or not re.fullmatch(r"postgres(ql)?://\S+", url):
        raise LocalError(f"{where} does not hold one postgresql:// URL")
    return url
