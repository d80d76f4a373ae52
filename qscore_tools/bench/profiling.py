"""Optional sampling profiles (py-spy) of the worker and bus while a load point runs.

Where a goal is missed, these name the hot code inside the bottleneck process. py-spy is
an optional tool (`pip install py-spy`); `qscore bench --profile` needs it.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

from qscore_tools.bench.children import Window

TOP_FRAMES = 12
SAMPLE_RATE_HZ = 200
# py-spy frames look like "function (path/to/file.py:123)"; the line number is dropped when grouping.
FRAME_LINE = re.compile(r":\d+\)$")


class ProfilerUnavailable(Exception):
    """py-spy is not installed (or not on PATH)."""


@dataclass(frozen=True)
class ProfileSummary:
    role: str
    label: str
    samples: int
    raw_path: str
    top_self: list[tuple[str, float]] = field(default_factory=list)  # (frame, share of samples)
    top_inclusive: list[tuple[str, float]] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def py_spy_binary() -> str:
    found = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if found is None:
        raise ProfilerUnavailable("py-spy is not installed (pip install py-spy) but --profile needs it")
    return found


def summarize_collapsed(text: str, *, role: str, label: str, raw_path: Path) -> ProfileSummary:
    """Top frames by self samples (the leaf) and by inclusive samples from py-spy's raw output."""
    leaf: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [FRAME_LINE.sub(")", frame) for frame in stack.split(";")]
        total += count
        leaf[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count

    def top(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(frame, count / total) for frame, count in counter.most_common(TOP_FRAMES)] if total else []

    return ProfileSummary(role, label, total, str(raw_path), top(leaf), top(inclusive))


class Profiler:
    """Records each named process with py-spy over a load point's measurement window."""

    def __init__(self, out_dir: Path, *, gil: bool = False) -> None:
        self.binary = py_spy_binary()
        self.out_dir = out_dir
        # --gil: only the thread holding the GIL, so the samples follow CPU rather than threads
        self.gil = gil
        self.summaries: list[ProfileSummary] = []

    async def _record_one(self, role: str, pid: int, label: str, window: Window) -> None:
        slug = re.sub(r"[^a-zA-Z0-9]+", "-", f"{label}-{role}").strip("-")
        raw_path = self.out_dir / f"profile-{slug}.txt"
        self.out_dir.mkdir(parents=True, exist_ok=True)
        await asyncio.sleep(max(0.0, window.start_at - time.time()))
        process = await asyncio.create_subprocess_exec(
            self.binary,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(max(1, round(window.duration_s))),
            "--rate",
            str(SAMPLE_RATE_HZ),
            "--format",
            "raw",
            "--nonblocking",
            "--output",
            str(raw_path),
            *(["--gil"] if self.gil else []),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        await process.wait()
        if process.returncode == 0 and raw_path.exists():
            text = await asyncio.to_thread(raw_path.read_text)
            self.summaries.append(summarize_collapsed(text, role=role, label=label, raw_path=raw_path))

    async def record(self, pids: dict[str, int], label: str, window: Window) -> None:
        """Profile every process in `pids` (role -> pid) for the window; failures are skipped."""
        await asyncio.gather(
            *(self._record_one(role, pid, label, window) for role, pid in pids.items()),
            return_exceptions=True,
        )
