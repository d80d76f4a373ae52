"""Write finished chunks into the output files in chunk order while later chunks are scored.

The final output grows as chunks finish (encoding overlaps scoring) instead of being assembled
from the parts after the last chunk. A chunk finished out of order waits in memory for the ones
before it; the reader stops taking new chunks while too many wait (`wait_for_room`), so memory
stays bounded. Parts are still published and recorded first: the output is only a scratch file
until `finish` publishes it, so after a kill a rerun rebuilds it from the recorded parts (a
resumed chunk is read back from its part when its turn comes).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from qscore.batch.formats import PART_SUFFIX, Format, OutputWriter, read_part
from qscore.batch.store import Store


def part_name(index: int) -> str:
    return f"part-{index:07d}{PART_SUFFIX}"


def rejected_name(index: int) -> str:
    return f"rejected-{index:07d}{PART_SUFFIX}"


@dataclass(frozen=True)
class _Ready:
    scored: pa.Table | None
    rejected: pa.Table | None
    resumed: dict[str, Any] | None = None  # the manifest record of a chunk an earlier run did


class OrderedAssembly:
    def __init__(self, *, first_index: int, scratch: Path, fmt: Format, store: Store) -> None:
        self.next_index = first_index
        self.store = store
        self.output = OutputWriter(scratch / ("assembled" + fmt.suffix), fmt)
        self.rejected = OutputWriter(scratch / ("assembled-rejected" + fmt.suffix), fmt)
        self._ready: dict[int, _Ready] = {}
        self._drain: asyncio.Task[None] | None = None
        self._written = asyncio.Event()
        self.write_s = 0.0  # time spent encoding (off the scoring path)

    def add(self, index: int, scored: pa.Table | None, rejected: pa.Table | None) -> None:
        self._put(index, _Ready(scored, rejected))

    def add_resumed(self, record: dict[str, Any]) -> None:
        self._put(int(record["index"]), _Ready(None, None, resumed=record))

    def _put(self, index: int, ready: _Ready) -> None:
        self._raise_if_failed()
        self._ready[index] = ready
        if self._drain is None or self._drain.done():
            self._drain = asyncio.create_task(self._write_ready())

    async def wait_for_room(self, limit: int) -> None:
        """Until fewer than `limit` finished chunks wait for an earlier one."""
        while len(self._ready) >= limit:
            self._raise_if_failed()
            self._written.clear()
            await self._written.wait()

    async def _write_ready(self) -> None:
        loop = asyncio.get_running_loop()
        while self.next_index in self._ready:
            ready = self._ready.pop(self.next_index)
            started = loop.time()
            if ready.resumed is not None:
                await self._write_resumed(ready.resumed)
            else:
                await asyncio.to_thread(self._write, ready.scored, ready.rejected)
            self.write_s += loop.time() - started
            self.next_index += 1
            self._written.set()

    async def _write_resumed(self, record: dict[str, Any]) -> None:
        index = int(record["index"])
        scored = await self._read(part_name(index)) if record.get("scored", True) else None
        rejected = await self._read(rejected_name(index)) if record["rejected"] else None
        await asyncio.to_thread(self._write, scored, rejected)

    async def _read(self, name: str) -> pa.Table:
        async with self.store.local_copy(name) as path:
            return await asyncio.to_thread(read_part, path)

    def _write(self, scored: pa.Table | None, rejected: pa.Table | None) -> None:
        if scored is not None:
            self.output.write(scored)
        if rejected is not None and rejected.num_rows:
            self.rejected.write(rejected)

    def _raise_if_failed(self) -> None:
        if self._drain is not None and self._drain.done() and self._drain.exception() is not None:
            raise self._drain.exception()  # type: ignore[misc]

    async def finish(self, stop_index: int) -> None:
        """Every chunk up to `stop_index` written: close the files (publishing is the caller's)."""
        if self._drain is not None:
            await self._drain
        if self.next_index != stop_index:
            missing = sorted(set(range(self.next_index, stop_index)) - set(self._ready))[:5]
            raise RuntimeError(f"chunks {missing} are not recorded as done; rerun the command")
        await asyncio.to_thread(self.output.close)
        if self.rejected.rows:
            await asyncio.to_thread(self.rejected.close)

    def abort(self) -> None:
        """The run failed: stop writing (the scratch files are removed with the scratch folder)."""
        if self._drain is not None and not self._drain.done():
            self._drain.cancel()  # its thread may still be encoding: leave the writers to it
            return
        self.output.abort()
        self.rejected.abort()
