"""Purpose binding (doelbinding): the federation policy decides, deny by default
(docs/architecture.md §6).

:func:`evaluate` takes the directory payload and the facts of one message and returns a value:
:class:`Allowed` (with the rule used for each recipient and the directory version) or
:class:`Denied` (with a stable reason code, the recipient and the category or flag at fault). The
node calls it before sealing (the sender refuses with 403) and again after opening (the receiver
trusts its own copy of the directory, not the sender's judgement).

Rules enforced, in order:

1. The sender is a member and acts in a role it holds; each recipient is a member holding the
   role it is addressed in (``unknown_sender``, ``sender_role``, ``unknown_recipient``,
   ``recipient_role``).
2. A ``receipt`` carries no data categories and is always allowed between members (it answers a
   message that was itself allowed); it is decided by the built-in rule ``receipt``.
3. For every recipient, some rule must match the purpose, the message type, the sender and that
   recipient (``no_rule``), and allow every data category (``category_not_allowed``) and every
   explicitly controlled flag — ``professional_secrecy``, ``minors``, ``emergency`` — the message
   declares (``flag_not_allowed``). ``art9``/``art10``/``police_data`` follow from the categories
   (GEZONDHEID/JUSTITIEEL/POLITIE), which the contract already ties to the flags.
4. No rules at all means everything is denied, receipts included (fail closed), never "allow
   all".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from schemas.claims import ClaimsBase
from schemas.directory import DirectoryPayload, PolicyRule

__all__ = [
    "RECEIPT_RULE",
    "Allowed",
    "Denied",
    "DenyReason",
    "MessageFacts",
    "PolicyDecision",
    "evaluate",
]

#: Rule id recorded for receipts (rule 2 above).
RECEIPT_RULE = "receipt"

#: Flags a rule must allow explicitly (the others follow from categories).
_CONTROLLED_FLAGS = ("professional_secrecy", "minors", "emergency")

DenyReason = Literal[
    "unknown_sender",
    "sender_role",
    "unknown_recipient",
    "recipient_role",
    "no_rule",
    "category_not_allowed",
    "flag_not_allowed",
]

Party = tuple[str, str]  # (org OIN, role)


@dataclass(frozen=True)
class MessageFacts:
    """What the policy looks at: never the body, only what the claims declare."""

    purpose: str
    message_type: str
    sender: Party
    recipients: tuple[Party, ...]
    data_categories: frozenset[str]
    flags: frozenset[str]

    @classmethod
    def of(cls, claims: ClaimsBase) -> MessageFacts:
        """The facts of a validated message."""
        flags = claims.flags.model_dump()
        return cls(
            purpose=claims.purpose,
            message_type=claims.message_type,
            sender=(claims.sender.org, claims.sender.role),
            recipients=tuple((r.org, r.role) for r in claims.recipients),
            data_categories=frozenset(claims.data_categories),
            flags=frozenset(name for name, on in flags.items() if on),
        )


@dataclass(frozen=True)
class Allowed:
    """The message may go to every recipient; ``rules`` names the rule used per recipient."""

    directory_version: int
    rules: tuple[tuple[Party, str], ...]

    @property
    def allowed(self) -> Literal[True]:
        return True

    def rule_ids(self) -> tuple[str, ...]:
        """The distinct rule ids used, in order."""
        return tuple(dict.fromkeys(rule for _party, rule in self.rules))


@dataclass(frozen=True)
class Denied:
    """The message may not be sent (or accepted); ``explain()`` says why in one sentence."""

    directory_version: int
    reason: DenyReason
    purpose: str
    message_type: str
    sender: Party
    recipient: Party | None = None
    category: str | None = None
    flag: str | None = None
    rule_id: str | None = None
    rule_allows: tuple[str, ...] = ()

    @property
    def allowed(self) -> Literal[False]:
        return False

    def explain(self, names: dict[str, str] | None = None) -> str:
        """One sentence an integrator understands (no payload content: only codes and names)."""
        names = names or {}

        def who(p: Party | None) -> str:
            if p is None:
                return "?"
            org, role = p
            return f"{role} ({names.get(org, org)})"

        head = (
            f"policy (directory v{self.directory_version}) denies {self.message_type} under "
            f"{self.purpose} from {who(self.sender)}"
        )
        to = f" to {who(self.recipient)}" if self.recipient else ""
        match self.reason:
            case "unknown_sender":
                return f"{head}: the sender is not a member of the federation"
            case "sender_role":
                return f"{head}: the sender does not hold role {self.sender[1]}"
            case "unknown_recipient":
                return f"{head}{to}: the recipient is not a member of the federation"
            case "recipient_role":
                return f"{head}{to}: the recipient does not hold that role"
            case "no_rule":
                return f"{head}{to}: no rule allows this purpose, type and pair of parties"
            case "category_not_allowed":
                return (
                    f"{head}{to}: data category {self.category} is not allowed "
                    f"(rule {self.rule_id} allows {', '.join(self.rule_allows) or 'no categories'})"
                )
        return (  # flag_not_allowed
            f"{head}{to}: flag {self.flag} is not allowed "
            f"(rule {self.rule_id} allows {', '.join(self.rule_allows) or 'no flags'})"
        )


PolicyDecision = Allowed | Denied


def _holds(directory: DirectoryPayload, party: Party) -> tuple[bool, bool]:
    member = directory.member(party[0])
    return member is not None, member is not None and party[1] in member.roles


def _candidates(rules: Iterable[PolicyRule], facts: MessageFacts, to: Party) -> list[PolicyRule]:
    return [
        r
        for r in rules
        if r.purpose == facts.purpose
        and facts.message_type in r.message_types
        and r.sender.matches(*facts.sender)
        and r.recipient.matches(*to)
    ]


def evaluate(directory: DirectoryPayload, facts: MessageFacts) -> PolicyDecision:
    """Decide whether ``facts`` may pass under ``directory``'s policy (module docstring)."""
    version = directory.version

    def deny(
        reason: DenyReason,
        *,
        recipient: Party | None = None,
        category: str | None = None,
        flag: str | None = None,
        rule_id: str | None = None,
        rule_allows: tuple[str, ...] = (),
    ) -> Denied:
        return Denied(
            version,
            reason,
            facts.purpose,
            facts.message_type,
            facts.sender,
            recipient,
            category,
            flag,
            rule_id,
            rule_allows,
        )

    is_member, has_role = _holds(directory, facts.sender)
    if not is_member:
        return deny("unknown_sender")
    if not has_role:
        return deny("sender_role")
    for to in facts.recipients:
        is_member, has_role = _holds(directory, to)
        if not is_member:
            return deny("unknown_recipient", recipient=to)
        if not has_role:
            return deny("recipient_role", recipient=to)
    if not directory.policy.rules:
        return deny("no_rule", recipient=facts.recipients[0] if facts.recipients else None)
    if facts.message_type == "receipt":
        if facts.data_categories:
            return deny(
                "category_not_allowed", category=min(facts.data_categories), rule_id=RECEIPT_RULE
            )
        return Allowed(version, tuple((to, RECEIPT_RULE) for to in facts.recipients))
    controlled = sorted(f for f in facts.flags if f in _CONTROLLED_FLAGS)
    chosen: list[tuple[Party, str]] = []
    for to in facts.recipients:
        candidates = _candidates(directory.policy.rules, facts, to)
        if not candidates:
            return deny("no_rule", recipient=to)
        fitting = [
            r
            for r in candidates
            if facts.data_categories <= set(r.data_categories) and set(controlled) <= set(r.flags)
        ]
        if fitting:
            chosen.append((to, fitting[0].id))
            continue
        # Explain with the candidate that comes closest (fewest categories missing).
        best = min(candidates, key=lambda r: len(facts.data_categories - set(r.data_categories)))
        missing = sorted(facts.data_categories - set(best.data_categories))
        if missing:
            return deny(
                "category_not_allowed",
                recipient=to,
                category=missing[0],
                rule_id=best.id,
                rule_allows=best.data_categories,
            )
        flag = next(f for f in controlled if f not in best.flags)
        return deny(
            "flag_not_allowed", recipient=to, flag=flag, rule_id=best.id, rule_allows=best.flags
        )
    return Allowed(version, tuple(chosen))
