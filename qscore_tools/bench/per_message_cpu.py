"""Worker CPU per message, single-row digits, all middleware on: tracing (OTLP to a loopback port),
metrics, jobs, the interaction log (a file) and shadow scoring's check.

One worker process drains N single-row requests (half JSON bodies, half binary) from the local
bus; its user + system CPU-seconds over the drain (psutil) give messages per CPU-second. CPU time
is robust to a shared, noisy machine where wall time is not. With `--profile PATH` py-spy samples
the worker during the drain (raw collapsed stacks, `summarize_collapsed` reads them), only the
thread holding the GIL (--gil): the samples then follow CPU, not threads waiting for it.
`--no-tracing`: no spans (the other middleware stay on), to see their share.

    python -m qscore_tools.bench.per_message_cpu --messages 5000 [--profile /tmp/worker.txt]
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
    connection: str, triton_url: str, messages: int, profile: Path | None, *, tracing: bool = True
) -> dict[str, float]:
    work = Path(tempfile.mkdtemp(prefix="qscore-percpu-"))
    env = {
        "QSCORE_SERVICEBUS_CONNECTION": connection,
        "QSCORE_TRITON_URL": triton_url,
        "QSCORE_INTERACTION_LOG": str(work / "interactions.jsonl"),
    }
    if tracing:  # spans are made only when they are exported somewhere; nothing listens there
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{pick_free_port()}"
    pool = WorkerPool(count=0, env=env, log_dir=work, drain_grace_s=5)
    settings = ProducerSettings(connection=connection, reply_timeout_s=300)
    try:
        worker = await pool.add()
        async with ScoringProducer(settings=settings) as producer:
            await producer.score_many(_requests(20))  # warm: connections, model metadata
            requests = _requests(messages)
            process = psutil.Process(worker.pid)
            spy = None
            if profile is not None:
                spy = await asyncio.create_subprocess_exec(
                    py_spy_binary(), "record", "-r", "200", "--format", "raw", "-o", str(profile),
                    "--pid", str(worker.pid), "--nonblocking", "--gil",
                    stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
                )  # fmt: skip
            before = process.cpu_times()
            started = time.monotonic()
            outcomes = await producer.score_many(requests)
            wall = time.monotonic() - started
            after = process.cpu_times()
            if spy is not None:
                spy.send_signal(2)
                await spy.wait()
    finally:
        await pool.stop()
    failed = sum(not outcome.ok for outcome in outcomes)
    cpu = (after.user - before.user) + (after.system - before.system)
    return {
        "messages": messages,
        "failed": failed,
        "worker_cpu_s": round(cpu, 3),
        "messages_per_cpu_s": round(messages / cpu, 1),
        "wall_s": round(wall, 2),
    }


async def measure_worker_cpu_per_message(
    connection: str, triton_url: str, messages: int, *, tracing: bool = True
) -> dict[str, float]:
    """One worker, all middleware on, drains `messages` single-row requests (`qscore bench` calls this)."""
    return await _drain(connection, triton_url, messages, None, tracing=tracing)


async def _standalone(messages: int, profile: Path | None, tracing: bool) -> dict[str, float]:
    from qscore_local.bus.launcher import LocalBus
    from qscore_local.triton.launcher import LocalTriton
    from qscore_tools.bench.workload import ROOT

    bus = LocalBus()
    endpoint = await asyncio.to_thread(bus.start)
    triton = LocalTriton(repo=ROOT / "triton_repo", models=["digits"])
    try:
        endpoints = await asyncio.to_thread(triton.start, timeout=120)
        connection = endpoint.connection_string
        return await _drain(connection, endpoints.grpc_url, messages, profile, tracing=tracing)
    finally:
        await asyncio.to_thread(triton.stop)
        await asyncio.to_thread(bus.stop)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--profile", type=Path, default=None, help="py-spy raw output path")
    parser.add_argument("--no-tracing", action="store_true", help="no spans (the other middleware stay on)")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(_standalone(args.messages, args.profile, not args.no_tracing))))


if __name__ == "__main__":
    main()
