"""`qscore dead-letters list | show | resubmit | purge`: what ended without a reply.

The logic is `qscore.operations.DeadLetterQueues` (the request queue's dead-letter sub-queue and
the Functions failures queue, through the public azure-servicebus API); this module only reads
flags and presents the results.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer

from qscore_cli.errors import UserError

if TYPE_CHECKING:
    from qscore.operations import DeadLetter, DeadLetterQueues, Fix, Source

app = typer.Typer(
    help="Requests that ended without a reply: the request queue's dead-letters and the Functions failures.",
    no_args_is_help=True,
)

T = TypeVar("T")
CONNECTION = typer.Option(
    None, help="Service Bus connection string (default: $QSCORE_SERVICEBUS_CONNECTION)."
)
NAMESPACE = typer.Option(
    None, help="Azure namespace, signs in with Azure AD (default: $QSCORE_SERVICEBUS_NAMESPACE)."
)
QUEUE = typer.Option(
    None, "--queue", help="Request queue (default: $QSCORE_REQUEST_QUEUE or scoring-requests)."
)
FAILURES = typer.Option(
    None,
    "--failures-queue",
    help="Functions failures queue (default: $QSCORE_FAILURES_QUEUE or scoring-failures).",
)
SOURCE = typer.Option(None, "--source", help="Only 'dead-letter' or only 'failures' (default: both).")
PURGE_PEEK_LIMIT = 1000  # `purge` counts what it would remove up to this many before asking


def _source(value: str | None) -> Source | None:
    from qscore.operations import Source

    if value is None:
        return None
    try:
        return Source(value)
    except ValueError:
        raise UserError(f"--source must be 'dead-letter' or 'failures', not {value!r}") from None


def _run(
    connection: str | None,
    namespace: str | None,
    queue: str | None,
    failures_queue: str | None,
    work: Callable[[DeadLetterQueues], Awaitable[T]],
) -> T:
    """Build the client (one-line errors for bad settings), run `work`, close everything."""
    from azure.servicebus.exceptions import ServiceBusError

    from qscore.operations import DeadLetterQueues
    from qscore.settings import DEFAULT_REQUEST_QUEUE
    from qscore.transport import TransportConfigError, check_connection_string, servicebus_client
    from qscore.transport.failures import DEFAULT_FAILURES_QUEUE

    connection = connection or os.environ.get("QSCORE_SERVICEBUS_CONNECTION") or None
    namespace = namespace or os.environ.get("QSCORE_SERVICEBUS_NAMESPACE") or None
    try:
        if connection:
            check_connection_string(connection)
        client = servicebus_client(connection=connection, namespace=None if connection else namespace)
    except TransportConfigError as exc:
        raise UserError(str(exc)) from None
    queues = DeadLetterQueues(
        client,
        request_queue=queue or os.environ.get("QSCORE_REQUEST_QUEUE") or DEFAULT_REQUEST_QUEUE,
        failures_queue=failures_queue or os.environ.get("QSCORE_FAILURES_QUEUE") or DEFAULT_FAILURES_QUEUE,
    )

    async def main() -> T:
        async with client:
            return await work(queues)

    try:
        return asyncio.run(main())
    except ServiceBusError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"Service Bus: {first}") from None


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


@app.command("list")
def list_command(
    source: str | None = SOURCE,
    limit: int = typer.Option(200, min=1, help="At most this many, oldest first."),
    connection: str | None = CONNECTION,
    namespace: str | None = NAMESPACE,
    queue: str | None = QUEUE,
    failures_queue: str | None = FAILURES,
) -> None:
    """Reason, description, age, delivery count and message id of each (peeked: nothing changes)."""
    from rich.console import Console
    from rich.table import Table

    only = _source(source)
    items = _run(connection, namespace, queue, failures_queue, lambda q: q.entries(source=only, limit=limit))
    table = Table(title=f"{len(items)} request(s) without a reply")
    for column in ("source", "message id", "reason", "description", "age", "deliveries"):
        table.add_column(column, overflow="fold")
    for item in items:
        table.add_row(
            str(item.source),
            item.message_id,
            item.reason,
            item.description[:160],
            _age(item.age_s()),
            str(item.delivery_count),
        )
    Console(width=160).print(table)


def _details(item: DeadLetter) -> dict[str, Any]:
    body = item.body.decode("utf-8", "replace")
    return {
        "source": str(item.source),
        "entity": item.entity,
        "message_id": item.message_id,
        "sequence_number": item.sequence_number,
        "reason": item.reason,
        "description": item.description,
        "enqueued_at": item.enqueued_at.isoformat() if item.enqueued_at else None,
        "age_s": item.age_s(),
        "delivery_count": item.delivery_count,
        "reply_to": item.reply_to,
        "reply_to_session_id": item.reply_to_session_id,
        "content_type": item.content_type,
        "properties": item.properties,
        "body": body if len(body) <= 4000 else body[:4000] + f"... ({len(body)} characters)",
    }


@app.command("show")
def show_command(
    message_id: str = typer.Argument(..., help="The request's message id."),
    source: str | None = SOURCE,
    connection: str | None = CONNECTION,
    namespace: str | None = NAMESPACE,
    queue: str | None = QUEUE,
    failures_queue: str | None = FAILURES,
) -> None:
    """Everything about one dead-lettered request, body included (as JSON)."""
    only = _source(source)
    items = _run(connection, namespace, queue, failures_queue, lambda q: q.show(message_id, source=only))
    if not items:
        raise UserError(f"no dead-lettered request has message id {message_id!r}")
    typer.echo(json.dumps([_details(item) for item in items], indent=2))


def _fix(settings: list[str], patch: Path | None) -> Fix:
    from qscore.operations import Fix

    fields: dict[str, str] = {}
    for setting in settings:
        name, equals, value = setting.partition("=")
        if not equals or not name:
            raise UserError(f"--set takes FIELD=VALUE, got {setting!r}")
        fields[name.strip()] = value
    body_patch = None
    if patch is not None:
        try:
            body_patch = json.loads(patch.read_text(encoding="utf-8"))
        except OSError as exc:
            raise UserError(f"cannot read --patch {patch}: {exc.strerror}") from None
        except ValueError as exc:
            raise UserError(f"--patch {patch} is not JSON: {exc}") from None
    try:
        return Fix(fields=fields, body_patch=body_patch)
    except ValueError as exc:
        raise UserError(str(exc)) from None


@app.command("resubmit")
def resubmit_command(
    message_ids: list[str] = typer.Argument(..., help="Message ids to send back to the request queue."),
    set_: list[str] = typer.Option(
        [],
        "--set",
        help="Change a message field in the copy: reply_to=, reply_to_session_id=, content_type=.",
    ),
    patch: Path | None = typer.Option(
        None, "--patch", help="JSON merge patch (RFC 7386) for the request body."
    ),
    source: str | None = SOURCE,
    connection: str | None = CONNECTION,
    namespace: str | None = NAMESPACE,
    queue: str | None = QUEUE,
    failures_queue: str | None = FAILURES,
) -> None:
    """Send a fixed copy back to the request queue; the dead-lettered one is removed only after
    the send succeeded. Exit code 1 if any was not resubmitted."""
    fix = _fix(set_, patch)
    only = _source(source)
    try:
        results = _run(
            connection, namespace, queue, failures_queue, lambda q: q.resubmit(message_ids, fix, source=only)
        )
    except ValueError as exc:  # e.g. a body that is not JSON cannot take a --patch
        raise UserError(str(exc)) from None
    for result in results:
        typer.echo(
            f"{'resubmitted' if result.resubmitted else 'NOT resubmitted'} {result.message_id}: "
            f"{result.detail}"
        )
    if not all(result.resubmitted for result in results):
        raise typer.Exit(1)


@app.command("purge")
def purge_command(
    reason: str | None = typer.Option(None, "--reason", help="Only those with this reason."),
    yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation."),
    source: str | None = SOURCE,
    connection: str | None = CONNECTION,
    namespace: str | None = NAMESPACE,
    queue: str | None = QUEUE,
    failures_queue: str | None = FAILURES,
) -> None:
    """Remove dead-lettered requests for good (all, or only one reason)."""
    only = _source(source)
    what = f"with reason {reason!r}" if reason else "(all of them)"

    async def confirmed_purge(queues: DeadLetterQueues) -> int:
        # Reach the broker first (a peek: nothing changes), so a wrong connection or queue is
        # reported before anyone is asked to confirm, and the question can say how many.
        peeked = await queues.entries(source=only, limit=PURGE_PEEK_LIMIT)
        count = sum(1 for item in peeked if reason is None or item.reason == reason)
        many = f"at least {count}" if len(peeked) >= PURGE_PEEK_LIMIT else str(count)
        question = f"Remove {many} dead-lettered request(s) {what} for good?"
        if not yes and not await asyncio.to_thread(typer.confirm, question, default=False):
            raise UserError("nothing removed (confirm, or pass --yes)")
        return await queues.purge(source=only, reason=reason)

    removed = _run(connection, namespace, queue, failures_queue, confirmed_purge)
    typer.echo(f"removed {removed} request(s)")
