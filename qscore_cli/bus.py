"""`qscore bus ...`: run the local Service Bus endpoint and look at its queues."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from qscore_cli.errors import UserError

app = typer.Typer(help="The local Service Bus endpoint (AMQP 1.0 on loopback).", no_args_is_help=True)

DEFAULT_CONNECTION_ENV = "QSCORE_SERVICEBUS_CONNECTION"


@app.command("serve")
def serve_command(
    port: int = typer.Option(5672, "--port", help="TCP port on the host address."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (loopback by default)."),
    config: Path | None = typer.Option(None, "--config", help="Queue config YAML (default: shipped queues)."),
    data_dir: Path | None = typer.Option(
        Path(".qscore/bus"),
        "--data-dir",
        help="Where the SQLite store lives (durable across restarts).",
    ),
    latency_ms: float | None = typer.Option(
        None,
        "--latency-ms",
        help="Delay every AMQP connection's frames this many ms each way, in order and pipelined, "
        "standing in for the network to Azure (default: $QSCORE_BUS_LATENCY_MS, else 0).",
    ),
    jitter_ms: float | None = typer.Option(
        None,
        "--jitter-ms",
        help="Add up to this many ms more per chunk, never reordering (default: $QSCORE_BUS_JITTER_MS).",
    ),
    verbose: bool = typer.Option(False, "--verbose", help="Log connections and refused links."),
) -> None:
    """Serve queues until Ctrl-C; prints where it listens and the queues it holds."""
    from qscore_local.bus.config import QueueConfigError, load_queue_config
    from qscore_local.bus.latency import NetworkLatency
    from qscore_local.bus.serve import configure_logging, serve

    try:
        queues = load_queue_config(config)
        latency = NetworkLatency.resolve(latency_ms, jitter_ms)
    except (QueueConfigError, ValueError) as exc:
        raise UserError(str(exc)) from None
    configure_logging(verbose)
    try:
        serve(queues, host=host, port=port, data_dir=data_dir, latency=latency)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    except OSError as exc:
        raise UserError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None


@app.command("stats")
def stats_command(
    connection: str | None = typer.Option(
        None,
        "--connection",
        help=f"Connection string (default: ${DEFAULT_CONNECTION_ENV} or 127.0.0.1:5672).",
    ),
) -> None:
    """Per-queue message counts (active, locked, dead-letter, scheduled) as a table."""
    from rich.console import Console
    from rich.table import Table

    from qscore_local.bus.serve import connection_string
    from qscore_local.bus.stats import BusStatsError, queue_counts_blocking

    target = connection or os.environ.get(DEFAULT_CONNECTION_ENV) or connection_string("127.0.0.1", 5672)
    try:
        counts = queue_counts_blocking(target, timeout=5)
    except BusStatsError as exc:
        raise UserError(str(exc)) from None
    table = Table(title="qscore bus queues")
    for column in ("queue", "active", "locked", "dead-letter", "scheduled", "total"):
        table.add_column(column, justify="left" if column == "queue" else "right")
    for name, row in counts.items():
        table.add_row(
            name, str(row.active), str(row.locked), str(row.dead_letter), str(row.scheduled), str(row.total)
        )
    Console().print(table)
