"""PNG of backlog and replicas over time (matplotlib, Agg: no display needed)."""

from __future__ import annotations

from pathlib import Path

from qscore_tools.scaling.simulator import SimulationResult


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
