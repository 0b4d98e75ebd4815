"""One error tree for the whole node, split by blame (design principle 8, "one error tree,
split by blame", docs/architecture.md §14).

- :class:`RemoteError` — a peer or an adapter sent something bad. Carries a coarse public
  ``reason`` (one of :data:`schemas.reasons.RejectReason`) that may be shown to the other side,
  and a precise internal ``detail`` that stays in our own logs. Peers only ever see ``reason``.
- :class:`LocalError` — our own configuration or misuse of an API. Fix the config, not the input.
- :class:`TransientError` — worth retrying later (broker down, store busy).

Only the CLI turns these into exit codes; library code never calls ``sys.exit``.
"""

from __future__ import annotations

from schemas.reasons import RejectReason

__all__ = ["GatewayError", "LocalError", "RemoteError", "TransientError"]


class GatewayError(Exception):
    """Root of every error zv-gateway raises on purpose."""


class RemoteError(GatewayError):
    """Input from outside (peer envelope, adapter request) was refused.

    ``reason`` is the coarse, public reason code; ``detail`` says precisely which rule failed and
    must never be sent to the other side (it would tell an attacker which check to work around).
    ``str(error)`` is the detail, for our own logs. Neither ever contains payload content or keys.
    """

    def __init__(self, reason: RejectReason, detail: str) -> None:
        super().__init__(detail)
        self.reason: RejectReason = reason
        self.detail = detail


class LocalError(GatewayError):
    """Our own configuration, key files or call was wrong; retrying will not help."""


class TransientError(GatewayError):
    """A temporary failure (broker unreachable, store locked); the operation may be retried."""
