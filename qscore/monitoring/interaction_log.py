"""Append-only JSONL log of scored interactions, written off the event loop.

`log()` only puts the record (or a closure that builds it) on a bounded queue; a writer thread
builds the JSON, appends it in batches and rotates the file by size. Every outcome is logged:
scored requests (`log_scored`), error replies and dead-letter records (`log_outcome`). Scoring
never waits on the disk: when the queue is full the interaction is dropped and counted
(`dropped`, and the metric `qscore.interaction_log.dropped` by reason), because a slow disk must
not slow replies down. The Blob log (blob_log.py) spills to local disk instead of dropping.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

from qscore.contracts import ScoreReply
from qscore.monitoring.record_lines import BuiltLine, ScoredEntry, line_of_record, scored_lines
from qscore.monitoring.records import (
    InteractionRecord,
    Route,
    record_from_outcome,
    summarize_inputs,
    summarize_outputs,
)
from qscore.scoring import RequestOutcome, ScoredItem
from qscore.telemetry.setup import counter

INTERACTION_LOG_ENV = "QSCORE_INTERACTION_LOG"
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_BACKUPS = 5
# The writer thread waits this long after the first record of a batch. Woken for every record,
# it took the GIL from the event loop once a message and wrote a few lines at a time.
WRITE_LINGER_S = 0.05

logger = logging.getLogger(__name__)

# A scored request is queued as a `ScoredEntry`: the writer builds those of a batch together.
RecordSource = InteractionRecord | Callable[[], InteractionRecord] | ScoredEntry
DROPPED_METRIC = "qscore.interaction_log.dropped"
DROPPED_DESCRIPTION = "Interaction records the log could not keep"


def count_dropped(count: int, reason: str) -> None:
    """Records the log could not keep (`queue_full`, `spill_full`, `spill_failed`)."""
    if count > 0:
        instrument = counter(DROPPED_METRIC, unit="{record}", description=DROPPED_DESCRIPTION)
        instrument.add(count, {"reason": reason})


class _Stop:
    pass


def record_from_scored(
    scored: ScoredItem,
    *,
    reply: ScoreReply | None = None,
    route: Route = "production",
    scored_by: str | None = None,
    class_output: str | None = None,
) -> InteractionRecord:
    """The log record of one scored request (CPU work: run it off the event loop).
    `class_output`: the output the model's config names as its predicted class, if any."""
    item = scored.item
    inputs, stats = summarize_inputs(item.arrays)
    prediction, confidence = summarize_outputs(scored.outputs, class_output=class_output)
    timings = reply.timings.model_dump() if reply is not None else {"inference_ms": scored.inference_ms}
    # model_construct: every field is built above from typed values; validating them again
    # (the 64 input floats of a digits row, one by one) was a third of a record's cost.
    return InteractionRecord.model_construct(
        at=scored.batch_started_at + scored.inference_ms / 1000,
        request_id=item.request_id,
        model=item.request.model,
        version=scored.model_version,
        route=route,
        inputs=inputs,
        input_stats=stats,
        prediction=prediction,
        max_probability=confidence,
        timings=timings,
        scored_by=scored_by or (reply.scored_by if reply is not None else None),
    )


def _line_of_entry(entry: ScoredEntry) -> BuiltLine:
    """A scored request's line, built on its own (record_lines.py builds batches the same)."""
    record = record_from_scored(
        entry.scored,
        reply=entry.reply,
        route=entry.route,
        scored_by=entry.scored_by,
        class_output=entry.class_output,
    )
    return line_of_record(record)


