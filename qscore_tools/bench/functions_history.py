"""Bytes in the Durable history per batch on the Functions path.

`python -m qscore_tools.bench.functions_history [--requests 64] [--triton-url H:P] [--connection CS]`
sends one batch of digits requests (rows of the test set, as `qscore functions run-local`
does) through the in-process host (real trigger, orchestrator replayed after every event,
activities against real Triton and the local bus) and reports what the orchestration's history
holds: the orchestration input, each activity's inputs and results, and the total, as JSON.
Without `--triton-url`/`--connection` it starts the local Triton and bus itself.

The history is what the Azure Storage provider writes to its table (and, above 45 KB per
message, to blobs) and what every replay reads back, so its size per batch is the cost that
matters; the payload store's bytes are reported next to it (`store_bytes`: what the activities
wrote, before the orchestration released it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

TASK_SCHEDULED, TASK_COMPLETED, EXECUTION_STARTED = 4, 5, 0


@dataclass
class HistorySize:
    """Bytes of one orchestration's history (its events as JSON)."""

    total: int
    orchestration_input: int
    messages: int = 0
    activity_inputs: dict[str, int] = field(default_factory=dict)
    activity_results: dict[str, int] = field(default_factory=dict)
    store_bytes: int = 0
    store_bytes_by_kind: dict[str, int] = field(default_factory=dict)


def history_size(history: Sequence[dict[str, Any]]) -> HistorySize:
    names = {event["EventId"]: event["Name"] for event in history if event["EventType"] == TASK_SCHEDULED}
    size = HistorySize(total=len(json.dumps(list(history))), orchestration_input=0)
    for event in history:
        kind = event["EventType"]
        if kind == EXECUTION_STARTED:
            size.orchestration_input = len(event.get("Input") or "")
            size.messages = int(json.loads(event.get("Input") or "{}").get("message_count", 0))
        elif kind == TASK_SCHEDULED:
            name = event["Name"]
            size.activity_inputs[name] = size.activity_inputs.get(name, 0) + len(event.get("Input") or "")
        elif kind == TASK_COMPLETED:
            name = names.get(event["TaskScheduledId"], "?")
            size.activity_results[name] = size.activity_results.get(name, 0) + len(event.get("Result") or "")
    return size


class _CountingStore:
    """The payload store, counting the bytes written (the bench's view; serving never wraps it)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.written: dict[str, int] = {}

    async def put(self, data: bytes) -> str:
        kind = _kind(data)
        self.written[kind] = self.written.get(kind, 0) + len(data)
        return str(await self.inner.put(data))

    async def get(self, ref: str) -> bytes:
        return bytes(await self.inner.get(ref))

    async def delete(self, ref: str) -> None:
        await self.inner.delete(ref)


def _kind(data: bytes) -> str:
    if data.startswith(b'{"messages"'):
        return "batch"
    if data.startswith(b'{"replies"'):
        return "replies"
    if b"qscore.prepared-group" in data[:64]:
        return "prepared_group"
    return "other"


async def measure(requests: int, triton_url: str, connection: str, work_dir: Path) -> HistorySize:
    import function_app
    from functions.runtime import build_runtime
    from qscore_local.functions_host.driver import InProcessDriver
    from qscore_local.functions_host.run_local import digits_requests, enqueue, local_settings

    settings = local_settings(triton_url, connection, work_dir)
    runtime = build_runtime(settings)
    store = _CountingStore(runtime.payloads)
    runtime.payloads = store
    await runtime.triton.wait_ready(60)
    session = f"bench-history-{uuid.uuid4().hex[:8]}"
    bodies, _ = digits_requests(requests)
    try:
        ids = {f"{session}-{mid}": body for mid, body in bodies.items()}
        await enqueue(runtime.servicebus, settings, ids, session=session)
        async with (
            InProcessDriver(function_app.app, runtime, max_batch=requests, max_wait_s=5) as driver,
            runtime.servicebus.get_queue_receiver(settings.request_queue) as receiver,
        ):
            record = await driver.run_batch(receiver)
        if record is None or record.status != "Completed":
            raise RuntimeError(f"the batch did not complete: {record and record.error}")
        size = history_size(record.history)
        size.store_bytes = sum(store.written.values())
        size.store_bytes_by_kind = store.written
        return size
    finally:
        await runtime.close()


async def _run(args: argparse.Namespace) -> HistorySize:
    from qscore_local.functions_host.run_local import bus_connection_or_local, triton_url_or_local

    with triton_url_or_local(args.triton_url) as url, tempfile.TemporaryDirectory() as work:
        async with bus_connection_or_local(args.connection) as bus:
            return await measure(args.requests, url, bus, Path(work))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--triton-url", default=None)
    parser.add_argument("--connection", default=None)
    args = parser.parse_args(argv)
    size = asyncio.run(_run(args))
    print(json.dumps({"requests": args.requests, **asdict(size)}, indent=2))


if __name__ == "__main__":
    main()
