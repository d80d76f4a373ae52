"""Optional latency histogram (`qscore demo --plot out.png`)."""

from __future__ import annotations

from pathlib import Path

from qscore_local.demo.summary import DemoSummary


def plot_latency(latencies_ms: dict[str, list[float]], summary: DemoSummary, path: Path) -> None:
    """End-to-end and per-stage latency histograms on a log scale, written as PNG (blocking: run
    it in a thread)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    figure, axis = plt.subplots(figsize=(9, 5))
    positive = [v for values in latencies_ms.values() for v in values if v > 0]
    if positive:
        bins = np.geomspace(max(min(positive), 0.01), max(positive) * 1.05, 60).tolist()
        for stage in ("end_to_end", "queue_wait", "batch_wait", "inference"):
            values = [v for v in latencies_ms.get(stage, []) if v > 0]
            if values:
                axis.hist(values, bins=bins, histtype="step", linewidth=1.5, label=stage.replace("_", " "))
        axis.set_xscale("log")
    axis.set_xlabel("milliseconds")
    axis.set_ylabel("requests")
    axis.set_title(
        f"qscore demo: {summary.requests} requests, {summary.workers} workers, "
        f"{summary.throughput_rps:.0f} replies/s"
    )
    axis.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)
