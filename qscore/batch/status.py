"""Where a batch run stands, read from its manifests: which shards are done, which have started."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from qscore.batch.blob import BlobStore, is_blob_url
from qscore.batch.manifest import Manifest
from qscore.batch.shards import shard_output
from qscore.batch.store import LocalStore, Store

DONE = "done"
STARTED = "started"  # running, or stopped part way: the same command resumes it
NOT_STARTED = "not started"


def output_store(output: str) -> Store:
    return BlobStore(output) if is_blob_url(output) else LocalStore(Path(output))


@dataclass(frozen=True)
class RunStatus:
    output: str
    state: str
    shard: str | None = None  # "I/N"
    chunks_done: int = 0
    chunks: int | None = None  # this run's chunks, when its manifest says (sharded runs)
    rows_done: int = 0


async def batch_status(output: str, shards: int | None = None) -> list[RunStatus]:
    """The run writing `output`, or each of its `shards` shards, from its manifest."""
    if shards is None:
        return [await run_status(output)]
    return [
        await run_status(shard_output(output, index, shards), f"{index}/{shards}") for index in range(shards)
    ]


async def run_status(output: str, shard: str | None = None) -> RunStatus:
    store = output_store(output)
    try:
        state = await Manifest(store).load()
    finally:
        await store.close()
    if state.header is None:
        return RunStatus(output, NOT_STARTED, shard)
    span = state.header.get("chunk_range")
    return RunStatus(
        output,
        DONE if state.complete is not None else STARTED,
        shard,
        chunks_done=len(state.chunks),
        chunks=None if span is None else int(span[1]) - int(span[0]),
        rows_done=sum(int(record["rows"]) for record in state.chunks.values()),
    )
