"""PNG plots of a results document (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _figure(columns: int) -> tuple[Any, list[Any]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, columns, figsize=(6 * columns, 4.5), squeeze=False)
    return figure, list(axes[0])


def _save(figure: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def throughput_plot(document: dict[str, Any], path: Path) -> Path:
    """Achieved vs offered samples/s on the queue path, per model, with the closed-loop peak."""
    models = document["models"]
    figure, axes = _figure(len(models))
    for axis, (name, model) in zip(axes, models.items(), strict=True):
        points = sorted(model["queue_open"], key=lambda p: p["offered_per_s"])
        offered = [p["offered_per_s"] for p in points]
        axis.plot(offered, [p["samples_per_s"] for p in points], "o-", label="queue path (open loop)")
        if offered:
            axis.plot([0, max(offered)], [0, max(offered)], ":", color="grey", label="achieved = offered")
        if model["queue_peak"]:
            peak = model["queue_peak"]["samples_per_s"]
            axis.axhline(
                peak, linestyle="--", color="tab:green", label=f"queue closed-loop peak {peak:,.0f}/s"
            )
        if model["ceiling"]:
            axis.set_title(
                f"{name}: direct-Triton ceiling {model['ceiling']['samples_per_s']:,.0f} samples/s"
            )
        else:
            axis.set_title(name)
        axis.set_xlabel("offered load (samples/s)")
        axis.set_ylabel("achieved (samples/s)")
        axis.legend(fontsize="small")
        axis.grid(alpha=0.3)
    return _save(figure, path)


def _cdf_curves(document: dict[str, Any], name: str, model: dict[str, Any]) -> list[tuple[str, list[Any]]]:
    curves = [(f"queue {p['label']}", p["latency_cdf"]) for p in model["queue_closed"] + model["queue_open"]]
    if model["direct_at_half_peak"]:
        curves.append(("direct Triton at half peak (batch 1)", model["direct_at_half_peak"]["latency_cdf"]))
    batching = document.get("batching")
    if batching and batching["model"] == name:
        curves.append((f"queue {batching['off']['label']}", batching["off"]["latency_cdf"]))
    return [(label, cdf) for label, cdf in curves if cdf]


def latency_cdf_plot(document: dict[str, Any], path: Path) -> Path:
    """End-to-end latency CDF per configuration, per model (log-scale latency)."""
    models = document["models"]
    figure, axes = _figure(len(models))
    for axis, (name, model) in zip(axes, models.items(), strict=True):
        for label, cdf in _cdf_curves(document, name, model):
            axis.plot([pair[0] for pair in cdf], [pair[1] for pair in cdf], label=label)
        axis.set_xscale("log")
        axis.set_xlabel("end-to-end latency (ms)")
        axis.set_ylabel("fraction of requests")
        axis.set_title(f"{name}: latency CDF")
        axis.legend(fontsize="x-small")
        axis.grid(alpha=0.3, which="both")
    return _save(figure, path)


def items_per_message_plot(document: dict[str, Any], path: Path) -> Path:
    """Samples/s and p99 against rows per message (one request each), with the direct ceiling
    and the 128-items-per-message point."""
    throughput = document["throughput"]
    sweep = sorted((int(items), point) for items, point in throughput["sweep"].items())
    figure, (rate_axis, latency_axis) = _figure(2)
    items = [count for count, _ in sweep]
    rate_axis.plot(items, [point["samples_per_s"] for _, point in sweep], "o-", label="N-row requests")
    if throughput.get("items"):
        count = document["settings"].get("items_per_message", 128)
        rate_axis.plot(
            [count], [throughput["items"]["samples_per_s"]], "s", label=f"{count} one-row requests (items)"
        )
    ceiling = (document["models"].get(throughput["model"]) or {}).get("ceiling")
    if ceiling:
        rate_axis.axhline(
            ceiling["samples_per_s"], linestyle="--", color="grey", label="direct-Triton ceiling"
        )
        rate_axis.axhline(
            ceiling["samples_per_s"] / 4, linestyle=":", color="tab:red", label="goal: 0.25 x ceiling"
        )
    latency_axis.plot(items, [point["latency"]["p99_ms"] for _, point in sweep], "o-", color="tab:orange")
    for axis in (rate_axis, latency_axis):
        axis.set_xscale("log", base=2)
        axis.set_xlabel("rows per message")
        axis.grid(alpha=0.3, which="both")
    rate_axis.set_ylabel("samples/s")
    rate_axis.set_title(f"{throughput['model']}: samples/s by rows per message, 1 worker")
    rate_axis.legend(fontsize="small")
    latency_axis.set_ylabel("p99 per message (ms)")
    latency_axis.set_title("p99 of a whole message's replies")
    return _save(figure, path)


def write_plots(document: dict[str, Any], stem: Path) -> list[Path]:
    """`<stem>-throughput.png`, `<stem>-latency-cdf.png` and (issue 16) `<stem>-items-per-message.png`."""
    paths = [
        throughput_plot(document, stem.with_name(f"{stem.name}-throughput.png")),
        latency_cdf_plot(document, stem.with_name(f"{stem.name}-latency-cdf.png")),
    ]
    if document.get("throughput") and document["throughput"]["sweep"]:
        paths.append(items_per_message_plot(document, stem.with_name(f"{stem.name}-items-per-message.png")))
    return paths
