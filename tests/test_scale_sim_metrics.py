"""Scaling on the workers' own metrics: the simulator's prometheus trigger, the realistic
active count, and the count-vs-metric comparison, on hand-computed cases; the keda-prometheus
component renders and validates; `qscore scale-sim --compare` end to end."""

from __future__ import annotations

import itertools
import re
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from qscore_cli import app
from qscore_tools.scaling.compare import burst_times, compare, drain_after, replica_changes
from qscore_tools.scaling.config import (
    ManifestError,
    PrometheusTrigger,
    ScalerSpec,
    default_scale_down,
    default_scale_up,
    scaler_spec_from_manifest,
)
from qscore_tools.scaling.hpa import HpaController
from qscore_tools.scaling.manifests import find, render_with_components
from qscore_tools.scaling.simulator import SimulationSettings, Timeline, WorkerSignal, drain_time, simulate
from qscore_tools.scaling.traffic import Burst, Steady
from qscore_tools.scaling.validate import validate_keda


def test_worker_signal_is_throughput_times_one_plus_wait_over_drain_target() -> None:
    signal = WorkerSignal(window_s=4, drain_target_s=10)
    assert signal.value() == 0.0  # no completions: no data, 0
    signal.add(10, 0)  # 10 done without waiting
    signal.add(10, 20)  # 10 done after 2 s each
    # 20 done in a 4 s window: 5/s; mean wait 20/20 = 1 s: 5 x (1 + 1/10) = 5.5
    assert signal.value() == 5.5
    for _ in range(3):
        signal.add(0, 0)
    # The first second left the window: 10 done, 2 s mean wait: 2.5 x 1.2 = 3.0
    assert signal.value() == 3.0


def test_hpa_takes_the_largest_metric_then_rate_limits() -> None:
    hpa = HpaController(1, 100, default_scale_up(), default_scale_down())
    # count metric asks ceil(100/100) = 1, prometheus ceil(1000/100) = 10; from 2 replicas the
    # default scale-up allows max(2 x 2, 2 + 4) = 6.
    assert hpa.sync_metrics(0, 2, [(100, 100), (1000, 100)]) == 6


def test_active_count_of_a_fleet_that_keeps_up_is_small() -> None:
    spec = ScalerSpec("w", message_count=40, polling_interval_s=15, min_replicas=1, max_replicas=10)
    # 100 msg/s, one replica scores 200/s. Counted before serving (1 s resolution) KEDA sees
    # 100 active: ceil(100/40) = 3 replicas. Counted as a fleet that keeps up shows it
    # (locked 0.2 s while scored): 100 x 0.2 = 20 active, ceil(20/40) = 1 replica.
    coarse = simulate(spec, Steady(100), SimulationSettings(duration_s=60, per_replica_rate=200))
    real = simulate(
        spec, Steady(100), SimulationSettings(duration_s=60, per_replica_rate=200, active_time_s=0.2)
    )
    assert coarse.timeline.replicas[-1] == 3
    assert set(real.timeline.replicas) == {1}


def _specs() -> tuple[ScalerSpec, ScalerSpec]:
    count = ScalerSpec("w", message_count=1000, polling_interval_s=10, min_replicas=1, max_replicas=20)
    return count, replace(count, prometheus=PrometheusTrigger(threshold=80, drain_target_s=30))


def test_prometheus_trigger_holds_the_replicas_a_steady_load_needs() -> None:
    count, metric = _specs()
    settings = SimulationSettings(
        duration_s=600, per_replica_rate=100, initial_replicas=5, active_time_s=0.05, warm_start=True
    )
    # 400 msg/s all served at once: metric 400 x (1 + 0/30) = 400 = 80 x 5 replicas, inside the
    # HPA's tolerance; the count trigger asks ceil(400 x 0.05 / 1000) = 1. The larger: 5.
    held = simulate(metric, Steady(400), settings)
    assert set(held.timeline.replicas) == {5}
    assert max(held.timeline.backlog) == 0
    # The count trigger alone scales in to 1 (capacity 100 < 400), a backlog builds, it scales
    # out again, and so on.
    flapping = simulate(count, Steady(400), settings)
    assert min(flapping.timeline.replicas) == 1
    assert replica_changes(flapping.timeline, 0) >= 4
    assert max(flapping.timeline.backlog) > 1000


def test_compare_steady_and_bursts() -> None:
    count, metric = _specs()
    runs = compare(
        count, metric, steady_rate=400, burst_messages=20_000, per_replica_rate=100, duration_s=900
    )
    by = {(run.policy, run.traffic.split()[0]): run for run in runs}
    assert by[("metric-based", "steady")].replica_changes == 0
    assert (by[("metric-based", "steady")].replicas_low, by[("metric-based", "steady")].replicas_high) == (
        5,
        5,
    )
    assert by[("count-based", "steady")].replica_changes > 0
    for policy in ("count-based", "metric-based"):
        drains = by[(policy, "burst")].burst_drains_s
        assert len(drains) == len(burst_times(900)) and None not in drains


