"""Print a DemoSummary for a person: Rich tables, one screen."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from qscore_local.demo.summary import DemoSummary

STAGE_TITLES = {
    "end_to_end": "end to end (producer)",
    "queue_wait": "queue wait",
    "batch_wait": "batch wait",
    "inference": "inference (Triton call)",
    "total": "total (enqueued -> reply sent)",
}


def render_summary(summary: DemoSummary, console: Console, *, title: str = "qscore demo") -> None:
    """Totals, latency percentiles and (for a demo run) Triton's batch sizes and the logs' place."""
    demo_run = summary.workers > 0
    console.print(_totals_table(summary, title))
    console.print(_latency_table(summary))
    if demo_run:
        console.print(_batch_table(summary))
    verdict = "every request answered" if summary.all_answered else "NOT every request was answered"
    style = "green" if summary.all_answered else "red"
    where = f"; logs in {summary.run_dir}" if demo_run else ""
    console.print(f"[{style}]{verdict}[/{style}]{where}")
    if summary.interaction_log_url:
        console.print(
            f"interaction log in Azurite: {summary.interaction_log_url} (data in {summary.run_dir}/azurite; "
            f"read it with `qscore azurite serve --location {summary.run_dir}/azurite --port PORT` and "
            "`qscore model drift --source <that URL>`)"
        )


def _by_reference(summary: DemoSummary) -> str:
    if not summary.by_reference:
        return "0"
    return f"{summary.by_reference} requests, {summary.bytes_by_reference / 1e6:.1f} MB via Blob"


def _totals_table(summary: DemoSummary, title: str) -> Table:
    table = Table(title=title, show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    accuracy = f"{summary.accuracy:.4f} ({summary.scored_rows} rows)" if summary.accuracy is not None else "-"
    dead = "-" if summary.dead_lettered is None else str(summary.dead_lettered)
    errors = ", ".join(f"{code} {count}" for code, count in sorted(summary.errors.items())) or "0"
    versions = ", ".join(f"v{version}: {count}" for version, count in sorted(summary.model_versions.items()))
    rows = [
        ("requests", str(summary.requests)),
        ("replies", f"{summary.replies} ({summary.ok} ok)"),
        ("error replies", errors),
        ("timed out", str(summary.timed_out)),
        ("duplicate replies (dropped)", str(summary.duplicates)),
        ("dead-lettered", dead),
        ("accuracy vs labels", accuracy),
        ("scored by", versions or "-"),
        ("sent by reference (claim-check)", _by_reference(summary)),
        ("workers", str(summary.workers)),
        ("elapsed", f"{summary.elapsed_s:.1f} s"),
        ("throughput", f"{summary.throughput_rps:.0f} replies/s"),
    ]
    for what, value in rows:
        if what == "workers" and not summary.workers:
            continue
        table.add_row(what, value)
    return table


def _latency_table(summary: DemoSummary) -> Table:
    table = Table(title="latency (ms)")
    for column in ("stage", "count", "p50", "p95", "p99", "max"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    for stage, title in STAGE_TITLES.items():
        p = summary.latency_ms.get(stage)
        if p is None or p.count == 0:
            continue
        table.add_row(title, str(p.count), f"{p.p50:.1f}", f"{p.p95:.1f}", f"{p.p99:.1f}", f"{p.max:.1f}")
    return table


def _batch_table(summary: DemoSummary) -> Table:
    table = Table(title="Triton executions by batch size")
    table.add_column("batch size", justify="right")
    table.add_column("executions", justify="right")
    table.add_column("rows", justify="right")
    table.add_column("share of rows", justify="right")
    rows_total = sum(size * count for size, count in summary.triton_batch_sizes.items()) or 1
    for label, executions, rows in batch_size_buckets(summary.triton_batch_sizes):
        table.add_row(label, str(executions), str(rows), f"{100 * rows / rows_total:.1f}%")
    if not summary.triton_batch_sizes:
        table.add_row("-", "no statistics", "-", "-")
    return table


def batch_size_buckets(sizes: dict[int, int], *, exact_up_to: int = 12) -> list[tuple[str, int, int]]:
    """(label, executions, rows) per batch size, or per power-of-two range when there are many
    distinct sizes (the JSON summary keeps every size)."""
    if len(sizes) <= exact_up_to:
        return [(str(size), count, size * count) for size, count in sorted(sizes.items())]
    buckets: dict[int, list[int]] = {}
    for size, count in sizes.items():
        upper = 1 << max(size - 1, 0).bit_length()  # 1, 2, 4, 8, ...: the range (upper/2, upper]
        bucket = buckets.setdefault(upper, [0, 0])
        bucket[0] += count
        bucket[1] += size * count
    result = []
    for upper, (executions, rows) in sorted(buckets.items()):
        lower = upper // 2 + 1
        label = str(upper) if lower >= upper else f"{lower}-{upper}"
        result.append((label, executions, rows))
    return result
