"""`qscore scale-sim --compare`: count-based vs metric-based scaling, side by side."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from qscore_cli.errors import UserError

if TYPE_CHECKING:
    from qscore_tools.scaling.compare import PolicyRun

METRIC_COMPONENT = "keda-prometheus"


def run_comparison(
    *,
    overlay: str,
    scaled_object: str,
    per_replica_rate: float,
    rate_source: str,
    steady_rate: float,
    burst_messages: int,
    duration_s: int,
    pod_startup_s: int,
    plot: Path,
) -> None:
    from qscore_cli.scale_output import console
    from qscore_tools.scaling.compare import compare
    from qscore_tools.scaling.config import ManifestError, scaler_spec_from_manifest
    from qscore_tools.scaling.manifests import RenderError, find, render_with_components
    from qscore_tools.scaling.plot import plot_comparison

    if steady_rate <= 0 or burst_messages < 0:
        raise UserError("--steady-rate must be > 0 and --messages >= 0")
    # The metric policy is the overlay with components/keda-prometheus (qa and prod list it: then
    # it is the overlay as rendered); the count policy is the same ScaledObject without its
    # prometheus trigger: what is left while Prometheus cannot be read.
    try:
        metric = find(render_with_components(overlay, [METRIC_COMPONENT]), "ScaledObject", scaled_object)
        if not metric:
            raise UserError(f"overlay {overlay} has no ScaledObject {scaled_object}")
        metric_spec = scaler_spec_from_manifest(metric[0])
        count_spec = replace(metric_spec, prometheus=None)
    except (RenderError, ManifestError) as exc:
        raise UserError(str(exc)) from None
    if metric_spec.prometheus is None:
        raise UserError(f"components/{METRIC_COMPONENT} added no prometheus trigger to {scaled_object}")
    runs = compare(
        count_spec,
        metric_spec,
        steady_rate=steady_rate,
        burst_messages=burst_messages,
        per_replica_rate=per_replica_rate,
        duration_s=duration_s,
        pod_startup_s=pod_startup_s,
    )
    table = Table(
        title=f"scale-sim --compare: {overlay}/{scaled_object}, {per_replica_rate:g} msg/s per replica"
        f" ({rate_source})"
    )
    table.add_column("traffic")
    table.add_column("policy")
    for column in ("replica changes", "replicas", "queue age p99", "burst drained (mean / worst)"):
        table.add_column(column, justify="right")
    table.add_column("replica-seconds", justify="right")
    for run in runs:
        table.add_row(
            run.traffic,
            run.policy,
            str(run.replica_changes),
            f"{run.replicas_low}..{run.replicas_high}",
            f"{run.result.summary.queue_age_p99_s:g} s",
            _drained(run),
            f"{run.result.summary.replica_seconds:,.0f}",
        )
    console.print(table)
    console.print(
        "replica changes and range: after the first 300 s; burst drain: over the burst arriving"
        " at 12 times spread over the middle half of the run (the plot shows the middle one)."
    )
    typer.echo(f"plot: {plot_comparison(runs, plot)}")


def _drained(run: PolicyRun) -> str:
    if not run.burst_drains_s:
        return "-"
    mean, worst = run.burst_drain_mean_s, run.burst_drain_worst_s
    if mean is None or worst is None:
        return "not drained"
    return f"{mean:.0f} s / {worst} s"
