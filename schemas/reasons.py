"""Coarse, public reason codes for refusing a message (receipts, problem+json, dead-letters).

These are the *only* reasons a peer learns. They are deliberately coarse: a peer is told that an
envelope was malformed, not which byte or which check failed (docs/envelope.md §8).
"""

from __future__ import annotations

from typing import Literal, get_args

__all__ = ["REJECT_REASONS", "RejectReason"]

RejectReason = Literal[
    "malformed",  # not parseable as our envelope profile (JSON, base64url, structure)
    "unsupported",  # algorithm, curve, key type or header outside the fixed profile
    "too_large",  # over a named size or count limit
    "not_for_us",  # no recipient entry for one of our current keys
    "undecryptable",  # key agreement, key unwrap or AEAD check failed
    "bad_signature",  # inner JWS signature or content commitment does not verify
    "unknown_sender",  # sender org or signing key not in the directory, or not valid at iat
    "invalid_claims",  # signed claims violate the contract or disagree with the routing header
    "expired",  # outside the iat/exp time window
    "replayed",  # (sender, message id) seen before with different content
    "policy_denied",  # purpose binding: not allowed by the federation policy
    "adapter_rejected",  # the receiving partner's system refused it
    "internal",  # the receiver failed; the sender may retry
]

REJECT_REASONS: frozenset[str] = frozenset(get_args(RejectReason))
