"""Results of a run: the JSON document (every figure + machine facts) and its Markdown summary."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qscore_tools.bench.goals import OVERHEAD_BOUND_MODEL, Goal, evaluate, issue_23_goals
from qscore_tools.bench.runner import BenchRun, ModelResults
from qscore_tools.bench.settings import results_stamp

SCHEMA = "qscore-bench/1"


@dataclass(frozen=True)
class ResultFiles:
    json_path: Path
    markdown_path: Path
    plots: list[Path] = field(default_factory=list)


def _model_document(results: ModelResults) -> dict[str, Any]:
    ceiling = results.ceiling
    peak = results.queue_peak
    return {
        "ceiling": None
        if ceiling is None
        else {
            "samples_per_s": ceiling.samples_per_s,
            "concurrency": ceiling.concurrency,
            "processes": ceiling.processes,
            "batch_size": ceiling.batch_size,
            "points": [point.as_dict() for point in ceiling.points],
        },
        "queue_peak": None if peak is None else peak.as_dict(),
        "queue_closed": [m.as_dict() for m in results.queue_closed],
        "queue_open": [m.as_dict() for m in results.queue_open],
        "direct_at_half_peak": None
        if results.direct_at_half_peak is None
        else results.direct_at_half_peak.as_dict(),
        "queue_to_ceiling_ratio": (
            peak.point.samples_per_s / ceiling.samples_per_s
            if peak and ceiling and ceiling.samples_per_s
            else None
        ),
    }


def worker_figures(run: BenchRun) -> dict[str, Any]:
    """What `qscore scale-sim` reads: one replica's sustained messages/s (overhead-bound model)."""
    model = OVERHEAD_BOUND_MODEL if OVERHEAD_BOUND_MODEL in run.models else next(iter(run.models), "")
    peak = run.models[model].queue_peak if model else None
    cost = peak.costs.get("worker") if peak else None
    per_replica = peak.point.samples_per_s / run.settings.workers if peak else 0.0
    return {
        "messages_per_s_per_replica": per_replica,
        "model": model,
        "replicas": run.settings.workers,
        "cpu_s_per_1000_messages": cost.cpu_s_per_1000 if cost else None,
        "messages_per_cpu_s": cost.messages_per_cpu_s if cost else None,
        "peak_rss_mb": cost.peak_rss_mb if cost else None,
    }


def results_document(run: BenchRun, goals: list[Goal]) -> dict[str, Any]:
    batching = run.batching
    return {
        "schema": SCHEMA,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(run.started_at)),
        "duration_s": run.finished_at - run.started_at,
        "settings": run.settings.as_dict(),
        "machine": run.machine,
        "models": {name: _model_document(results) for name, results in run.models.items()},
        "batching": None
        if batching is None
        else {
            "model": batching.model,
            "concurrency": batching.concurrency,
            "gain": batching.gain,
            "on": batching.on.as_dict(),
            "off": batching.off.as_dict(),
        },
        "worker": worker_figures(run),
        "cold_start": None if run.cold_start is None else run.cold_start.as_dict(),
        "throughput": None if run.throughput is None else run.throughput.as_dict(),
        "network": None if run.network is None else run.network.as_dict(),
        "worker_cpu_all_middleware": run.worker_cpu,
        "profiles": [summary.as_dict() for summary in run.profiles],
        "goals": [goal.as_dict() for goal in goals],
    }


