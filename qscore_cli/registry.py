"""`qscore model ...`: the model lifecycle on the MLflow Model Registry, plus routing checks.

register / promote / rollback / flight / end-flight / status change or read the registry (the
source of truth); `qscore release package` turns its state into the Triton repository and the
routing table workers read. `routes` reads a routing table. Drift, comparison and feedback
reports live in qscore_cli/registry_monitor.py. Heavy modules are imported inside the commands
so `qscore --help` stays fast; every failure a person can cause is a one-line UserError.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from qscore_cli.errors import UserError

if TYPE_CHECKING:
    from qscore.registry import ModelRegistry
    from qscore.registry.catalog import ModelCatalog

app = typer.Typer(
    help="Model lifecycle on the MLflow registry: register, promote, rollback, flights; drift and reports.",
    no_args_is_help=True,
)

Store = Annotated[
    str | None,
    typer.Option(
        "--store",
        help="MLflow tracking/registry URI (default: $QSCORE_MLFLOW_TRACKING_URI, $MLFLOW_TRACKING_URI "
        "or sqlite:///.qscore/mlflow.db).",
    ),
]
RegistryPath = Annotated[
    Path | None,
    typer.Option(
        "--registry",
        help="Routing table (default: $QSCORE_REGISTRY_PATH or .qscore/registry.json).",
    ),
]
Note = Annotated[str, typer.Option("--note", help="Why; kept in the model's history.")]


@contextmanager
def catalog(store: str | None) -> Iterator[ModelCatalog]:
    """The registry at `store`; its refusals become one-line errors."""
    from qscore.registry.catalog import CatalogError, ModelCatalog
    from qscore.registry.signature import ArtefactError

    try:
        yield ModelCatalog(store)
    except (CatalogError, ArtefactError) as exc:
        raise UserError(str(exc)) from None


def open_registry(path: Path | None) -> ModelRegistry:
    """The routing table at `path`; a damaged file is a one-line error, not a traceback."""
    from pydantic import ValidationError

    from qscore.registry import ModelRegistry

    try:
        return ModelRegistry(path)
    except (ValidationError, ValueError, OSError) as exc:
        where = path or "the routing table"
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"cannot read {where}: {first_line}") from None


def _git_commit(folder: Path) -> str:
    """HEAD of the checkout holding `folder` (empty outside a git checkout)."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, check=False
        )
    except OSError:
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def _metrics(pairs: list[str]) -> dict[str, float]:
    metrics: dict[str, float] = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        try:
            metrics[key.strip()] = float(value)
        except ValueError:
            raise UserError(f"--metric wants NAME=NUMBER such as accuracy=0.97, not {pair!r}") from None
    return metrics


@app.command()
def register(
    folder: Annotated[Path, typer.Argument(help="Folder with the ONNX file(s) (and preprocessing/).")],
    name: Annotated[str, typer.Option("--name", help="Registered model name (the Triton model name).")],
    config: Annotated[
        Path | None, typer.Option(help="config.pbtxt (default: in FOLDER or its parent).")
    ] = None,
    metric: Annotated[list[str], typer.Option(help="Evaluation metric NAME=VALUE (repeatable).")] = [],  # noqa: B006
    data_fingerprint: Annotated[str, typer.Option(help="Fingerprint of the training data.")] = "",
    git_commit: Annotated[
        str | None, typer.Option(help="Commit it was built from (default: HEAD of FOLDER's checkout).")
    ] = None,
    note: Note = "",
    store: Store = None,
) -> None:
    """Register the model in FOLDER as a new version of NAME."""
    from qscore.registry.signature import ModelArtefacts

    with catalog(store) as registry:
        artefacts = ModelArtefacts.collect(folder, config=config)
        version = registry.register(
            name,
            artefacts,
            metrics=_metrics(metric),
            data_fingerprint=data_fingerprint,
            git_commit=_git_commit(folder) if git_commit is None else git_commit,
            description=note,
        )
    typer.echo(f"{name}: registered version {version} ({', '.join(artefacts.files)})")


