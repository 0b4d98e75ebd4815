"""``zvg demo``: five partners of ZVH Veenstad handle one case, from referral to warm handover.

The second of the README's two commands (``./scripts/demo`` sets up the virtualenv and RabbitMQ,
then runs this). Exit codes: 0 when the case ran and every audit log verified; 1 when a step
failed (one line saying which and where to look); 2 for set-up problems (e.g. a ``--work``
folder that is not the demo's); 130/143 when stopped by Ctrl-C/SIGTERM. Every process the demo
started is stopped on every path.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

__all__ = ["COMMANDS"]


@click.command("demo")
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
    help="Keep the broker's demo vhost and users afterwards (the next run removes them).",
)
def demo(example_keys: bool, work: Path, keep: bool) -> None:
    """Run a five-partner federation and play case Veenstad-2026-031 end to end.

    Starts five nodes and three adapters as processes, plays the case (referral, screening,
    bekendheidsvraag with a policy denial, enrichment, case meeting, plan, risk signal,
    de-escalation, warm handover, closure), waits until the partners have cosigned each
    other's audit logs, runs `zvg audit verify` on every node and prints a summary.
    """
    from gateway.demo.run import DemoInterrupted, DemoOptions, run_demo

    try:
        run_demo(DemoOptions(work=work, example_keys=example_keys, keep=keep))
    except DemoInterrupted as exc:
        click.echo(f"zvg: error: {exc}; stopped every process the demo started", err=True)
        sys.exit(128 + exc.signum)
    except KeyboardInterrupt:
        click.echo("zvg: error: interrupted; stopped every process the demo started", err=True)
        sys.exit(130)


COMMANDS: list[click.Command] = [demo]
