"""The producer's CPU per request: the bench's own queue-path load client (queue_client, one process
with one ScoringProducer) sends single-row digits requests at a fixed open-loop rate through a real
local bus, one worker and Triton; its user + system CPU-seconds inside the window (what `qscore
bench` meters as PRODUCER) divided by the requests completed there, and by those offered there
(--rate x the window; the fair figure when the worker falls behind and replies land late).

Clients (queue_client --client): `transfer` (send() of whatever is queued + replies(): the bench's
latency points), `coalesce` (score() with producer-side coalescing, the library default), `single`
(score(), coalescing off). CPU time is robust to a shared, noisy machine where wall time is not,
but contention still moves it (cache, frequency): compare within one run. `--against DIR`: a second
load client running the code of the checkout at DIR sends at the same rate at the same time (its
own reply session, the same worker): both figures under one and the same load, and their ratio.
`--profile DIR`: py-spy (--gil: samples follow CPU) records this checkout's client over the window;
the top frames by self and inclusive samples are printed with the figures.

    python -m qscore_tools.bench.producer_cpu --messages 5000 [--rate 250] [--clients transfer,coalesce]
    python -m qscore_tools.bench.producer_cpu --messages 5000 --against ../before [--profile /tmp/prof]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

import psutil

from qscore_tools.bench.children import Window, run_children
from qscore_tools.bench.latency import summarize
from qscore_tools.bench.profiling import Profiler
from qscore_tools.bench.queue_path import CLIENT_MODULE
from qscore_tools.bench.standalone import standalone_stack
from qscore_tools.bench.workload import ROOT

WARMUP_S = 3.0
PROFILE_FRAMES = 8


def _figures(sample: dict[str, Any], offered: int) -> dict[str, float]:
    """Per completed request, and per request offered in the window: when the worker falls behind
    (`completed` well under `offered`) only the latter compares two clients fairly, since one
    whose replies come later completes fewer inside the window for the same CPU."""
    completed = int(sample["completed"])
    latency = summarize(sample["latencies_ms"])
    cpu_s = float(sample["client_cpu_s"])
    return {
        "offered": offered,
        "completed": completed,
        "errors": int(sample["errors"]),
        "client_cpu_s": round(cpu_s, 3),
        "cpu_ms_per_request": round(cpu_s / completed * 1000, 4) if completed else float("nan"),
        "cpu_ms_per_offered": round(cpu_s / offered * 1000, 4),
        "p50_ms": round(latency.p50_ms, 1),
        "p99_ms": round(latency.p99_ms, 1),
    }


async def _child_pid(cwd: Path, timeout_s: float = 10.0) -> int | None:
    """The pid of our load-client child started in `cwd` (for py-spy), once it exists."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for child in psutil.Process().children():
            try:
                if CLIENT_MODULE in child.cmdline() and Path(child.cwd()) == cwd:
                    return child.pid
            except psutil.Error:
                continue
        await asyncio.sleep(0.05)
    return None


async def _profile(profiler: Profiler, label: str, window: Window) -> None:
    pid = await _child_pid(ROOT)
    if pid is not None:
        await profiler.record({"producer": pid}, label, window)


async def measure_point(
    connection: str,
    client: str,
    *,
    rate_per_s: float,
    messages: int,
    against: Path | None = None,
    profiler: Profiler | None = None,
) -> dict[str, Any]:
    """One open-loop point of `client` at `rate_per_s` for `messages` requests (and `against`'s at once)."""
    args = [
        "--connection",
        connection,
        "--model",
        "digits",
        "--client",
        client,
        "--rate",
        f"{rate_per_s:.3f}",
    ]
    window = Window.after_warmup(WARMUP_S, messages / rate_per_s)
    checkouts = {"this": ROOT} if against is None else {"this": ROOT, "against": against}
    runs = [
        run_children(CLIENT_MODULE, [args], window=window, cwd=cwd, env={"PYTHONPATH": str(cwd)})
        for cwd in checkouts.values()
    ]
    profiling = _profile(profiler, f"producer {client}", window) if profiler is not None else None
    results = await asyncio.gather(*runs, *([profiling] if profiling is not None else []))
    figures: dict[str, Any] = {
        label: _figures(result[0][0], messages) for label, result in zip(checkouts, results, strict=False)
    }
    if against is not None:
        this, other = figures["this"]["cpu_ms_per_offered"], figures["against"]["cpu_ms_per_offered"]
        figures["ratio_this_to_against"] = round(this / other, 3)  # CPU per offered request
    return figures


async def _standalone(args: argparse.Namespace) -> dict[str, Any]:
    profiler = Profiler(args.profile, gil=True) if args.profile is not None else None
    result: dict[str, Any] = {"rate_per_s": args.rate, "messages": args.messages}
    async with standalone_stack(workers=1, prefix="qscore-producer-cpu-") as stack:
        for client in args.clients.split(","):
            rounds = [
                await measure_point(
                    stack.connection,
                    client,
                    rate_per_s=args.rate,
                    messages=args.messages,
                    against=args.against,
                    profiler=profiler if index == 0 else None,
                )
                for index in range(args.rounds)
            ]
            result[client] = rounds[0] if args.rounds == 1 else rounds
    if profiler is not None:
        result["profiles"] = [
            {
                "label": summary.label,
                "samples": summary.samples,
                "raw": summary.raw_path,
                "top_self": [(frame, round(share, 3)) for frame, share in summary.top_self[:PROFILE_FRAMES]],
                "top_inclusive": [
                    (frame, round(share, 3)) for frame, share in summary.top_inclusive[:PROFILE_FRAMES]
                ],
            }
            for summary in profiler.summaries
        ]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000, help="requests per point (at --rate)")
    parser.add_argument("--rate", type=float, default=250.0, help="open-loop requests/s per client")
    parser.add_argument("--clients", default="transfer,coalesce", help="queue_client --client values")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--against", type=Path, default=None, help="a checkout whose client runs at once")
    parser.add_argument("--profile", type=Path, default=None, help="py-spy raw profiles go in this folder")
    args = parser.parse_args()
    if args.messages < 1 or args.rate <= 0 or args.rounds < 1:
        parser.error("--messages and --rounds must be >= 1, --rate > 0")
    if args.against is not None:
        args.against = args.against.resolve()
    print(json.dumps(asyncio.run(_standalone(args)), indent=1))


if __name__ == "__main__":
    main()
