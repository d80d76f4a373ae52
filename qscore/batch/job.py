"""Run a planned batch job: read chunks, score several at once, publish parts, assemble as they go.

Per chunk: prepare (columns -> arrays, unscoreable rows aside) -> score (the engine) ->
write its part (fsync) -> publish it (rename/upload) -> record it in the manifest -> append
its rows to the output being assembled, in chunk order (qscore.batch.assembly). Reading,
preparing, encoding and writing run in threads (pyarrow and numpy release the GIL), so they
overlap the scoring of other chunks. Only a recorded chunk counts as done, so after a kill a
rerun redoes at most the chunks in flight, each into the same part name, and rebuilds the
output from the parts: every id is in the output exactly once.
"""

from __future__ import annotations

import asyncio
import gc
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from qscore.batch.assembly import OrderedAssembly, part_name, rejected_name
from qscore.batch.chunks import Chunk, rechunk
from qscore.batch.engines import ChunkRejected, Engine, Scored
from qscore.batch.formats import Format, numpy_column, read_batches, read_rows, write_part
from qscore.batch.manifest import Manifest
from qscore.batch.mapping import ColumnMapping
from qscore.batch.plan import JobPlan
from qscore.batch.rows import PreparedChunk, prepare_chunk
from qscore.batch.store import Store
from qscore.batch.summary import BatchSummary

VERSION_COLUMN = "model_version"
# Young-generation collections during a run: one per this many new container objects instead
# of Python's 700. Each gRPC request makes dozens (call, futures, task, messages) that die
# within the request; at 700 the collector ran ~165 times a million rows (0.085 s, on the
# event loop), walking the requests in flight each time; at 50,000, once.
RUN_GC_THRESHOLD = 50_000


class BatchObserver:
    """Hooks for progress display; the defaults do nothing."""

    def started(self, plan: JobPlan, resumed_rows: int) -> None: ...

    def chunk_finished(self, rows: int, rejected: int) -> None: ...

    def assembling(self) -> None: ...


def rejected_output(output: str, fmt: Format) -> str:
    """`scores.parquet` -> `scores.rejected.parquet`, beside the output."""
    base = output[: -len(fmt.suffix)] if output.endswith(fmt.suffix) else output
    return f"{base}.rejected{fmt.suffix}"


