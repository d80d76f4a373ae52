"""Wire a `BatchJob` together: fetch the input, read the model's contract, plan, score.

`open_job` does everything that can fail on bad input (unreadable file, wrong columns,
unknown model) before any scoring; `run_job` then runs the plan with the chosen engine.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from qscore.batch.blob import download_input, is_blob_url
from qscore.batch.engines import DirectEngine, Engine
from qscore.batch.formats import Format, InputError, format_of
from qscore.batch.job import BatchObserver, BatchRun, load_pyarrow_shims
from qscore.batch.model_config import spec_from_repository
from qscore.batch.plan import BatchJob, JobPlan, file_fingerprint, plan_job
from qscore.batch.queue_engine import QueueEngine
from qscore.batch.status import output_store
from qscore.batch.summary import BatchSummary
from qscore.contracts.model_spec import ModelSpec
from qscore.inference.client import TritonClient
from qscore.producer import ProducerSettings, ScoringProducer
from qscore.registry import ModelRegistry


@dataclass(frozen=True, kw_only=True)
class Backends:
    """Where scoring happens: Triton for `direct` (and its model contract), the bus for `queue`."""

    triton_url: str | None = None
    repository: Path | None = None  # config.pbtxt source when Triton is not asked
    producer: ProducerSettings | None = None
    registry_path: Path | None = None
    triton_timeout_s: float = 60.0
    reply_timeout_s: float = 120.0


@dataclass
class OpenedJob:
    plan: JobPlan
    spec: ModelSpec
    local_input: Path
    fingerprint: str


@asynccontextmanager
async def open_job(job: BatchJob, backends: Backends) -> AsyncIterator[OpenedJob]:
    """The input on local disk (a Blob input is downloaded), the model's contract, the plan."""
    input_format = job.input_format or format_of(job.input)
    with tempfile.TemporaryDirectory(prefix="qscore-batch-input-") as scratch:
        if is_blob_url(job.input):
            local = Path(scratch) / ("input" + input_format.suffix)
            fingerprint = await download_input(job.input, local)
        else:
            local = Path(job.input)
            if not local.is_file():
                # The input is checked before Triton is asked anything: a missing file is the
                # error a person can fix, whatever the state of the server.
                raise InputError(f"{local}: no such file")
            fingerprint = file_fingerprint(local)
        # pyarrow's first array from numpy imports pandas when it is installed (~0.3 s of CPU,
        # holding the GIL): here, beside the wait for the contract, rather than in the first
        # chunk, where it stalls the event loop and every thread preparing a chunk.
        spec, _ = await asyncio.gather(model_spec(job, backends), asyncio.to_thread(load_pyarrow_shims))
        plan = plan_job(job, local, input_format, spec)
        # An unknown version or label is bad input for either engine: say so before scoring
        # anything (the queue engine's workers would refuse every chunk of it).
        registry = ModelRegistry(backends.registry_path)
        registry.resolve(job.model, job.version, available=spec.versions, routing_key="")
        yield OpenedJob(plan, spec, local, fingerprint)


async def model_spec(job: BatchJob, backends: Backends) -> ModelSpec:
    if job.engine == "direct" or backends.repository is None:
        if backends.triton_url is None:
            raise ValueError("the model's contract comes from Triton (--triton-url) or a repository (--repo)")
        async with TritonClient(backends.triton_url, timeout_s=backends.triton_timeout_s) as client:
            return await client.model_spec(job.model)
    return spec_from_repository(backends.repository, job.model)


async def run_job(
    opened: OpenedJob, backends: Backends, observer: BatchObserver | None = None
) -> BatchSummary:
    store = output_store(opened.plan.output)
    engine = await _engine(opened, backends)
    try:
        run = BatchRun(
            opened.plan,
            local_input=opened.local_input,
            fingerprint=opened.fingerprint,
            store=store,
            engine=engine,
            allow_non_finite=opened.spec.allow_non_finite,
            observer=observer,
        )
        summary = await run.run()
        if isinstance(engine, QueueEngine):
            summary.chunks_by_reference = engine.producer.claims.sent_by_reference
        return summary
    finally:
        await engine.close()
        await store.close()


async def _engine(opened: OpenedJob, backends: Backends) -> Engine:
    job = opened.plan.job
    outputs = [o.name for o in opened.plan.mapping.outputs]
    if job.engine == "queue":
        if backends.producer is None:
            raise ValueError("the queue engine needs a Service Bus (--connection or --namespace)")
        producer = ScoringProducer(settings=backends.producer)
        await producer.start()
        return QueueEngine(
            producer,
            model=job.model,
            requested_version=job.version,
            outputs=outputs,
            timeout_s=backends.reply_timeout_s,
        )
    assert backends.triton_url is not None
    client = TritonClient(backends.triton_url, timeout_s=backends.triton_timeout_s)
    await client.wait_ready(timeout=backends.triton_timeout_s)
    return DirectEngine(
        client,
        opened.spec,
        requested_version=job.version,
        registry=ModelRegistry(backends.registry_path),
        outputs=outputs,
    )


__all__ = ["Backends", "BatchJob", "Format", "OpenedJob", "open_job", "run_job"]
