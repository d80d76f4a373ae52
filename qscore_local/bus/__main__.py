"""`python -m qscore_local.bus`: the endpoint without the Typer CLI (what LocalBus starts)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from qscore_local.bus.config import QueueConfigError, load_queue_config
from qscore_local.bus.latency import JITTER_ENV, LATENCY_ENV, NetworkLatency
from qscore_local.bus.serve import DEFAULT_PORT, configure_logging, serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m qscore_local.bus", description="Local Service Bus endpoint"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--config", type=Path, default=None, help="queue config YAML (default: shipped)")
    parser.add_argument("--data-dir", type=Path, default=None, help="SQLite directory (default: in memory)")
    parser.add_argument(
        "--latency-ms", type=float, default=None, help=f"one-way delay per connection (${LATENCY_ENV})"
    )
    parser.add_argument(
        "--jitter-ms", type=float, default=None, help=f"up to this more, never reordering (${JITTER_ENV})"
    )
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    try:
        queues = load_queue_config(args.config)
        latency = NetworkLatency.resolve(args.latency_ms, args.jitter_ms)
    except (QueueConfigError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        serve(queues, host=args.host, port=args.port, data_dir=args.data_dir, latency=latency)
    except ValueError as exc:  # latency asked of proton's Container
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
