"""A flight comparison as Markdown (for a pull request or a ticket) and as a PNG."""

from __future__ import annotations

from pathlib import Path

from qscore.monitoring.compare import Comparison


def _cell(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def comparison_markdown(comparison: Comparison, *, image: str | None = None) -> str:
    limits = comparison.thresholds
    lines = [
        f"# Version comparison: {comparison.model} (production v{comparison.production})",
        "",
        "| Version | Routes | Requests | Rows | Error ratio | Errors by code | Prediction distribution |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    for summary in comparison.versions:
        routes = ", ".join(f"{route} {count}" for route, count in summary.routes.items())
        errors = ", ".join(f"{code} {count}" for code, count in summary.errors.items()) or "-"
        total = max(summary.rows, 1)
        shares = ", ".join(f"{value}: {count / total:.1%}" for value, count in summary.predictions.items())
        lines.append(
            f"| v{summary.version} | {routes} | {summary.requests} | {summary.rows} | "
            f"{summary.error_ratio:.2%} | {errors} | {shares or '-'} |"
        )
    lines += ["", "## Latency per stage (ms, p50 / p99)", ""]
    stages = sorted({stage for summary in comparison.versions for stage in summary.latency_ms})
    lines += ["| Version | " + " | ".join(stages) + " |", "|---|" + "---:|" * len(stages)]
    for summary in comparison.versions:
        cells = [
            "{:.1f} / {:.1f}".format(*summary.latency_ms[stage]) if stage in summary.latency_ms else "-"
            for stage in stages
        ]
        lines.append(f"| v{summary.version} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Verdict",
        "",
        f"Thresholds: hold below {limits.min_requests} requests or at prediction PSI >= {limits.psi_hold}; "
        "roll back when the error ratio exceeds production's by more than "
        f"{limits.max_error_ratio_increase:.0%}, "
        f"total p99 exceeds {limits.max_p99_ratio}x production's, prediction PSI >= {limits.psi_roll_back}, "
        f"or shadow agreement < {limits.min_shadow_agreement:.0%}; otherwise promote.",
        "",
        "| Version | PSI vs production | Shadow agreement | Verdict | Why |",
        "|---|---:|---:|---|---|",
    ]
    for item in comparison.assessments:
        agreement = "-"
        if item.shadow_agreement is not None:
            agreement = f"{item.shadow_agreement:.1%} of {item.shadow_pairs}"
        lines.append(
            f"| v{item.version} | {_cell(item.prediction_psi, '.3f')} | {agreement} | **{item.verdict}** | "
            f"{'; '.join(item.reasons)} |"
        )
    if image:
        lines += ["", f"![comparison]({image})"]
    return "\n".join(lines) + "\n"


def plot_comparison(comparison: Comparison, path: Path) -> Path:
    """Prediction distribution and p50/p99 total latency per version, side by side."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 4.5), dpi=100)
    FigureCanvasAgg(figure)
    left, right = figure.subplots(1, 2)
    values = sorted({v for s in comparison.versions for v in s.predictions}, key=float)
    width = 0.8 / max(len(comparison.versions), 1)
    for index, summary in enumerate(comparison.versions):
        total = max(summary.rows, 1)
        shares = [summary.predictions.get(value, 0) / total for value in values]
        positions = [position + index * width for position in range(len(values))]
        left.bar(positions, shares, width=width, label=f"v{summary.version}")
    left.set_xticks([position + 0.4 - width / 2 for position in range(len(values))], values)
    left.set_title("Prediction distribution")
    left.set_ylabel("share of rows")
    left.legend(fontsize="small")
    names = [f"v{s.version}" for s in comparison.versions]
    p50 = [s.latency_ms.get("total_ms", (0.0, 0.0))[0] for s in comparison.versions]
    p99 = [s.latency_ms.get("total_ms", (0.0, 0.0))[1] for s in comparison.versions]
    positions = list(range(len(names)))
    right.bar([p - 0.2 for p in positions], p50, width=0.4, label="p50")
    right.bar([p + 0.2 for p in positions], p99, width=0.4, label="p99")
    right.set_xticks(positions, names)
    right.set_title("Total latency (ms)")
    right.legend(fontsize="small")
    figure.suptitle(f"{comparison.model}: versions compared (production v{comparison.production})")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return path
