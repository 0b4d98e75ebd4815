"""One log shape for the node and the adapters
(docs/decisions/0088-one-log-shape-python-json-logger.md): both format with python-json-logger
configured the same way, so the same record gives the same line; fields are top-level; an
exception is its class only."""

from __future__ import annotations

import json
import logging
import sys

from adapters._runtime import _JsonFormatter as AdapterFormatter
from gateway.logs import JsonFormatter as NodeFormatter

SECRET = "999990019"


def _record(**extra: object) -> logging.LogRecord:
    record = logging.LogRecord("zvg.test", logging.WARNING, __file__, 1, "sent %s", ("m1",), None)
    record.created = 1_796_115_660.004  # 2026-12-01T09:01:00.004Z
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def _fail() -> None:
    raise ValueError(f"the input was {SECRET}")


def _failed() -> logging.LogRecord:
    try:
        _fail()
    except ValueError:
        record = _record()
        record.exc_info = sys.exc_info()
    return record


def test_node_and_adapter_lines_have_the_same_shape() -> None:
    for record in (_record(status=200, duration_seconds=0.0012, path="/v1/inbox"), _failed()):
        node_line = NodeFormatter().format(record)
        assert AdapterFormatter().format(record) == node_line
    line = json.loads(NodeFormatter().format(_record(status=200, path="/v1/inbox")))
    assert line == {
        "time": "2026-12-01T09:01:00.004+00:00",
        "level": "warning",
        "logger": "zvg.test",
        "message": "sent m1",
        "status": 200,
        "path": "/v1/inbox",
    }


def test_an_exception_is_logged_as_its_class_only() -> None:
    for formatter in (NodeFormatter(), AdapterFormatter()):
        record = _failed()
        text = formatter.format(record)
        assert json.loads(text)["exception"] == "ValueError"
        assert SECRET not in text
        assert "Traceback" not in text
        # Even when another handler's formatter cached the traceback text on the record.
        logging.Formatter().format(record)
        record.exc_info = None
        assert "Traceback" not in formatter.format(record)
