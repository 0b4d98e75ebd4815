"""The access log's cost per request: aiohttp's Apache line through the node's former
hand-written JSON formatter (the baseline) against ``gateway.logs.AccessLog`` through
python-json-logger (decision 0088), issue 18 point 5.

    .venv/bin/python -m benchmarks.access_log [--rounds N] [--ops N]

Each operation is what the node does after answering one request: the access logger builds the
record and the handler formats it and writes the line (to an in-memory stream, so the disk is
not measured). In interleaved rounds (the best round counts; a shared machine only slows a round
down). Results go to benchmarks/results/access_log.json as µs per request and the ratio
new / baseline.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from aiohttp.web_log import AccessLogger
from aiohttp.web_urldispatcher import UrlMappingMatchInfo

from benchmarks._report import print_table, write_results
from gateway.logs import AccessLog, JsonFormatter


class _FormerJsonFormatter(logging.Formatter):
    """``gateway.logs.JsonFormatter`` before decision 0088 (hand-written, ``json.dumps``)."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and record.exc_info[0] is not None:
            doc["exception"] = record.exc_info[0].__name__
        return json.dumps(doc, ensure_ascii=False)


def _logger(name: str, formatter: logging.Formatter) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    logger = logging.getLogger(f"bench.{name}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, stream


async def _status(_request: web.Request) -> web.Response:
    return web.Response()


def _request() -> tuple[web.Request, web.Response]:
    """A ``GET /v1/messages/{message_id}`` matched to its route, as the router leaves it."""
    app = web.Application()
    route = app.router.add_get("/v1/messages/{message_id}", _status)
    message_id = "01JF0Z5Q7W3X9Y2V8N4K6M1P0R"
    # The mocked request carries no match: set the one the router would.
    request = make_mocked_request(
        "GET", f"/v1/messages/{message_id}", headers={"User-Agent": "adapter"}, app=app
    )
    request._match_info = UrlMappingMatchInfo({"message_id": message_id}, route)
    response = web.json_response({"message_id": "01JF0Z5Q7W3X9Y2V8N4K6M1P0R", "status": "sent"})
    return request, response


def _operation(kind: str) -> tuple[Callable[[], None], io.StringIO]:
    request, response = _request()
    if kind == "former":
        logger, stream = _logger(kind, _FormerJsonFormatter())
        access: AccessLogger | AccessLog = AccessLogger(logger, AccessLogger.LOG_FORMAT)
    else:
        logger, stream = _logger(kind, JsonFormatter())
        access = AccessLog(logger, "")
    return (lambda: access.log(request, response, 0.0012)), stream


def _round(op: Callable[[], None], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        op()
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--ops", type=int, default=20_000)
    args = parser.parse_args()
    kinds = ("former", "new")
    ops = {k: _operation(k) for k in kinds}
    best = dict.fromkeys(kinds, float("inf"))
    for _ in range(args.rounds):
        for kind in kinds:
            op, stream = ops[kind]
            best[kind] = min(best[kind], _round(op, args.ops))
            stream.seek(0)
            stream.truncate()
    samples = {}
    for kind in kinds:
        op, stream = ops[kind]
        op()
        samples[kind] = stream.getvalue().strip()
    ratio = best["new"] / best["former"]
    print_table(
        ("access log", "µs / request", "line"),
        [
            ("former: aiohttp Apache line, hand-written JSON", best["former"], samples["former"]),
            ("new: fields, python-json-logger + orjson", best["new"], samples["new"]),
        ],
    )
    print(f"\nnew / former: {ratio:.2f}")
    write_results(
        "access_log",
        {
            "rounds": args.rounds,
            "ops_per_round": args.ops,
            "us_per_request": best,
            "ratio_new_over_former": round(ratio, 3),
            "lines": samples,
        },
    )


if __name__ == "__main__":
    main()
