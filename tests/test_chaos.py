"""Chaos against the real local stack (qscore_tools/bench/chaos.py): steady load while workers,
Triton and the bus are killed; nothing accepted may be lost and no answer may be wrong.

The short form (default run) uses the session's Triton and kills a worker mid-batch and the bus;
the long form (slow) runs all four faults (worker SIGKILL, worker SIGTERM, Triton SIGKILL, bus
SIGKILL) with a Triton of its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from qscore_tools.bench.chaos import FAULTS, ChaosConfig, run_chaos


async def test_short_chaos_loses_nothing(triton: Any, tmp_path: Path) -> None:
    config = ChaosConfig(
        duration_s=4.0,
        rate=40.0,
        workers=2,
        faults=["worker-kill", "bus-kill"],
        triton_url=triton.grpc_url,
        drain_timeout_s=60.0,
        work_dir=tmp_path,
        lock_s=2,  # a killed worker's messages come back after 2 s
    )
    report = await run_chaos(config)
    print(report.summary())
    assert report.accepted == 160
    assert report.lost == 0, report.lost_ids
    assert report.wrong == 0
    assert len(report.faults) == 2
    assert report.ok + sum(report.dead_lettered.values()) >= report.accepted


@pytest.mark.slow
async def test_long_chaos_loses_nothing(tmp_path: Path) -> None:
    config = ChaosConfig(duration_s=40.0, rate=60.0, workers=2, faults=FAULTS * 2, work_dir=tmp_path)
    report = await run_chaos(config)
    print(report.summary())
    assert report.lost == 0, report.lost_ids
    assert report.wrong == 0
    assert len(report.faults) == 2 * len(FAULTS)
