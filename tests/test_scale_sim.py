"""The simulator's KEDA and HPA rules on hand-computed cases."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qscore_tools.scaling.bench_input import BenchInputError, per_replica_rate_from_bench
from qscore_tools.scaling.config import (
    ManifestError,
    ScalerSpec,
    ScalingPolicy,
    ScalingRules,
    default_scale_down,
    default_scale_up,
    scaler_spec_from_manifest,
)
from qscore_tools.scaling.hpa import HpaController, metric_desired_replicas
from qscore_tools.scaling.recommend import recommend
from qscore_tools.scaling.simulator import SimulationSettings, drain_time, simulate, weighted_percentile
from qscore_tools.scaling.traffic import Burst, Diurnal, Ramp


def _hpa(min_r: int = 1, max_r: int = 100, up: ScalingRules | None = None, down: ScalingRules | None = None):
    return HpaController(min_r, max_r, up or default_scale_up(), down or default_scale_down())


def test_desired_is_ceil_of_queue_over_target() -> None:
    assert metric_desired_replicas(1, 1001, 100) == 11


def test_tolerance_keeps_current_within_ten_percent() -> None:
    # 4 replicas, target 100: 439 is inside 10%, 441 is outside. Exactly 440 is outside too:
    # 1 - 440/400 is -0.10000000000000009 in float64, in Go as in Python.
    assert metric_desired_replicas(4, 439, 100) == 4
    assert metric_desired_replicas(4, 440, 100) == 5
    assert metric_desired_replicas(4, 441, 100) == 5
    assert metric_desired_replicas(4, 360, 100) == 4
    assert metric_desired_replicas(4, 359, 100) == 4  # ceil(3.59) = 4 anyway
    assert metric_desired_replicas(10, 850, 100) == 9


def test_default_scale_up_is_max_of_double_and_plus_four() -> None:
    hpa = _hpa()
    assert hpa.sync(0, 1, 10_000, 100) == 5  # max(2, 1+4)
    assert hpa.sync(15, 5, 10_000, 100) == 10  # event at t=0 left the 15 s window: max(10, 9)
    assert hpa.sync(30, 10, 10_000, 100) == 20


def test_scale_up_period_counts_recent_events() -> None:
    up = ScalingRules(0, (ScalingPolicy("Pods", 2, 60),))
    hpa = _hpa(up=up)
    assert hpa.sync(0, 1, 10_000, 100) == 3
    # Within 60 s of +2 the period started at 1 replica: limit 1 + 2 = 3, no growth.
    assert hpa.sync(15, 3, 10_000, 100) == 3
    assert hpa.sync(61, 3, 10_000, 100) == 5


def test_scale_down_stabilization_window_holds_the_highest_recommendation() -> None:
    down = ScalingRules(60, (ScalingPolicy("Percent", 100, 15),))
    hpa = _hpa(down=down)
    assert hpa.sync(0, 10, 1_000, 100) == 10
    # Metric falls to 100 (desired 1), but t=0 recommended 10 within the 60 s window.
    assert hpa.sync(15, 10, 100, 100) == 10
    assert hpa.sync(45, 10, 100, 100) == 10
    assert hpa.sync(61, 10, 100, 100) == 1


def test_scale_down_percent_policy_rounds_down_the_floor() -> None:
    down = ScalingRules(0, (ScalingPolicy("Percent", 50, 60),))
    hpa = _hpa(down=down)
    assert hpa.sync(0, 9, 0, 100) == 4  # int(9 * 0.5) = 4
    assert hpa.sync(30, 4, 0, 100) == 4  # period started at 9: floor 4 already reached
    assert hpa.sync(61, 4, 0, 100) == 2


def test_select_policy_min_and_disabled() -> None:
    up = ScalingRules(0, (ScalingPolicy("Percent", 100, 15), ScalingPolicy("Pods", 4, 15)), "Min")
    assert _hpa(up=up).sync(0, 10, 10_000, 100) == 14  # min(20, 14)
    frozen = ScalingRules(0, (ScalingPolicy("Pods", 4, 15),), "Disabled")
    assert _hpa(up=frozen).sync(0, 10, 10_000, 100) == 10


def test_min_max_clamp() -> None:
    assert _hpa(min_r=3, max_r=6).sync(0, 5, 10_000, 100) == 6
    assert _hpa(min_r=3, max_r=6, down=ScalingRules(0, default_scale_down().policies)).sync(0, 5, 0, 100) == 3


def _spec(**overrides: object) -> ScalerSpec:
    values: dict[str, object] = {
        "name": "w",
        "message_count": 100,
        "polling_interval_s": 10,
        "cooldown_period_s": 60,
        "min_replicas": 0,
        "max_replicas": 10,
    }
    values.update(overrides)
    return ScalerSpec(**values)  # type: ignore[arg-type]


def test_activation_from_zero_on_the_polling_tick_then_hpa() -> None:
    result = simulate(_spec(), Burst(3000, at_s=5), SimulationSettings(duration_s=200, per_replica_rate=20))
    replicas = result.timeline.replicas
    assert replicas[9] == 0  # burst at t=5, next poll at t=10
    assert replicas[10] == 1  # KEDA: 0 -> 1
    assert replicas[15] == 5  # HPA at t=15: max(1*2, 1+4)
    assert replicas[30] == 10  # HPA at t=30: capped at maxReplicaCount
    assert result.timeline.ready[29] == 0 and result.timeline.ready[30] == 1  # 20 s start-up


def test_cooldown_applies_only_to_scale_to_zero() -> None:
    result = simulate(_spec(), Burst(3000, at_s=5), SimulationSettings(duration_s=200, per_replica_rate=20))
    backlog, replicas = result.timeline.backlog, result.timeline.replicas
    last_active_poll = max(t for t in range(0, 200, 10) if backlog[t - 1 if t else 0] >= 1 and t <= 60)
    assert last_active_poll == 50
    # Inactive from t=60; zero at the first poll strictly after 50 + 60.
    assert replicas[119] == 10 and replicas[120] == 0


def test_activation_threshold_is_strictly_greater() -> None:
    spec = _spec(activation_message_count=50)
    quiet = simulate(spec, Burst(50, at_s=0), SimulationSettings(duration_s=60, per_replica_rate=20))
    assert max(quiet.timeline.replicas) == 0
    assert quiet.summary.messages_unserved == 50
    loud = simulate(spec, Burst(51, at_s=0), SimulationSettings(duration_s=60, per_replica_rate=20))
    assert loud.timeline.replicas[0] == 1


def test_locked_messages_keep_the_queue_active() -> None:
    # One replica at 1 msg/s on 30 messages: the count KEDA sees includes in-flight messages,
    # so the deployment stays up until the last is completed (no scale-to-zero mid-work).
    spec = _spec(message_count=1000, cooldown_period_s=0)
    result = simulate(
        spec, Burst(30, at_s=0), SimulationSettings(duration_s=80, per_replica_rate=1, pod_startup_s=0)
    )
    assert result.timeline.backlog[28] >= 1
    assert all(r == 1 for r in result.timeline.replicas[:30])


def test_min_replicas_never_zero_and_summary_figures() -> None:
    spec = _spec(min_replicas=2)
    # 200 messages on 2 replicas at target 100: inside tolerance, no scaling at all.
    result = simulate(spec, Burst(200, at_s=0), SimulationSettings(duration_s=60, per_replica_rate=10))
    assert set(result.timeline.replicas) == {2}
    # 2 ready pods x 10 msg/s: 180 left after second 0 (the recorded peak), empty after second 9;
    # the last messages complete in second 9, aged 10 s.
    assert result.summary.peak_backlog == 180
    assert result.summary.drain_time_s == 9
    assert result.summary.queue_age_p99_s == 10
    assert result.summary.replica_seconds == 2 * 60


def test_deterministic() -> None:
    shape = Diurnal(5, 200, period_s=600)
    settings = SimulationSettings(duration_s=600, per_replica_rate=25)
    assert simulate(_spec(), shape, settings).summary == simulate(_spec(), shape, settings).summary


def test_weighted_percentile_and_drain_time_helpers() -> None:
    assert weighted_percentile([(1.0, 98.0), (5.0, 1.0), (9.0, 1.0)], 0.99) == 5.0
    assert weighted_percentile([], 0.99) == 0.0


def test_traffic_shapes() -> None:
    ramp = Ramp(0, 100, ramp_s=10, hold_s=5)
    assert sum(ramp.arrivals(t) for t in range(10)) == pytest.approx(500)
    assert ramp.arrivals(12) == 100 and ramp.arrivals(15) == 0
    day = Diurnal(10, 110, period_s=100)
    assert day.arrivals(0) == pytest.approx(10, abs=0.1) and day.arrivals(50) == pytest.approx(110, abs=0.1)
    assert Burst(7, at_s=3).arrivals(3) == 7 and Burst(7, at_s=3).arrivals(4) == 0


def test_manifest_defaults_and_partial_behavior() -> None:
    doc = {
        "kind": "ScaledObject",
        "metadata": {"name": "w"},
        "spec": {
            "advanced": {"horizontalPodAutoscalerConfig": {"behavior": {"scaleDown": {"policies": []}}}},
            "triggers": [{"type": "azure-servicebus", "metadata": {"queueName": "q"}}],
        },
    }
    spec = scaler_spec_from_manifest(doc)
    assert (spec.message_count, spec.polling_interval_s, spec.cooldown_period_s) == (5, 30, 300)
    assert (spec.min_replicas, spec.max_replicas) == (0, 100)
    assert spec.scale_up == default_scale_up() and spec.scale_down == default_scale_down()
    with pytest.raises(ManifestError):
        scaler_spec_from_manifest({**doc, "spec": {"triggers": []}})


def test_recommendation_meets_an_easy_target() -> None:
    spec = _spec(message_count=5000, min_replicas=1, max_replicas=2)
    shape = Ramp(10, 200, ramp_s=300, hold_s=300)
    settings = SimulationSettings(duration_s=900, per_replica_rate=50, pod_startup_s=10)
    advice = recommend(spec, shape, settings, target_age_s=30)
    assert advice.meets_target
    assert advice.result.summary.queue_age_p99_s <= 30
    assert advice.max_replicas >= 4  # 200 msg/s needs 4 replicas of 50


def test_bench_result_field(tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"worker": {"messages_per_s_per_replica": 812.5}}))
    assert per_replica_rate_from_bench(good) == 812.5
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"worker": {}}))
    with pytest.raises(BenchInputError):
        per_replica_rate_from_bench(bad)


def test_drain_time_never() -> None:
    result = simulate(
        _spec(max_replicas=1), Burst(10_000), SimulationSettings(duration_s=30, per_replica_rate=1)
    )
    assert drain_time(result.timeline) is None