class InteractionLog:
    """Append-only, size-rotated JSONL at `path` (`path.1` is the newest rotated part)."""

    def __init__(
        self,
        path: Path,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        backups: int = DEFAULT_BACKUPS,
        max_pending: int = 10_000,
        write_batch: int = 512,
        class_outputs: Mapping[str, str] | None = None,
        linger_s: float = WRITE_LINGER_S,
    ) -> None:
        self.path = Path(path)
        # model -> its predicted-class output (the config's `qscore.predicted_class_output`)
        self.class_outputs = dict(class_outputs or {})
        self.max_bytes = max_bytes
        self.backups = backups
        self.written = 0
        self.dropped = 0
        self.failed = 0
        self._write_batch = write_batch
        self._linger_s = linger_s
        self._queue: queue.Queue[RecordSource | threading.Event | _Stop] = queue.Queue(maxsize=max_pending)
        self._closed = False
        # The counter exists (at 0) from the start, so its alert's recorded series has data.
        counter(DROPPED_METRIC, unit="{record}", description=DROPPED_DESCRIPTION).add(
            0, {"reason": "queue_full"}
        )
        self._thread = threading.Thread(target=self._run, name="interaction-log", daemon=True)
        self._thread.start()

    @classmethod
    def from_env(cls) -> InteractionLog | None:
        """The Blob log at QSCORE_INTERACTION_LOG_URL, else the file at QSCORE_INTERACTION_LOG,
        else None (logging off)."""
        url = os.environ.get("QSCORE_INTERACTION_LOG_URL")
        if url:
            from qscore.monitoring.blob_log import BlobInteractionLog

            return BlobInteractionLog(url)
        path = os.environ.get(INTERACTION_LOG_ENV)
        return cls(Path(path)) if path else None

    def log_nowait(self, record: RecordSource) -> bool:
        """Queue a record (or a zero-argument function building one); False when dropped."""
        if self._closed:
            return False
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1
            count_dropped(1, "queue_full")
            return False
        return True

    async def log(self, record: RecordSource) -> bool:
        """Like `log_nowait`; async so callers can treat every sink alike. Never waits on disk."""
        return self.log_nowait(record)

    async def log_scored(
        self,
        scored: ScoredItem,
        *,
        reply: ScoreReply | None = None,
        route: Route = "production",
        scored_by: str | None = None,
    ) -> bool:
        """Log a scored request; the record (array summaries, JSON) is built on the writer thread."""
        class_output = self.class_outputs.get(scored.item.request.model)
        return self.log_nowait(ScoredEntry(scored, reply, route, scored_by, class_output))

    async def log_scored_many(
        self,
        scored: Sequence[ScoredItem],
        replies: Sequence[ScoreReply] | None,
        routes: Sequence[Route],
        *,
        scored_by: str | None = None,
    ) -> int:
        """Log scored requests (with their replies, under their routes) in one queue operation:
        one lock and one wake-up for a reply batch, not one per request. How many were kept; the
        rest were dropped and counted as `log_scored` drops them (a full queue)."""
        if self._closed:
            return 0
        entries = [
            ScoredEntry(
                item,
                replies[index] if replies is not None else None,
                routes[index],
                scored_by,
                self.class_outputs.get(item.item.request.model),
            )
            for index, item in enumerate(scored)
        ]
        pending = self._queue  # queue.Queue's own lock, deque and condition: put_nowait for many
        with pending.mutex:
            room = max(0, pending.maxsize - len(pending.queue)) if pending.maxsize > 0 else len(entries)
            kept = entries[:room]
            if kept:
                pending.queue.extend(kept)
                pending.unfinished_tasks += len(kept)
                pending.not_empty.notify()
        lost = len(entries) - len(kept)
        if lost:
            self.dropped += lost
            count_dropped(lost, "queue_full")
        return len(kept)

    async def log_outcome(self, outcome: RequestOutcome) -> bool:
        """Log an error reply or a dead-letter record; built (body read) on the writer thread."""
        return self.log_nowait(functools.partial(record_from_outcome, outcome))

    async def flush(self, wait_s: float = 10.0) -> bool:
        """Wait until everything queued so far is on disk; False on timeout."""
        if self._closed:
            return True
        done = threading.Event()
        await asyncio.to_thread(self._queue.put, done)
        return await asyncio.to_thread(done.wait, wait_s)

    async def close(self) -> None:
        """Write what is queued, close the file and stop the writer thread."""
        if self._closed:
            return
        self._closed = True
        await asyncio.to_thread(self._queue.put, _Stop())
        await asyncio.to_thread(self._thread.join)

    async def __aenter__(self) -> InteractionLog:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- writer thread -------------------------------------------------------------------

    def _run(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle: IO[str] = self.path.open("a", encoding="utf-8")
        try:
            stop = False
            while not stop:
                batch = [self._queue.get()]
                if not isinstance(batch[0], threading.Event | _Stop):
                    time.sleep(self._linger_s)  # let records gather: one wake-up and write for many
                while len(batch) < self._write_batch:
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                stop = any(isinstance(entry, _Stop) for entry in batch)
                handle = self._write(handle, [entry for entry in batch if not isinstance(entry, _Stop)])
        finally:
            handle.close()

    def _write(self, handle: IO[str], batch: list[RecordSource | threading.Event | _Stop]) -> IO[str]:
        flushes = [entry for entry in batch if isinstance(entry, threading.Event)]
        lines = [built.line for built in self._lines(batch)]
        if lines:
            payload = "".join(lines)
            if handle.tell() > 0 and handle.tell() + len(payload) > self.max_bytes:
                handle = self._rotate(handle)
            handle.write(payload)
            handle.flush()
            self.written += len(lines)
        for event in flushes:
            event.set()
        return handle

    def _lines(self, batch: list[RecordSource | threading.Event | _Stop]) -> list[BuiltLine]:
        """The JSON lines of the batch's records, in order; a record that cannot be built is
        counted (`failed`) and logged: one bad record must not stop the log. The scored requests
        of the batch are built together (record_lines.py), the others one by one."""
        scored = iter(
            scored_lines([entry for entry in batch if isinstance(entry, ScoredEntry)], _line_of_entry)
        )
        lines: list[BuiltLine] = []
        for entry in batch:
            if isinstance(entry, threading.Event | _Stop):
                continue
            try:
                if isinstance(entry, ScoredEntry):
                    built = next(scored)
                    if isinstance(built, Exception):
                        raise built
                    lines.append(built)
                else:
                    lines.append(line_of_record(entry if isinstance(entry, InteractionRecord) else entry()))
            except Exception:
                self.failed += 1
                logger.exception("interaction record could not be built")
        return lines

    def _rotate(self, handle: IO[str]) -> IO[str]:
        handle.close()
        oldest = self.path.with_name(f"{self.path.name}.{self.backups}")
        oldest.unlink(missing_ok=True)
        for index in range(self.backups - 1, 0, -1):
            part = self.path.with_name(f"{self.path.name}.{index}")
            if part.exists():
                os.replace(part, self.path.with_name(f"{self.path.name}.{index + 1}"))
        if self.backups > 0:
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        else:
            self.path.unlink(missing_ok=True)
        return self.path.open("a", encoding="utf-8")
