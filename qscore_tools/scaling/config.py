"""What the simulator needs from a KEDA ScaledObject, with KEDA and Kubernetes defaults.

Parsed from a rendered ScaledObject (a dict from `kubectl kustomize`). Defaults are the
documented ones: KEDA pollingInterval 30 s, cooldownPeriod 300 s, minReplicaCount 0,
maxReplicaCount 100, azure-servicebus messageCount 5 and activationMessageCount 0; the
HPA behavior defaults from the autoscaling/v2 API (see `default_scale_up`/`default_scale_down`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any, Literal

PolicyType = Literal["Pods", "Percent"]
SelectPolicy = Literal["Max", "Min", "Disabled"]


class ManifestError(ValueError):
    """A ScaledObject the simulator cannot model (missing trigger, bad value)."""


@dataclass(frozen=True)
class ScalingPolicy:
    """One HPA scaling policy: change by `value` pods or percent per `period_s`."""

    type: PolicyType
    value: int
    period_s: int


@dataclass(frozen=True)
class ScalingRules:
    """HPA rules for one direction (scale up or scale down)."""

    stabilization_window_s: int
    policies: tuple[ScalingPolicy, ...]
    select_policy: SelectPolicy = "Max"


def default_scale_up() -> ScalingRules:
    """Kubernetes default: no window; max(+100% , +4 pods) every 15 s."""
    return ScalingRules(0, (ScalingPolicy("Percent", 100, 15), ScalingPolicy("Pods", 4, 15)))


def default_scale_down() -> ScalingRules:
    """Kubernetes default: 300 s window; down to any count (-100%) every 15 s."""
    return ScalingRules(300, (ScalingPolicy("Percent", 100, 15),))


DRAIN_TARGET_ANNOTATION = "qscore.dev/drain-target-s"


@dataclass(frozen=True)
class PrometheusTrigger:
    """KEDA's prometheus trigger on the workers' own metrics (deploy/components/keda-prometheus).

    Its query is `throughput x (1 + mean queue wait / drain_target_s)` over `window_s`: the
    messages/s the fleet must complete to keep up and work off the backlog (Little's law:
    backlog = throughput x queue wait) within drain_target_s. `threshold` is one replica's
    share of that (AverageValue), typically 80 % of what one replica completes.
    """

    threshold: float
    activation_threshold: float = 0.0
    drain_target_s: float = 30.0
    window_s: int = 60


@dataclass(frozen=True)
class ScalerSpec:
    """A ScaledObject with one azure-servicebus trigger (and optionally a prometheus one), as
    the simulator sees it."""

    name: str
    message_count: int
    activation_message_count: int = 0
    polling_interval_s: int = 30
    cooldown_period_s: int = 300
    min_replicas: int = 0
    max_replicas: int = 100
    scale_up: ScalingRules = field(default_factory=default_scale_up)
    scale_down: ScalingRules = field(default_factory=default_scale_down)
    prometheus: PrometheusTrigger | None = None
    # Triggers the simulation does not model ("name (type)"): the simulated traffic reaches the
    # first azure-servicebus trigger's queue and the workers' metrics, nothing else.
    unmodelled: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.message_count < 1:
            raise ManifestError(f"{self.name}: messageCount must be >= 1, got {self.message_count}")
        if not 0 <= self.min_replicas <= self.max_replicas:
            raise ManifestError(
                f"{self.name}: need 0 <= minReplicaCount <= maxReplicaCount,"
                f" got {self.min_replicas} and {self.max_replicas}"
            )

    def with_bounds(self, *, message_count: int, min_replicas: int, max_replicas: int) -> ScalerSpec:
        """A copy with other target and bounds (used by the recommendation search)."""
        return replace(
            self, message_count=message_count, min_replicas=min_replicas, max_replicas=max_replicas
        )


def _int(value: Any, what: str) -> int:
    try:
        return int(str(value))
    except ValueError:
        raise ManifestError(f"{what} is not an integer: {value!r}") from None


def _rules(raw: dict[str, Any] | None, default: ScalingRules) -> ScalingRules:
    """Each absent field of a direction's rules falls back to that direction's default."""
    if not raw:
        return default
    policies = tuple(
        ScalingPolicy(p["type"], _int(p["value"], "policy value"), _int(p["periodSeconds"], "periodSeconds"))
        for p in raw.get("policies") or ()
    )
    window = raw.get("stabilizationWindowSeconds")
    return ScalingRules(
        stabilization_window_s=default.stabilization_window_s if window is None else _int(window, "window"),
        policies=policies or default.policies,
        select_policy=raw.get("selectPolicy", "Max"),
    )


def _float(value: Any, what: str) -> float:
    try:
        return float(str(value))
    except ValueError:
        raise ManifestError(f"{what} is not a number: {value!r}") from None


_RANGE = re.compile(r"\[(\d+)([smh])\]")
_DRAIN_DIVISOR = re.compile(r"\)\s*/\s*([0-9.]+)\s*\)")
_UNIT_S = {"s": 1, "m": 60, "h": 3600}


def _prometheus_trigger(doc: dict[str, Any], triggers: list[dict[str, Any]]) -> PrometheusTrigger | None:
    """The metric trigger as rendered: threshold and activation from its metadata, the rate
    window from its query's range selectors, the drain target from the query's divisor (which
    must agree with the annotation the component sets)."""
    name = doc.get("metadata", {}).get("name", "?")
    found = [t for t in triggers if t.get("type") == "prometheus"]
    if not found:
        return None
    if len(found) > 1:
        raise ManifestError(f"{name}: {len(found)} prometheus triggers; the simulator models one")
    meta = found[0].get("metadata", {})
    query = str(meta.get("query", ""))
    windows = {int(n) * _UNIT_S[unit] for n, unit in _RANGE.findall(query)}
    if len(windows) != 1:
        raise ManifestError(f"{name}: the prometheus query needs one rate window, found {sorted(windows)}")
    annotations = doc.get("metadata", {}).get("annotations", {}) or {}
    drain_target = _float(annotations.get(DRAIN_TARGET_ANNOTATION, 30), DRAIN_TARGET_ANNOTATION)
    divisor = _DRAIN_DIVISOR.search(query)
    if divisor is None or float(divisor[1]) != drain_target:
        raise ManifestError(
            f"{name}: {DRAIN_TARGET_ANNOTATION} {drain_target:g} is not the drain target in the query"
            f" ({divisor[1] if divisor else 'none'})"
        )
    return PrometheusTrigger(
        threshold=_float(meta.get("threshold"), "prometheus threshold"),
        activation_threshold=_float(meta.get("activationThreshold", 0), "activationThreshold"),
        drain_target_s=drain_target,
        window_s=windows.pop(),
    )


def _unmodelled(triggers: list[dict[str, Any]], modelled: dict[str, Any]) -> tuple[str, ...]:
    """Triggers other than the modelled count trigger and the metric one. A further
    azure-servicebus trigger with the same targets (another priority lane) is modelled too:
    its queue is empty in the simulation, so it never asks for more replicas than the first."""
    same_targets = {
        k: modelled.get("metadata", {}).get(k) for k in ("messageCount", "activationMessageCount")
    }
    left = []
    for trigger in triggers:
        kind = trigger.get("type")
        if trigger is modelled or kind == "prometheus":
            continue
        meta = trigger.get("metadata", {})
        if kind == "azure-servicebus" and all(meta.get(k) == v for k, v in same_targets.items()):
            continue
        left.append(f"{trigger.get('name', meta.get('queueName', '?'))} ({kind})")
    return tuple(left)


def scaler_spec_from_manifest(doc: dict[str, Any]) -> ScalerSpec:
    """Read a rendered ScaledObject as deployed: its first azure-servicebus trigger (further
    lanes with the same targets included) and its prometheus trigger (the workers' metrics,
    read as `PrometheusTrigger` describes) are modelled, with the HPA taking the larger of the
    two; any other trigger is listed in `unmodelled`."""
    name = doc.get("metadata", {}).get("name", "?")
    if doc.get("kind") != "ScaledObject":
        raise ManifestError(f"{name}: expected a ScaledObject, got {doc.get('kind')}")
    spec = doc.get("spec", {})
    triggers = [t for t in spec.get("triggers", []) if t.get("type") == "azure-servicebus"]
    if not triggers:
        raise ManifestError(f"ScaledObject {name} has no azure-servicebus trigger")
    meta = triggers[0].get("metadata", {})
    every = spec.get("triggers", [])
    behavior = spec.get("advanced", {}).get("horizontalPodAutoscalerConfig", {}).get("behavior", {})
    return ScalerSpec(
        name=name,
        message_count=_int(meta.get("messageCount", 5), "messageCount"),
        activation_message_count=_int(meta.get("activationMessageCount", 0), "activationMessageCount"),
        polling_interval_s=_int(spec.get("pollingInterval", 30), "pollingInterval"),
        cooldown_period_s=_int(spec.get("cooldownPeriod", 300), "cooldownPeriod"),
        min_replicas=_int(spec.get("minReplicaCount", 0), "minReplicaCount"),
        max_replicas=_int(spec.get("maxReplicaCount", 100), "maxReplicaCount"),
        scale_up=_rules(behavior.get("scaleUp"), default_scale_up()),
        scale_down=_rules(behavior.get("scaleDown"), default_scale_down()),
        prometheus=_prometheus_trigger(doc, every),
        unmodelled=_unmodelled(every, triggers[0]),
    )
