"""Named limits of the message contract: each bound on untrusted input has a name, unit and reason.

These are contract limits: a message outside them is invalid for every partner. Transport limits
(envelope bytes, recipients per envelope) live with the envelope in ``gateway.core``.
"""

from __future__ import annotations

from datetime import timedelta

__all__ = [
    "MAX_FREE_TEXT_CHARS",
    "MAX_LIST_ITEMS",
    "MAX_MESSAGE_LIFETIME",
    "MAX_PROOF_TEXT_CHARS",
    "MAX_RECEIPT_ENTRIES",
    "MAX_RECIPIENTS",
    "MAX_RETENTION_DAYS",
    "MAX_SHORT_TEXT_CHARS",
    "MAX_SUBJECTS",
]

#: Characters in one free-text field. A professional's summary, not a file: longer text belongs in
#: the partner's own system, and a bound keeps data minimisation visible.
MAX_FREE_TEXT_CHARS = 2000

#: Characters in a short text (a name, a title, a function): one line on a screen.
MAX_SHORT_TEXT_CHARS = 200

#: Recipients of one message (organisation + role pairs). A casusoverleg rarely has more than ten
#: partners; a larger fan-out is a broadcast, which the federation does not do.
MAX_RECIPIENTS = 16

#: Data subjects named in one message (the betrokkene and household members).
MAX_SUBJECTS = 32

#: Items in any list inside a body (leefgebieden, incidents, tasks, contacts, questions).
MAX_LIST_ITEMS = 50

#: How long a message may live from ``created_at`` to ``expires_at``. Equal to the receiver's
#: maximum ``iat`` age (docs/envelope.md §2.6): a message older than this is refused anyway.
MAX_MESSAGE_LIFETIME = timedelta(days=7)

#: Days a retention instruction may ask for (20 years: the longest Dutch retention periods for
#: justice and youth-care files are of this order; anything longer is a mistake).
MAX_RETENTION_DAYS = 20 * 366

#: Characters of a C2SP tlog-proof or checkpoint note carried in a receipt (63 hashes of 44
#: characters plus a checkpoint with a few cosignatures fit in well under this).
MAX_PROOF_TEXT_CHARS = 16 * 1024

#: Entries in one coalesced receipt (docs/decisions/0006-coalesced-receipts.md). A proof is about
#: 2-4 KiB, so 32 entries stay well inside the envelope's claims limit (160 KiB) while one
#: signature and one encryption cover them; a node seals more receipts as several envelopes.
MAX_RECEIPT_ENTRIES = 32
