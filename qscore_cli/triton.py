"""`qscore triton serve` and `qscore triton smoke`: a real tritonserver on loopback."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import typer

from qscore_cli.errors import UserError

if TYPE_CHECKING:
    from qscore_local.triton.launcher import LocalTriton

app = typer.Typer(help="Run a local NVIDIA Triton server (CPU) serving triton_repo/.", no_args_is_help=True)

DEFAULT_LOG = Path(".qscore") / "tritonserver.log"


def _start(server: LocalTriton) -> None:
    """Start the server, turning every known start failure into a one-line UserError."""
    from qscore_local.triton.install import TritonNotInstalled
    from qscore_local.triton.launcher import TritonStartError
    from qscore_local.triton.repository import RepositoryError

    try:
        server.start()
    except (TritonNotInstalled, RepositoryError) as exc:
        raise UserError(str(exc)) from None
    except TritonStartError as exc:
        raise UserError(f"{exc.reason}: {exc.last_error} (log: {server.log_path})") from None


def _wait_for_signal(server: LocalTriton) -> str:
    """Block until Ctrl-C/SIGTERM or the server dies; returns which happened."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop.wait(0.5):
            if not server.running:
                return "died"
        return "signal"
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@app.command()
def serve(
    http_port: int = typer.Option(8000, help="HTTP port on 127.0.0.1 (0 = pick a free one)."),
    grpc_port: int = typer.Option(8001, help="gRPC port on 127.0.0.1 (0 = pick a free one)."),
    metrics_port: int = typer.Option(8002, help="Prometheus metrics port on 127.0.0.1 (0 = free)."),
    repo: Path = typer.Option(None, help="Model repository (default: triton_repo/)."),
    model: list[str] = typer.Option(None, "--model", help="Serve only this model (repeatable)."),
    threads: int = typer.Option(
        None, min=1, help="onnxruntime threads per model instance (default: $QSCORE_TRITON_ORT_THREADS or 1)."
    ),
    instances: int = typer.Option(1, min=1, help="CPU instances per model."),
    log_file: Path = typer.Option(DEFAULT_LOG, help="Where tritonserver's log goes."),
) -> None:
    """Serve triton_repo/ on 127.0.0.1 in the foreground until Ctrl-C or SIGTERM."""
    from qscore_local.triton.launcher import LocalTriton
    from qscore_local.triton.repository import DEFAULT_REPO, CpuSettings

    server = LocalTriton(
        repo=repo or DEFAULT_REPO,
        http_port=http_port,
        grpc_port=grpc_port,
        metrics_port=metrics_port,
        log_path=log_file,
        models=model or None,
        cpu=CpuSettings.from_env(instance_count=instances, intra_op_threads=threads),
    )
    _start(server)
    endpoints = server.endpoints
    assert endpoints is not None
    typer.echo(
        f"triton ready: grpc {endpoints.grpc_url}  http {endpoints.http_url}  metrics {endpoints.metrics_url}"
    )
    typer.echo(f"log: {log_file}  (Ctrl-C to stop)")
    try:
        outcome = _wait_for_signal(server)
    finally:
        server.stop()
    if outcome == "died":
        raise UserError(f"tritonserver exited on its own; see {log_file}")
    typer.echo("triton stopped")


@app.command()
def smoke(
    version: list[str] = typer.Option(["1", "2"], "--version", help="digits versions to score (repeatable)."),
    min_accuracy: float = typer.Option(0.95, help="Fail if the latest version scores below this."),
    concurrency: int = typer.Option(200, min=1, help="Requests in flight at once."),
) -> None:
    """Start Triton, score the held-out digits one request per sample, print accuracy and batching."""
    import asyncio

    from qscore.inference.errors import InferenceError
    from qscore.inference.testset import load_digits_test_set
    from qscore_local.triton.launcher import LocalTriton
    from qscore_local.triton.smoke import run_smoke

    try:
        test_set = load_digits_test_set()
    except FileNotFoundError as exc:
        raise UserError(str(exc)) from None
    server = LocalTriton(models=["digits"], log_path=DEFAULT_LOG)
    _start(server)
    try:
        assert server.endpoints is not None
        scores = asyncio.run(run_smoke(server.endpoints, test_set, versions=version, concurrency=concurrency))
    except InferenceError as exc:
        raise UserError(f"scoring failed: {exc}") from None
    finally:
        server.stop()
    for score in scores:
        b = score.batching
        typer.echo(
            f"digits v{score.version}: accuracy {score.accuracy:.4f} on {score.samples} held-out samples; "
            f"{b.request_success:.0f} requests in {b.exec_count:.0f} executions "
            f"({b.requests_per_execution:.1f} requests per batch)"
        )
    latest = max(scores, key=lambda s: int(s.version))
    if latest.accuracy < min_accuracy:
        raise UserError(f"digits v{latest.version} accuracy {latest.accuracy:.4f} is below {min_accuracy}")
