"""What `qscore enqueue` does: send requests, collect replies, print a line each and a summary."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from qscore.producer.files import load_request_file, repeat_requests
from qscore.producer.outcomes import ReplyOutcome
from qscore.producer.producer import ScoringProducer
from qscore.producer.requests import OutgoingRequest
from qscore.producer.settings import ProducerSettings

DEFAULT_COUNT = 10
MAX_IN_FLIGHT = 1000


@dataclass(frozen=True, kw_only=True)
class EnqueueJob:
    count: int | None = None
    file: Path | None = None
    model: str = "digits"
    version: str | None = None
    rows_per_request: int = 1
    wait: bool = True
    show: int = 10
    images: tuple[Path, ...] = ()  # encoded image files: one request each (the image model's input)


def build_requests(job: EnqueueJob, *, binary: bool) -> tuple[list[OutgoingRequest], dict[str, np.ndarray]]:
    """The job's requests, and the true labels of each when they come from the digits set."""
    if job.file is not None:
        bodies = load_request_file(job.file)
        return repeat_requests(bodies, job.count or len(bodies)), {}
    if job.images:
        from qscore.inference.images import IMAGE_INPUT, image_batch

        images = [image_batch([path.read_bytes()]) for path in job.images]
        requests = [
            OutgoingRequest.build(job.model, {IMAGE_INPUT: batch}, version=job.version) for batch in images
        ]
        return requests, {}
    from qscore.inference.testset import load_digits_test_set
    from qscore_local.demo.workload import DigitsWorkload

    workload = DigitsWorkload(
        test_set=load_digits_test_set(),
        requests=job.count or DEFAULT_COUNT,
        model=job.model,
        version=job.version,
        rows_per_request=job.rows_per_request,
        binary=binary,
    )
    requests = list(workload)
    return requests, workload.labels_by_request


async def run_enqueue(settings: ProducerSettings, job: EnqueueJob, *, console: Console | None = None) -> bool:
    """Run the job; True when every request got a reply (error replies included)."""
    from qscore_local.demo.render import render_summary
    from qscore_local.demo.run import pump
    from qscore_local.demo.summary import SummaryBuilder

    console = console or Console()
    requests, labels = build_requests(job, binary=settings.binary_tensors)
    async with ScoringProducer(settings=settings) as producer:
        if not job.wait:
            await producer.send(requests)
            console.print(f"sent {len(requests)} requests to {settings.request_queue}")
            return True
        builder = SummaryBuilder(dict(labels))
        shown: list[ReplyOutcome] = []
        started = time.time()
        with _progress(console) as progress:
            task = progress.add_task("replies", total=len(requests))

            def on_outcome(outcome: ReplyOutcome, done: int) -> None:
                builder.add(outcome)
                if len(shown) < job.show:
                    shown.append(outcome)
                progress.update(task, completed=done)

            await pump(producer, requests, len(requests), MAX_IN_FLIGHT, on_outcome)
        elapsed = time.time() - started
        stats = producer.stats
    for outcome in shown:
        console.print(describe_outcome(outcome), highlight=False)
    summary = builder.build(
        requests=len(requests),
        stats=stats,
        elapsed_s=elapsed,
        dead_lettered=None,
        triton_batch_sizes={},
        workers=0,
        run_dir=Path("."),
    )
    render_summary(summary, console, title="qscore enqueue")
    return summary.all_answered


def describe_outcome(outcome: ReplyOutcome) -> str:
    """One line per reply: id, status, version or error code, first output values, latency."""
    reply = outcome.reply
    if reply is None:
        return f"{outcome.request_id}  timed out after {outcome.latency_ms:.0f} ms"
    if reply.error is not None:
        return f"{outcome.request_id}  error {reply.error.code}: {reply.error.message}"
    values = []
    for name, tensor in sorted((reply.outputs or {}).items()):
        flat = tensor.to_numpy().reshape(-1)
        head = ", ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in flat[:4].tolist())
        values.append(f"{name}=[{head}{', ...' if flat.size > 4 else ''}]")
    version = f"v{reply.model_version}" if reply.model_version else ""
    return f"{outcome.request_id}  ok {version}  {'  '.join(values)}  {outcome.latency_ms:.1f} ms"


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
