"""The GPU run's results: one JSON document with every point, and a Markdown summary of it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from qscore_tools.bench.gpu.plan import time_plan
from qscore_tools.bench.gpu.runner import GpuRun, SearchResult
from qscore_tools.bench.settings import results_stamp

SCHEMA = "qscore-gpu-bench/1"


def _best(run: GpuRun, model: str, max_batch: int, batching: bool, mode: str) -> dict[str, Any] | None:
    for result in run.results:
        s = result.search
        if (s.model, s.max_batch_size, s.dynamic_batching, s.mode) == (model, max_batch, batching, mode):
            return result.best
    return None


def _rate(point: dict[str, Any] | None) -> float | None:
    return float(point["samples_per_s"]) if point else None


def _ratio(top: float | None, bottom: float | None) -> float | None:
    return round(top / bottom, 2) if top and bottom else None


def summary_rows(run: GpuRun) -> list[dict[str, Any]]:
    """Per model and max batch: the ceiling, batching on vs off, and GPU use at the peak."""
    rows = []
    largest = max(run.settings.max_batch_sizes)
    for model in run.settings.models:
        rows_nodb = _rate(_best(run, model, largest, False, "rows"))
        for size in run.settings.max_batch_sizes:
            points = {
                "full_db": _best(run, model, size, True, "full"),
                "full_nodb": _best(run, model, size, False, "full"),
                "rows_db": _best(run, model, size, True, "rows"),
            }
            measured = [p for p in points.values() if p]
            peak = max(measured, key=lambda p: float(p["samples_per_s"]), default=None)
            rows.append({
                "model": model,
                "max_batch_size": size,
                **{f"{key}_samples_per_s": _rate(point) for key, point in points.items()},
                "rows_nodb_samples_per_s": rows_nodb,
                "ceiling_samples_per_s": _rate(peak),
                "dynamic_batching_gain": _ratio(_rate(points["rows_db"]), rows_nodb),
                "pre_batched_gain": _ratio(_rate(points["full_db"]), rows_nodb),
                "gpu_at_peak": peak.get("gpu") if peak else None,
                "triton_at_peak": peak.get("triton") if peak else None,
            })  # fmt: skip
    return rows


def _search_document(result: SearchResult) -> dict[str, Any]:
    s = result.search
    return {
        "label": s.label, "model": s.model, "max_batch_size": s.max_batch_size,
        "dynamic_batching": s.dynamic_batching, "rows_per_request": s.rows, "mode": s.mode,
        "best_samples_per_s": _rate(result.best), "stopped": result.stopped, "points": result.points,
    }  # fmt: skip


def document(run: GpuRun) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "elapsed_s": round(run.finished_at - run.started_at, 1),
        "device": run.device,
        "dry_run": run.settings.dry_run,
        "settings": run.settings.as_dict(),
        "time_plan": time_plan(run.settings),
        "machine": run.machine,
        "gpu": run.gpu,
        "preflight": run.preflight,
        "problems": run.problems,
        "equivalence": [check.as_dict() for check in run.equivalence],
        "served_checks": run.served,
        "triton": run.triton,
        "summary": summary_rows(run),
        "searches": [_search_document(result) for result in run.results],
        "skipped_searches": run.skipped,
        "queue_path": {"status": "not run", "reason": "not prepared in this script (see docs/benchmarks.md)"},
    }


def _fmt(value: float | None, suffix: str = "") -> str:
    return "—" if value is None else f"{value:,.0f}{suffix}" if value >= 100 else f"{value:.2f}{suffix}"


def _gpu_text(gpu: dict[str, Any] | None) -> str:
    if not gpu:
        return "n/a"
    return f"{gpu['gpu_util_mean_pct']:.0f}% mean, {gpu['gpu_util_max_pct']:.0f}% max"


def _triton_text(figures: dict[str, Any] | None) -> str:
    if not figures:
        return "n/a"
    return f"{figures['rows_per_execution']:.0f} rows/exec, busy {figures['instance_busy_fraction']:.2f}"


def markdown(run: GpuRun, doc: dict[str, Any]) -> str:
    title = f"# GPU benchmark {results_stamp(run.started_at)}"
    if run.settings.dry_run:
        title += " (CPU DRY RUN: the code path, not GPU figures)"
    lines = [
        title,
        "",
        f"Device `{run.device}`; {run.gpu.get('gpus') or 'no nvidia-smi'}; torch {run.gpu.get('torch')}; "
        f"Triton instance kind {run.triton.get('instance_kind', 'not started')}; "
        f"elapsed {doc['elapsed_s']} s "
        f"of a {run.settings.budget_s:.0f} s budget. Windows: {run.settings.warmup_s} s warm-up, "
        f"{run.settings.duration_s} s measured per point.",
        "",
        "| model | max batch | full, DB on | full, DB off | 1-row, DB on | 1-row, DB off "
        "| ceiling | DB gain | pre-batched gain | GPU at peak | Triton at peak |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for row in doc["summary"]:
        lines.append(
            f"| {row['model']} | {row['max_batch_size']} | {_fmt(row['full_db_samples_per_s'])} | "
            f"{_fmt(row['full_nodb_samples_per_s'])} | {_fmt(row['rows_db_samples_per_s'])} | "
            f"{_fmt(row['rows_nodb_samples_per_s'])} | {_fmt(row['ceiling_samples_per_s'])} | "
            f"{_fmt(row['dynamic_batching_gain'], 'x')} | {_fmt(row['pre_batched_gain'], 'x')} | "
            f"{_gpu_text(row['gpu_at_peak'])} | {_triton_text(row['triton_at_peak'])} |"
        )
    lines += [
        "",
        "Samples/s at each search's best point. *full*: requests of max-batch rows (what the worker sends);",
        "*1-row*: one-row requests that Triton's dynamic batcher (DB) must gather;",
        "*DB gain* = 1-row DB on / off;",
        "*pre-batched gain* = full DB on / 1-row DB off. *Triton at peak*: rows per model execution",
        "and the model instance's compute time per second of the window (Triton's own counters).",
        "",
        "## Checks",
        "",
    ]
    lines += [
        f"- torch on {c['device']} vs onnxruntime CPU, `{Path(c['onnx_file']).parent.parent.name}/"
        f"{Path(c['onnx_file']).parent.name}`: max |Δp| {c['max_abs_probability_diff']:.2e}, "
        f"label mismatches {c['label_mismatches']} ({'pass' if c['passed'] else 'FAIL'})"
        for c in doc["equivalence"]
    ]
    lines += [
        f"- served by Triton, `{c['variant']}`: max |Δp| {c['max_abs_probability_diff']:.2e}, "
        f"label mismatches {c['label_mismatches']} ({'pass' if c['passed'] else 'FAIL'})"
        for c in doc["served_checks"]
    ]
    lines += [f"- skipped (time budget): {', '.join(run.skipped)}"] if run.skipped else []
    lines += [f"- PROBLEM: {problem}" for problem in run.problems]
    lines += ["- queue path: not run (see docs/benchmarks.md, GPU run)"]
    return "\n".join(lines) + "\n"


def write(run: GpuRun, out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"gpu-{results_stamp(run.started_at)}"
    doc = document(run)
    json_path, md_path = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    json_path.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    md_path.write_text(markdown(run, doc))
    return json_path, md_path