class BatchRun:
    def __init__(
        self,
        plan: JobPlan,
        *,
        local_input: Path,
        fingerprint: str,
        store: Store,
        engine: Engine,
        allow_non_finite: bool,
        observer: BatchObserver | None = None,
    ) -> None:
        self.plan = plan
        self.local_input = local_input
        self.fingerprint = fingerprint
        self.store = store
        self.engine = engine
        self.allow_non_finite = allow_non_finite
        self.observer = observer or BatchObserver()
        self.manifest = Manifest(store)
        self.summary = BatchSummary(output=plan.output)
        self._scratch = Path(tempfile.mkdtemp(prefix="qscore-batch-"))
        span = plan.chunk_range
        self.assembly = OrderedAssembly(
            first_index=0 if span is None else span.start,
            scratch=self._scratch,
            fmt=plan.output_format,
            store=store,
        )

    async def run(self) -> BatchSummary:
        # The objects alive now (mostly the imported libraries: ~140,000) outlive the run; frozen,
        # the full collections that the run's many small objects (messages, futures) trigger
        # do not walk them every time.
        gc.freeze()
        thresholds = gc.get_threshold()
        gc.set_threshold(max(thresholds[0], RUN_GC_THRESHOLD), *thresholds[1:])
        try:
            return await self._run()
        except BaseException:
            self.assembly.abort()
            raise
        finally:
            gc.set_threshold(*thresholds)
            gc.unfreeze()
            await asyncio.to_thread(_remove_tree, self._scratch)

    async def _run(self) -> BatchSummary:
        state = await self.manifest.begin(self.plan.header(self.fingerprint))
        if state.complete is not None:
            return self._completed_summary(state.complete)
        done = dict(state.chunks)
        for record in done.values():
            self.summary.add_chunk(record, resumed=True)
        self.observer.started(self.plan, self.summary.rows_resumed)
        chunk_indices = await self._score_all(set(done))
        await self._assemble(chunk_indices)
        self.summary.finish()
        await self.manifest.finish(self.summary.as_dict())
        return self.summary

    async def _score_all(self, done: set[int]) -> range:
        """Score every chunk not in `done`, `in_flight` at a time; returns this run's chunk indices."""
        in_flight = max(1, self.plan.job.in_flight)
        slots = asyncio.Semaphore(in_flight)
        chunks = self._chunks()
        span = self.plan.chunk_range
        first = count = 0 if span is None else span.start
        async with asyncio.TaskGroup() as group:
            while True:
                # Chunks finished out of order wait for the earlier ones in memory: bounded here.
                await self.assembly.wait_for_room(2 * in_flight)
                started = time.perf_counter()
                chunk = await asyncio.to_thread(next, chunks, None)
                self.summary.add_stage("read", time.perf_counter() - started)
                if chunk is None:
                    break
                count = chunk.index + 1
                if chunk.index in done:
                    self.assembly.add_resumed(self.manifest.state.chunks[chunk.index])
                    continue
                await slots.acquire()
                task = group.create_task(self._process(chunk))
                task.add_done_callback(lambda _: slots.release())
        return range(first, count)

    def _chunks(self) -> Iterator[Chunk]:
        span, rows = self.plan.chunk_range, self.plan.chunk_rows
        if span is None:
            return rechunk(read_batches(self.local_input, self.plan.input_format), rows)
        batches = read_rows(self.local_input, self.plan.input_format, span.start * rows, span.stop * rows)
        return rechunk(batches, rows, first_index=span.start)

    async def _process(self, chunk: Chunk) -> None:
        mapping = self.plan.mapping
        prepared = await self._timed(
            "prepare",
            asyncio.to_thread(prepare_chunk, chunk, mapping, allow_non_finite=self.allow_non_finite),
        )
        rejected = prepared.rejected
        scored: Scored | None = None
        if prepared.rows:
            try:
                scored = await self._timed("score", self.engine.score(prepared))
            except ChunkRejected as exc:
                rejected = pa.concat_tables([rejected, _all_rejected(prepared, mapping, exc.reason)])
        record = await self._timed("write", self._publish(prepared, scored, rejected))
        self.summary.add_chunk(record, resumed=False)
        self.observer.chunk_finished(chunk.rows, rejected.num_rows)

    async def _timed(self, stage: str, work: Any) -> Any:
        started = time.perf_counter()
        try:
            return await work
        finally:
            self.summary.add_stage(stage, time.perf_counter() - started)

    async def _publish(
        self, prepared: PreparedChunk, scored: Scored | None, rejected: pa.Table
    ) -> dict[str, Any]:
        index = prepared.index
        versions: Counter[str] = Counter()
        table = None
        if scored is not None:
            table = await asyncio.to_thread(output_table, prepared, scored, self.plan.mapping)
            versions.update(version_counts(scored.versions))
            await self._put(part_name(index), table)
        if rejected.num_rows:
            await self._put(rejected_name(index), rejected)
        record = {
            "index": index,
            "rows": prepared.rows + prepared.rejected.num_rows,
            "rejected": rejected.num_rows,
            "scored": scored is not None,
            "versions": dict(versions),
        }
        await self.manifest.chunk_done(record)
        self.assembly.add(index, table, rejected)
        return record

    async def _put(self, name: str, table: pa.Table) -> None:
        local = self._scratch / name
        await asyncio.to_thread(write_part, table, local)
        await self.store.put(name, local)

    async def _assemble(self, chunk_indices: range) -> None:
        """The output has grown chunk by chunk: finish it, publish it, drop the parts."""
        self.observer.assembling()
        started = time.perf_counter()
        await self.assembly.finish(chunk_indices.stop)
        records = self.manifest.state.chunks
        ordered = [records[i] for i in chunk_indices]
        parts = [part_name(r["index"]) for r in ordered if r.get("scored", True)]
        rejects = [rejected_name(r["index"]) for r in ordered if r["rejected"]]
        await self.store.publish(self.assembly.output.target, self.plan.output)
        if self.assembly.rejected.rows:
            self.summary.rejected_output = rejected_output(self.plan.output, self.plan.output_format)
            await self.store.publish(self.assembly.rejected.target, self.summary.rejected_output)
        await self.store.remove(parts + rejects)
        self.summary.add_stage("write", self.assembly.write_s)
        self.summary.add_stage("assemble", time.perf_counter() - started)

    def _completed_summary(self, record: dict[str, Any]) -> BatchSummary:
        summary = BatchSummary(output=self.plan.output, already_complete=True)
        for chunk in self.manifest.state.chunks.values():
            summary.add_chunk(chunk, resumed=True)
        summary.rejected_output = record.get("rejected_output")
        return summary


def load_pyarrow_shims() -> None:
    """Make pyarrow import what it imports lazily on its first array from numpy (pandas, when
    installed), so that the run does not pay for it."""
    pa.array(np.zeros(1))


def output_table(prepared: PreparedChunk, scored: Scored, mapping: ColumnMapping) -> pa.Table:
    """id, the outputs (a [k] output as a list column, [1] as a plain one), model_version."""
    columns: dict[str, Any] = {mapping.id_name: prepared.ids}
    for spec in mapping.outputs:
        values = np.asarray(scored.outputs[spec.name])
        flat = values.reshape(len(values)) if spec.element_count() == 1 else values.reshape(len(values), -1)
        columns[spec.name] = numpy_column(flat)
    columns[VERSION_COLUMN] = _versions_column(scored.versions)
    return pa.table(columns)


def version_counts(versions: np.ndarray) -> dict[str, int]:
    """Rows per version; one comparison instead of a sort when a single version scored them all."""
    if len(versions) and (versions == versions[0]).all():
        return {str(versions[0]): len(versions)}
    names, counts = np.unique(versions, return_counts=True)
    return {str(n): int(c) for n, c in zip(names, counts, strict=True)}


def _versions_column(versions: np.ndarray) -> pa.Array:
    """One string a row, built from the few distinct versions (no per-row Python objects)."""
    if len(versions) and (versions == versions[0]).all():
        return pa.repeat(pa.scalar(str(versions[0]), pa.string()), len(versions))
    names, codes = np.unique(versions, return_inverse=True)
    dictionary = pa.DictionaryArray.from_arrays(pa.array(codes.astype(np.int32)), pa.array(names.tolist()))
    return dictionary.cast(pa.string())


def _all_rejected(prepared: PreparedChunk, mapping: ColumnMapping, reason: str) -> pa.Table:
    return pa.table(
        {mapping.id_name: prepared.ids, "reason": pa.array([reason] * prepared.rows, pa.string())}
    )


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
