"""Flight comparison: versions of one model side by side, from the interaction log, with a verdict.

Per version: requests, error ratio by status code (error replies and dead-letter records are
logged too; one that named no version counts against production), latency p50/p99 per stage, the prediction
distribution; PSI of each version's predictions against production's; for shadow flights the
share of rows where the shadow predicted what production replied on the same request. The
verdict for each non-production version follows `CompareThresholds`, which the report prints.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from qscore.monitoring.records import InteractionRecord
from qscore.monitoring.statistics import psi

Verdict = Literal["promote", "hold", "roll back"]


@dataclass(frozen=True)
class CompareThresholds:
    min_requests: int = 100  # fewer served requests: hold, the numbers are noise
    max_error_ratio_increase: float = 0.01  # absolute, over production's error ratio
    max_p99_ratio: float = 1.5  # candidate total p99 / production total p99
    psi_hold: float = 0.1  # prediction PSI against production: look before promoting
    psi_roll_back: float = 0.25
    min_shadow_agreement: float = 0.95


@dataclass(frozen=True)
class VersionSummary:
    version: str
    requests: int
    rows: int
    errors: dict[str, int]
    latency_ms: dict[str, tuple[float, float]]  # stage -> (p50, p99)
    predictions: dict[str, int]  # predicted value -> rows
    routes: dict[str, int]

    @property
    def error_ratio(self) -> float:
        return sum(self.errors.values()) / self.requests if self.requests else 0.0


@dataclass(frozen=True)
class Assessment:
    version: str
    verdict: Verdict
    reasons: list[str]
    prediction_psi: float | None = None
    shadow_agreement: float | None = None
    shadow_pairs: int = 0


@dataclass(frozen=True)
class Comparison:
    model: str
    production: str
    thresholds: CompareThresholds
    versions: list[VersionSummary]
    assessments: list[Assessment] = field(default_factory=list)

    def summary(self, version: str) -> VersionSummary | None:
        return next((s for s in self.versions if s.version == version), None)


def _value_key(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.4g}"


def summarize_version(version: str, records: Sequence[InteractionRecord]) -> VersionSummary:
    served = [record for record in records if record.route != "shadow"]
    errors = Counter(record.status for record in served if record.status != "ok")
    stages = sorted({stage for record in served for stage in record.timings})
    latency = {}
    for stage in stages:
        values = np.asarray([r.timings[stage] for r in served if stage in r.timings], dtype=np.float64)
        latency[stage] = (float(np.percentile(values, 50)), float(np.percentile(values, 99)))
    predictions = Counter(_value_key(value) for record in served for value in record.prediction)
    return VersionSummary(
        version=version,
        requests=len(served),
        rows=sum(len(record.prediction) for record in served),
        errors=dict(sorted(errors.items())),
        latency_ms=latency,
        predictions=dict(sorted(predictions.items(), key=lambda item: float(item[0]))),
        routes=dict(sorted(Counter(record.route for record in records).items())),
    )


def shadow_agreement(records: Sequence[InteractionRecord], version: str) -> tuple[float | None, int]:
    """Share of rows where shadow `version` predicted what was served for the same request."""
    served = {r.request_id: r.prediction for r in records if r.route != "shadow" and r.status == "ok"}
    pairs = agreed = 0
    for record in records:
        if record.route != "shadow" or record.version != version or record.request_id not in served:
            continue
        for shadow_value, served_value in zip(record.prediction, served[record.request_id], strict=False):
            pairs += 1
            agreed += int(shadow_value == served_value)
    return (agreed / pairs if pairs else None), pairs


def _values(records: Sequence[InteractionRecord], version: str, *, shadow: bool) -> np.ndarray:
    chosen = [
        r for r in records if r.version == version and (r.route == "shadow") == shadow and r.status == "ok"
    ]
    return np.asarray([value for record in chosen for value in record.prediction], dtype=np.float64)


def assess(
    candidate: VersionSummary,
    production: VersionSummary | None,
    records: Sequence[InteractionRecord],
    thresholds: CompareThresholds,
) -> Assessment:
    """promote / hold / roll back for one non-production version, with the reasons."""
    roll_back: list[str] = []
    hold: list[str] = []
    agreement, pairs = shadow_agreement(records, candidate.version)
    shadowed = pairs > 0
    mine = _values(records, candidate.version, shadow=shadowed)
    theirs = _values(records, production.version, shadow=False) if production else np.empty(0)
    index = psi(theirs, mine, categorical=True) if mine.size and theirs.size else None
    requests = pairs if shadowed else candidate.requests
    if production is None:
        hold.append("no production traffic in the log to compare with")
    elif requests < thresholds.min_requests:
        hold.append(f"only {requests} requests (< {thresholds.min_requests})")
    if production is not None and not shadowed:
        increase = candidate.error_ratio - production.error_ratio
        if increase > thresholds.max_error_ratio_increase:
            roll_back.append(f"error ratio {candidate.error_ratio:.2%} vs {production.error_ratio:.2%}")
        mine_p99 = candidate.latency_ms.get("total_ms", (0.0, 0.0))[1]
        theirs_p99 = production.latency_ms.get("total_ms", (0.0, 0.0))[1]
        if theirs_p99 > 0 and mine_p99 / theirs_p99 > thresholds.max_p99_ratio:
            roll_back.append(f"total p99 {mine_p99:.1f} ms is {mine_p99 / theirs_p99:.2f}x production's")
    if index is not None and index >= thresholds.psi_roll_back:
        roll_back.append(f"prediction PSI {index:.3f} >= {thresholds.psi_roll_back}")
    elif index is not None and index >= thresholds.psi_hold:
        hold.append(f"prediction PSI {index:.3f} >= {thresholds.psi_hold}")
    if agreement is not None and agreement < thresholds.min_shadow_agreement:
        roll_back.append(f"shadow agreement {agreement:.1%} < {thresholds.min_shadow_agreement:.0%}")
    verdict: Verdict = "roll back" if roll_back else "hold" if hold else "promote"
    reasons = roll_back or hold or ["within every threshold"]
    return Assessment(candidate.version, verdict, reasons, index, agreement, pairs)


def compare_versions(
    records: Sequence[InteractionRecord],
    *,
    model: str,
    production: str | None = None,
    thresholds: CompareThresholds | None = None,
) -> Comparison:
    """Every version of `model` in `records`; production defaults to the most-served version."""
    limits = thresholds or CompareThresholds()
    mine = _last_per_request([record for record in records if record.model == model])
    by_version: dict[str, list[InteractionRecord]] = {}
    for record in mine:
        by_version.setdefault(record.version, []).append(record)
    # A request refused before its version was resolved (it named none) was headed for
    # production: its error counts there, not under a version of its own.
    unresolved = by_version.pop("", [])
    if production is None and by_version:
        production = max(by_version, key=lambda v: sum(r.route != "shadow" for r in by_version[v]))
    if unresolved:
        by_version.setdefault(production or "", []).extend(unresolved)
    summaries = [summarize_version(v, by_version[v]) for v in sorted(by_version, key=_version_order)]
    baseline = next((s for s in summaries if s.version == production), None)
    assessments = [assess(s, baseline, mine, limits) for s in summaries if s.version != production]
    return Comparison(model, production or "-", limits, summaries, assessments)


def _last_per_request(records: Sequence[InteractionRecord]) -> list[InteractionRecord]:
    """One served record per request, its last: a request is logged again when it was delivered
    again (at-least-once), or when the Functions app logged its scores and then could not
    deliver the reply (`reply_undeliverable`). Shadow scores and requests without an id stay."""
    last: dict[str, int] = {}
    for index, record in enumerate(records):
        if record.route != "shadow" and record.request_id:
            last[record.request_id] = index
    return [
        record
        for index, record in enumerate(records)
        if record.route == "shadow" or not record.request_id or last[record.request_id] == index
    ]


def _version_order(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (1 << 30, version)
