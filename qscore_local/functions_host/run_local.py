"""`qscore functions run-local`: the Functions path on the local stack, for a person to watch.

Starts (or uses) the local Triton and bus, enqueues digits requests, runs the trigger and the
orchestrations in-process, and returns the replies that came back on the reply queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from functions.settings import FunctionsSettings
from qscore.contracts import REQUEST_CONTENT_TYPE, ScoreReply, ScoreRequest, Tensor


@dataclass
class RunLocalResult:
    sent: int
    batches: int
    instances: int
    replies: list[ScoreReply]
    accuracy: float | None


@contextlib.contextmanager
def triton_url_or_local(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    from qscore_local.triton.launcher import LocalTriton

    server = LocalTriton()
    endpoints = server.start(timeout=120)
    try:
        yield endpoints.grpc_url
    finally:
        server.stop()


@contextlib.asynccontextmanager
async def bus_connection_or_local(connection: str | None) -> AsyncIterator[str]:
    if connection:
        yield connection
        return
    from qscore_local.bus.launcher import LocalBus

    bus = LocalBus()
    endpoint = await asyncio.to_thread(bus.start)
    try:
        yield endpoint.connection_string
    finally:
        await asyncio.to_thread(bus.stop)


def digits_requests(count: int) -> tuple[dict[str, str], dict[str, int]]:
    from qscore.inference.testset import load_digits_test_set

    test_set = load_digits_test_set()
    bodies, labels = {}, {}
    for index in range(count):
        row = index % len(test_set)
        pixels = np.asarray(test_set.pixels[row : row + 1], dtype=np.float32)
        request = ScoreRequest(model="digits", inputs={"pixels": Tensor.from_numpy(pixels)})
        bodies[f"fn-{index}"] = request.model_dump_json(exclude_none=True)
        labels[f"fn-{index}"] = int(test_set.labels[row])
    return bodies, labels


async def run_local(
    *, requests: int, triton_url: str | None, connection: str | None, work_dir: Path, max_batch: int
) -> RunLocalResult:
    with triton_url_or_local(triton_url) as url:
        async with bus_connection_or_local(connection) as bus:
            return await _run(local_settings(url, bus, work_dir), requests, max_batch)


def local_settings(triton_url: str, connection: str, work_dir: Path) -> FunctionsSettings:
    """The environment's Functions settings, pointed at a local Triton, bus and payload folder."""
    return replace(
        FunctionsSettings.from_env(),
        triton_url=triton_url,
        connection=connection,
        namespace=None,
        payload_dir=work_dir / "payloads",
    )


async def enqueue(client: Any, settings: FunctionsSettings, bodies: dict[str, str], *, session: str) -> None:
    """Send request bodies (by message id) to the request queue, replies to our `session`."""
    from azure.servicebus import ServiceBusMessage

    async with client.get_queue_sender(settings.request_queue) as sender:
        await sender.send_messages(
            [
                ServiceBusMessage(
                    body,
                    message_id=mid,
                    reply_to=settings.reply_queue,
                    reply_to_session_id=session,
                    content_type=REQUEST_CONTENT_TYPE,
                )
                for mid, body in bodies.items()
            ]
        )


async def _run(settings: FunctionsSettings, count: int, max_batch: int) -> RunLocalResult:
    import function_app
    from functions.runtime import build_runtime
    from qscore_local.functions_host.driver import InProcessDriver

    runtime = build_runtime(settings)
    await runtime.triton.wait_ready(60)
    session = f"run-local-{uuid.uuid4().hex[:8]}"
    bodies, labels = digits_requests(count)
    try:
        await enqueue(runtime.servicebus, settings, bodies, session=session)
        async with (
            InProcessDriver(function_app.app, runtime, max_batch=max_batch) as driver,
            runtime.servicebus.get_queue_receiver(settings.request_queue) as receiver,
        ):
            stats = await driver.run_until_idle(connection_receiver=receiver)
        replies = await _collect(runtime.servicebus, settings.reply_queue, session, count)
    finally:
        await runtime.close()
    correct = [
        int(np.argmax(r.output_arrays()["probabilities"])) == labels[r.request_id]
        for r in replies
        if r.outputs
    ]
    accuracy = sum(correct) / len(correct) if correct else None
    return RunLocalResult(count, stats.batches, len(stats.instances), replies, accuracy)


async def _collect(client: object, queue: str, session: str, count: int) -> list[ScoreReply]:
    replies: dict[str, ScoreReply] = {}
    async with client.get_queue_receiver(queue, session_id=session, max_wait_time=10) as receiver:  # type: ignore[attr-defined]
        while len(replies) < count:
            batch = await receiver.receive_messages(max_message_count=count, max_wait_time=10)
            if not batch:
                break
            for message in batch:
                reply = ScoreReply.model_validate_json(b"".join(message.body))
                replies[reply.request_id] = reply
                await receiver.complete_message(message)
    return list(replies.values())
