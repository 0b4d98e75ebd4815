"""Structured log lines (one JSON object per line) for ``zvg node run``, in the shape the adapters
log too (docs/decisions/0088-one-log-shape-python-json-logger.md; docs/ops.md lists the fields).

Every line has ``time`` (UTC, ISO 8601, milliseconds), ``level``, ``logger`` and ``message``;
a line about an exception adds ``exception``, the exception class only — never its text or
traceback (third-party code may quote input). Fields a caller passes as ``extra`` are top-level
fields of the line: the access log (:class:`AccessLog`) gives ``method``, ``path`` (the route
template, never the query string), ``status``, ``duration_seconds``, ``bytes`` and ``remote``.
python-json-logger builds the line, orjson encodes it. Callers never log payload content,
personal data or key material in the first place.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse
from aiohttp.web_urldispatcher import UrlMappingMatchInfo
from pythonjsonlogger.orjson import OrjsonFormatter

__all__ = ["AccessLog", "JsonFormatter", "setup_logging"]

_ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]


class JsonFormatter(OrjsonFormatter):
    """The log shape (module docstring). The adapters configure the same library the same way
    (``adapters/_runtime.py``; a test compares the two)."""

    def __init__(self) -> None:
        super().__init__(rename_fields={"exc_info": "exception"})

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        log_data["time"] = datetime.fromtimestamp(record.created, UTC).isoformat(
            timespec="milliseconds"
        )
        log_data["level"] = record.levelname.lower()
        log_data["logger"] = record.name
        log_data["message"] = record.message
        if not record.exc_info:  # the text another formatter cached: a traceback, never here
            message_dict.pop("exc_info", None)
        super().add_fields(log_data, record, message_dict)

    def formatException(self, ei: _ExcInfo) -> str:  # noqa: N802 - logging.Formatter's name
        """The exception class only (module docstring)."""
        return ei[0].__name__ if ei[0] is not None else ""


class AccessLog(AbstractAccessLogger):
    """aiohttp's access log as fields, not an Apache line: ``GET /v1/messages/{message_id} 200``
    as ``message`` and ``method``, ``path`` (the route template: ids and the query string, which
    may hold a case reference, stay out), ``status``, ``duration_seconds``, ``bytes`` (sent,
    the head included, as aiohttp counts them) and ``remote``."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        # Not ``request.match_info``: it asserts on a request refused before routing (aiohttp's
        # parser errors, a body that does not decode), which is logged too.
        match_info: UrlMappingMatchInfo | None = getattr(request, "_match_info", None)
        resource = match_info.route.resource if match_info is not None else None
        path = resource.canonical if resource is not None else "(no route)"
        self.logger.info(
            "%s %s %s",
            request.method,
            path,
            response.status,
            extra={
                "method": request.method,
                "path": path,
                "status": response.status,
                "duration_seconds": round(time, 6),
                "bytes": response.body_length,
                "remote": request.remote,
            },
        )

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)


def setup_logging(level: str = "INFO") -> None:
    """Send all logging to stderr as JSON lines (replacing earlier handlers)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aio-pika logs every reconnect attempt at ERROR with a traceback; keep it to warnings.
    logging.getLogger("aio_pika").setLevel(logging.CRITICAL)
    logging.getLogger("aiormq").setLevel(logging.CRITICAL)
