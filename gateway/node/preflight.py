"""Everything ``zvg node run`` checks before it opens its store or connects: :func:`preflight`.

``zvg node check-config`` and ``zvg node run`` (:class:`gateway.node.runner.Node`) both call
:func:`preflight`, so a refusal of one is a refusal of the other, with the same one line
(decision 0084). It checks, and reports every problem it finds, not just the first:

- the files the config names (missing, readable by group or others, example files in
  production mode: :func:`check_files`);
- the catalogue, the keys (readable, the right kinds, the passphrase);
- the directory the node would start on (signatures, expiry, the update rules from the version
  it trusted last);
- production mode: no example keys, no directory signed by the example authority;
- this node in the directory: ``node.org`` a member, ``node.node_id`` one of its nodes;
- ``purposes``: known purpose codes;
- ``[broker]``: ``url`` or ``urls`` (not both); scheme (all members alike), no credentials in a
  URL, one vhost, no member twice, a user, the CA for ``amqps://``, a password file or a client
  certificate (these apply to every member).
- ``[console]``, when enabled: loopback only without TLS, the TLS files, a way to log in
  (:func:`gateway.console.config.console_problems`).

One check is not a refusal here: a directory file older than the version the node trusted
(``rollback``). ``zvg node run`` records that attempt in its audit log before it refuses to
start, which a refusal by ``check-config`` (run before every start) would prevent; check-config
warns (decision 0022).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import SplitResult, unquote, urlsplit

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.broker.provision import read_password_file
from gateway.broker.transport import BrokerEndpoint, tls_context
from gateway.console.config import console_problems
from gateway.core import jose
from gateway.core.broker_topology import vhost_name
from gateway.core.directory import TrustedDirectory
from gateway.core.keys import KeyRing
from gateway.errors import LocalError, RemoteError
from gateway.keyfiles import load_audit_key, load_decryption_key, load_signing_key, read_passphrase
from gateway.node.config import NodeConfig
from gateway.node.context import NodeKeys
from gateway.node.trust import (
    RollbackRefused,
    TrustHistory,
    directory_for_reading,
    load_trusted_directory,
    stored_history,
)
from schemas.catalogue import Catalogue, default_catalogue, load_catalogue

__all__ = [
    "EXAMPLE_KIDS_FILE",
    "Checked",
    "Preflight",
    "PreflightError",
    "Rollback",
    "broker_endpoint",
    "broker_urls",
    "broker_vhost",
    "check_files",
    "example_kids",
    "load_catalogue_of",
    "load_keys",
    "preflight",
    "production_problems",
]

EXAMPLE_KIDS_FILE = Path(__file__).resolve().with_name("example_kids.json")


class PreflightError(LocalError):
    """The node may not start: one line, the problems separated by ``; ``."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = tuple(problems)


@dataclass(frozen=True)
class Checked:
    """What a node starts with, loaded and checked by :func:`preflight`."""

    catalogue: Catalogue
    keys: NodeKeys
    directory: TrustedDirectory
    history: TrustHistory
    endpoint: BrokerEndpoint


@dataclass(frozen=True)
class Rollback:
    """A directory file older than the version the node trusted, and what ``zvg node run``
    needs to record the attempt (:func:`gateway.node.trust.record_rollback`)."""

    refused: RollbackRefused
    catalogue: Catalogue
    audit_key: Ed25519PrivateKey


@dataclass(frozen=True)
class Preflight:
    """What :func:`preflight` found: the problems, a rollback, and what passed."""

    problems: tuple[str, ...]
    rollback: Rollback | None = None
    """Refused by ``run`` (after recording it), a warning for ``check-config``."""
    checked: Checked | None = None
    """Set when nothing stops the node but, perhaps, ``rollback``."""

    def raise_problems(self) -> None:
        """:class:`PreflightError` when there is a problem (a rollback is none here)."""
        if self.problems:
            raise PreflightError(list(self.problems))

    def passed(self) -> Checked:
        """What the node starts with; :class:`PreflightError` when there is a problem."""
        self.raise_problems()
        if self.checked is None:  # only a rollback with nothing to check the rest against
            raise PreflightError(["the node's directory could not be checked"])
        return self.checked


def load_catalogue_of(config: NodeConfig) -> Catalogue:
    """The purpose catalogue the config names, else the packaged one."""
    return (
        load_catalogue(config.directory.catalogue)
        if config.directory.catalogue
        else default_catalogue()
    )


