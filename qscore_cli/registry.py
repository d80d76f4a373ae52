"""`qscore model ...`: the model registry (production tag, promote, rollback, flights) and drift.

Heavy modules (pydantic models, numpy, matplotlib) are imported inside the commands so that
`qscore --help` stays fast. Every failure a person can cause ends as a one-line UserError.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from qscore_cli.errors import UserError

if TYPE_CHECKING:
    from qscore.registry import ModelRegistry

app = typer.Typer(
    help="Model registry: production version, promote, rollback, canary/shadow flights, drift.",
    no_args_is_help=True,
)

RegistryPath = Annotated[
    Path | None,
    typer.Option(
        "--registry", help="Registry file (default: $QSCORE_REGISTRY_PATH or .qscore/registry.json)."
    ),
]
RepoPath = Annotated[
    Path | None,
    typer.Option(
        "--repo", help="Local Triton model repository to check versions against (default: triton_repo/)."
    ),
]
NoCheck = Annotated[
    bool, typer.Option("--no-check", help="Do not check the version exists in a local repository.")
]
Note = Annotated[str, typer.Option("--note", help="Why; kept in the model's history.")]


class FlightMode(StrEnum):
    canary = "canary"
    shadow = "shadow"


def open_registry(path: Path | None) -> ModelRegistry:
    """The registry at `path`; a damaged file is a one-line error, not a traceback."""
    from pydantic import ValidationError

    from qscore.registry import ModelRegistry

    try:
        return ModelRegistry(path)
    except (ValidationError, ValueError, OSError) as exc:
        where = path or "the registry file"
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"cannot read {where}: {first_line}") from None


def _check_version(model: str, version: str, repo: Path | None, no_check: bool) -> None:
    from qscore.registry import RegistryError, check_version, default_repository

    if no_check:
        return
    try:
        check_version(model, version, repo=repo if repo is not None else default_repository())
    except RegistryError as exc:
        raise UserError(str(exc)) from None


@app.command()
def status(
    model: Annotated[str | None, typer.Argument(help="Show one model with its history.")] = None,
    history: Annotated[int, typer.Option(help="History entries to show for one model.")] = 10,
    registry: RegistryPath = None,
) -> None:
    """Production version, labels and flight per model (and the history of one model)."""
    from qscore_cli.registry_views import history_table, status_table, stdout_console

    store = open_registry(registry)
    models = store.document.models
    if model is not None and model not in models:
        raise UserError(f"model {model!r} is not in the registry {store.path}; promote a version first")
    console = stdout_console()
    if not models:
        console.print(f"The registry {store.path} is empty: every model serves its newest version.")
        return
    selected = {model: models[model]} if model else models
    console.print(status_table(selected))
    if model is not None:
        console.print(history_table(model, models[model], limit=history))


@app.command()
def promote(
    model: str,
    version: str,
    note: Note = "",
    repo: RepoPath = None,
    no_check: NoCheck = False,
    registry: RegistryPath = None,
) -> None:
    """Make VERSION the production version of MODEL (ends a flight of that version)."""
    _check_version(model, version, repo, no_check)
    store = open_registry(registry)
    before = store.entry(model).production
    store.promote(model, version, note=note)
    typer.echo(f"{model}: production {before or '(newest)'} -> {version}")


@app.command()
def rollback(model: str, note: Note = "", registry: RegistryPath = None) -> None:
    """Return MODEL's production version to the one before the last promotion."""
    from qscore.registry import RegistryError

    store = open_registry(registry)
    before = store.entry(model).production
    try:
        entry = store.rollback(model, note=note)
    except RegistryError as exc:
        raise UserError(str(exc)) from None
    typer.echo(f"{model}: production {before} -> {entry.production} (rolled back; flight ended)")


