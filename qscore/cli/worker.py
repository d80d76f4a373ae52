"""`qscore worker`: run one scoring worker (Service Bus in, Triton, replies out).

Every flag has a `QSCORE_*` variable (see docs/worker.md); a flag wins over the variable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from qscore.cli.errors import UserError


def register(app: typer.Typer) -> None:
    """Attach this module's command(s) to the root app."""
    app.command("worker")(worker)


def worker(
    connection: str | None = typer.Option(
        None, "--connection", help="Service Bus connection string [QSCORE_SERVICEBUS_CONNECTION]."
    ),
    namespace: str | None = typer.Option(
        None,
        "--namespace",
        help="Azure Service Bus namespace, with DefaultAzureCredential [QSCORE_SERVICEBUS_NAMESPACE].",
    ),
    queue: str | None = typer.Option(None, "--queue", help="Request queue [QSCORE_REQUEST_QUEUE]."),
    reply_queue: str | None = typer.Option(
        None, "--reply-queue", help="Reply queue for requests without reply_to [QSCORE_REPLY_QUEUE]."
    ),
    triton_url: str | None = typer.Option(
        None, "--triton-url", help="Triton gRPC host:port [QSCORE_TRITON_URL]."
    ),
    max_batch_size: int | None = typer.Option(
        None, help="Cap on rows per Triton call; 0 = the model's max [QSCORE_MAX_BATCH_SIZE]."
    ),
    max_batch_delay_ms: float | None = typer.Option(
        None, help="Longest wait for a batch to fill [QSCORE_MAX_BATCH_DELAY_MS]."
    ),
    prefetch: int | None = typer.Option(None, help="Messages fetched ahead [QSCORE_PREFETCH]."),
    max_in_flight_batches: int | None = typer.Option(
        None, help="Triton calls in flight at once [QSCORE_MAX_IN_FLIGHT_BATCHES]."
    ),
    drain_grace_s: float | None = typer.Option(
        None, help="Seconds to finish in-flight work on SIGTERM [QSCORE_DRAIN_GRACE_S]."
    ),
    health_port: int | None = typer.Option(
        None, help="Port for /healthz and /readyz; 0 = any free port [QSCORE_HEALTH_PORT]."
    ),
    no_health: bool = typer.Option(False, "--no-health", help="Do not start the health server."),
    registry_path: Path | None = typer.Option(None, help="Model registry file [QSCORE_REGISTRY_PATH]."),
    interaction_log: Path | None = typer.Option(
        None, help="JSONL log of scored interactions [QSCORE_INTERACTION_LOG]."
    ),
    log_level: str = typer.Option("INFO", help="Logging level."),
) -> None:
    """Consume scoring requests until SIGTERM/Ctrl-C, then drain and exit."""
    import asyncio
    import dataclasses
    import logging

    from qscore.transport import TransportConfigError
    from workers.app import run_worker
    from workers.settings import WorkerSettings

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )
    logging.getLogger("azure").setLevel(logging.WARNING)
    overrides: dict[str, Any] = {
        "servicebus_connection": connection,
        "servicebus_namespace": namespace,
        "request_queue": queue,
        "reply_queue": reply_queue,
        "triton_url": triton_url,
        "max_batch_size": max_batch_size,
        "max_batch_delay_ms": max_batch_delay_ms,
        "prefetch": prefetch,
        "max_in_flight_batches": max_in_flight_batches,
        "drain_grace_s": drain_grace_s,
        "health_port": health_port,
        "registry_path": registry_path,
        "interaction_log": interaction_log,
    }
    try:
        settings = WorkerSettings.from_env(**overrides)
        if no_health:
            settings = dataclasses.replace(settings, health_port=None)
        if bool(settings.servicebus_connection) == bool(settings.servicebus_namespace):
            raise TransportConfigError(
                "set exactly one of --connection/QSCORE_SERVICEBUS_CONNECTION "
                "or --namespace/QSCORE_SERVICEBUS_NAMESPACE"
            )
    except (ValueError, TransportConfigError) as exc:
        raise UserError(str(exc)) from None
    from qscore.telemetry import configure

    configure("qscore-worker")
    try:
        asyncio.run(run_worker(settings))
    except OSError as exc:  # e.g. the health port is taken
        raise UserError(f"worker could not start: {exc}") from None