@app.command()
def promote(
    model: str,
    version: str,
    allow_signature_change: Annotated[
        bool, typer.Option(help="Promote even if inputs/outputs differ from production's.")
    ] = False,
    note: Note = "",
    store: Store = None,
) -> None:
    """Alias VERSION of MODEL `production`; the version it replaces becomes `previous`."""
    with catalog(store) as registry:
        before = registry.promote(model, version, allow_signature_change=allow_signature_change, note=note)
    typer.echo(f"{model}: production {before or '(none)'} -> {version}")


@app.command()
def rollback(model: str, note: Note = "", store: Store = None) -> None:
    """Move MODEL's `production` one step back in its history (and end any flight); each
    rollback goes one version further back."""
    with catalog(store) as registry:
        before, after = registry.rollback(model, note=note)
    typer.echo(f"{model}: production {before} -> {after} (rolled back; any flight ended)")


@app.command()
def flight(
    model: str,
    version: str,
    canary: Annotated[
        float | None, typer.Option(min=0.0, max=100.0, help="VERSION answers PCT % of requests.")
    ] = None,
    shadow: Annotated[bool, typer.Option(help="VERSION also scores requests, never replies.")] = False,
    share: Annotated[
        float, typer.Option(min=0.0, max=100.0, help="With --shadow: PCT % of requests it scores.")
    ] = 100.0,
    note: Note = "",
    store: Store = None,
) -> None:
    """Fly VERSION beside production: --canary PCT, or --shadow [--share PCT]."""
    if (canary is None) == (not shadow):
        raise UserError("choose one of --canary PCT or --shadow")
    mode: Literal["canary", "shadow"] = "shadow" if shadow else "canary"
    percent = share if shadow else float(canary or 0.0)
    with catalog(store) as registry:
        registry.start_flight(model, version, mode, percent / 100, note=note)
    typer.echo(f"{model}: {mode} flight of version {version} on {percent:g}% of requests")


@app.command("end-flight")
def end_flight(model: str, note: Note = "", store: Store = None) -> None:
    """Stop MODEL's flight; all traffic goes to production again."""
    with catalog(store) as registry:
        ended = registry.end_flight(model, note=note)
    typer.echo(f"{model}: {ended.mode} flight of version {ended.version} ended")


@app.command()
def status(
    model: Annotated[str | None, typer.Argument(help="Show one model in detail.")] = None,
    history: Annotated[int, typer.Option(help="History entries to show for one model.")] = 10,
    store: Store = None,
) -> None:
    """Versions, aliases, flights, and when each changed and by whom."""
    from qscore_cli.registry_views import history_table, models_table, stdout_console, versions_table

    console = stdout_console()
    with catalog(store) as registry:
        names = [model] if model else registry.models()
        states = [registry.state(name) for name in names]
    if not states:
        console.print(
            f"The registry {registry.tracking_uri} has no models; qscore model register DIR --name NAME"
        )
        return
    console.print(models_table(states))
    if model is not None:
        console.print(versions_table(states[0]))
        console.print(history_table(states[0], limit=history))


@app.command()
def routes(
    model: str,
    requests: Annotated[int, typer.Option(min=1, help="Request ids to route.")] = 10_000,
    versions: Annotated[str, typer.Option(help="Versions Triton serves, comma-separated.")] = "",
    registry: RegistryPath = None,
) -> None:
    """Show how a routing table routes REQUESTS random request ids (checks a flight's share)."""
    from qscore.registry import RegistryError
    from qscore_cli.registry_views import route_counts, routes_table, stdout_console

    table = open_registry(registry)
    available = [version for version in versions.split(",") if version]
    try:
        counts = route_counts(table, model, available=available, requests=requests)
    except RegistryError as exc:
        raise UserError(str(exc)) from None
    stdout_console().print(routes_table(model, counts, requests))


from qscore_cli import registry_monitor as _registry_monitor  # noqa: E402  (registers drift/compare/feedback)

_registry_monitor.register(app)