def _fmt(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def _model_rows(document: dict[str, Any]) -> list[str]:
    rows = [
        "| model | direct ceiling (samples/s, at c) | queue peak (samples/s, at c) | ratio "
        "| p50 / p99 at peak (ms) | worker CPU-s / 1k msgs | bus CPU-s / 1k msgs |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, model in document["models"].items():
        ceiling, peak = model["ceiling"] or {}, model["queue_peak"] or {}
        latency = peak.get("latency", {})
        costs = peak.get("costs", {})
        rows.append(
            f"| {name} | {_fmt(ceiling.get('samples_per_s'), 0)} (c={ceiling.get('concurrency', '-')}) "
            f"| {_fmt(peak.get('samples_per_s'), 0)} (c={peak.get('concurrency', '-')}) "
            f"| {_fmt(model['queue_to_ceiling_ratio'], 3)} "
            f"| {_fmt(latency.get('p50_ms'))} / {_fmt(latency.get('p99_ms'))} "
            f"| {_fmt(costs.get('worker', {}).get('cpu_s_per_1000'), 3)} "
            f"| {_fmt(costs.get('bus', {}).get('cpu_s_per_1000'), 3)} |"
        )
    return rows


def _stage_rows(document: dict[str, Any]) -> list[str]:
    rows = [
        "| model | point | offered/s | achieved samples/s | p50 | p95 | p99 | queue wait | batch wait "
        "| inference | reply |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, model in document["models"].items():
        for point in model["queue_closed"] + model["queue_open"]:
            stages, latency = point.get("stages_ms", {}), point["latency"]
            rows.append(
                f"| {name} | {_point_label(point)} | {_fmt(point['offered_per_s'], 0)} "
                f"| {_fmt(point['samples_per_s'], 0)} "
                f"| {_fmt(latency['p50_ms'])} | {_fmt(latency['p95_ms'])} | {_fmt(latency['p99_ms'])} "
                + " ".join(
                    f"| {_fmt(stages.get(s))}" for s in ("queue_wait_ms", "batch_wait_ms", "inference_ms")
                )
                + f" | {_fmt(stages.get('reply_ms'))} |"
            )
    return rows


def _point_label(point: dict[str, Any]) -> str:
    """The point's label, flagged when earlier requests were still queued as it started."""
    backlog = point.get("backlog_at_start")
    if backlog:
        return f"{point['label']} (**{backlog:,} earlier requests still queued at start**)"
    return str(point["label"])


def _goal_rows(document: dict[str, Any], goals: list[dict[str, Any]] | None = None) -> list[str]:
    rows = ["| goal | target | measured | met | bottleneck |", "|---|---|---|---|---|"]
    for goal in document["goals"] if goals is None else goals:
        met = {True: "yes", False: "**no**", None: "not measured"}[goal["met"]]
        rows.append(
            f"| {goal['name']} | {goal['target']} | {_fmt(goal['measured'], 2)} | {met} "
            f"| {goal['bottleneck']} |"
        )
    return rows


def markdown_summary(document: dict[str, Any]) -> str:
    """The human-readable summary written next to the JSON."""
    machine, settings, worker = document["machine"], document["settings"], document["worker"]
    batching = document["batching"]
    lines = [
        f"# qscore bench, {document['started_at']}{' (quick)' if settings['quick'] else ''}",
        "",
        f"Machine: {machine['usable_cores']} cores, {machine['cpu_model']}, {machine['memory_gb']} GB; "
        f"load average at start {machine['load_average_at_start']}; Python {machine['python']}; "
        f"git {machine['git_revision']}.",
        f"Settings: {settings['workers']} worker(s), max batch {settings['max_batch_size']}, "
        f"max batch delay {settings['max_batch_delay_ms']} ms, {settings['duration_s']} s per point "
        f"after {settings['warmup_s']} s warm-up, {settings['producer_processes']} producer process(es).",
        "",
        "## Issue 23's goals (the bus at network distance, binary body, worker CPU, cold start)",
        "",
        *_goal_rows(document, issue_23_goals(document["goals"])),
        "",
        "## Goals",
        "",
        *_goal_rows(document),
        "",
        "## Ceiling vs queue path",
        "",
        *_model_rows(document),
        "",
    ]
    if batching is not None:
        lines += [
            f"Batching gain on {batching['model']} at c={batching['concurrency']}: "
            f"{_fmt(batching['on']['samples_per_s'], 0)} vs {_fmt(batching['off']['samples_per_s'], 0)} "
            f"samples/s batch-of-one = **{batching['gain']:.1f}x**.",
            "",
        ]
    lines += [
        f"Worker: {_fmt(worker['messages_per_s_per_replica'], 0)} messages/s per replica "
        f"({worker['model']}), {_fmt(worker['messages_per_cpu_s'], 0)} messages per CPU-second, "
        f"peak RSS {_fmt(worker['peak_rss_mb'])} MB.",
        "",
        "## Queue-path points (latency and per-stage means in ms)",
        "",
        *_stage_rows(document),
        "",
        *_throughput_lines(document),
        *_network_lines(document),
        *_profile_lines(document),
    ]
    return "\n".join(lines)


def _throughput_lines(document: dict[str, Any]) -> list[str]:
    """Issue 16's points: items per message, coalescing on/off, lanes."""
    throughput = document.get("throughput")
    if not throughput:
        return []
    rows = [
        f"## Requests per message, coalescing, lanes ({throughput['model']})",
        "",
        "| point | samples/s | messages/s | p50 (ms) | p99 (ms) | errors |",
        "|---|---|---|---|---|---|",
    ]
    lanes = throughput.get("lanes") or {}
    points = [*throughput["sweep"].values(), throughput.get("items")]
    points += [throughput.get("coalesce_on"), throughput.get("coalesce_off")]
    points += [lanes.get(key) for key in ("low_alone", "high_alone", "low_mixed", "high_mixed")]
    for point in points:
        if point is None:
            continue
        rows.append(
            f"| {point['label']} | {_fmt(point['samples_per_s'], 0)} | {_fmt(point['requests_per_s'], 0)} "
            f"| {_fmt(point['latency']['p50_ms'])} | {_fmt(point['latency']['p99_ms'])} | {point['errors']} |"
        )
    return [*rows, ""]


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _network_lines(document: dict[str, Any]) -> list[str]:
    """Issue 23: each queue-path point with the bus at 0 and at D, and the drains."""
    network = document.get("network")
    if not network:
        return []
    delay = f"{network['bus_latency_ms']:g} ms"
    lines = [
        f"## The queue path with the bus {delay} away (one way; emulated, docs/local-bus.md)",
        "",
        f"| model | point | samples/s at 0 | at {delay} | ratio | p50 at 0 / at {delay} (ms) "
        f"| p99 at 0 / at {delay} (ms) | p99 ratio | errors at {delay} |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for point in network["points"]:
        zero, delayed = point["at_zero"], point["at_delay"]
        lines.append(
            f"| {point['model']} | {point['label']} | {_fmt(zero['samples_per_s'], 0)} "
            f"| {_fmt(delayed['samples_per_s'], 0)} | {_ratio(point['throughput_ratio'])} "
            f"| {_fmt(zero['latency']['p50_ms'])} / {_fmt(delayed['latency']['p50_ms'])} "
            f"| {_fmt(zero['latency']['p99_ms'])} / {_fmt(delayed['latency']['p99_ms'])} "
            f"| {_ratio(point['p99_ratio'])} | {delayed['errors']} |"
        )
    lines += [
        "",
        "Drains (request queue filled while the one worker is stopped, then let go; rate from the first"
        " reply to the last):",
        "",
        "| rows per request | bus one way (ms) | messages | msg/s | samples/s | vs at 0 | worker cores "
        "| bus cores | body | errors |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for drain in network["drains"]:
        lines.append(
            f"| {drain['rows']} | {drain['latency_ms']:g} | {drain['messages']:,} "
            f"| {_fmt(drain['messages_per_s'], 0)} | {_fmt(drain['samples_per_s'], 0)} "
            f"| {_ratio(drain['ratio_to_zero'])} | {drain['worker_cores']:.2f} | {drain['bus_cores']:.2f} "
            f"| {drain['body']} | {drain['errors']} |"
        )
    return [*lines, ""]


def _profile_lines(document: dict[str, Any]) -> list[str]:
    """Hottest frames per profiled process (py-spy, `--profile`)."""
    if not document["profiles"]:
        return []
    lines = ["## Profiles (py-spy, share of samples by leaf frame)", ""]
    for profile in document["profiles"]:
        lines.append(
            f"- {profile['label']}, {profile['role']} ({profile['samples']} samples, {profile['raw_path']}):"
        )
        lines += [f"  - {share:.0%} {frame}" for frame, share in profile["top_self"][:6]]
    return [*lines, ""]


def write_results(
    run: BenchRun, output_dir: Path, *, plots: bool = True
) -> tuple[ResultFiles, dict[str, Any]]:
    """Write `<timestamp>.json`, `<timestamp>.md` and the PNG plots into `output_dir`."""
    document = results_document(run, evaluate(run))
    output_dir.mkdir(parents=True, exist_ok=True)
    stamp = results_stamp(run.started_at)
    json_path = output_dir / f"{stamp}.json"
    markdown_path = output_dir / f"{stamp}.md"
    # Compact: the per-point latency lists make an indented file ~2.7x larger, and every committed
    # run travels with the tree to the GPU machine (qscore_tools/bench/gpu/plan.py TRAVEL_LIMIT_BYTES);
    # the Markdown summary beside it is the readable form.
    json_path.write_text(json.dumps(document, separators=(",", ":")) + "\n")
    markdown_path.write_text(markdown_summary(document))
    plot_paths: list[Path] = []
    if plots:
        from qscore_tools.bench.plots import write_plots

        plot_paths = write_plots(document, output_dir / stamp)
    return ResultFiles(json_path, markdown_path, plot_paths), document
