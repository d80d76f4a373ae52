"""The `qscore` root app: every command group, each in its own module, registered here."""

from __future__ import annotations

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
