"""What the demo prints: progress a person can follow, and the summary at the end.

Plain text that reads well in any terminal and in a CI log: colour only when stdout is a
terminal (and ``NO_COLOR`` is not set), ASCII instead of ``→ ✓ —`` when the output encoding
cannot show them. Nothing printed is personal data or a secret: organisations, roles, message
types, purposes, categories, counts, and the node's own policy explanation (codes and names).

The summary's figures come from the nodes' audit logs (:func:`read_audit`, the same queries as
``zvg audit query``) and from running ``zvg audit verify`` on every node.
"""

from __future__ import annotations

import os
import sys
import textwrap
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from gateway.audit.inspect import VerifyReport, open_readonly, query, verify_log
from gateway.core.directory import TrustedDirectory
from gateway.node.config import load_config
from gateway.testing.nodes import NodeFiles
from gateway.testing.veenstad import DemoOrg

__all__ = ["Console", "NodeAudit", "read_audit", "read_witnessing"]

#: Width the text is wrapped to.
WIDTH = 100

_BOLD, _GREEN, _RED, _DIM, _RESET = "\033[1m", "\033[32m", "\033[31m", "\033[2m", "\033[0m"


class Console:
    """Writes the demo's output; every write is flushed, so a pipe shows progress live."""

    def __init__(self, stream: TextIO | None = None, *, color: bool | None = None) -> None:
        self.stream = stream or sys.stdout
        tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.color = tty and "NO_COLOR" not in os.environ if color is None else color
        self.open_line = False  # a progress line is being written (no newline yet)
        encoding = getattr(self.stream, "encoding", None) or "ascii"
        try:
            "\u2192\u2713\u2014\u00d7".encode(encoding)
            self.arrow, self.check, self.dash, self.cross = "\u2192", "\u2713", "\u2014", "\u00d7"
        except (UnicodeEncodeError, LookupError):
            self.arrow, self.check, self.dash, self.cross = "->", "ok", "-", "x"

    def _paint(self, text: str, code: str) -> str:
        return f"{code}{text}{_RESET}" if self.color else text

    def bold(self, text: str) -> str:
        return self._paint(text, _BOLD)

    def good(self, text: str) -> str:
        return self._paint(text, _GREEN)

    def bad(self, text: str) -> str:
        return self._paint(text, _RED)

    def dim(self, text: str) -> str:
        return self._paint(text, _DIM)

    def write(self, text: str) -> None:
        if text:
            self.stream.write(text)
            self.stream.flush()
            self.open_line = not text.endswith("\n")

    def end_line(self) -> None:
        """Finish a progress line left open (before an error is printed)."""
        if self.open_line:
            self.write("\n")

    def line(self, text: str = "") -> None:
        self.write(text + "\n")

    def wrapped(self, text: str, indent: int, first: str | None = None) -> None:
        """``text`` wrapped to :data:`WIDTH`, indented (``first`` replaces the first indent)."""
        pad = " " * indent
        for line in textwrap.wrap(
            text,
            width=WIDTH,
            initial_indent=first if first is not None else pad,
            subsequent_indent=pad,
            break_on_hyphens=False,
            break_long_words=False,
        ):
            self.line(line)

    def heading(self, text: str) -> None:
        self.line()
        self.line(self.bold(text))


@dataclass
class NodeAudit:
    """What one node's audit log says about the run."""

    org: DemoOrg
    records: int = 0
    sent: Counter[str] = field(default_factory=Counter)  # purpose -> message.send
    received: Counter[str] = field(default_factory=Counter)  # purpose -> message.receive
    receipts: Counter[str] = field(default_factory=Counter)  # status -> receipt.receive
    denials: list[dict[str, Any]] = field(default_factory=list)  # policy.decision deny views
    deliveries: int = 0  # recipients of what this node sent (message.publish)


def read_audit(node: NodeFiles) -> NodeAudit:
    """Count the node's records (read-only; the node may still run)."""
    audit = NodeAudit(node.org)
    with open_readonly(node.data_dir / "node.db") as db:
        hits = query(db, limit=1_000_000)
    audit.records = len(hits)
    for hit in hits:
        view = hit["view"]
        name = view["name"]
        if name == "message.send":
            audit.sent[view.get("purpose") or "?"] += 1
        elif name == "message.receive":
            audit.received[view.get("purpose") or "?"] += 1
        elif name == "message.publish" and view.get("message_type") != "receipt":
            audit.deliveries += 1
        elif name == "receipt.receive":
            detail = view.get("detail") or {}
            audit.receipts[str(detail.get("status", "?"))] += 1
        elif name == "policy.decision" and view.get("policy_decision") == "deny":
            audit.denials.append({"index": hit["index"], **view})
    return audit


def read_witnessing(node: NodeFiles, directory: TrustedDirectory, now: datetime) -> VerifyReport:
    """Recompute the node's log (as ``zvg audit verify`` does) to see which of its records are
    witnessed. Raises ``VerificationFailed`` if the log does not verify."""
    retention = timedelta(days=load_config(node.config).retention.audit_personal_days)
    with open_readonly(node.data_dir / "node.db") as db:
        return verify_log(
            db, directory=directory, org=node.org.oin, now=now, personal_retention=retention
        )


def display_path(path: Path) -> str:
    """``path`` relative to the current folder when it is below it (shorter commands)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
