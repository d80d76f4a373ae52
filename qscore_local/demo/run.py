"""`qscore demo` end to end: start the stack, pump the digits workload through it, summarise."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from qscore.claimcheck import ClaimCheckSettings
from qscore.inference.testset import DigitsTestSet
from qscore.producer import OutgoingRequest, ProducerSettings, ReplyOutcome, ScoringProducer
from qscore_local.demo.options import DemoOptions
from qscore_local.demo.stack import CLAIMS_CONTAINER, DemoStack
from qscore_local.demo.summary import DemoSummary, SummaryBuilder, batch_size_distribution
from qscore_local.demo.workload import DigitsWorkload, ImageWorkload

SEND_CHUNK = 256  # requests per send call (the producer splits further to fit a message batch)

OutcomeCallback = Callable[[ReplyOutcome, int], None]


@dataclass
class DemoResult:
    summary: DemoSummary
    latencies_ms: dict[str, list[float]]


def default_run_dir() -> Path:
    return Path(".qscore") / "demo" / datetime.now().strftime("%Y%m%d-%H%M%S")


async def run_demo(options: DemoOptions, *, console: Console) -> DemoResult:
    """Run the whole demo; the stack is stopped on return, on error and on cancellation."""
    from qscore.inference.testset import load_digits_test_set

    test_set = await asyncio.to_thread(load_digits_test_set)
    run_dir = options.run_dir or default_run_dir()
    workload = _workload(options, test_set)
    builder = SummaryBuilder(workload.labels_by_request)
    with console.status(f"starting the local bus, Triton and {options.workers} worker(s)..."):
        stack = DemoStack(
            run_dir=run_dir,
            workers=options.workers,
            models=[options.model],
            worker_env=_worker_env(options),
            start_timeout_s=options.start_timeout_s,
            azurite=options.uses_azurite,
            blob_log=options.blob_log,
        )
        await stack.__aenter__()
    try:
        settings = ProducerSettings(
            connection=stack.connection_string,
            reply_timeout_s=options.reply_timeout_s,
            binary_tensors=options.binary_tensors,
        )
        builder.class_output = await class_output(stack.triton_grpc_url, options.model)
        producer = ScoringProducer(settings=settings, claim_check=_claim_check(options, stack))
        async with producer:
            started = time.time()
            await _pump_with_progress(producer, workload, builder, options, console)
            elapsed = time.time() - started
            stats = producer.stats
            builder.by_reference = (producer.claims.sent_by_reference, producer.claims.bytes_by_reference)
        dead_lettered = await dead_letter_count(stack.connection_string, settings.request_queue)
        batch_sizes = await triton_batch_sizes(stack.triton_grpc_url, options.model)
    finally:
        with console.status("stopping workers, Triton and the bus..."):
            await stack.__aexit__(None, None, None)
    summary = builder.build(
        requests=options.requests,
        stats=stats,
        elapsed_s=elapsed,
        dead_lettered=dead_lettered,
        triton_batch_sizes=batch_sizes,
        workers=options.workers,
        run_dir=run_dir,
    )
    if stack.blob_log:
        summary.interaction_log_url = stack.interaction_log_url
    return DemoResult(summary, builder.latencies)


def _workload(options: DemoOptions, test_set: DigitsTestSet) -> DigitsWorkload:
    common = {
        "test_set": test_set,
        "requests": options.requests,
        "model": options.model,
        "version": options.version,
        "rows_per_request": options.rows_per_request,
        "binary": options.binary_tensors,
    }
    if options.image_model:
        return ImageWorkload(**common, side=options.image_side)  # type: ignore[arg-type]
    return DigitsWorkload(**common)  # type: ignore[arg-type]


def _claim_check(options: DemoOptions, stack: DemoStack) -> ClaimCheckSettings | None:
    if options.threshold is None:
        return None
    return ClaimCheckSettings(
        connection=stack.blob_connection, container=CLAIMS_CONTAINER, threshold_bytes=options.threshold
    )


async def class_output(grpc_url: str, model: str) -> str | None:
    """The output the model's config names as its predicted class (None if it names none)."""
    from qscore.inference.client import TritonClient

    client = TritonClient(grpc_url)
    try:
        return (await client.model_spec(model)).class_output
    except Exception:
        return None
    finally:
        with contextlib.suppress(Exception):
            await client.close()


async def _pump_with_progress(
    producer: ScoringProducer,
    workload: DigitsWorkload,
    builder: SummaryBuilder,
    options: DemoOptions,
    console: Console,
) -> None:
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:>6.0f}/s  {task.fields[detail]}"),
        TimeElapsedColumn(),
        console=console,
    )
    with progress:
        task = progress.add_task("replies", total=options.requests, rate=0.0, detail="")
        started = time.monotonic()

        def on_outcome(outcome: ReplyOutcome, done: int) -> None:
            builder.add(outcome)
            if done % 100 == 0 or done == options.requests:
                rate = done / max(time.monotonic() - started, 1e-6)
                errors = sum(builder.errors.values())
                detail = f"ok {builder.ok}  errors {errors}  timeouts {builder.timed_out}"
                progress.update(task, completed=done, rate=rate, detail=detail)

        await pump(producer, workload, options.requests, options.max_in_flight, on_outcome)


async def pump(
    producer: ScoringProducer,
    requests: Iterable[OutgoingRequest],
    total: int,
    max_in_flight: int,
    on_outcome: OutcomeCallback,
) -> None:
    """Send `total` requests keeping at most `max_in_flight` outstanding; feed every outcome."""
    slots = asyncio.Semaphore(max_in_flight)
    chunk_size = min(SEND_CHUNK, max_in_flight)

    async def send_all() -> None:
        chunk: list[OutgoingRequest] = []
        for request in requests:
            await slots.acquire()
            chunk.append(request)
            if len(chunk) >= chunk_size:
                await producer.send(chunk)
                chunk = []
        if chunk:
            await producer.send(chunk)

    async def receive_all() -> None:
        done = 0
        async for outcome in producer.replies(wait_when_idle=True):
            slots.release()
            done += 1
            on_outcome(outcome, done)
            if done >= total:
                return

    tasks = [asyncio.create_task(send_all()), asyncio.create_task(receive_all())]
    try:
        await asyncio.gather(*tasks)
    finally:
        for pending in tasks:
            pending.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def dead_letter_count(connection_string: str, queue: str) -> int | None:
    """Messages in the request queue's dead-letter sub-queue (None if the bus cannot say)."""
    from qscore_local.bus.stats import queue_counts

    try:
        counts = await queue_counts(connection_string)
    except Exception:
        return None
    row = counts.get(queue)
    return None if row is None else int(row.dead_letter)


async def triton_batch_sizes(grpc_url: str, model: str) -> dict[int, int]:
    from qscore.inference.client import TritonClient

    client = TritonClient(grpc_url)
    try:
        return batch_size_distribution(await client.statistics(model), model)
    except Exception:
        return {}
    finally:
        with contextlib.suppress(Exception):
            await client.close()


def _worker_env(options: DemoOptions) -> dict[str, str]:
    env: dict[str, str] = {}
    if options.max_batch_size is not None:
        env["QSCORE_MAX_BATCH_SIZE"] = str(options.max_batch_size)
    if options.max_batch_delay_ms is not None:
        env["QSCORE_MAX_BATCH_DELAY_MS"] = str(options.max_batch_delay_ms)
    return env
