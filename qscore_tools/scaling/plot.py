"""PNGs of backlog and replicas over time (matplotlib, Agg: no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from qscore_tools.scaling.simulator import SimulationResult

if TYPE_CHECKING:
    from qscore_tools.scaling.compare import PolicyRun


def plot_result(result: SimulationResult, path: Path, *, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timeline = result.timeline
    fig, backlog_axis = plt.subplots(figsize=(10, 4.5), dpi=110)
    backlog_axis.plot(timeline.t, timeline.backlog, color="tab:blue", label="queue (active messages)")
    backlog_axis.set_xlabel("time (s)")
    backlog_axis.set_ylabel("messages", color="tab:blue")
    replica_axis = backlog_axis.twinx()
    replica_axis.step(timeline.t, timeline.replicas, where="post", color="tab:orange", label="replicas")
    replica_axis.step(timeline.t, timeline.ready, where="post", color="tab:green", ls="--", label="ready")
    replica_axis.set_ylabel("replicas", color="tab:orange")
    replica_axis.set_ylim(bottom=0, top=max(max(timeline.replicas, default=1), 1) * 1.15)
    lines = backlog_axis.get_lines() + replica_axis.get_lines()
    backlog_axis.legend(lines, [str(line.get_label()) for line in lines], loc="upper right")
    backlog_axis.set_title(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_comparison(runs: Sequence[PolicyRun], path: Path) -> Path:
    """One panel per traffic shape: each policy's replicas (steps) over the queue backlog."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shapes = list(dict.fromkeys(run.traffic for run in runs))
    fig, axes = plt.subplots(len(shapes), 1, figsize=(10, 3.6 * len(shapes)), dpi=110, squeeze=False)
    colours = {"count-based": "tab:red", "metric-based": "tab:green"}
    for axis, shape in zip(axes[:, 0], shapes, strict=True):
        backlog_axis = axis.twinx()
        for run in (r for r in runs if r.traffic == shape):
            timeline = run.result.timeline
            colour = colours.get(run.policy, "tab:blue")
            axis.step(
                timeline.t, timeline.replicas, where="post", color=colour, label=f"{run.policy} replicas"
            )
            backlog_axis.plot(timeline.t, timeline.backlog, color=colour, alpha=0.35, lw=1)
        axis.set_ylabel("replicas")
        backlog_axis.set_ylabel("queue backlog (faint)")
        axis.set_ylim(bottom=0)
        backlog_axis.set_ylim(bottom=0)
        axis.set_title(shape)
        axis.legend(loc="upper left")
    axes[-1, 0].set_xlabel("time (s)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
