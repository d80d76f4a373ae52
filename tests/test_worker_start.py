"""Worker start-up, arranged for a short cold start (workers/app.py, workers/loop.py): the health
server and the SDK hook check start once the first session has opened, and that session opens its
links beside one readiness probe of Triton. These check the outcomes stay those of a start one
step after the other: a health server that cannot start still stops the worker with its error,
and a request waiting at start gets exactly one reply."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import numpy as np
import pytest

from qscore.contracts import ReplyStatus
from qscore.inference import TritonClient
from tests.fixtures.worker import (
    OutgoingRequest,
    ReplyCollector,
    WorkerSettingsFactory,
    dead_letters,
    digits_request,
    running_worker,
    send_requests,
)
from workers.app import run_worker
from workers.signals import StopRequest
from workers.telemetry import WorkerTelemetry


def _requests(session_id: str, count: int) -> list[OutgoingRequest]:
    pixels = np.zeros((1, 64), dtype=np.float32)
    body = digits_request(pixels)
    return [OutgoingRequest(f"start-{i}", body, session_id=session_id) for i in range(count)]


async def test_a_taken_health_port_still_stops_the_worker_with_its_error(
    worker_settings: WorkerSettingsFactory, fresh_queue: str
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        settings = worker_settings(request_queue=fresh_queue, health_port=taken.getsockname()[1])
        run = run_worker(
            settings, stop=StopRequest(), telemetry=WorkerTelemetry(enabled=False), handle_signals=False
        )
        with pytest.raises(OSError):
            await asyncio.wait_for(run, timeout=settings.drain_grace_s + 20)


class _NotReadyOnce:
    """Triton, but its first readiness probe says "not ready" (Triton still loading at start)."""

    def __init__(self, client: TritonClient) -> None:
        self._client = client
        self.probes = 0

    async def model_spec(self, model: str, version: str = "") -> Any:
        return await self._client.model_spec(model, version)

    async def is_ready(self) -> bool:
        self.probes += 1
        return self.probes > 1 and await self._client.is_ready()

    async def infer(self, model: str, inputs: Any, **options: Any) -> Any:
        return await self._client.infer(model, inputs, **options)


async def test_triton_not_ready_at_the_first_probe_answers_each_waiting_request_once(
    bus: Any, triton: Any, replies: ReplyCollector, fresh_queue: str, worker_settings: WorkerSettingsFactory
) -> None:
    """The first session's links open beside the first probe; that probe fails, so the session
    closes them before any receive, and the loop waits for Triton as after an outage."""
    await send_requests(bus.connection_string, fresh_queue, _requests(replies.session_id, 5))
    async with TritonClient(triton.grpc_url) as client:
        backend = _NotReadyOnce(client)
        async with running_worker(worker_settings(request_queue=fresh_queue), backend=backend) as state:
            await replies.collect(5, timeout_s=60, settle_s=0.5)
            assert state.triton_ok
    assert backend.probes >= 2
    assert sorted(replies.replies) == [f"start-{i}" for i in range(5)]
    assert all(len(got) == 1 and got[0].status == ReplyStatus.OK for got in replies.replies.values())
    assert not await dead_letters(bus.connection_string, fresh_queue, wait_s=0.2)
