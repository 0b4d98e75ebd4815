"""`zvg adapter NAME --config FILE`: run one of the partner-side adapters until SIGTERM/SIGINT.

The adapters live in ``adapters/`` and never import ``gateway``; this module is the one place
that wires them into the ``zvg`` command line and turns their configuration errors into the
CLI's exit codes (2 for configuration, 75 for a node that cannot be reached at start).
"""

from __future__ import annotations

from pathlib import Path

import click

from gateway.errors import LocalError, TransientError

__all__ = ["COMMANDS", "adapter"]


@click.command("adapter")
@click.argument("name", type=click.Choice(["folder", "webhook", "fhir", "zgw"]))
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The adapter's TOML configuration file.",
)
@click.option("--check", is_flag=True, help="Only load and check the configuration, then exit.")
def adapter(name: str, config_path: Path, check: bool) -> None:
    """Run the adapter NAME (folder, webhook, fhir, zgw) with its configuration FILE.

    Logs one JSON object per line on stderr; serves /healthz and /readyz as configured under
    [health]; stops cleanly on SIGTERM or Ctrl-C.
    """
    from adapters import ADAPTERS
    from adapters._runtime import run_until_stopped
    from adapters.errors import ConfigError
    from zvg_client.errors import NodeError

    module = ADAPTERS[name]()
    try:
        module.load(config_path)
        if check:
            click.echo(f"zvg: {name} adapter configuration {config_path} is valid")
            return
        run_until_stopped(lambda stop: module.run(config_path, stop))
    except ConfigError as exc:
        raise LocalError(str(exc)) from None
    except NodeError as exc:
        raise TransientError(f"node: {exc}") from None


COMMANDS: list[click.Command] = [adapter]
