"""Shared output for benchmark scripts: a printed table and a JSON file in benchmarks/results/.

Benchmarks measure ratios against a baseline taken *in the same run* (these machines are noisy);
they are never timed asserts in tests.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print rows as an aligned plain-text table (numbers right-aligned)."""
    cells = [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for raw, row in zip(rows, cells, strict=True):
        print(
            "  ".join(
                c.rjust(w) if isinstance(v, int | float) else c.ljust(w)
                for v, c, w in zip(raw, row, widths, strict=True)
            )
        )


def write_results(name: str, data: dict[str, Any]) -> Path:
    """Write ``data`` with machine facts to ``benchmarks/results/<name>.json``; return the path."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    doc = {
        "benchmark": name,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpu": platform.processor() or "?"},
        **data,
    }
    path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {path.relative_to(RESULTS.parent.parent)}")
    return path


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if value < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
