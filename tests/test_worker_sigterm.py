"""SIGTERM during a burst: `qscore worker` (a subprocess) stops receiving, settles what it holds
and exits within its grace period; every request is replied or still on the queue, none lost."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

from qscore_local.bus.stats import queue_counts
from tests.fixtures.ports import free_port
from tests.fixtures.worker import (
    OutgoingRequest,
    ReplyCollector,
    WorkerSettingsFactory,
    dead_letters,
    digits_request,
    running_worker,
    send_requests,
)

BURST = 3000
GRACE_S = 10


def _start_worker_process(
    bus: Any, triton: Any, queue: str, tmp_path: Path, health_port: int
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "QSCORE_SERVICEBUS_CONNECTION": bus.connection_string,
        "QSCORE_TRITON_URL": triton.grpc_url,
        "QSCORE_REQUEST_QUEUE": queue,
        "QSCORE_REGISTRY_PATH": str(tmp_path / "registry.json"),
        "QSCORE_DRAIN_GRACE_S": str(GRACE_S),
        "QSCORE_HEALTH_HOST": "127.0.0.1",
    }
    command = [sys.executable, "-c", "from qscore_cli import main; main()", "worker"]
    command += ["--health-port", str(health_port)]
    log = (tmp_path / "worker.log").open("wb")
    return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)


async def _wait_ready(port: int, worker: subprocess.Popen[bytes], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline and worker.poll() is None:
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"http://127.0.0.1:{port}/readyz") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.1)
    raise AssertionError("the worker did not become ready")


async def test_sigterm_during_a_burst_loses_nothing(
    bus: Any,
    replies: ReplyCollector,
    triton: Any,
    fresh_queue: str,
    worker_settings: WorkerSettingsFactory,
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(1)
    requests = [
        OutgoingRequest(
            f"burst-{index}", digits_request(rng.uniform(0, 16, (1, 64))), session_id=replies.session_id
        )
        for index in range(BURST)
    ]
    health_port = free_port()
    worker = _start_worker_process(bus, triton, fresh_queue, tmp_path, health_port)
    try:
        await _wait_ready(health_port, worker)
        await replies.collect(0)  # open the reply receiver now, so the signal follows the first reply
        await send_requests(bus.connection_string, fresh_queue, requests)
        await replies.collect(1, timeout_s=30)  # the worker is busy with the burst
        worker.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        exit_code = await asyncio.to_thread(worker.wait, GRACE_S + 10)
        took_s = time.monotonic() - signalled
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    log = (tmp_path / "worker.log").read_text()
    assert exit_code == 0, log[-3000:]
    assert took_s < GRACE_S, (took_s, log[-2000:])
    counts = (await queue_counts(bus.connection_string))[fresh_queue]
    assert counts.locked == 0, counts  # nothing left locked: prefetched messages were released
    assert 0 < counts.active < BURST, ("the burst should be cut short by the signal", counts)
    # Every request not on the queue any more was replied to before the worker exited.
    await replies.collect(BURST - counts.active, timeout_s=30)
    assert len(replies.replies) == BURST - counts.active, counts
    # A second worker answers the rest: every request gets its reply.
    async with running_worker(worker_settings(request_queue=fresh_queue)):
        await replies.collect(BURST, timeout_s=60)
    assert len(replies.replies) == BURST
    assert not await dead_letters(bus.connection_string, fresh_queue, wait_s=0.2)
