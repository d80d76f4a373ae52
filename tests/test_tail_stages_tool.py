"""qscore_tools.bench.tail_stages' arithmetic (the tool itself runs a bus, a worker and Triton:
`python -m qscore_tools.bench.tail_stages`, docs/benchmarks.md)."""

from __future__ import annotations

import pytest

from qscore_tools.bench.tail_stages import STAGES, breakdown, stages


def test_stages_split_one_request_end_to_end() -> None:
    times = {
        "scheduled": 100.000,
        "called": 100.001,
        "send_started": 100.003,
        "sent": 100.006,
        "queue": 0.004,
        "batch": 0.002,
        "inference": 0.005,
        "read": 100.030,
        "resumed": 100.031,
    }
    split = stages(times, reply_enqueued=100.020)
    assert list(split) == list(STAGES)
    assert sum(split.values()) == pytest.approx(times["resumed"] - times["scheduled"])
    assert split["worker_reply"] == pytest.approx(0.003)  # Triton done at 100.017
    assert split["bus_to_reply"] == pytest.approx(0.010)


def test_breakdown_takes_the_slowest_and_the_middle_hundredth() -> None:
    rows = [(index / 1000, dict.fromkeys(STAGES, index / 1000 / len(STAGES))) for index in range(1, 201)]
    result = breakdown(rows)
    assert result["requests"] == 200
    assert result["p99_ms"] == pytest.approx(198.0, abs=0.1)
    slowest = sum(result["slowest_1pct_ms"].values())
    assert slowest == pytest.approx((199 + 200) / 2, abs=0.5)  # the slowest two: 1% of 200
    assert sum(result["middle_1pct_ms"].values()) < slowest
