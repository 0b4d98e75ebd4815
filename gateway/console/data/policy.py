"""The policy page: the signed federation policy as a readable table, and "may this be shared?".

The table is the policy this node enforces: the rules of its trusted directory (version and
expiry shown), per purpose, who may send which message types with which data categories and
flags to whom, with the purpose's name from the catalogue and the legal basis this organisation
names by default for it (node.toml ``[purposes]``). The question is answered by the node's own
:func:`gateway.core.policy.evaluate` on a described message — no second implementation that
could disagree — and the answer is its decision with the rule(s) used or the one-sentence
explanation of the denial.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from gateway.console.data.records import BadQuery
from gateway.core.policy import Allowed, MessageFacts, evaluate
from schemas.catalogue import MESSAGE_TYPES, Catalogue
from schemas.directory import DirectoryPayload, PartySelector

__all__ = [
    "MAX_RECIPIENTS",
    "PolicyAnswer",
    "PolicyQuestion",
    "PolicyRow",
    "PolicyTable",
    "may_this_be_shared",
    "policy_table",
]

MAX_RECIPIENTS = 16
"""Recipients one question may name: a message in this federation goes to a handful of
partners; the form is not a way to enumerate the directory."""


@dataclass(frozen=True)
class PolicyRow:
    rule_id: str
    description: str
    purpose: str
    purpose_name: str
    sender: str  # ``roles GGZ, VT`` or organisation names
    recipient: str
    message_types: tuple[str, ...]
    data_categories: tuple[str, ...]
    flags: tuple[str, ...]
    legal_basis: tuple[str, ...]


@dataclass(frozen=True)
class PolicyTable:
    directory_version: int
    directory_expires: datetime
    federation: str
    rows: tuple[PolicyRow, ...]  # by purpose, then rule id


def _who(selector: PartySelector, names: Mapping[str, str]) -> str:
    if selector.roles is not None:
        return "roles " + ", ".join(selector.roles)
    return ", ".join(f"{names.get(o, o)} ({o})" for o in selector.orgs or ())


def policy_table(
    directory: DirectoryPayload,
    catalogue: Catalogue,
    *,
    legal_bases: Mapping[str, Sequence[str]],
) -> PolicyTable:
    """The rules of ``directory`` as rows, with the catalogue's purpose names and this node's
    default legal basis per purpose (``legal_bases``: purpose code to codes)."""
    names = {m.oin: m.name for m in directory.members}
    purpose_names = {p.code: p.name_nl for p in catalogue.purposes}
    rows = [
        PolicyRow(
            rule_id=r.id,
            description=r.description,
            purpose=r.purpose,
            purpose_name=purpose_names.get(r.purpose, r.purpose),
            sender=_who(r.sender, names),
            recipient=_who(r.recipient, names),
            message_types=tuple(r.message_types),
            data_categories=tuple(r.data_categories),
            flags=tuple(r.flags),
            legal_basis=tuple(legal_bases.get(r.purpose, ())),
        )
        for r in directory.policy.rules
    ]
    rows.sort(key=lambda r: (r.purpose, r.rule_id))
    return PolicyTable(directory.version, directory.expires, directory.federation, tuple(rows))


@dataclass(frozen=True)
class PolicyQuestion:
    """A described message: type, purpose, sender and recipients as (OIN, role), the data
    categories and the flags it would declare. No content."""

    message_type: str
    purpose: str
    sender: tuple[str, str]
    recipients: tuple[tuple[str, str], ...]
    data_categories: frozenset[str]
    flags: frozenset[str]


@dataclass(frozen=True)
class PolicyAnswer:
    allowed: bool
    directory_version: int
    rules: tuple[tuple[str, str], ...]  # allowed: (recipient, rule id) per recipient
    reason: str | None  # denied: the reason code
    rule_id: str | None  # denied: the rule that came closest, if any
    explanation: str


def may_this_be_shared(
    directory: DirectoryPayload, catalogue: Catalogue, question: PolicyQuestion
) -> PolicyAnswer:
    """The node's policy decision on ``question``, explained in one sentence.

    Raises :class:`BadQuery` for a question the policy cannot be asked: an unknown message
    type, purpose, category or flag, no recipients or too many."""
    if question.message_type not in MESSAGE_TYPES:
        raise BadQuery("unknown message type")
    if question.purpose not in {p.code for p in catalogue.purposes}:
        raise BadQuery("unknown purpose")
    if not question.data_categories <= {c.code for c in catalogue.data_categories}:
        raise BadQuery("unknown data category")
    if not question.flags <= _FLAGS:
        raise BadQuery("unknown flag")
    if not 1 <= len(question.recipients) <= MAX_RECIPIENTS:
        raise BadQuery(f"name 1 to {MAX_RECIPIENTS} recipients")
    decision = evaluate(
        directory,
        MessageFacts(
            purpose=question.purpose,
            message_type=question.message_type,
            sender=question.sender,
            recipients=question.recipients,
            data_categories=question.data_categories,
            flags=question.flags,
        ),
    )
    names = {m.oin: m.name for m in directory.members}
    if isinstance(decision, Allowed):
        rules = tuple((org, rule) for (org, _role), rule in decision.rules)
        who = ", ".join(f"{names.get(o, o)} (rule {r})" for o, r in rules)
        return PolicyAnswer(
            True,
            decision.directory_version,
            rules,
            None,
            None,
            f"policy (directory v{decision.directory_version}) allows {question.message_type}"
            f" under {question.purpose} to {who}",
        )
    return PolicyAnswer(
        False,
        decision.directory_version,
        (),
        decision.reason,
        decision.rule_id,
        decision.explain(names),
    )


#: The flags a message can declare (``schemas.claims`` ``Flags``), as the policy reads them.
_FLAGS = frozenset({"art9", "art10", "police_data", "professional_secrecy", "minors", "emergency"})
