"""Worker faults against the real bus and Triton: slow scoring beyond the lock, a redelivery
after a crash between reply and completion, and Triton going away mid-run."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from qscore.contracts import ReplyStatus
from qscore.inference import TritonClient
from qscore_local.bus.stats import queue_counts
from tests.fixtures.triton import start_triton
from tests.fixtures.worker import (
    OutgoingRequest,
    ReplyCollector,
    SlowBackend,
    WorkerSettingsFactory,
    dead_letters,
    digits_request,
    running_worker,
    send_requests,
)
from workers.settle import Settler

SHORT_LOCK_QUEUE = "test-short-lock"  # lock 2 s, max delivery 3


def _requests(session_id: str, count: int, prefix: str) -> list[OutgoingRequest]:
    rng = np.random.default_rng(0)
    return [
        OutgoingRequest(
            f"{prefix}-{index}", digits_request(rng.uniform(0, 16, (1, 64))), session_id=session_id
        )
        for index in range(count)
    ]


async def _settled(connection: str, queue: str) -> bool:
    counts = (await queue_counts(connection))[queue]
    return counts.active == 0 and counts.locked == 0


async def test_slow_scoring_beyond_the_lock_duration_completes_once(
    bus: Any, replies: ReplyCollector, triton: Any, worker_settings: WorkerSettingsFactory
) -> None:
    await send_requests(bus.connection_string, SHORT_LOCK_QUEUE, _requests(replies.session_id, 3, "slow"))
    client = TritonClient(triton.grpc_url)
    backend = SlowBackend(client, delay_s=5.0)  # 2.5 lock durations
    settings = worker_settings(request_queue=SHORT_LOCK_QUEUE, prefetch=10, max_batch_delay_ms=200)
    try:
        async with running_worker(settings, backend=backend):
            await replies.collect(3, timeout_s=30, settle_s=3)
    finally:
        await client.close()
    assert {key: len(value) for key, value in replies.replies.items()} == {
        "slow-0": 1,
        "slow-1": 1,
        "slow-2": 1,
    }
    assert all(reply[0].status == ReplyStatus.OK for reply in replies.replies.values())
    assert backend.calls >= 1  # each request replied once above: no lock lapsed, no redelivery
    assert await _settled(bus.connection_string, SHORT_LOCK_QUEUE)
    # The queue is shared with other tests: only this test's messages matter here.
    dead = await dead_letters(bus.connection_string, SHORT_LOCK_QUEUE, wait_s=0.2)
    assert not set(dead) & set(replies.replies)


async def test_a_redelivery_after_a_crash_gives_at_most_one_extra_reply(
    bus: Any, replies: ReplyCollector, worker_settings: WorkerSettingsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    await send_requests(bus.connection_string, SHORT_LOCK_QUEUE, _requests(replies.session_id, 1, "dup"))
    complete = Settler.complete
    crashes: list[int] = []

    async def crash_once(self: Settler, messages: Sequence[Any]) -> None:
        if not crashes:  # like a crash after the reply was sent: no completion, the lock lapses
            crashes.append(len(messages))
            self._held.release(messages)
            return
        await complete(self, messages)

    monkeypatch.setattr(Settler, "complete", crash_once)
    async with running_worker(worker_settings(request_queue=SHORT_LOCK_QUEUE, prefetch=10)):
        await replies.collect(1, timeout_s=20)
        await asyncio.sleep(3.5)  # the lock (2 s) lapses and the broker redelivers
        await replies.collect(1, timeout_s=5, settle_s=3)
    assert crashes == [1]
    duplicates = replies.replies["dup-0"]
    assert len(duplicates) == 2  # the original and exactly one redelivery
    assert {reply.request_id for reply in duplicates} == {"dup-0"}
    assert await _settled(bus.connection_string, SHORT_LOCK_QUEUE)


async def test_triton_stopped_mid_run_loses_nothing(
    bus: Any, replies: ReplyCollector, fresh_queue: str, worker_settings: WorkerSettingsFactory
) -> None:
    with start_triton(models=["digits"]) as server:
        assert server.endpoints is not None
        settings = worker_settings(request_queue=fresh_queue, triton_url=server.endpoints.grpc_url)
        async with running_worker(settings) as state:
            await send_requests(
                bus.connection_string, fresh_queue, _requests(replies.session_id, 50, "before")
            )
            await replies.collect(50, timeout_s=30)
            await asyncio.to_thread(server.stop)
            await send_requests(
                bus.connection_string, fresh_queue, _requests(replies.session_id, 150, "during")
            )
            await asyncio.sleep(2.0)
            assert not state.ready and not state.triton_ok  # readiness follows Triton
            await asyncio.to_thread(server.start)
            await replies.collect(200, timeout_s=60)
            assert state.triton_ok
    assert len(replies.replies) == 200
    assert all(reply[0].status == ReplyStatus.OK for reply in replies.replies.values())
    assert not await dead_letters(bus.connection_string, fresh_queue, wait_s=0.2)
    assert await _settled(bus.connection_string, fresh_queue)


async def test_a_worker_started_before_triton_waits_for_it(
    bus: Any, replies: ReplyCollector, fresh_queue: str, worker_settings: WorkerSettingsFactory
) -> None:
    """dev scales Triton to zero: KEDA starts the worker and Triton together on the first
    message, and Triton (a GPU node, the image, the models) is ready last. The worker takes no
    message until Triton is ready (no lock, no delivery count spent), then answers them all."""
    with start_triton(models=["digits"]) as server:
        assert server.endpoints is not None
        url = server.endpoints.grpc_url  # the same address when it starts again
        await asyncio.to_thread(server.stop)
        settings = worker_settings(request_queue=fresh_queue, triton_url=url)
        await send_requests(bus.connection_string, fresh_queue, _requests(replies.session_id, 40, "cold"))
        async with running_worker(settings) as state:
            await asyncio.sleep(2.0)
            assert not state.ready and not state.triton_ok
            counts = (await queue_counts(bus.connection_string))[fresh_queue]
            assert counts.locked == 0 and counts.active == 40  # waiting in the queue, untouched
            await asyncio.to_thread(server.start)
            await replies.collect(40, timeout_s=60)
    assert all(reply[0].status == ReplyStatus.OK for reply in replies.replies.values())
    assert not await dead_letters(bus.connection_string, fresh_queue, wait_s=0.2)
