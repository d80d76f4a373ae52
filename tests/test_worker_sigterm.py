"""SIGTERM during a burst: `qscore worker` (a subprocess) stops receiving, settles what it holds
and exits within its grace period; every request is replied or still on the queue, none lost."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np

from qscore_local.bus.stats import queue_counts
from qscore_local.workers import WorkerPool
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
# Sent only once the worker has logged that it stopped receiving: more than one receive can take
# (max_held_messages 1024), so some of the burst is still on the queue when the worker exits,
# however fast the machine is.
AFTER_STOP = 1500
GRACE_S = 10


def _worker_pool(bus: Any, triton: Any, queue: str, tmp_path: Path) -> WorkerPool:
    env = {
        "QSCORE_SERVICEBUS_CONNECTION": bus.connection_string,
        "QSCORE_TRITON_URL": triton.grpc_url,
        "QSCORE_REQUEST_QUEUE": queue,
        "QSCORE_REGISTRY_PATH": str(tmp_path / "registry.json"),
    }
    return WorkerPool(count=1, env=env, log_dir=tmp_path, drain_grace_s=GRACE_S)


async def _logged(log_path: Path, line: str) -> None:
    """Until the worker's log holds `line` (an event the worker writes, not a guess at timing)."""
    while True:
        if line in await asyncio.to_thread(log_path.read_text, errors="replace"):
            return
        await asyncio.sleep(0.05)  # another process's file: nothing to wait on but its contents


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
    during, after_stop = requests[: BURST - AFTER_STOP], requests[BURST - AFTER_STOP :]
    pool = _worker_pool(bus, triton, fresh_queue, tmp_path)
    await pool.start(timeout_s=30)
    worker = pool.workers[0]
    try:
        await replies.collect(0)  # open the reply receiver now, so the signal follows the first reply
        await send_requests(bus.connection_string, fresh_queue, during)
        await replies.collect(1, timeout_s=30)  # the worker is busy with the burst
        worker.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        await asyncio.wait_for(_logged(worker.log_path, "stopping (SIGTERM)"), GRACE_S)
        await send_requests(bus.connection_string, fresh_queue, after_stop)
        exit_code = await asyncio.wait_for(worker.process.wait(), GRACE_S + 10)
        took_s = time.monotonic() - signalled
    finally:
        if worker.running:
            worker.kill()
            await worker.process.wait()
    log = worker.log_path.read_text()
    assert exit_code == 0, log[-3000:]
    assert took_s < GRACE_S, (took_s, log[-2000:])
    counts = (await queue_counts(bus.connection_string))[fresh_queue]
    assert counts.locked == 0, counts  # nothing left locked: prefetched messages were released
    # At least one reply came before the signal; what was sent after the stop was not all taken.
    assert 0 < counts.active < BURST, ("the burst should be cut short by the signal", counts)
    assert counts.active >= AFTER_STOP - 1024, counts
    # Every request not on the queue any more was replied to before the worker exited.
    await replies.collect(BURST - counts.active, timeout_s=30)
    assert len(replies.replies) == BURST - counts.active, counts
    # A second worker answers the rest: every request gets its reply.
    async with running_worker(worker_settings(request_queue=fresh_queue)):
        await replies.collect(BURST, timeout_s=60)
    assert len(replies.replies) == BURST
    assert not await dead_letters(bus.connection_string, fresh_queue, wait_s=0.2)
