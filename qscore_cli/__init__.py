"""The `qscore` command line.

Each command group lives in its own module and registers a Typer sub-app here. Modules
import heavy dependencies (numpy, tritonclient, azure SDK) inside the command bodies so
that `qscore --help` stays fast.
"""

from __future__ import annotations

import sys

import typer

from qscore_cli import (
    azurite,
    batch,
    bench,
    bus,
    dead_letters,
    demo,
    enqueue,
    functions,
    registry,
    release,
    release_images,
    scale,
    triton,
    worker,
)
from qscore_cli.errors import UserError

app = typer.Typer(
    name="qscore",
    help="Queue-driven model scoring: local stack, workers, producers, benchmarks, model registry.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(triton.app, name="triton")
app.add_typer(bus.app, name="bus")
app.add_typer(functions.app, name="functions")
app.add_typer(registry.app, name="model")
app.add_typer(release.app, name="release")
app.add_typer(batch.app, name="batch")
app.add_typer(azurite.app, name="azurite")
app.add_typer(dead_letters.app, name="dead-letters")
release_images.register(release.app)
worker.register(app)
demo.register(app)
enqueue.register(app)
bench.register(app)
scale.register(app)


def main() -> None:
    """Console entry point: a person gets one line for a usage error, never a traceback."""
    try:
        app()
    except UserError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