def example_kids() -> frozenset[str]:
    """Key ids of keys_example/ (public demo keys). Fails closed: without the list, production
    mode cannot tell example keys from real ones, so it refuses to start."""
    try:
        kids = json.loads(EXAMPLE_KIDS_FILE.read_text(encoding="utf-8"))["kids"]
    except (OSError, ValueError, KeyError, TypeError):
        raise LocalError(
            f"{EXAMPLE_KIDS_FILE} is missing or unreadable; reinstall zv-gateway"
        ) from None
    if not isinstance(kids, list) or not kids:
        raise LocalError(f"{EXAMPLE_KIDS_FILE} lists no key ids; reinstall zv-gateway")
    return frozenset(str(k) for k in kids)


def production_problems(
    config: NodeConfig, directory: TrustedDirectory, keys: NodeKeys
) -> list[str]:
    """Why this node may not run in production mode (empty when it may)."""
    if config.node.mode != "production":
        return []
    problems = [p for p in check_files(config) if "keys_example" in p]
    known = example_kids()
    own = {keys.signing.kid, *keys.ring.kids, jose.thumbprint(keys.audit.public_key())}
    if own & known:
        problems.append(
            "keys: these are example keys from keys_example/; production mode refuses them"
        )
    if {k.kid for k in directory.payload.authority.keys} & known:
        problems.append(
            "directory: signed by the example authority of keys_example/; production refuses it"
        )
    return problems


def load_keys(config: NodeConfig) -> NodeKeys:
    passphrase = (
        read_passphrase(config.keys.passphrase_file) if config.keys.passphrase_file else None
    )
    signing = load_signing_key(config.keys.signing, passphrase)
    ring = KeyRing([load_decryption_key(p, passphrase) for p in config.keys.encryption])
    audit = load_audit_key(config.keys.audit, passphrase)
    return NodeKeys(signing, ring, audit)


def broker_urls(config: NodeConfig) -> list[SplitResult]:
    """The broker member URLs: ``broker.urls``, else the one ``broker.url``; all ``amqp`` or all
    ``amqps``, no credentials, one vhost path, no member twice. Raises :class:`LocalError`."""
    settings = config.broker
    if settings.urls and "url" in settings.model_fields_set:
        raise LocalError("broker: set broker.url (one address) or broker.urls, not both")
    key = "broker.urls" if settings.urls else "broker.url"
    urls = [urlsplit(url) for url in settings.urls or (settings.url,)]
    for url in urls:
        if url.scheme not in ("amqp", "amqps"):
            raise LocalError(f"{key}: scheme must be amqp or amqps, not {url.scheme!r}")
        if url.username or url.password:
            raise LocalError(f"{key}: put no credentials in the URL; use broker.password_file")
        try:
            url.port  # noqa: B018 - parsing it is the check
        except ValueError:
            raise LocalError(f"{key}: {url.netloc!r} has no valid port") from None
    if len({url.scheme for url in urls}) > 1:
        raise LocalError(f"{key}: mix of amqp and amqps (TLS applies to every member)")
    if len({url.path.rstrip("/") for url in urls}) > 1:
        raise LocalError(f"{key}: the members name different vhosts")
    if len({url.netloc for url in urls}) < len(urls):
        raise LocalError(f"{key}: a member is listed twice")
    return urls


def broker_vhost(config: NodeConfig, directory: TrustedDirectory) -> str:
    """The federation's vhost: ``broker.vhost``, else the URLs' path, else ``zvg-<federation>``."""
    path = broker_urls(config)[0].path
    return config.broker.vhost or (
        unquote(path[1:]) if len(path) > 1 else vhost_name(directory.payload.federation)
    )


def broker_endpoint(config: NodeConfig, directory: TrustedDirectory) -> BrokerEndpoint:
    """Where and as whom to connect, from ``[broker]`` and the directory. TLS, the login and
    the password file apply to every member."""
    urls = broker_urls(config)
    url = urls[0]
    member = directory.member(config.node.org)
    user = config.broker.user or (member.broker_user if member else None)
    if user is None:
        raise LocalError("broker.user is not set and this org is not in the directory")
    vhost = broker_vhost(config, directory)
    tls = None
    if url.scheme == "amqps":
        if config.broker.ca_file is None:
            raise LocalError("broker.ca_file is needed for amqps://")
        tls = tls_context(
            str(config.broker.ca_file),
            str(config.broker.cert_file) if config.broker.cert_file else None,
            str(config.broker.key_file) if config.broker.key_file else None,
        )
    password = (
        read_password_file(config.broker.password_file) if config.broker.password_file else None
    )
    if password is None and tls is None:
        raise LocalError("broker.password_file is needed (or client-certificate TLS with amqps://)")
    members = [(u.hostname or "127.0.0.1", u.port or (5671 if tls else 5672)) for u in urls]
    return BrokerEndpoint(
        host=members[0][0],
        port=members[0][1],
        vhost=vhost,
        user=user,
        password=password,
        tls=tls,
        others=tuple(members[1:]),
    )


