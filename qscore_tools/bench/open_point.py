"""One open-loop queue-path point, alone: the bench's own stack and load client, without the run.

A local bus, a digits Triton and one worker started as `qscore bench` starts them
(`BenchStack`, its defaults: max batch 64, 2 ms delay), one short warm-up point, then a point of
single-row requests at `--rate` per second through the bench's `queue_client` (`measure_queue`,
the `transfer` client): p50, p99, the mean per stage and each role's cores, one JSON line per
point. `--against DIR`: each round starts a second stack running DIR's code (its bus, worker
and load client; their PYTHONPATH, with PYTHONSAFEPATH so that `python -c` and `-m` do not put
this directory first) and loads both at `--rate` at the same time: a before/after pair under
one and the same machine load (each stack's load is the other's background).

    python -m qscore_tools.bench.open_point --rate 400 [--seconds 8] [--rounds 3 --against ../main]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
from pathlib import Path
from typing import Any

from qscore_tools.bench.queue_path import QueueMeasurement, measure_queue
from qscore_tools.bench.runner import local_bus
from qscore_tools.bench.stack import BenchStack, StackConfig
from qscore_tools.bench.workload import ROOT


def _figures(measured: QueueMeasurement) -> dict[str, Any]:
    point = measured.point
    return {
        "rate_per_s": point.offered_per_s,
        "completed": point.completed,
        "p50_ms": round(point.latency.p50_ms, 1),
        "p99_ms": round(point.latency.p99_ms, 1),
        "stages_ms": {stage: round(mean, 1) for stage, mean in point.stages_ms.items()},
        "cores": {role: round(cost.cpu_s / cost.window_s, 2) for role, cost in measured.costs.items()},
        "client_cores": round(point.client_cpu_fraction, 2),
    }


async def points(rate: float, seconds: float, model: str, trees: dict[str, str]) -> dict[str, dict[str, Any]]:
    """A fresh stack per checkout in `trees` (label -> PYTHONPATH), started one after the other;
    then on all at once a warm-up point and the measured one, each with that checkout's client."""
    async with contextlib.AsyncExitStack() as running:
        stacks = {}
        for label, path in trees.items():
            os.environ["PYTHONPATH"] = path  # the bus and the worker inherit it
            bus = await running.enter_async_context(local_bus())
            config = StackConfig(models=(model,))
            stacks[label] = await running.enter_async_context(
                BenchStack(config, bus_connection=bus[0], bus_pid=bus[1])
            )

        async def point(label: str, warmup_s: float, duration_s: float) -> QueueMeasurement:
            env = {"PYTHONPATH": trees[label]}
            return await measure_queue(
                stacks[label],
                model,
                rate_per_s=rate,
                warmup_s=warmup_s,
                duration_s=duration_s,
                client_env=env,
            )

        await asyncio.gather(*(point(label, 1.0, 3.0) for label in trees))  # links, windows
        measured = await asyncio.gather(*(point(label, 2.0, seconds) for label in trees))
    return {label: _figures(each) for label, each in zip(trees, measured, strict=True)}


async def run(rate: float, seconds: float, rounds: int, model: str, against: Path | None) -> None:
    this = os.environ.get("PYTHONPATH", str(ROOT))
    if against is not None:  # each process's code is its PYTHONPATH's, not its working directory's
        os.environ["PYTHONSAFEPATH"] = "1"
    for index in range(rounds):
        trees = {"this": this} | ({"against": str(against)} if against is not None else {})
        if index % 2:  # every other round the other stack starts first (any bias of order evens out)
            trees = dict(reversed(trees.items()))
        for label, figures in (await points(rate, seconds, model, trees)).items():
            print(json.dumps({"round": index + 1, "tree": label} | figures), flush=True)


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
