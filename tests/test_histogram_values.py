"""qscore.telemetry.histogram_values: many values into one histogram series give the points
`Histogram.record` gives value by value (cumulative and delta readers, a view that keeps some
attributes, across collections); its OpenTelemetry SDK internals are declared hooks, and a
missing hook or a failed check sends the values through `record`, counted."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
from opentelemetry.sdk.metrics.view import View

from qscore.telemetry import histogram_values
from qscore.telemetry.histogram_values import record_values
from qscore.transport import sdk_hooks

ROOT = Path(__file__).resolve().parents[1]
ATTRIBUTES = {"model": "digits", "version": "1", "stage": "total"}
VALUES = [0.0, 0.0004, 0.003, 0.003, 0.2, 12.0]


def _readers() -> list[InMemoryMetricReader]:
    return [
        InMemoryMetricReader(),
        InMemoryMetricReader(preferred_temporality={Histogram: AggregationTemporality.DELTA}),
    ]


def _points(reader: InMemoryMetricReader) -> dict[str, list[tuple[Any, ...]]]:
    return histogram_values._points(reader)


@pytest.fixture
def fresh_check() -> Any:
    histogram_values._checked.cache_clear()
    histogram_values._disabled.clear()
    yield
    histogram_values._checked.cache_clear()
    histogram_values._disabled.clear()


def test_values_give_the_points_record_gives(fresh_check: None) -> None:
    assert histogram_values._checked() is None  # the installed SDK passes the check
    readers = _readers()
    keep_two = [
        View(instrument_name=name, name=f"{name}_kept", attribute_keys={"model", "stage"})
        for name in ("viewed_public", "viewed_direct")
    ]
    provider = MeterProvider(metric_readers=readers, views=[*keep_two, View(instrument_name="*")])
    try:
        meter = provider.get_meter("test")
        made = {
            name: meter.create_histogram(name)
            for name in ("public", "direct", "viewed_public", "viewed_direct")
        }
        before = dict(sdk_hooks.fallback_counts())
        for _ in range(3):  # collections in between: the delta reader starts each series over
            for value in VALUES:
                made["public"].record(value, ATTRIBUTES)
                made["viewed_public"].record(value, ATTRIBUTES)
            record_values(made["direct"], ATTRIBUTES, VALUES)
            record_values(made["viewed_direct"], ATTRIBUTES, VALUES)
            for reader in readers:
                points = _points(reader)
                assert points["direct"] == points["public"] and points["public"]
                assert points["viewed_direct"] == points["viewed_public"]
                assert points["viewed_direct_kept"] == points["viewed_public_kept"]
                assert [dict(point[0]) for point in points["viewed_direct_kept"]] == [
                    {"model": "digits", "stage": "total"}
                ]
        assert sdk_hooks.fallback_counts() == before  # the fast path, nothing counted
    finally:
        provider.shutdown()


def test_values_record_refuses_and_other_instruments_go_through_record(fresh_check: None) -> None:
    seen: list[tuple[float, Any]] = []

    class NotTheSdks:
        def record(self, value: float, attributes: Any = None) -> None:
            seen.append((value, attributes))

    before = dict(sdk_hooks.fallback_counts())
    record_values(NotTheSdks(), ATTRIBUTES, [0.1, 0.2])
    assert seen == [(0.1, ATTRIBUTES), (0.2, ATTRIBUTES)]
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    try:
        histogram = provider.get_meter("test").create_histogram("h")
        record_values(histogram, ATTRIBUTES, [0.1, -1.0, float("nan")])  # record drops the last two
        assert [point[1] for point in _points(reader)["h"]] == [1]
    finally:
        provider.shutdown()
    assert sdk_hooks.fallback_counts() == before


@pytest.mark.parametrize("broken", ["missing hook", "check disagrees"])
def test_without_the_fast_path_values_go_through_record_counted(
    fresh_check: None, monkeypatch: pytest.MonkeyPatch, broken: str
) -> None:
    if broken == "missing hook":
        real = sdk_hooks.all_available
        monkeypatch.setattr(
            sdk_hooks, "all_available", lambda *names: "otel.sdk_config" not in names and real(*names)
        )
        counted = "otel.sdk_config"
    else:
        monkeypatch.setattr(histogram_values, "_same_as_record", lambda: False)
        counted = histogram_values.CHECK_HOOK
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    try:
        histogram = provider.get_meter("test").create_histogram("h")
        before = sdk_hooks.fallback_counts().get(counted, 0)
        record_values(histogram, ATTRIBUTES, VALUES)
        record_values(histogram, ATTRIBUTES, VALUES)
        assert sdk_hooks.fallback_counts().get(counted, 0) == before + 2
        (point,) = _points(reader)["h"]
        assert point[1] == 2 * len(VALUES)  # recorded all the same, through record()
    finally:
        provider.shutdown()


def test_every_private_otel_name_it_reads_is_declared() -> None:
    lines = (ROOT / "qscore/telemetry/histogram_values.py").read_text().splitlines()
    text = "\n".join(line for line in lines if " import " not in line)  # module paths are not reads
    used = set(re.findall(r"\.(_[a-z]\w+)", text)) - {"_checked", "_disabled", "_same_as_record", "_points"}
    attributes = {sdk_hooks.BY_NAME[name].attribute for name in histogram_values.HOOKS}
    assert used - attributes == set()
    assert all(name in sdk_hooks.BY_NAME for name in histogram_values.HOOKS)
