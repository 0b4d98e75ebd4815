from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load_example(message_type: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLES / f"{message_type}.json").read_text("utf-8"))
    return copy.deepcopy(data)


@pytest.fixture
def example() -> Any:
    return load_example