def test_helpers_on_a_small_timeline() -> None:
    timeline = Timeline()
    for t, (backlog, replicas) in enumerate([(0, 1), (50, 1), (20, 2), (0.5, 2), (0, 1)]):
        timeline.record(t, backlog, replicas, replicas, 0)
    assert replica_changes(timeline, 0) == 2
    assert drain_after(timeline, 1) == 2
    assert burst_times(1000, 4) == [250, 375, 500, 625]


def test_keda_prometheus_component_renders_validates_and_reads() -> None:
    docs = render_with_components("prod", ["keda-prometheus"])
    assert validate_keda(docs) == []
    (scaled,) = find(docs, "ScaledObject", "qscore-worker")
    # The metric trigger beside one count trigger per priority lane (the HPA takes the largest).
    triggers = scaled["spec"]["triggers"]
    assert [t["type"] for t in triggers] == ["prometheus", "azure-servicebus", "azure-servicebus"]
    assert {t["metadata"]["queueName"] for t in triggers[1:]} == {"scoring-requests", "scoring-requests-high"}
    assert all(t["metadata"]["namespace"] == "sb-qscore-prod" for t in triggers[1:])  # still replaced
    spec = scaler_spec_from_manifest(scaled)
    assert spec.prometheus == PrometheusTrigger(threshold=2100, activation_threshold=0, drain_target_s=30)
    query = scaled["spec"]["triggers"][0]["metadata"]["query"]
    # The drain target the simulator reads is the one in the query.
    assert re.search(r"\) / 30\)", query), query
    assert spec.max_replicas == 30  # prod's bounds and behavior are kept


def test_scale_sim_compare_prints_both_policies_and_plots(tmp_path: Path) -> None:
    png = tmp_path / "compare.png"
    result = CliRunner().invoke(
        app,
        [
            "scale-sim",
            "--compare",
            "--per-replica-rate",
            "2641.9",
            "--duration",
            "900",
            "--messages",
            "100000",
            "--plot",
            str(png),
        ],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    for text in ("count-based", "metric-based", "steady 12000/s", "burst of 100000", "replica changes"):
        assert text in result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_simulator_refuses_a_query_whose_drain_target_disagrees() -> None:
    (scaled,) = find(render_with_components("prod", ["keda-prometheus"]), "ScaledObject", "qscore-worker")
    scaled["metadata"]["annotations"]["qscore.dev/drain-target-s"] = "60"
    with pytest.raises(ManifestError, match="drain target"):
        scaler_spec_from_manifest(scaled)


def test_a_prometheus_outage_leaves_the_count_floor_scaling_out() -> None:
    """prod as rendered; Prometheus unreadable for the whole run: the burst still scales the
    workers out on the count triggers, and the fleet never scales in while the metric is missing."""
    (scaled,) = find(render_with_components("prod", ["keda-prometheus"]), "ScaledObject", "qscore-worker")
    spec = scaler_spec_from_manifest(scaled)
    settings = SimulationSettings(
        duration_s=900, per_replica_rate=500, initial_replicas=4, metrics_outage_s=(0, 900)
    )
    result = simulate(spec, Burst(100_000, at_s=60, baseline_rate=1_000), settings)
    assert result.summary.peak_replicas > 4
    replicas = result.timeline.replicas
    assert all(later >= earlier for earlier, later in itertools.pairwise(replicas))
    assert drain_time(result.timeline) is not None


def test_a_cold_triton_holds_the_queue_until_it_is_ready_then_drains_it() -> None:
    """dev: Triton at zero; a burst activates it at the next Triton polling tick, nothing is
    scored (nor lost) until it is ready, then the backlog drains."""
    spec = ScalerSpec("w", message_count=100, polling_interval_s=10, min_replicas=0, max_replicas=3)
    settings = SimulationSettings(
        duration_s=900, per_replica_rate=100, triton_cold_start_s=240, triton_polling_interval_s=15
    )
    result = simulate(spec, Burst(3_000, at_s=5, baseline_rate=0), settings)
    timeline = result.timeline
    # Activated at t=15 (first Triton tick after the burst), ready at 255: untouched until then.
    assert all(b == 3_000 for b in timeline.backlog[5:255])
    assert timeline.backlog[255] < 3_000
    assert result.summary.messages_unserved == 0
    drained = drain_time(timeline)
    assert drained is not None
    warm = simulate(spec, Burst(3_000, at_s=5, baseline_rate=0), replace(settings, triton_cold_start_s=None))
    assert result.summary.queue_age_p99_s >= warm.summary.queue_age_p99_s + 200


def test_scale_sim_cli_simulates_devs_triton_cold_start(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            *("scale-sim", "--overlay", "dev", "--per-replica-rate", "500", "--messages", "5000"),
            *(
                "--duration",
                "900",
                "--triton-start",
                "240",
                "--no-recommend",
                "--plot",
                str(tmp_path / "p.png"),
            ),
        ],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    assert "cold start 240 s" in result.output
