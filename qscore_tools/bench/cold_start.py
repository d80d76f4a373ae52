"""Scale from zero: how long a new worker process takes to be ready and to send its first reply.

KEDA starts a pod when a request is already waiting, so the figure that matters is process
start -> first reply for a request that is on the queue before the process exists. Each trial
starts one `qscore worker` (the launcher every part of the repo uses), with Triton and the bus
already up, and times: ready (`/readyz` answers 200) and first reply (at the producer).

    python -m qscore_tools.bench.cold_start --trials 3   # starts its own bus and Triton
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from qscore.producer import OutgoingRequest, ProducerSettings, ScoringProducer
from qscore_local.workers import WorkerPool

COLD_START_TARGET_S = 1.5


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


async def one_trial(*, connection: str, triton_url: str, model: str, log_dir: Path) -> tuple[float, float]:
    """(ready, first reply) seconds after the worker process was started."""
    settings = ProducerSettings(connection=connection, reply_timeout_s=60)
    loop = asyncio.get_running_loop()
    async with ScoringProducer(settings=settings) as producer:
        request = OutgoingRequest.build(model, {"pixels": np.zeros((1, 64), dtype=np.float32)})
        waiter = asyncio.ensure_future(producer.score_many([request]))
        await asyncio.sleep(0.2)  # the request is on the queue before the worker exists
        env = {"QSCORE_SERVICEBUS_CONNECTION": connection, "QSCORE_TRITON_URL": triton_url}
        pool = WorkerPool(count=0, env=env, log_dir=log_dir, drain_grace_s=2)
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
    *, connection: str, triton_url: str, model: str = "digits", trials: int = 3, log_dir: Path | None = None
) -> ColdStart:
    log_dir = log_dir or Path(tempfile.mkdtemp(prefix="qscore-cold-start-"))
    ready: list[float] = []
    replied: list[float] = []
    for _ in range(trials):
        r, f = await one_trial(connection=connection, triton_url=triton_url, model=model, log_dir=log_dir)
        ready.append(r)
        replied.append(f)
    return ColdStart(trials=trials, ready_s=ready, first_reply_s=replied)


async def _standalone(trials: int) -> ColdStart:
    from qscore_local.bus.launcher import LocalBus
    from qscore_local.triton.launcher import LocalTriton
    from qscore_tools.bench.workload import ROOT

    bus = LocalBus()
    endpoint = await asyncio.to_thread(bus.start)
    triton = LocalTriton(repo=ROOT / "triton_repo", models=["digits"])
    try:
        endpoints = await asyncio.to_thread(triton.start, timeout=120)
        return await measure_cold_start(
            connection=endpoint.connection_string, triton_url=endpoints.grpc_url, trials=trials
        )
    finally:
        await asyncio.to_thread(triton.stop)
        await asyncio.to_thread(bus.stop)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3)
    args = parser.parse_args()
    started = time.time()
    result = asyncio.run(_standalone(args.trials))
    print(json.dumps(result.as_dict() | {"wall_s": round(time.time() - started, 1)}, indent=2))


if __name__ == "__main__":
    main()
