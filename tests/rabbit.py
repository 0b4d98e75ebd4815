"""Throwaway federations (a vhost and its broker users) on the shared RabbitMQ for the integration
and end-to-end tests, provisioned and removed in batches.

Every ``rabbitmqctl`` call starts an Erlang VM (~0.3 s of CPU, seconds of wall time on a busy
2-core machine), so tests do not provision their own: :func:`shared_pool` hands each test a
federation of the :class:`Kind` it asks for (its members and limits). When a kind runs out, the
next batch is made with one ``import_definitions``; a kind's first batch holds one federation and
each later one twice as many (up to :data:`_MAX_BATCH`), so a kind few tests use wastes little.
Each federation serves one test. Finished ones are deleted in one ``rabbitmqctl eval`` per
:data:`_MAX_BATCH` (in the background, behind the next tests), and whatever is left when the
session ends, used or not, in one last call (``tests/conftest.py``). Only objects made here are
ever deleted: the broker is shared with other people's tests.
"""

from __future__ import annotations

import atexit
import json
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.broker.provision import Rabbitmqctl, build_definitions
from gateway.core.broker_topology import DEFAULT_LIMITS, BrokerLimits, BrokerMember, vhost_name

__all__ = [
    "Kind",
    "OnBroker",
    "Pool",
    "Provisioned",
    "finish_removals",
    "provision",
    "remove",
    "shared_pool",
]


@dataclass(frozen=True)
class Kind:
    """What a test's federation looks like: ids ``<federation_prefix>-<tag>``, broker users
    ``<user_prefix>-<tag>-<name>`` for ``members`` (``(name, OIN)`` pairs), and ``limits``."""

    federation_prefix: str
    user_prefix: str
    members: tuple[tuple[str, str], ...]
    limits: BrokerLimits = DEFAULT_LIMITS


@dataclass(frozen=True)
class Provisioned:
    """One provisioned federation; passwords are in ``secrets_dir`` (``password_file``)."""

    tag: str
    federation: str
    users: Mapping[str, str]
    """Member name → broker user."""
    secrets_dir: Path

    @property
    def vhost(self) -> str:
        return vhost_name(self.federation)


class OnBroker:
    """The names of a provisioned federation, for the test fixtures' federation classes."""

    provisioned: Provisioned

    @property
    def federation(self) -> str:
        return self.provisioned.federation

    @property
    def vhost(self) -> str:
        return self.provisioned.vhost


def _make(kind: Kind, root: Path) -> tuple[Provisioned, dict[str, Any]]:
    tag = secrets.token_hex(4)
    users = {name: f"{kind.user_prefix}-{tag}-{name}" for name, _ in kind.members}
    members = [BrokerMember(oin, users[name]) for name, oin in kind.members]
    made = Provisioned(tag, f"{kind.federation_prefix}-{tag}", users, root / tag)
    return made, build_definitions(
        made.federation, members, secrets_dir=made.secrets_dir, limits=kind.limits
    )


def _import(ctl: Rabbitmqctl, made: Sequence[Provisioned], parts: Sequence[dict[str, Any]]) -> None:
    """One ``import_definitions`` for all ``parts`` (every list concatenated); on failure the
    objects are removed again before the error goes up."""
    merged: dict[str, Any] = {}
    for part in parts:
        for key, value in part.items():
            if isinstance(value, list):
                merged.setdefault(key, []).extend(value)
            else:
                merged.setdefault(key, value)
    try:
        ctl.run("import_definitions", "--format", "json", stdin=json.dumps(merged))
    except BaseException:
        remove(ctl, made, wait=True)
        raise


def provision(ctl: Rabbitmqctl, kind: Kind, root: Path) -> Provisioned:
    """One federation of ``kind`` with its own ``import_definitions`` (for a private broker node;
    tests on the shared broker use :func:`shared_pool`). Remove it with :func:`remove`."""
    made, definitions = _make(kind, root)
    _import(ctl, [made], [definitions])
    return made


@dataclass
class _Removal:
    process: subprocess.Popen[bytes]
    fallback: list[list[str]]

    def finish(self) -> None:
        """Wait for the batched deletion; if it failed, delete one object per call instead."""
        if self.process.wait(timeout=120) != 0:
            for command in self.fallback:
                subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, check=False)


_REMOVALS: list[_Removal] = []
"""Deletions still running in the background."""

