"""Drains at several bus distances in one run: the network phase's drains alone, for diagnosis.

One Triton (the bench stack's); for each `--latency-ms` an endpoint that far away (`bus_at`, 0
is the run's own); `--rounds` times, at each latency in turn, one fresh worker drains
`--messages` requests of `--rows` rows each (qscore_tools.bench.network.measure_drain: the
queue filled while the worker is stopped, then let go). Prints each drain, and each latency's
median and its ratio to the median at 0 ms, within this run.

    python -m qscore_tools.bench.drain --messages 3000 --latency-ms 0 5 25 [--rows 1|128] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import statistics
import sys
from pathlib import Path

from qscore_tools.bench.network import DrainPoint, bus_at, describe_drain, measure_drain
from qscore_tools.bench.runner import local_bus
from qscore_tools.bench.stack import BenchStack, StackConfig


async def run_drains(
    *,
    model: str,
    rows: int,
    messages: int,
    latencies_ms: list[float],
    rounds: int,
    log_dir: Path | None = None,
    against: Path | None = None,
) -> list[tuple[str, DrainPoint]]:
    """`rounds` times, each latency in turn, each drain by a fresh worker (as the bench's network
    phase does: a drain pays its worker's windows growing from their first size, not its start).
    Taking the latencies in turn spreads the shared machine's noise over all of them. `against`:
    a source tree whose workers drain too, in turn with this tree's (an A/B within one run)."""
    drains: list[tuple[str, DrainPoint]] = []
    trees = {"this": os.environ.get("PYTHONPATH", "")} | ({"against": str(against)} if against else {})
    async with local_bus() as run_bus, contextlib.AsyncExitStack() as endpoints:
        buses = {
            latency: await endpoints.enter_async_context(bus_at(latency, run_bus)) for latency in latencies_ms
        }
        config = StackConfig(models=(model,), log_dir=log_dir)
        async with BenchStack(config, bus_connection=run_bus[0], bus_pid=run_bus[1]) as stack:
            try:
                for _ in range(rounds):
                    for (latency, (connection, pid)), (tree, path) in itertools.product(
                        buses.items(), trees.items()
                    ):
                        await stack.use_bus(connection, pid)
                        # The workers' code: they inherit PYTHONPATH, and with PYTHONSAFEPATH their
                        # `python -c` does not put their working directory (this tree) first.
                        os.environ["PYTHONPATH"] = path
                        if against:
                            os.environ["PYTHONSAFEPATH"] = "1"
                        await stack.restart_workers(count=1)
                        drain = await measure_drain(
                            stack, model=model, rows=rows, messages=messages, latency_ms=latency
                        )
                        drains.append((tree, drain))
                        print(
                            f"[{tree}]", describe_drain(drain), f"bus {drain.bus_cores:.2f} cores", flush=True
                        )
                await stack.stop_workers()
            finally:
                os.environ["PYTHONPATH"] = trees["this"]
                os.environ.pop("PYTHONSAFEPATH", None)
                await stack.use_bus(*run_bus)
    return drains


def ratios(drains: list[DrainPoint]) -> dict[float, tuple[float, float]]:
    """latency -> (median msg/s, its ratio to the median at 0 ms)."""
    rates: dict[float, list[float]] = {}
    for drain in drains:
        rates.setdefault(drain.latency_ms, []).append(drain.messages_per_s)
    medians = {latency: statistics.median(values) for latency, values in rates.items()}
    zero = medians.get(0.0) or 0.0
    return {latency: (rate, rate / zero if zero else 0.0) for latency, rate in medians.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qscore_tools.bench.drain", description=__doc__)
    parser.add_argument("--model", default="digits")
    parser.add_argument("--rows", type=int, default=1)
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--latency-ms", type=float, nargs="+", default=[0.0, 5.0, 25.0])
    parser.add_argument("--rounds", type=int, default=1, help="drains per latency, in turn")
    parser.add_argument("--json", type=Path, help="write every drain here")
    parser.add_argument("--against", type=Path, help="another source tree: its workers drain too, in turn")
    parser.add_argument("--log-dir", type=Path, help="keep Triton's and the workers' logs here")
    args = parser.parse_args(argv)
    if args.messages < 2 or args.rows < 1 or args.rounds < 1 or min(args.latency_ms) < 0:
        print("a drain needs --messages >= 2, --rows >= 1, --rounds >= 1, latencies >= 0", file=sys.stderr)
        return 2
    latencies = sorted(set(args.latency_ms))
    drains = asyncio.run(
        run_drains(
            model=args.model,
            rows=args.rows,
            messages=args.messages,
            latencies_ms=latencies,
            rounds=args.rounds,
            log_dir=args.log_dir,
            against=args.against,
        )
    )
    for tree in dict.fromkeys(tree for tree, _ in drains):
        of_tree = [drain for each, drain in drains if each == tree]
        for latency, (rate, ratio) in sorted(ratios(of_tree).items()):
            print(
                f"[{tree}] {args.rows}-row drain at {latency:g} ms: median {rate:,.0f} msg/s,",
                f"/ 0 ms: {ratio:.2f}",
            )
    if args.json:
        args.json.write_text(
            json.dumps([drain.as_dict() | {"tree": tree} for tree, drain in drains], indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
