"""Run load-generator child processes (`python -m <module> ... --out FILE`) and collect their JSON."""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qscore_tools.bench.workload import ROOT, ChildResult

# Time for a child to start Python and import its client library before its warm-up begins.
SPAWN_ALLOWANCE_S = 1.5
# Grace past the window for a child to finish its last requests and write its result.
FINISH_SLACK_S = 30.0


@dataclass(frozen=True)
class Window:
    """The measurement window shared by every child and the harness's CPU meters (epoch seconds)."""

    start_at: float
    duration_s: float

    @classmethod
    def after_warmup(cls, warmup_s: float, duration_s: float) -> Window:
        return cls(start_at=time.time() + SPAWN_ALLOWANCE_S + warmup_s, duration_s=duration_s)

    @property
    def end_at(self) -> float:
        return self.start_at + self.duration_s

    def child_args(self) -> list[str]:
        return ["--start-at", f"{self.start_at:.6f}", "--duration-s", str(self.duration_s)]


class LoadGeneratorFailed(Exception):
    """A load-generator child exited with an error; the message carries its stderr tail."""


async def _run_one(
    module: str, args: Sequence[str], out: Path, timeout_s: float, env: dict[str, str], cwd: Path = ROOT
) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        *args,
        "--out",
        str(out),
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=timeout_s)
    except (TimeoutError, asyncio.CancelledError) as exc:
        process.kill()
        await process.wait()
        if isinstance(exc, TimeoutError) and await asyncio.to_thread(out.exists):
            return  # it wrote its result and then hung tearing down: the figures stand
        if isinstance(exc, TimeoutError):
            raise LoadGeneratorFailed(f"{module} wrote no result within {timeout_s:.0f} s") from None
        raise
    if process.returncode != 0:
        tail = stderr.decode(errors="replace").strip().splitlines()[-8:]
        raise LoadGeneratorFailed(f"{module} exited with {process.returncode}: " + " | ".join(tail))


async def measure_cpu(window: Window, probes: Mapping[str, Callable[[], float]]) -> dict[str, float]:
    """CPU-seconds each probe's processes used inside the window (read at its start and end)."""
    await asyncio.sleep(max(0.0, window.start_at - time.time()))
    at_start = {role: probe() for role, probe in probes.items()}
    await asyncio.sleep(max(0.0, window.end_at - time.time()))
    return {role: probe() - at_start[role] for role, probe in probes.items()}


async def run_children(
    module: str,
    per_child_args: Sequence[Sequence[str]],
    *,
    window: Window,
    env: dict[str, str] | None = None,
    cpu_probes: Mapping[str, Callable[[], float]] | None = None,
    cwd: Path = ROOT,
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Start one child per argument list at once, wait for all; their results and the window's CPU use.
    `cwd`: the checkout whose code the children run (`python -m` puts it first on their path)."""
    child_env = dict(os.environ) | (env or {})
    timeout_s = window.end_at - time.time() + FINISH_SLACK_S
    with tempfile.TemporaryDirectory(prefix="qscore-bench-") as tmp:
        outs = [Path(tmp) / f"child-{index}.json" for index in range(len(per_child_args))]
        children = (
            _run_one(module, [*args, *window.child_args()], out, timeout_s, child_env, cwd)
            for args, out in zip(per_child_args, outs, strict=True)
        )
        metering = asyncio.create_task(measure_cpu(window, cpu_probes or {}))
        try:
            await asyncio.gather(*children)
        finally:
            cpu = await metering if not metering.cancelled() and metering.done() else {}
            metering.cancel()
        return [ChildResult(out).read() for out in outs], cpu


def split_evenly(total: int, parts: int) -> list[int]:
    """`total` split into `parts` near-equal positive shares (fewer parts if total is small)."""
    parts = max(1, min(parts, total))
    base, extra = divmod(total, parts)
    return [base + (1 if index < extra else 0) for index in range(parts)]
