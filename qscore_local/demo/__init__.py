"""`qscore demo`: the local stack (bus, Triton, workers), the digits workload, and its summary."""

from qscore_local.demo.options import DemoOptions
from qscore_local.demo.run import DemoResult, pump, run_demo
from qscore_local.demo.summary import DemoSummary, Percentiles, SummaryBuilder, batch_size_distribution

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
