"""Many values into one OpenTelemetry histogram series at once.

The SDK's `Histogram.record` cleans, copies and hashes a value's attributes once per metric
reader before it adds the value to that series' buckets: about 10 us a value with the worker's
two readers (OTLP and Prometheus), and the worker records four stage durations per reply, a
tenth of its CPU in py-spy. `record_values(histogram, attributes, values)` finds each reader's
aggregation of the attribute set once and adds every value to it: what `record` does for each
value, less the repeated attribute work.

It reads OpenTelemetry SDK internals, declared with the Service Bus SDK's in
`qscore.transport.sdk_hooks` (the `otel.*` hooks), and checks itself once per process: values
recorded through it and through `record` on a private meter provider (a cumulative and a delta
reader) must give the same points. Where a hook is missing or the check disagrees, every value
goes through `record`, counted as that hook's fallback. Calls it does not cover go through
`record` as well, uncounted: an instrument not from the SDK (no meter provider configured), a
disabled meter, a value `record` would refuse (negative, not finite), and a call the exemplar
filter samples (its exemplars are offered value by value, as the SDK does).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

from opentelemetry.util.types import AttributeValue

log = logging.getLogger(__name__)

# The SDK internals read here, each declared in qscore.transport.sdk_hooks.HOOKS.
HOOKS = (
    "otel.measurement_consumer",
    "otel.instrument_enabled",
    "otel.reader_storages",
    "otel.sdk_config",
    "otel.view_matches",
    "otel.match_view",
    "otel.view_attribute_keys",
    "otel.match_aggregations",
    "otel.match_lock",
    "otel.match_reset_on_collect",
    "otel.match_get_or_create",
    "otel.hash_attributes",
    "otel.measurement",
)
# Counted when the once-per-process check against `record` disagrees.
CHECK_HOOK = "otel.measurement_consumer"

_disabled: list[str] = []  # set (with the hook to count) once the fast path failed at run time


def record_values(histogram: Any, attributes: Mapping[str, AttributeValue], values: Sequence[float]) -> None:
    """Each of `values` into `histogram` with `attributes`, as `histogram.record` would."""
    if not values:
        return
    missing = _unavailable()
    if missing is None and _add(histogram, attributes, values):
        return
    if missing is not None:
        from qscore.transport import sdk_hooks

        sdk_hooks.fallback(missing)
    for value in values:
        histogram.record(value, attributes)


def _sdk_histogram(histogram: Any) -> bool:
    from opentelemetry.sdk.metrics import Histogram

    return isinstance(histogram, Histogram)


def _add(histogram: Any, attributes: Mapping[str, AttributeValue], values: Sequence[float]) -> bool:
    """Add `values` to each reader's aggregation of `attributes`; False (nothing added) where
    this call is left to `record` (see the module's doc)."""
    if not _sdk_histogram(histogram) or not histogram._is_enabled():
        return False
    if not all(value >= 0 and math.isfinite(value) for value in values):
        return False
    from opentelemetry.context import get_current
    from opentelemetry.sdk.metrics._internal._view_instrument_match import _hash_attributes
    from opentelemetry.sdk.metrics._internal.measurement import Measurement

    consumer = histogram._measurement_consumer
    now = time.time_ns()
    context = get_current()
    # The attributes cleaned as `record` cleans them, once.
    cleaned = dict(Measurement(values[0], now, histogram, context, attributes).attributes or {})
    if consumer._sdk_config.exemplar_filter.should_sample(values[0], now, cleaned, context):
        return False
    # Every aggregation (or, for a delta reader, its match) first: a failure leaves nothing half
    # recorded. A delta reader's collection drops its aggregations, so there the aggregation is
    # taken and added to under the match's lock, as `record` does.
    found: list[tuple[Any, Any, Any, Any]] = []  # (aggregation or None, match, key, attributes)
    try:
        for storage in list(consumer._reader_storages.values()):
            for match in storage._get_or_init_view_instrument_match(histogram):
                keys = match._view._attribute_keys
                own = cleaned if keys is None else {k: v for k, v in cleaned.items() if k in keys}
                key = _hash_attributes(own)
                aggregation = None
                if not match._reset_on_collect:
                    aggregation = match._attributes_aggregation.get(key)
                    if aggregation is None:
                        with match._lock:
                            aggregation = match._get_or_create_aggregation(key, own)
                found.append((aggregation, match, key, own))
    except Exception:  # an SDK whose internals changed shape: `record` from now on, counted
        log.warning("recording histogram values directly failed: through record() from now on", exc_info=True)
        _disabled.append(CHECK_HOOK)
        return False
    measurements = [Measurement(value, now, histogram, context, None) for value in values]
    for aggregation, match, key, own in found:
        if aggregation is not None:
            for measurement in measurements:
                aggregation.aggregate(measurement, False)
            continue
        with match._lock:
            aggregation = match._get_or_create_aggregation(key, own)
            for measurement in measurements:
                aggregation.aggregate(measurement, False)
    return True


def _unavailable() -> str | None:
    """The hook to count when the fast path is off in this process, else None."""
    if _disabled:
        return _disabled[0]
    return _checked()


@cache
def _checked() -> str | None:
    """Once per process: the first missing hook, or CHECK_HOOK when values recorded here and
    through `record` give different points; None when the fast path may be used."""
    from qscore.transport import sdk_hooks

    for name in HOOKS:
        if not sdk_hooks.all_available(name):
            log.warning("OpenTelemetry SDK hook %s missing: histogram values go through record()", name)
            return name
    try:
        same = _same_as_record()
    except Exception:
        log.warning("histogram check failed: values go through record()", exc_info=True)
        return CHECK_HOOK
    if not same:
        log.warning("recording histogram values directly differs from record(): through record()")
        return CHECK_HOOK
    return None


def _same_as_record() -> bool:
    from opentelemetry.sdk.metrics import Histogram, MeterProvider
    from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader

    readers = [
        InMemoryMetricReader(),
        InMemoryMetricReader(preferred_temporality={Histogram: AggregationTemporality.DELTA}),
    ]
    provider = MeterProvider(metric_readers=readers, shutdown_on_exit=False)
    try:
        meter = provider.get_meter("qscore.histogram_values.check")
        buckets = (0.001, 0.01, 0.1)
        public = meter.create_histogram("public", explicit_bucket_boundaries_advisory=buckets)
        direct = meter.create_histogram("direct", explicit_bucket_boundaries_advisory=buckets)
        attributes = {"model": "m", "version": "1", "stage": "total"}
        values = [0.0, 0.0005, 0.002, 0.002, 0.05, 7.0]
        for _ in range(2):  # the second round after a collection: delta aggregations start over
            for value in values:
                public.record(value, attributes)
            if not _add(direct, attributes, values):
                return False
            for reader in readers:
                points = _points(reader)
                if points.get("public") != points.get("direct") or not points.get("public"):
                    return False
        return True
    finally:
        provider.shutdown()


def _points(reader: Any) -> dict[str, list[tuple[Any, ...]]]:
    found: dict[str, list[tuple[Any, ...]]] = {}
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                found[metric.name] = [
                    (
                        tuple(sorted(point.attributes.items())),
                        point.count,
                        point.sum,
                        tuple(point.bucket_counts),
                        point.min,
                        point.max,
                    )
                    for point in metric.data.data_points
                ]
    return found
