"""The ``zvg`` command line: builds and wires everything; the only place that calls ``sys.exit``.

Each area has its own module in this package exposing ``COMMANDS`` (a list of click commands or
groups) that is attached to the top-level group here. Errors from the gateway become one readable
line on stderr and a non-zero exit code: 1 for a refused input or failed check, 2 for usage and
configuration errors, 75 (EX_TEMPFAIL) for transient failures.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import click
from pydantic import ValidationError

from gateway import __version__
from gateway.errors import GatewayError, LocalError, RemoteError, TransientError
from schemas._base import describe_errors

__all__ = ["cli", "main", "one_line_errors"]

T = TypeVar("T")

_AREAS = (
    "schemas",
    "keys",
    "envelope",
    "directory",
    "broker",
    "node",
    "audit",
    "console",
    "rights",
    "adapter",
)


def one_line_errors(call: Callable[[], T]) -> T:
    """``call()``, with gateway errors turned into one line on stderr and an exit code (above).

    Every ``zvg`` command runs through it, and so does the demo's own command (``python -m
    demo``), which sits on top of the CLI."""
    try:
        return call()
    except ValidationError as exc:
        _fail(f"invalid input: {describe_errors(exc)}", 2)
    except RemoteError as exc:
        _fail(f"refused ({exc.reason}): {exc.detail}", 1)
    except TransientError as exc:
        _fail(f"temporary failure, try again: {exc}", 75)
    except LocalError as exc:
        _fail(str(exc), 2)
    except GatewayError as exc:
        _fail(str(exc), 1)


class _Group(click.Group):
    """A click group that turns gateway errors into one line and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        return one_line_errors(lambda: super(_Group, self).invoke(ctx))


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"zvg: error: {message}", err=True)
    sys.exit(code)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="zvg")
def cli() -> None:
    """zv-gateway: federated, signed, end-to-end encrypted, purpose-bound case messaging."""


for _area in _AREAS:
    _module = importlib.import_module(f"gateway.cli.{_area}")
    for _command in _module.COMMANDS:
        cli.add_command(_command)


def main() -> None:
    """Entry point of the ``zvg`` console script."""
    cli(prog_name="zvg")