@app.command()
def flight(
    model: str,
    version: str,
    mode: Annotated[
        FlightMode,
        typer.Option(
            help="canary: VERSION answers WEIGHT of requests; "
            "shadow: VERSION also scores them, never replies."
        ),
    ] = FlightMode.canary,
    weight: Annotated[float, typer.Option(min=0.0, max=1.0, help="Share of requests, 0..1.")] = 0.1,
    note: Note = "",
    repo: RepoPath = None,
    no_check: NoCheck = False,
    registry: RegistryPath = None,
) -> None:
    """Send a share of MODEL's production traffic to VERSION as a canary or a shadow."""
    from qscore.registry import Flight

    _check_version(model, version, repo, no_check)
    store = open_registry(registry)
    if store.entry(model).production == version:
        raise UserError(f"version {version} is already production for {model!r}; flight another version")
    store.set_flight(model, Flight(mode=mode.value, version=version, weight=weight), note=note)
    typer.echo(f"{model}: {mode.value} flight of version {version} on {weight:.0%} of requests")


@app.command("end-flight")
def end_flight(model: str, note: Note = "", registry: RegistryPath = None) -> None:
    """Stop MODEL's flight; all traffic goes to production again."""
    store = open_registry(registry)
    current = store.entry(model).flight
    if current is None:
        raise UserError(f"model {model!r} has no flight to end")
    store.set_flight(model, None, note=note)
    typer.echo(f"{model}: {current.mode} flight of version {current.version} ended")


@app.command()
def routes(
    model: str,
    requests: Annotated[int, typer.Option(min=1, help="Request ids to route.")] = 10_000,
    repo: RepoPath = None,
    registry: RegistryPath = None,
) -> None:
    """Show how the registry would route REQUESTS random request ids (checks a flight's weight)."""
    from qscore.registry import RegistryError, local_versions
    from qscore_cli.registry_views import route_counts, routes_table, stdout_console

    store = open_registry(registry)
    source = repo if repo is not None else _default_repo()
    available = local_versions(source, model) if source is not None else []
    try:
        counts = route_counts(store, model, available=available, requests=requests)
    except RegistryError as exc:
        raise UserError(str(exc)) from None
    stdout_console().print(routes_table(model, counts, requests))


def _default_repo() -> Path | None:
    from qscore.registry import default_repository

    return default_repository()


@app.command()
def drift(
    log: Annotated[Path, typer.Option("--log", help="Interaction log (JSONL; rotated parts are read too).")],
    model: Annotated[str | None, typer.Option(help="Only this model (default: all in the log).")] = None,
    version: Annotated[str | None, typer.Option(help="Only this model version.")] = None,
    route: Annotated[
        str,
        typer.Option(help="served (production+canary+pinned), production, canary, shadow, pinned or all."),
    ] = "served",
    reference: Annotated[
        str,
        typer.Option(
            help="'auto' (data/digits_test.npz for digits, else first window), 'first-window', "
            "or an .npz with 'pixels' and 'labels'."
        ),
    ] = "auto",
    window_minutes: Annotated[float | None, typer.Option(min=0.0, help="Window by time.")] = None,
    window_records: Annotated[int | None, typer.Option(min=1, help="Window by count (default 500).")] = None,
    psi_warn: Annotated[float, typer.Option(help="PSI for 'warn'.")] = 0.1,
    psi_alert: Annotated[float, typer.Option(help="PSI for 'drift'.")] = 0.25,
    plot: Annotated[Path | None, typer.Option(help="Also draw per-window PSI to this PNG.")] = None,
    fail_on_drift: Annotated[
        bool, typer.Option(help="Exit 1 when any window drifts (for cron alerts).")
    ] = False,
) -> None:
    """Input and prediction drift (PSI, KS) per window of the interaction log against a reference."""
    from qscore_cli.registry_drift import run_drift

    verdict = run_drift(
        log=log,
        model=model,
        version=version,
        route=route,
        reference=reference,
        window_s=window_minutes * 60 if window_minutes else None,
        window_records=window_records,
        psi_warn=psi_warn,
        psi_alert=psi_alert,
        plot=plot,
    )
    if fail_on_drift and verdict == "drift":
        raise typer.Exit(1)
