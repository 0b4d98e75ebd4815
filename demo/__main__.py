"""``python -m demo`` (what ``./scripts/demo`` runs): five partners of ZVH Veenstad handle one
case, from referral to warm handover.

The second of the README's two commands (``./scripts/demo`` sets up the virtualenv and RabbitMQ,
then runs this). Exit codes: 0 when the case ran and every audit log verified; 1 when a step
failed (one line saying which and where to look); 2 for set-up problems (e.g. a ``--work``
folder that is not the demo's); 130/143 when stopped by Ctrl-C/SIGTERM. Every process the demo
started is stopped on every path. Even an unexpected exception is one line (its traceback goes
to a file the line names).
"""

from __future__ import annotations

import os
import sys
import tempfile
import traceback
from pathlib import Path

import click
from pydantic import ValidationError

from demo.run import DemoInterrupted, DemoOptions, run_demo
from gateway.cli import one_line_errors
from gateway.errors import GatewayError

__all__ = ["main"]


@click.command("demo", context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--example-keys",
    is_flag=True,
    help="Use the public example federation in keys_example/ instead of fresh keys.",
)
@click.option(
    "--work",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("demo-work"),
    show_default=True,
    help="Working folder: keys, configs, stores, logs. Wiped at the start of the next run.",
)
@click.option(
    "--keep",
    is_flag=True,
    help=(
        "Keep this run's broker vhost and users afterwards, as long as --work is this run's "
        "folder (a later demo removes them once the folder is gone or reused)."
    ),
)
@click.option(
    "--console",
    is_flag=True,
    help=(
        "Afterwards keep the federation and Gemeente Veenstad's officer console running, "
        "printing its URL and a login made for this run, until Ctrl-C."
    ),
)
def main(example_keys: bool, work: Path, keep: bool, console: bool) -> None:
    """Run a five-partner federation and play case Veenstad-2026-031 end to end.

    Starts five nodes and three adapters as processes, plays the case (referral, screening,
    bekendheidsvraag with a policy denial, enrichment, case meeting, plan, risk signal,
    de-escalation, warm handover, closure), waits until the partners have cosigned each
    other's audit logs, runs `zvg audit verify` on every node and prints a summary. With
    --console the federation then keeps running with one organisation's officer console.
    """
    options = DemoOptions(work=work, example_keys=example_keys, keep=keep, console=console)
    one_line_errors(lambda: _run(options))


def _run(options: DemoOptions) -> None:
    try:
        run_demo(options)
    except DemoInterrupted as exc:
        click.echo(f"zvg: error: {exc}; stopped every process the demo started", err=True)
        sys.exit(128 + exc.signum)
    except KeyboardInterrupt:
        click.echo("zvg: error: interrupted; stopped every process the demo started", err=True)
        sys.exit(130)
    except (GatewayError, ValidationError):
        raise  # one line from one_line_errors
    except Exception as exc:  # noqa: BLE001 - the command promises one line, not a traceback
        where = _save_traceback(options.work)
        click.echo(
            f"zvg: error: the demo failed unexpectedly ({type(exc).__name__}: {exc}); "
            f"traceback in {where}",
            err=True,
        )
        sys.exit(1)


def _save_traceback(work: Path) -> Path:
    """Write the current exception's traceback next to the demo's logs (or to a temp file)."""
    text = traceback.format_exc()
    target = work.absolute() / "logs" / "demo-traceback.txt"
    if target.parent.is_dir():
        try:
            target.write_text(text, encoding="utf-8")
            return target
        except OSError:
            pass
    fd, name = tempfile.mkstemp(prefix="zvg-demo-", suffix=".txt")
    os.write(fd, text.encode("utf-8"))
    os.close(fd)
    return Path(name)


if __name__ == "__main__":
    main(prog_name="python -m demo")
