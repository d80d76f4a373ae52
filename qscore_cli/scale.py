"""`qscore scale-sim`: simulate KEDA + HPA for an overlay's ScaledObject and recommend settings."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from qscore_cli.errors import UserError

if TYPE_CHECKING:
    from qscore_tools.scaling.traffic import TrafficShape


def register(app: typer.Typer) -> None:
    """Attach this module's command(s) to the root app."""
    app.command("scale-sim")(scale_sim)


def _per_replica_rate(rate: float | None, bench: Path | None) -> tuple[float, str]:
    from qscore_tools.scaling.bench_input import (
        BenchInputError,
        latest_bench_result,
        per_replica_rate_from_bench,
    )
    from qscore_tools.scaling.manifests import repo_root

    if rate is not None:
        if rate <= 0:
            raise UserError("--per-replica-rate must be > 0 messages/s")
        return rate, "--per-replica-rate"
    path = bench or latest_bench_result(repo_root() / "bench" / "results")
    if path is None:
        raise UserError(
            "no queue bench result in bench/results (run `qscore bench`): "
            "pass --per-replica-rate or --bench FILE"
        )
    try:
        return per_replica_rate_from_bench(path), str(path)
    except BenchInputError as exc:
        raise UserError(str(exc)) from None


def _traffic(shape: str, *, messages: int, peak_rate: float, base_rate: float, period_s: int) -> TrafficShape:
    from qscore_tools.scaling.traffic import Burst, Diurnal, Ramp

    if shape == "burst":
        return Burst(messages=messages, at_s=5, baseline_rate=base_rate)
    if shape == "ramp":
        return Ramp(start_rate=base_rate, peak=peak_rate, ramp_s=period_s // 2, hold_s=period_s // 4)
    if shape == "diurnal":
        return Diurnal(min_rate=base_rate, peak=peak_rate, period_s=period_s)
    raise UserError(f"unknown --traffic {shape!r}: use burst, ramp or diurnal")


def scale_sim(
    overlay: Annotated[
        str, typer.Option(help="Overlay under deploy/overlays to read (dev, qa, prod).")
    ] = "prod",
    scaled_object: Annotated[str, typer.Option(help="ScaledObject name in the overlay.")] = "qscore-worker",
    per_replica_rate: Annotated[
        float | None, typer.Option(help="Messages/s one worker replica completes (overrides --bench).")
    ] = None,
    bench: Annotated[
        Path | None, typer.Option(help="qscore bench result; reads worker.messages_per_s_per_replica.")
    ] = None,
    traffic: Annotated[str, typer.Option(help="Traffic shape: burst, ramp or diurnal.")] = "burst",
    messages: Annotated[int, typer.Option(help="burst: messages arriving at once.")] = 50_000,
    peak_rate: Annotated[float, typer.Option(help="ramp/diurnal: peak arrival rate, messages/s.")] = 2_000.0,
    base_rate: Annotated[float, typer.Option(help="Baseline/minimum arrival rate, messages/s.")] = 0.0,
    period: Annotated[int, typer.Option(help="ramp/diurnal: period of the shape in seconds.")] = 3_600,
    duration: Annotated[int | None, typer.Option(help="Simulated seconds (default: fits the shape).")] = None,
    pod_startup: Annotated[int, typer.Option(help="Seconds from pod creation to ready.")] = 20,
    target_age: Annotated[float, typer.Option(help="Target queue-age p99 (s) to recommend for.")] = 10.0,
    plot: Annotated[Path, typer.Option(help="Where to write the PNG.")] = Path("bench/results/scale-sim.png"),
    recommend: Annotated[bool, typer.Option(help="Search messageCount and bounds for --target-age.")] = True,
    compare: Annotated[
        bool,
        typer.Option(
            help="Count-based vs metric-based (components/keda-prometheus) on a steady load and a burst."
        ),
    ] = False,
    steady_rate: Annotated[
        float, typer.Option(help="--compare: steady arrival rate, messages/s.")
    ] = 12_000.0,
) -> None:
    """Simulate KEDA + HPA scaling of the workers from an overlay's rendered ScaledObject."""
    from qscore_cli.scale_output import print_recommendation, print_summary, progress_bar
    from qscore_tools.scaling.config import ManifestError, scaler_spec_from_manifest
    from qscore_tools.scaling.manifests import RenderError, find, render_overlay
    from qscore_tools.scaling.plot import plot_result
    from qscore_tools.scaling.recommend import recommend as search
    from qscore_tools.scaling.simulator import SimulationSettings, simulate

    rate, rate_source = _per_replica_rate(per_replica_rate, bench)
    if compare:
        from qscore_cli.scale_compare import run_comparison

        run_comparison(
            overlay=overlay,
            scaled_object=scaled_object,
            per_replica_rate=rate,
            rate_source=rate_source,
            steady_rate=steady_rate,
            burst_messages=messages,
            duration_s=duration or 1_800,
            pod_startup_s=pod_startup,
            plot=plot,
        )
        return
    shape = _traffic(traffic, messages=messages, peak_rate=peak_rate, base_rate=base_rate, period_s=period)
    try:
        found = find(render_overlay(overlay), "ScaledObject", scaled_object)
        if not found:
            raise UserError(f"overlay {overlay} has no ScaledObject {scaled_object}")
        spec = scaler_spec_from_manifest(found[0])
    except (RenderError, ManifestError) as exc:
        raise UserError(str(exc)) from None
    seconds = duration or (1_800 if traffic == "burst" else period)
    settings = SimulationSettings(duration_s=seconds, per_replica_rate=rate, pod_startup_s=pod_startup)
    with progress_bar() as (progress, task):
        progress.update(task, description="simulating", total=seconds)
        result = simulate(
            spec, shape, settings, on_progress=lambda done, _: progress.update(task, completed=done)
        )
        progress.update(task, completed=seconds)
    print_summary(result, overlay=overlay, traffic=shape.describe(), rate_source=rate_source)
    png = plot_result(result, plot, title=f"{overlay}/{scaled_object}: {shape.describe()}")
    typer.echo(f"plot: {png}")
    if recommend:
        with progress_bar() as (progress, task):
            progress.update(task, description="searching messageCount and bounds")
            advice = search(
                spec,
                shape,
                settings,
                target_age_s=target_age,
                on_candidate=lambda done, total: progress.update(task, completed=done, total=total),
            )
        print_recommendation(advice, spec, target_age_s=target_age)
