"""Worker CPU per message, single-row digits, all middleware on: tracing (OTLP to a loopback port),
metrics, jobs, the interaction log (a file) and shadow scoring's check.

One worker process drains N single-row requests (half JSON bodies, half binary) from the local
bus; its user + system CPU-seconds over the drain (psutil) give messages per CPU-second. CPU time
is robust to a shared, noisy machine where wall time is not. With `--profile PATH` py-spy samples
the worker during the drain (raw collapsed stacks, `summarize_collapsed` reads them), only the
thread holding the GIL (--gil): the samples then follow CPU, not threads waiting for it.
`--no-tracing`: no spans (the other middleware stay on), to see their share. `--rounds N`: N
drains by the same worker, each figure and their median (the figure moves ±20% run to run on a
shared machine; rounds cost less than whole runs, which start their own bus and Triton).
`--against DIR`: a second worker, running the code of the checkout at DIR (its PYTHONPATH), drains
the same queue at the same time; each worker's messages (by its replies' `scored_by`) per
CPU-second and their ratio: a before/after comparison under one and the same machine load.

    python -m qscore_tools.bench.per_message_cpu --messages 5000 [--rounds 3] [--profile /tmp/worker.txt]
    python -m qscore_tools.bench.per_message_cpu --messages 10000 --rounds 3 --against /path/to/main
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil

from qscore.producer import OutgoingRequest, ProducerSettings, ScoringProducer
from qscore_local.triton.launcher import pick_free_port
from qscore_local.workers import WorkerPool
from qscore_tools.bench.profiling import py_spy_binary


def _requests(count: int) -> list[OutgoingRequest]:
    rng = np.random.default_rng(0)
    return [
        OutgoingRequest.build(
            "digits",
            {"pixels": rng.random((1, 64), dtype=np.float32)},
            body_format="binary" if index % 2 else "json",
        )
        for index in range(count)
    ]


async def _drain(
    connection: str,
    triton_url: str,
    messages: int,
    profile: Path | None,
    *,
    tracing: bool = True,
    rounds: int = 1,
    against: Path | None = None,
) -> dict[str, object]:
    work = Path(tempfile.mkdtemp(prefix="qscore-percpu-"))
    env = {
        "QSCORE_SERVICEBUS_CONNECTION": connection,
        "QSCORE_TRITON_URL": triton_url,
        "QSCORE_INTERACTION_LOG": str(work / "interactions.jsonl"),
    }
    if tracing:  # spans are made only when they are exported somewhere; nothing listens there
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{pick_free_port()}"
    pool = WorkerPool(count=0, env=env, log_dir=work, drain_grace_s=5)
    # --against: a second worker running the code at that checkout (its directory first on the
    # path: `python -c` puts the working directory before PYTHONPATH), on the same queue at once
    other_pool = None
    if against is not None:
        other_env = {**env, "PYTHONPATH": str(against), "QSCORE_INTERACTION_LOG": str(work / "against.jsonl")}
        other_logs = work / "against"
        other_logs.mkdir()
        other_pool = WorkerPool(count=0, env=other_env, log_dir=other_logs, drain_grace_s=5, cwd=against)
    settings = ProducerSettings(connection=connection, reply_timeout_s=300)
    try:
        worker = await pool.add()
        other = await other_pool.add() if other_pool is not None else None
        async with ScoringProducer(settings=settings) as producer:
            await producer.score_many(_requests(20))  # warm: connections, model metadata
            process = psutil.Process(worker.pid)
            spy = None
            if profile is not None:
                spy = await asyncio.create_subprocess_exec(
                    py_spy_binary(), "record", "-r", "200", "--format", "raw", "-o", str(profile),
                    "--pid", str(worker.pid), "--nonblocking", "--gil",
                    stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
                )  # fmt: skip
            if other is not None:
                pair = {"this": process, "against": psutil.Process(other.pid)}
                shares = [await _shared_round(producer, pair, messages) for _ in range(rounds)]
                return _compare(shares)
            figures = [await _one_round(producer, process, messages) for _ in range(rounds)]
            if spy is not None:
                spy.send_signal(2)
                await spy.wait()
    finally:
        await pool.stop()
        if other_pool is not None:
            await other_pool.stop()
    rates = sorted(figure["messages_per_cpu_s"] for figure in figures)
    summary: dict[str, object] = dict(figures[0]) if rounds == 1 else {
        "messages": messages,
        "failed": sum(figure["failed"] for figure in figures),
        "rounds": [figure["messages_per_cpu_s"] for figure in figures],
        "messages_per_cpu_s": rates[len(rates) // 2],  # the median round
    }  # fmt: skip
    return summary


async def _one_round(producer: ScoringProducer, process: psutil.Process, messages: int) -> dict[str, float]:
    """One drain of `messages` requests: the worker's CPU-seconds over it."""
    requests = _requests(messages)
    before = process.cpu_times()
    started = time.monotonic()
    outcomes = await producer.score_many(requests)
    wall = time.monotonic() - started
    after = process.cpu_times()
    failed = sum(not outcome.ok for outcome in outcomes)
    cpu = (after.user - before.user) + (after.system - before.system)
    return {
        "messages": messages,
        "failed": failed,
        "worker_cpu_s": round(cpu, 3),
        "messages_per_cpu_s": round(messages / cpu, 1),
        "wall_s": round(wall, 2),
    }


