"""Removing throwaway vhosts and users from the shared RabbitMQ after a test (shared by the
integration and end-to-end tests)."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.broker.provision import Rabbitmqctl

__all__ = ["finish_removals", "remove_vhost"]


@dataclass
class _Removal:
    process: subprocess.Popen[bytes]
    fallback: list[list[str]]

    def finish(self) -> None:
        """Wait for the batched deletion; if it failed, delete one object per call instead."""
        if self.process.wait(timeout=60) != 0:
            for command in self.fallback:
                subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, check=False)


_REMOVALS: list[_Removal] = []
"""Deletions of finished tests' vhosts and users, possibly still running."""

_MAX_REMOVALS = 4
"""At most this many deletions run in the background; beyond that a teardown waits."""


def _erl_binary(text: str) -> str:
    if not all(c.isalnum() or c in "-_.@" for c in text):
        raise ValueError(f"unexpected character in {text!r}")
    return f'<<"{text}">>'


def remove_vhost(ctl: Rabbitmqctl, vhost: str, users: Sequence[str], *, wait: bool = False) -> None:
    """Delete a test vhost and its users (in the background unless ``wait``).

    Every rabbitmqctl call starts an Erlang VM (~0.3 s of CPU on a 2-core machine), so the vhost
    and all users go in one ``rabbitmqctl eval`` of RabbitMQ's own delete functions, run behind
    the next test; if that fails (another RabbitMQ version), one ``delete_vhost`` /
    ``delete_user`` per object follows. :func:`_finish_removals` waits for all of them.
    """
    base = [ctl.executable, "-q"] + (["-n", ctl.node] if ctl.node else [])
    ul = ", ".join(_erl_binary(u) for u in users)
    expression = (
        f'rabbit_vhost:delete({_erl_binary(vhost)}, <<"zvg-test">>), '
        f'[ok = rabbit_auth_backend_internal:delete_user(U, <<"zvg-test">>) || U <- [{ul}]], '
        "ok."
    )
    fallback = [[*base, "delete_vhost", vhost]]
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


def finish_removals() -> None:
    """Wait until every background deletion has finished."""
    while _REMOVALS:
        _REMOVALS.pop(0).finish()
