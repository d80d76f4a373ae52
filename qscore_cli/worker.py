"""`qscore worker`: run one scoring worker (Service Bus in, Triton, replies out).

Every flag has a `QSCORE_*` variable (see docs/worker.md); a flag wins over the variable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from qscore_cli.worker_start import _run, _settings


def register(app: typer.Typer) -> None:
    """Attach this module's command(s) to the root app."""
    app.command("worker")(worker)


def _flag(variable: str, text: str, *names: str) -> Any:
    """An optional flag whose default (None) defers to the `QSCORE_*` variable it names."""
    return typer.Option(None, *names, help=f"{text} [{variable}].")


def worker(
    connection: str | None = _flag(
        "QSCORE_SERVICEBUS_CONNECTION", "Service Bus connection string", "--connection"
    ),
    namespace: str | None = _flag(
        "QSCORE_SERVICEBUS_NAMESPACE", "Service Bus namespace, with DefaultAzureCredential", "--namespace"
    ),
    queue: str | None = _flag("QSCORE_REQUEST_QUEUE", "Request queue", "--queue"),
    reply_queue: str | None = _flag("QSCORE_REPLY_QUEUE", "Reply queue for requests without reply_to"),
    allowed_reply_queues: str | None = _flag(
        "QSCORE_ALLOWED_REPLY_QUEUES",
        "Queues a request may reply to, comma-separated (default: the reply queue)",
    ),
    triton_url: str | None = _flag("QSCORE_TRITON_URL", "Triton gRPC host:port"),
    max_batch_size: int | None = _flag(
        "QSCORE_MAX_BATCH_SIZE", "Cap on rows per Triton call; 0 = the model's max"
    ),
    max_batch_delay_ms: float | None = _flag("QSCORE_MAX_BATCH_DELAY_MS", "Longest wait for a batch to fill"),
    prefetch: int | None = _flag("QSCORE_PREFETCH", "Most messages fetched ahead"),
    max_in_flight_batches: int | None = _flag(
        "QSCORE_MAX_IN_FLIGHT_BATCHES", "Triton calls in flight at once"
    ),
    drain_grace_s: float | None = _flag(
        "QSCORE_DRAIN_GRACE_S", "Seconds to finish in-flight work on SIGTERM"
    ),
    health_port: int | None = _flag("QSCORE_HEALTH_PORT", "Port for /healthz and /readyz; 0 = any free port"),
    health_host: str | None = _flag(
        "QSCORE_HEALTH_HOST", "Address the health server binds (default 127.0.0.1; 0.0.0.0 in a pod)"
    ),
    no_health: bool = typer.Option(False, "--no-health", help="Do not start the health server."),
    registry_path: Path | None = _flag("QSCORE_REGISTRY_PATH", "Model registry file"),
    interaction_log: Path | None = _flag("QSCORE_INTERACTION_LOG", "JSONL log of scored interactions"),
    exit_after_messages: int | None = _flag(
        "QSCORE_EXIT_AFTER_MESSAGES", "Job mode: exit after settling this many messages"
    ),
    exit_when_idle_s: float | None = _flag(
        "QSCORE_EXIT_WHEN_IDLE_S", "Job mode: exit after this many seconds with nothing received"
    ),
    log_level: str = typer.Option("INFO", help="Logging level."),
) -> None:
    """Consume scoring requests until SIGTERM/Ctrl-C, then drain and exit."""
    overrides = {name: value for name, value in locals().items() if name not in {"no_health", "log_level"}}
    overrides["servicebus_connection"] = overrides.pop("connection")
    overrides["servicebus_namespace"] = overrides.pop("namespace")
    overrides["request_queue"] = overrides.pop("queue")
    _run(_settings(overrides, no_health=no_health), log_level)
