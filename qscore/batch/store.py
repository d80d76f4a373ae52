"""Where a job keeps its work: finished parts, the manifest, and the final output files.

`LocalStore` keeps them in a folder beside the output (`<output>.batch/`); `BlobStore`
(qscore/batch/blob.py) under the same name as a prefix in the output's container. Parts are
published whole (fsync + rename here, one upload there), so a part that exists is complete.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol

MANIFEST = "manifest.jsonl"
WORK_SUFFIX = ".batch"


class Store(Protocol):
    description: str

    async def append_line(self, name: str, line: str) -> None: ...

    async def read_text(self, name: str) -> str | None: ...

    async def put(self, name: str, local: Path) -> None: ...

    def local_copy(self, name: str) -> contextlib.AbstractAsyncContextManager[Path]: ...

    async def remove(self, names: list[str]) -> None: ...

    async def publish(self, local: Path, final: str) -> None: ...

    async def close(self) -> None: ...


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _move_atomically(source: Path, target: Path) -> None:
    """Readers see the old file or the whole new one: copy beside the target (when on another
    file system), fsync, then rename over it."""
    staging = target.with_name(f".{target.name}.incoming")
    shutil.move(source, staging)
    with staging.open("rb") as handle:
        os.fsync(handle.fileno())
    os.replace(staging, target)
    _fsync_dir(target.parent)


class LocalStore:
    """Work folder `<output>.batch/` beside a local output file."""

    def __init__(self, output: Path) -> None:
        self.output = output
        self.folder = output.with_name(output.name + WORK_SUFFIX)
        self.description = str(self.folder)
        self._folder_made = False

    def _make_folder(self) -> None:
        if not self._folder_made:  # once, not per chunk
            self.folder.mkdir(parents=True, exist_ok=True)
            self._folder_made = True

    def _path(self, name: str) -> Path:
        return self.folder / name

    async def append_line(self, name: str, line: str) -> None:
        await asyncio.to_thread(self._append, name, line)

    def _append(self, name: str, line: str) -> None:
        self._make_folder()
        fresh = not self._path(name).exists()
        with self._path(name).open("a") as handle:
            handle.write(line.rstrip("\n") + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        if fresh:
            _fsync_dir(self.folder)

    async def read_text(self, name: str) -> str | None:
        path = self._path(name)
        return await asyncio.to_thread(path.read_text) if path.exists() else None

    async def put(self, name: str, local: Path) -> None:
        await asyncio.to_thread(self._put, name, local)

    def _put(self, name: str, local: Path) -> None:
        self._make_folder()
        _move_atomically(local, self._path(name))

    @contextlib.asynccontextmanager
    async def local_copy(self, name: str) -> AsyncIterator[Path]:
        yield self._path(name)

    async def remove(self, names: list[str]) -> None:
        def remove_all() -> None:
            for name in names:
                self._path(name).unlink(missing_ok=True)

        await asyncio.to_thread(remove_all)

    async def publish(self, local: Path, final: str) -> None:
        target = Path(final)

        def move() -> None:
            target.parent.mkdir(parents=True, exist_ok=True)
            _move_atomically(local, target)

        await asyncio.to_thread(move)

    async def close(self) -> None:
        return None
