"""`qscore demo`: the local stack (bus, Triton, workers), the digits workload, and its summary."""

from qscore.demo.options import DemoOptions
from qscore.demo.run import DemoResult, pump, run_demo
from qscore.demo.summary import DemoSummary, Percentiles, SummaryBuilder, batch_size_distribution

__all__ = [
    "DemoOptions",
    "DemoResult",
    "DemoSummary",
    "Percentiles",
    "SummaryBuilder",
    "batch_size_distribution",
    "pump",
    "run_demo",
]
