"""`qscore demo`: the README's main command (local bus + Triton + workers + producer + summary)."""

from __future__ import annotations

from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer

from qscore_cli.errors import UserError

if TYPE_CHECKING:
    from qscore_local.demo.options import DemoOptions

T = TypeVar("T")


def register(app: typer.Typer) -> None:
    """Attach this module's command(s) to the root app."""
    app.command("demo")(demo)


def demo(
    requests: int = typer.Option(2000, "--requests", "-n", help="Requests to send (the test set repeats)."),
    workers: int = typer.Option(2, "--workers", "-w", help="Worker processes to start."),
    model: str = typer.Option("digits", help="Model to score."),
    version: str | None = typer.Option(None, help="Model version or label (default: production)."),
    rows_per_request: int = typer.Option(1, help="Samples per request."),
    binary: bool = typer.Option(False, "--binary", help="Send tensors in the compact base64 encoding."),
    max_in_flight: int = typer.Option(1000, help="Most requests outstanding at once."),
    timeout: float = typer.Option(120.0, help="Seconds to wait for each reply."),
    max_batch_size: int | None = typer.Option(None, help="Workers' max rows per Triton call."),
    max_batch_delay_ms: float | None = typer.Option(None, help="Workers' max wait to fill a batch."),
    run_dir: Path | None = typer.Option(None, help="Where logs go (default .qscore/demo/<time>)."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the summary as JSON here."),
    plot: Path | None = typer.Option(None, help="Write a latency histogram (PNG) here."),
    image_side: int = typer.Option(64, help="digit_images: PNG side in pixels (2450 ~ a 4 MB image)."),
    claim_check_threshold: int | None = typer.Option(
        None,
        help="Send bodies over this many bytes by reference via Azurite (default: 196608 for digit_images).",
    ),
    blob_log: bool = typer.Option(False, "--blob-log", help="Workers log interactions to Azurite (Blob)."),
) -> None:
    """Start the local stack, score the held-out digits set through the queues, print a summary."""
    from qscore_local.demo.options import DemoOptions

    try:
        options = DemoOptions(
            requests=requests,
            workers=workers,
            model=model,
            version=version,
            rows_per_request=rows_per_request,
            binary_tensors=binary,
            max_in_flight=max_in_flight,
            reply_timeout_s=timeout,
            max_batch_size=max_batch_size,
            max_batch_delay_ms=max_batch_delay_ms,
            run_dir=run_dir,
            json_out=json_out,
            plot=plot,
            image_side=image_side,
            claim_check_threshold=claim_check_threshold,
            blob_log=blob_log,
        )
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if not run_demo_command(options):
        raise typer.Exit(1)


def run_demo_command(options: DemoOptions) -> bool:
    """Run the demo, print the summary; True when every request was answered."""
    import asyncio

    from rich.console import Console

    from qscore_local.demo.plot import plot_latency
    from qscore_local.demo.render import render_summary
    from qscore_local.demo.run import run_demo
    from qscore_local.demo.stack import StackStartError

    console = Console()
    try:
        result = asyncio.run(_cancel_on_sigterm(run_demo(options, console=console)))
    except FileNotFoundError as exc:
        raise UserError(str(exc)) from None
    except StackStartError as exc:
        first_line = str(exc).splitlines()[0]
        raise UserError(f"the local stack did not start: {first_line} (logs in {exc.run_dir})") from None
    render_summary(result.summary, console)
    if options.json_out:
        result.summary.write_json(options.json_out)
        console.print(f"summary written to {options.json_out}")
    if options.plot:
        plot_latency(result.latencies_ms, result.summary, options.plot)
        console.print(f"latency histogram written to {options.plot}")
    return result.summary.all_answered


async def _cancel_on_sigterm(work: Coroutine[Any, Any, T]) -> T:
    """Run `work` as a task that SIGTERM cancels like Ctrl-C does, so the stack is stopped."""
    import asyncio
    import signal

    task = asyncio.ensure_future(work)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        return await task
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
