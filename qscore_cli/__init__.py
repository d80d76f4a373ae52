"""The `qscore` command line.

Each command group lives in its own module and registers a Typer sub-app on the root app
(qscore_cli/commands.py). Modules import heavy dependencies (numpy, tritonclient, azure SDK)
inside the command bodies so that `qscore --help` stays fast, and `qscore worker` with no
arguments (how a pod or `qscore_local.workers` starts one; settings from `QSCORE_*`) does not
import the command tree or Typer at all: a worker's cold start is measured to its first reply.
"""

from __future__ import annotations

import sys
from typing import Any

from qscore_cli.errors import UserError


def __getattr__(name: str) -> Any:
    """`qscore_cli.app`, the root Typer app, built on first use."""
    if name == "app":
        from qscore_cli.commands import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> None:
    """Console entry point: a person gets one line for a usage error, never a traceback."""
    try:
        if sys.argv[1:] == ["worker"]:
            from qscore_cli.worker_start import run_from_env

            run_from_env()
        else:
            from qscore_cli.commands import app

            app()
    except UserError as exc:
        import typer

        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