def _membership(config: NodeConfig, directory: TrustedDirectory) -> list[str]:
    member = directory.member(config.node.org)
    if member is None:
        return [f"node.org: {config.node.org} is not a member of directory v{directory.version}"]
    if config.node.node_id not in member.node_ids:
        listed = ", ".join(member.node_ids)
        where = f"{config.node.org} in directory v{directory.version}"
        return [f"node.node_id: {config.node.node_id} is not a node of {where} (it lists {listed})"]
    return []


def preflight(config: NodeConfig) -> Preflight:
    """Every check ``zvg node run`` makes before it opens its store or connects (module
    docstring). Never raises for a problem of the node's files: it reports them all."""
    found = _preflight(config)
    console = console_problems(config.console, config.console_users_file)
    if not console:
        return found
    return replace(found, problems=found.problems + tuple(console), checked=None)


def _preflight(config: NodeConfig) -> Preflight:
    problems = check_files(config)
    if problems:  # the rest reads those files
        return Preflight(tuple(problems))
    try:
        catalogue = load_catalogue_of(config)
        keys = load_keys(config)
        history = stored_history(config)
    except LocalError as exc:
        return Preflight((str(exc),))
    rollback = None
    try:
        try:
            directory = load_trusted_directory(config, catalogue, history=history)
        except RollbackRefused as refused:
            rollback = Rollback(refused, catalogue, keys.audit)
            try:
                directory = directory_for_reading(config, catalogue)
            except RollbackRefused:  # no version to check the rest against: the rollback says it
                return Preflight((), rollback)
    except RemoteError as exc:
        return Preflight((f"directory.file: refused ({exc.reason}): {exc.detail}",))
    except LocalError as exc:
        return Preflight((f"directory.file: {exc}",))
    problems += [p for p in production_problems(config, directory, keys) if p not in problems]
    problems += _membership(config, directory)
    unknown = sorted(set(config.purposes) - set(catalogue.purpose_by_code))
    if unknown:
        problems.append(f"purposes: unknown purpose codes {unknown}")
    try:
        endpoint = broker_endpoint(config, directory)
    except LocalError as exc:
        problems.append(str(exc))
        return Preflight(tuple(problems), rollback)
    checked = Checked(catalogue, keys, directory, history, endpoint)
    return Preflight(tuple(problems), rollback, checked)


_EXAMPLE_DIR = "keys_example"


def _is_example(path: Path) -> bool:
    return _EXAMPLE_DIR in path.resolve().parts


def check_files(config: NodeConfig) -> list[str]:
    """Problems with the files the config names (missing, too readable, example keys in
    production). Empty when all is well. Never reads key material into the result."""
    problems: list[str] = []
    named = [*config.key_files(), ("directory.file", config.directory.file)]
    for opt in ("passphrase_file",):
        value = getattr(config.keys, opt)
        if value is not None:
            named.append((f"keys.{opt}", value))
    if config.broker.password_file is not None:
        named.append(("broker.password_file", config.broker.password_file))
    for name in ("ca_file", "cert_file", "key_file"):
        value = getattr(config.broker, name)
        if value is not None:
            named.append((f"broker.{name}", value))
    if config.directory.trust_anchor is not None:
        named.append(("directory.trust_anchor", config.directory.trust_anchor))
    secret = {n for n, _ in config.key_files()} | {
        "keys.passphrase_file",
        "broker.password_file",
        "broker.key_file",
    }
    for setting, path in named:
        if not path.is_file():
            problems.append(f"{setting}: {path} does not exist")
            continue
        if setting in secret and path.stat().st_mode & 0o077:
            problems.append(
                f"{setting}: {path} is readable by group or others; run: chmod 600 {path}"
            )
        if config.node.mode == "production" and _is_example(path):
            problems.append(
                f"{setting}: {path} is an example file from keys_example/; production mode "
                "refuses example keys and directories"
            )
    return problems
