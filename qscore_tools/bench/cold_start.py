"""Scale from zero: how long a new worker process takes to be ready and to send its first reply.

KEDA starts a pod when a request is already waiting, so the figure that matters is process
start -> first reply for a request that is on the queue before the process exists. Each trial
starts one `qscore worker` (the launcher every part of the repo uses), with Triton and the bus
already up, and times: ready (`/readyz` answers 200) and first reply (at the producer).

    python -m qscore_tools.bench.cold_start --trials 3   # starts its own bus and Triton
    python -m qscore_tools.bench.cold_start --trials 5 --compare /tmp/main-copy   # before/after

`--compare DIR` alternates trial by trial between this checkout's code and DIR's (a copy of the
repository, e.g. `git archive main | tar -x -C DIR`; the worker runs with DIR first on
PYTHONPATH, and in DIR as its working directory, which `python -c` puts before PYTHONPATH), on
the same bus and Triton: on a shared, noisy machine only such interleaved trials compare. (Until
2026-12-07 both arms ran in the caller's directory, so both ran the caller's code.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from qscore.producer import OutgoingRequest, ProducerSettings, ScoringProducer
from qscore_local.workers import WorkerPool

COLD_START_TARGET_S = 1.5
THIS_TREE = Path(__file__).resolve().parents[2]  # the checkout this module runs from


@dataclass(frozen=True)
class ColdStart:
    trials: int
    ready_s: list[float]
    first_reply_s: list[float]

    @property
    def ready_median_s(self) -> float:
        return statistics.median(self.ready_s)

    @property
    def first_reply_median_s(self) -> float:
        return statistics.median(self.first_reply_s)

    def as_dict(self) -> dict[str, object]:
        return asdict(self) | {
            "ready_median_s": self.ready_median_s,
            "first_reply_median_s": self.first_reply_median_s,
        }


async def one_trial(
    *, connection: str, triton_url: str, model: str, log_dir: Path, cwd: Path | None = None
) -> tuple[float, float]:
    """(ready, first reply) seconds after the worker process was started (in `cwd`: the worker
    runs `python -c`, which puts its working directory first on sys.path, before PYTHONPATH)."""
    settings = ProducerSettings(connection=connection, reply_timeout_s=60)
    loop = asyncio.get_running_loop()
    async with ScoringProducer(settings=settings) as producer:
        request = OutgoingRequest.build(model, {"pixels": np.zeros((1, 64), dtype=np.float32)})
        waiter = asyncio.ensure_future(producer.score_many([request]))
        await asyncio.sleep(0.2)  # the request is on the queue before the worker exists
        env = {"QSCORE_SERVICEBUS_CONNECTION": connection, "QSCORE_TRITON_URL": triton_url}
        pool = WorkerPool(count=0, env=env, log_dir=log_dir, drain_grace_s=2, cwd=cwd)
        started = loop.time()
        try:
            worker = await pool.add(wait=False)

            async def ready() -> float:
                await pool.wait_ready(worker, timeout_s=60)
                return loop.time() - started

            ready_task = asyncio.ensure_future(ready())
            (outcome,) = await waiter
            replied = loop.time() - started
            # Polled every 0.2 s, so "ready" can be seen after the first reply went out.
            ready_s = min(await ready_task, replied)
        finally:
            await pool.stop()
    if not outcome.ok:
        raise RuntimeError(f"cold-start request failed: {outcome}")
    return ready_s, replied


async def measure_cold_start(
    *,
    connection: str,
    triton_url: str,
    model: str = "digits",
    trials: int = 3,
    log_dir: Path | None = None,
    cwd: Path | None = None,
) -> ColdStart:
    log_dir = log_dir or Path(tempfile.mkdtemp(prefix="qscore-cold-start-"))
    ready: list[float] = []
    replied: list[float] = []
    for _ in range(trials):
        r, f = await one_trial(
            connection=connection, triton_url=triton_url, model=model, log_dir=log_dir, cwd=cwd
        )
        ready.append(r)
        replied.append(f)
    return ColdStart(trials=trials, ready_s=ready, first_reply_s=replied)


async def _standalone(trials: int, compare: str | None = None) -> dict[str, ColdStart]:
    from qscore_tools.bench.standalone import standalone_stack

    async with standalone_stack(workers=0, prefix="qscore-coldstart-stack-") as stack:
        # Each tree's worker runs in that tree: `python -c` puts the working directory first on
        # sys.path, so with one shared directory both would run the same code whatever PYTHONPATH.
        trees = {"this": (os.environ.get("PYTHONPATH", ""), THIS_TREE)}
        if compare is not None:
            trees = {"compare": (compare, Path(compare)), **trees}
        results: dict[str, ColdStart] = {}
        for _ in range(trials):
            for name, (path, tree) in trees.items():
                os.environ["PYTHONPATH"] = path  # the worker process inherits it
                one = await measure_cold_start(
                    connection=stack.connection, triton_url=stack.triton_url, trials=1, cwd=tree
                )
                so_far = results.get(name)
                results[name] = (
                    one
                    if so_far is None
                    else ColdStart(
                        so_far.trials + 1,
                        so_far.ready_s + one.ready_s,
                        so_far.first_reply_s + one.first_reply_s,
                    )
                )
        return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--compare", type=Path, help="another copy of the repository, trials interleaved")
    args = parser.parse_args()
    started = time.time()
    compare = None if args.compare is None else os.path.abspath(args.compare)
    results = asyncio.run(_standalone(args.trials, compare))
    document = (
        results["this"].as_dict()
        if args.compare is None
        else {name: result.as_dict() for name, result in results.items()}
    )
    print(json.dumps(document | {"wall_s": round(time.time() - started, 1)}, indent=2))


if __name__ == "__main__":
    main()
