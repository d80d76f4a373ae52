"""`qscore enqueue` (send requests, print replies) and `qscore watch` (live queue counts)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from qscore_cli.errors import UserError

if TYPE_CHECKING:
    from qscore.producer import ProducerSettings

CONNECTION_HELP = "Service Bus connection string (default: $QSCORE_SERVICEBUS_CONNECTION)."
NAMESPACE_HELP = "Azure namespace, signs in with Azure AD (default: $QSCORE_SERVICEBUS_NAMESPACE)."


def register(app: typer.Typer) -> None:
    """Attach `enqueue` and `watch` to the root app."""
    app.command("enqueue")(enqueue)
    app.command("watch")(watch)


def enqueue(
    count: int | None = typer.Option(
        None, "--count", "-n", help="Requests to send (default 10; with --file, one per request in it)."
    ),
    file: Path | None = typer.Option(None, "--file", "-f", help="JSON request body, or a list of them."),
    image: list[Path] = typer.Option(
        [], "--image", help="PNG/JPEG file to score with --model digit_images (repeatable; one request each)."
    ),
    model: str = typer.Option("digits", help="Model for held-out digits requests (or the --image files)."),
    version: str | None = typer.Option(None, help="Model version or label (default: production)."),
    rows_per_request: int = typer.Option(1, help="Digits samples per request."),
    binary: bool = typer.Option(False, "--binary", help="Encode tensors as compact base64."),
    timeout: float = typer.Option(60.0, help="Seconds to wait for each reply."),
    no_wait: bool = typer.Option(False, "--no-wait", help="Send and exit without collecting replies."),
    show: int = typer.Option(10, help="Replies to print one line each (the rest are summarised)."),
    connection: str | None = typer.Option(None, help=CONNECTION_HELP),
    namespace: str | None = typer.Option(None, help=NAMESPACE_HELP),
    request_queue: str | None = typer.Option(None, help="Request queue (default: $QSCORE_REQUEST_QUEUE)."),
    reply_queue: str | None = typer.Option(None, help="Reply queue (default: $QSCORE_REPLY_QUEUE)."),
) -> None:
    """Send scoring requests (held-out digits, a JSON file, or image files) and print their replies.

    A body over the claim-check threshold goes by reference when $QSCORE_BLOB_CONNECTION or
    $QSCORE_BLOB_ACCOUNT_URL is set (docs/contract.md)."""
    import asyncio

    from azure.servicebus.exceptions import ServiceBusError

    from qscore.producer.files import RequestFileError
    from qscore_cli.enqueue_job import EnqueueJob, run_enqueue

    settings = _producer_settings(connection, namespace, request_queue, reply_queue, timeout, binary)
    if count is not None and count < 1:
        raise UserError("--count must be at least 1")
    if rows_per_request < 1:
        raise UserError("--rows-per-request must be at least 1")
    job = EnqueueJob(
        count=count,
        file=file,
        model=model,
        version=version,
        rows_per_request=rows_per_request,
        wait=not no_wait,
        show=max(show, 0),
        images=tuple(image),
    )
    try:
        all_answered = asyncio.run(run_enqueue(settings, job))
    except (RequestFileError, FileNotFoundError) as exc:
        raise UserError(str(exc)) from None
    except ServiceBusError as exc:
        raise UserError(f"Service Bus: {str(exc).splitlines()[0]}") from None
    if not all_answered:
        raise typer.Exit(1)


def watch(
    interval: float = typer.Option(1.0, help="Seconds between refreshes."),
    duration: float | None = typer.Option(None, help="Stop after this many seconds (default: Ctrl-C)."),
    connection: str | None = typer.Option(None, help=CONNECTION_HELP),
) -> None:
    """Live queue counts (active incl. locked, dead-lettered, scheduled) and how fast each queue moves."""
    import asyncio
    import os

    from qscore_cli.watch import WatchError, run_watch

    conn = connection or os.environ.get("QSCORE_SERVICEBUS_CONNECTION")
    if not conn:
        raise UserError("no bus to watch: pass --connection or set QSCORE_SERVICEBUS_CONNECTION")
    if interval <= 0:
        raise UserError("--interval must be > 0")
    try:
        asyncio.run(run_watch(conn, interval_s=interval, duration_s=duration))
    except WatchError as exc:
        raise UserError(str(exc)) from None


def _producer_settings(
    connection: str | None,
    namespace: str | None,
    request_queue: str | None,
    reply_queue: str | None,
    timeout: float,
    binary: bool,
) -> ProducerSettings:
    from qscore.producer import ProducerSettings
    from qscore.transport import check_connection_string

    try:
        settings = ProducerSettings.from_env(
            connection=connection,
            namespace=namespace,
            request_queue=request_queue,
            reply_queue=reply_queue,
            reply_timeout_s=timeout,
            binary_tensors=binary,
        )
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if bool(settings.connection) == bool(settings.namespace):
        raise UserError(
            "say which Service Bus: --connection / QSCORE_SERVICEBUS_CONNECTION, "
            "or --namespace / QSCORE_SERVICEBUS_NAMESPACE (exactly one)"
        )
    if settings.connection:
        try:
            check_connection_string(settings.connection)
        except ValueError as exc:
            raise UserError(str(exc)) from None
    return settings