async def _shared_round(
    producer: ScoringProducer, processes: dict[str, psutil.Process], messages: int
) -> dict[str, dict[str, float]]:
    """One drain of `messages` requests by two workers at once: each one's messages (its replies'
    `scored_by` ends in its pid) and CPU-seconds, under the same load on the machine."""
    requests = _requests(messages)
    before = {label: process.cpu_times() for label, process in processes.items()}
    outcomes = await producer.score_many(requests)
    figures = {}
    for label, process in processes.items():
        after = process.cpu_times()
        cpu = (after.user - before[label].user) + (after.system - before[label].system)
        suffix = f"-{process.pid}"
        handled = sum(
            outcome.reply is not None and (outcome.reply.scored_by or "").endswith(suffix)
            for outcome in outcomes
        )
        figures[label] = {"messages": handled, "worker_cpu_s": round(cpu, 3), "rate": round(handled / cpu, 1)}
    return figures


def _compare(rounds: list[dict[str, dict[str, float]]]) -> dict[str, object]:
    """Per round, each worker's messages per CPU-second and this / against; the median ratio."""
    ratios = sorted(round(each["this"]["rate"] / each["against"]["rate"], 3) for each in rounds)
    return {"rounds": rounds, "ratio_this_to_against": ratios[len(ratios) // 2]}


async def measure_worker_cpu_per_message(
    connection: str, triton_url: str, messages: int, *, tracing: bool = True
) -> dict[str, float]:
    """One worker, all middleware on, drains `messages` single-row requests (`qscore bench` calls this)."""
    figures = await _drain(connection, triton_url, messages, None, tracing=tracing)
    return {name: float(value) for name, value in figures.items() if isinstance(value, int | float)}


async def _standalone(
    messages: int, profile: Path | None, tracing: bool, rounds: int, against: Path | None
) -> dict[str, object]:
    from qscore_tools.bench.standalone import standalone_stack

    async with standalone_stack(workers=0, prefix="qscore-percpu-stack-") as stack:
        return await _drain(
            stack.connection,
            stack.triton_url,
            messages,
            profile,
            tracing=tracing,
            rounds=rounds,
            against=against,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--profile", type=Path, default=None, help="py-spy raw output path")
    parser.add_argument("--no-tracing", action="store_true", help="no spans (the other middleware stay on)")
    parser.add_argument(
        "--rounds", type=int, default=1, help="drains of --messages by the same worker; reports the median"
    )
    parser.add_argument(
        "--against", type=Path, default=None, help="a checkout whose worker drains the same queue at once"
    )
    args = parser.parse_args()
    if args.against is not None and args.profile is not None:
        parser.error("--profile profiles one worker: leave out --against")
    result = asyncio.run(
        _standalone(args.messages, args.profile, not args.no_tracing, args.rounds, args.against)
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
