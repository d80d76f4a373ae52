"""`qscore functions ...`: the Azure Functions app, run in-process on the local stack."""

from __future__ import annotations

from pathlib import Path

import typer

from qscore_cli.errors import UserError

app = typer.Typer(
    help="The Azure Functions app (Service Bus trigger + Durable orchestrations).", no_args_is_help=True
)


@app.command("run-local")
def run_local(
    requests: int = typer.Option(20, min=1, max=10_000, help="Digits requests to enqueue."),
    triton_url: str = typer.Option("", help="gRPC host:port of a running Triton; empty: start one."),
    connection: str = typer.Option("", help="Service Bus connection string; empty: start the local bus."),
    max_batch: int = typer.Option(16, min=1, max=256, help="Messages per trigger invocation."),
    work_dir: Path = typer.Option(Path(".qscore/functions"), help="Payload store (failures: queue)."),
) -> None:
    """Enqueue requests, run the trigger and orchestrations in-process, show the replies."""
    import asyncio

    from qscore.transport import check_connection_string
    from qscore_local.functions_host.run_local import run_local as run

    if connection:
        try:
            check_connection_string(connection)
        except ValueError as exc:
            raise UserError(str(exc)) from None
    try:
        result = asyncio.run(
            run(
                requests=requests,
                triton_url=triton_url or None,
                connection=connection or None,
                work_dir=work_dir,
                max_batch=max_batch,
            )
        )
    except (OSError, RuntimeError, TimeoutError) as exc:
        raise UserError(f"the local stack did not run: {exc}") from None
    ok = sum(reply.status == "ok" for reply in result.replies)
    typer.echo(
        f"sent {result.sent} requests; {result.batches} trigger batches -> "
        f"{result.instances} orchestrations; "
        f"{len(result.replies)} replies ({ok} ok, {len(result.replies) - ok} errors)"
    )
    for reply in sorted(result.replies, key=lambda r: r.request_id)[:10]:
        detail = (
            f"v{reply.model_version} total {reply.timings.total_ms:.0f} ms"
            if reply.outputs
            else str(reply.error)
        )
        typer.echo(f"  {reply.request_id}: {reply.status} {detail}")
    if result.accuracy is not None:
        typer.echo(f"accuracy on the held-out digits: {result.accuracy:.3f}")
    if len(result.replies) < result.sent:
        raise UserError(f"only {len(result.replies)} of {result.sent} replies arrived")
