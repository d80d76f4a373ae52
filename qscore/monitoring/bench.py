"""Measure what monitoring costs: event-loop time per logged interaction, writer throughput,
and drift-report time. Run `python -m qscore.monitoring.bench [--records 20000]`.

Numbers are printed, never asserted: they depend on the machine and its disk.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import numpy as np

from qscore.contracts import ScoreRequest, Tensor
from qscore.monitoring.drift import drift_report
from qscore.monitoring.interaction_log import InteractionLog
from qscore.monitoring.records import iter_records
from qscore.scoring import ScoredItem, ScoringItem


def _scored_items(count: int, rng: np.random.Generator) -> list[ScoredItem]:
    items = []
    for index in range(count):
        features = rng.integers(0, 17, size=(1, 64)).astype(np.float32)
        request = ScoreRequest(model="digits", inputs={"x": Tensor.from_numpy(features)})
        item = ScoringItem(request_id=f"r{index}", request=request, arrays={"x": features}, received_at=0.0)
        scores = rng.dirichlet(np.ones(10), size=1).astype(np.float32)
        outputs = {"scores": scores, "class": scores.argmax(axis=1).reshape(1, 1)}
        items.append(ScoredItem(item, outputs, "2", batch_started_at=float(index), inference_ms=1.0))
    return items


async def _measure_log(path: Path, items: list[ScoredItem]) -> tuple[float, float, int]:
    log = InteractionLog(path, max_pending=len(items) + 1)
    started = time.perf_counter()
    for scored in items:
        await log.log_scored(scored)
    loop_s = time.perf_counter() - started
    await log.close()
    total_s = time.perf_counter() - started
    return loop_s, total_s, log.dropped


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    args = parser.parse_args(argv)
    items = _scored_items(args.records, np.random.default_rng(0))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "interactions.jsonl"
        loop_s, total_s, dropped = asyncio.run(_measure_log(path, items))
        print(f"log_scored on the event loop: {loop_s / len(items) * 1e6:.1f} us per interaction")
        print(f"writer: {len(items) / total_s:,.0f} interactions/s to disk ({dropped} dropped)")
        started = time.perf_counter()
        records = list(iter_records(path))
        read_s = time.perf_counter() - started
        started = time.perf_counter()
        report = drift_report(records, window_records=max(len(records) // 10, 1))
        drift_s = time.perf_counter() - started
    print(f"read back: {len(records) / read_s:,.0f} records/s")
    print(
        f"drift report: {len(report.windows)} windows x 64 features, {len(records)} records: {drift_s:.2f} s"
    )


if __name__ == "__main__":
    main()