_MAX_REMOVALS = 2
"""At most this many deletions run in the background; beyond that the caller waits."""


def _erl_binary(text: str) -> str:
    if not all(c.isalnum() or c in "-_.@" for c in text):
        raise ValueError(f"unexpected character in {text!r}")
    return f'<<"{text}">>'


def remove(ctl: Rabbitmqctl, federations: Iterable[Provisioned], *, wait: bool = False) -> None:
    """Delete the vhosts and broker users of ``federations`` (in the background unless ``wait``).

    All of them go in one ``rabbitmqctl eval`` of RabbitMQ's own delete functions (skipping what
    is already gone); if that fails (another RabbitMQ version), one ``delete_vhost`` /
    ``delete_user`` per object follows.
    :func:`finish_removals` waits for the background ones.
    """
    gone = list(federations)
    if not gone:
        return
    vhosts = [f.vhost for f in gone]
    users = [u for f in gone for u in f.users.values()]
    base = [ctl.executable, "-q"] + (["-n", ctl.node] if ctl.node else [])
    vl = ", ".join(_erl_binary(v) for v in vhosts)
    ul = ", ".join(_erl_binary(u) for u in users)
    # Only the objects that exist: one already gone (a test removed it, or its import failed)
    # must not fail the whole batch into one VM start per object. A changed API still fails.
    expression = (
        f'[rabbit_vhost:delete(V, <<"zvg-test">>) || V <- [{vl}], rabbit_vhost:exists(V)], '
        '[rabbit_auth_backend_internal:delete_user(U, <<"zvg-test">>) '
        f"|| U <- [{ul}], "
        "element(1, rabbit_auth_backend_internal:lookup_user(U)) =:= ok], "
        "ok."
    )
    fallback = [[*base, "delete_vhost", v] for v in vhosts]
    fallback += [[*base, "delete_user", u] for u in users]
    process = subprocess.Popen(
        [*base, "eval", expression],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    removal = _Removal(process, fallback)
    if wait:
        removal.finish()
        return
    _REMOVALS.append(removal)
    while len(_REMOVALS) > _MAX_REMOVALS:
        _REMOVALS.pop(0).finish()


_MAX_BATCH = 8
"""The most federations one ``import_definitions`` (or one deletion) handles."""


class Pool:
    """Federations of each :class:`Kind`, provisioned in batches; see the module docstring."""

    def __init__(self, ctl: Rabbitmqctl) -> None:
        self.ctl = ctl
        self._root: Path | None = None
        self._ready: dict[Kind, list[Provisioned]] = {}
        self._next_batch: dict[Kind, int] = {}
        self._done: list[Provisioned] = []

    def take(self, kind: Kind) -> Provisioned:
        """A provisioned federation of ``kind`` that no other test has had."""
        ready = self._ready.setdefault(kind, [])
        if not ready:
            if self._root is None:
                self._root = Path(tempfile.mkdtemp(prefix="zvg-test-broker-"))
            size = self._next_batch.get(kind, 1)
            self._next_batch[kind] = min(2 * size, _MAX_BATCH)
            batch = [_make(kind, self._root) for _ in range(size)]
            _import(self.ctl, [made for made, _ in batch], [d for _, d in batch])
            ready.extend(made for made, _ in batch)
        return ready.pop()

    def release(self, federation: Provisioned) -> None:
        """The test is done with ``federation``: it is deleted with the next batch."""
        self._done.append(federation)
        if len(self._done) >= _MAX_BATCH:
            remove(self.ctl, self._done)
            self._done = []

    def close(self) -> None:
        """Delete every federation still on the broker, used or not, and wait for it."""
        unused = [f for ready in self._ready.values() for f in ready]
        remove(self.ctl, [*self._done, *unused], wait=True)
        self._ready.clear()
        self._done = []
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None


_SHARED: list[Pool] = []


def shared_pool() -> Pool:
    """The process's pool on the shared broker (``rabbitmqctl`` without ``-n``). A pytest session
    empties it when it ends (``tests/conftest.py``); any other user of the harness (a benchmark)
    when the process exits."""
    if not _SHARED:
        _SHARED.append(Pool(Rabbitmqctl()))
        atexit.register(finish_removals)
    return _SHARED[0]


def finish_removals() -> None:
    """Delete what the shared pool still holds and wait for every background deletion."""
    for pool in _SHARED:
        pool.close()
    while _REMOVALS:
        _REMOVALS.pop(0).finish()
