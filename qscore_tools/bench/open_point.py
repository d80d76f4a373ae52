"""One open-loop queue-path point, alone: the bench's own stack and load client, without the run.

A local bus, a digits Triton and one worker started as `qscore bench` starts them
(`BenchStack`, its defaults: max batch 64, 2 ms delay), one short warm-up point, then a point of
single-row requests at `--rate` per second through the bench's `queue_client` (`measure_queue`,
the `transfer` client): p50, p99, the mean per stage and each role's cores, one JSON line per
point. `--against DIR`: each round runs this checkout's processes (worker, bus, load client),
then DIR's, each on a fresh stack (their PYTHONPATH, with PYTHONSAFEPATH so that `python -c`
does not put this directory first): a before/after pair under one and the same machine load.

    python -m qscore_tools.bench.open_point --rate 400 [--seconds 8] [--rounds 3 --against ../main]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from pathlib import Path
from typing import Any

from qscore_tools.bench.queue_path import measure_queue
from qscore_tools.bench.runner import local_bus
from qscore_tools.bench.stack import BenchStack, StackConfig
from qscore_tools.bench.workload import ROOT


async def one_point(rate: float, seconds: float, model: str) -> dict[str, Any]:
    """A fresh stack, a warm-up point, then the measured one."""
    async with (
        local_bus() as bus,
        BenchStack(StackConfig(models=(model,)), bus_connection=bus[0], bus_pid=bus[1]) as stack,
    ):
        await measure_queue(stack, model, rate_per_s=rate, warmup_s=1.0, duration_s=3.0)  # links, windows
        measured = await measure_queue(stack, model, rate_per_s=rate, warmup_s=2.0, duration_s=seconds)
    point = measured.point
    return {
        "rate_per_s": rate,
        "completed": point.completed,
        "p50_ms": round(point.latency.p50_ms, 1),
        "p99_ms": round(point.latency.p99_ms, 1),
        "stages_ms": {stage: round(mean, 1) for stage, mean in point.stages_ms.items()},
        "cores": {role: round(cost.cpu_s / cost.window_s, 2) for role, cost in measured.costs.items()},
        "client_cores": round(point.client_cpu_fraction, 2),
    }


async def run(rate: float, seconds: float, rounds: int, model: str, against: Path | None) -> None:
    trees = {"this": os.environ.get("PYTHONPATH", str(ROOT))}
    if against is not None:
        trees["against"] = str(against)
        os.environ["PYTHONSAFEPATH"] = "1"
    for index in range(rounds):
        for label, path in trees.items():
            os.environ["PYTHONPATH"] = path  # the bus, the worker and the load client inherit it
            print(json.dumps({"round": index + 1, "tree": label} | await one_point(rate, seconds, model)))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rate", type=float, default=400.0, help="single-row requests per second")
    parser.add_argument("--seconds", type=float, default=8.0, help="the measured window")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--model", default="digits")
    parser.add_argument("--against", type=Path, default=None, help="a checkout run in turn with this one")
    args = parser.parse_args()
    if args.rate <= 0 or args.seconds <= 0 or args.rounds < 1:
        parser.error("--rate and --seconds must be > 0, --rounds >= 1")
    against = args.against.resolve() if args.against is not None else None
    asyncio.run(run(args.rate, args.seconds, args.rounds, args.model, against))


if __name__ == "__main__":
    main()
