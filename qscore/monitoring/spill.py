"""Local-disk spill of the Blob interaction log: records kept while Blob Storage is down (or the
in-memory buffer is backing up), uploaded in order once it is back.

Each spill file is one batch of JSON lines, written to a temporary name and renamed, so a crash
never leaves a torn file. Files are named `<writer>-<sequence>.jsonl`, where the writer id begins
with its start time, so sorting the names replays them in the order they were written, also the
files a previous process left. Its blobs are named after the file, so uploading a file twice
(a crash between upload and delete, two processes sharing the folder) overwrites the same blobs:
no record is duplicated. What does not fit under `max_bytes` (or cannot be written) is dropped,
counted by the caller.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path

SPILL_DIR_ENV = "QSCORE_INTERACTION_SPILL_DIR"
SPILL_MAX_BYTES_ENV = "QSCORE_INTERACTION_SPILL_MAX_BYTES"
DEFAULT_SPILL_MAX_BYTES = 1024 * 1024 * 1024


def default_spill_dir(url: str) -> Path:
    """$QSCORE_INTERACTION_SPILL_DIR, else a folder per log URL under the system's temp folder."""
    configured = os.environ.get(SPILL_DIR_ENV)
    if configured:
        return Path(configured)
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", url.split("://", 1)[-1]).strip("_")
    return Path(tempfile.gettempdir()) / "qscore-interaction-spill" / name


def default_spill_max_bytes() -> int:
    raw = os.environ.get(SPILL_MAX_BYTES_ENV, "").strip()
    return int(raw) if raw else DEFAULT_SPILL_MAX_BYTES


class SpillDirectory:
    """The spilled batches on disk, oldest first; not thread-safe (the log's writer thread owns it)."""

    def __init__(self, path: Path, *, max_bytes: int = DEFAULT_SPILL_MAX_BYTES) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.path.mkdir(parents=True, exist_ok=True)
        found = self.files()  # a previous process's spill is replayed first
        self.bytes = sum(file.stat().st_size for file in found)

    def files(self) -> list[Path]:
        """The spilled batches, oldest first (this also recounts them)."""
        found = sorted(self.path.glob("*.jsonl"))
        self.count = len(found)
        return found

    def write(self, stem: str, lines: list[str]) -> str | None:
        """Keep a batch; None when kept, else why not: `spill_full` (it would pass `max_bytes`)
        or `spill_failed` (the disk refused it)."""
        payload = "".join(lines).encode()
        if self.bytes + len(payload) > self.max_bytes:
            return "spill_full"
        temporary = self.path / f".{stem}.tmp"
        try:
            temporary.write_bytes(payload)
            os.replace(temporary, self.path / f"{stem}.jsonl")
        except OSError:
            with contextlib.suppress(OSError):
                temporary.unlink()
            return "spill_failed"
        self.bytes += len(payload)
        self.count += 1
        return None

    def remove(self, file: Path) -> None:
        with contextlib.suppress(OSError):
            size = file.stat().st_size
            file.unlink()
            self.bytes = max(0, self.bytes - size)
        self.count = max(0, self.count - 1)
