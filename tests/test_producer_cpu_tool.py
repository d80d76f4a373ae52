"""qscore_tools.bench.producer_cpu's arithmetic (the tool itself runs a bus, a worker and Triton:
`python -m qscore_tools.bench.producer_cpu`, docs/benchmarks.md)."""

from __future__ import annotations

import pytest

from qscore_tools.bench.producer_cpu import _figures


def test_cpu_per_request_is_per_completed_and_per_offered_request() -> None:
    sample = {"completed": 400, "errors": 1, "client_cpu_s": 0.5, "latencies_ms": [10.0] * 400}
    figures = _figures(sample, offered=500)
    assert figures["cpu_ms_per_request"] == pytest.approx(1.25)
    assert figures["cpu_ms_per_offered"] == pytest.approx(1.0)
    assert figures["completed"] == 400 and figures["offered"] == 500 and figures["errors"] == 1
    assert figures["p99_ms"] == pytest.approx(10.0)


def test_no_completed_request_gives_no_per_completed_figure() -> None:
    figures = _figures({"completed": 0, "errors": 0, "client_cpu_s": 0.1, "latencies_ms": []}, offered=10)
    assert figures["cpu_ms_per_request"] != figures["cpu_ms_per_request"]  # NaN
    assert figures["cpu_ms_per_offered"] == pytest.approx(10.0)
